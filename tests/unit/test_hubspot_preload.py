"""The worker imports the HubSpot client's API packages before it forks its job processes
(:meth:`HubSpotAdapter.preload_modules`): every API the adapter calls, and nothing made or connected."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import adapters.hubspot
from adapters.hubspot.adapter import _CLIENT_APIS


def test_every_api_the_adapter_calls_is_preloaded() -> None:
    called = set()
    for source in Path(adapters.hubspot.__file__).parent.glob("*.py"):
        called |= set(re.findall(r"client\.(crm\.[a-z0-9_.]+?_api)\b", source.read_text(encoding="utf-8")))
    assert called and called <= set(_CLIENT_APIS), sorted(called - set(_CLIENT_APIS))


def test_preloading_imports_the_client_s_packages_before_any_call() -> None:
    script = """
import sys
from adapters.hubspot.adapter import HubSpotAdapter
before = {m for m in sys.modules if m.startswith("hubspot.crm")}
HubSpotAdapter.preload_modules()
loaded = {m for m in sys.modules if m.startswith("hubspot.crm")} - before
from hubspot import HubSpot
client = HubSpot(access_token="unused")
client.crm.objects.batch_api, client.crm.properties.core_api, client.crm.associations.v4.basic_api
after = {m for m in sys.modules if m.startswith("hubspot.crm")} - before - loaded
print(len(loaded), len(after))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    loaded, after = map(int, out.stdout.split())
    assert loaded > 100 and after == 0
