"""`chat2crm demo --whatsapp-provider 360dialog`: the clinic's WhatsApp number reached through 360dialog.

The relay serves the ``dialog360`` plug-in in place of ``whatsapp``, the demo registers its webhook with the
360dialog emulator through 360dialog's API (as ``chat2crm channels register dialog360`` does), and the health
intake's first exchange goes both ways through 360dialog's door: the patient's message as a webhook carrying the
registered token header, the bot's answer through ``POST /messages`` with the API key (the emulator has no other
way in: Meta's own paths answer 404 there), and its delivery status back the same way as the message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from tests.e2e.test_demo import _wait_for_banner, stopped_cleanly
from tests.integration.test_docs_commands import _free_port

pytestmark = pytest.mark.weight(25)  # seconds, about: see pytest_collection_modifyitems


def _first_exchange(base: str, patient: str, text: str) -> list[dict[str, Any]]:
    """Send the patient's first message through the page's API; the chat once the bot's answer is delivered."""
    sent = requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "text": text},
                         timeout=10)
    assert sent.json() == {"relay_status": 200}, sent.text  # the webhook, with its token header, was accepted
    deadline = time.monotonic() + 20
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        messages = requests.get(f"{base}/demo/api/chat", params={"channel": "whatsapp", "patient": patient},
                                timeout=5).json()["messages"]
        if any(m["direction"] == "out" and m.get("status") == "delivered" for m in messages):
            break
        time.sleep(0.2)
    return messages


def test_demo_reaches_whatsapp_through_360dialog_and_stops_cleanly() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHAT2CRM_DEMO_WHATSAPP_PROVIDER")}
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "demo", "--port", str(port),
                             "--whatsapp-provider", "360dialog"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_banner(proc, output)
        text = "".join(output)
        assert f"open {base}/demo" in text, text
        assert re.search(r"^    emulators  WhatsApp \(360dialog\), Telegram,", text, re.MULTILINE), text
        registered = [line for line in output if line.startswith("    whatsapp ")]
        assert len(registered) == 1 and f"360dialog: webhook registered at {base}/webhooks/dialog360 (with the " \
            "X-Chat2crm-Token header)" in registered[0], text

        # the webhook the 360dialog emulator holds, as registering set it (the header's name; its value is secret)
        provider = requests.get(f"{base}/demo/api/channels", timeout=5).json()["whatsapp"]
        assert provider == {"provider": "360dialog", "label": "WhatsApp · 360dialog",
                            "webhook": {"url": f"{base}/webhooks/dialog360", "headers": ["X-Chat2crm-Token"]}}
        # the Cloud API's own door is closed: the relay serves WhatsApp through 360dialog only
        assert requests.post(f"{base}/webhooks/whatsapp", json={}, timeout=5).status_code == 404
        refused = requests.post(f"{base}/webhooks/dialog360", json={"object": "whatsapp_business_account"},
                                timeout=5)
        assert refused.status_code == 401  # no token header: not 360dialog's

        first = "Hi, price for hair transplant?"  # the health intake (the default flow), in English
        messages = _first_exchange(base, "905329990360", first)
        assert messages and messages[0]["direction"] == "in" and messages[0]["text"] == first, messages
        answers = [m for m in messages if m["direction"] == "out"]
        # sent through POST /messages with the API key, and reported delivered by a webhook with the token header
        assert answers and answers[0]["status"] == "delivered" and "Demo Clinic" in answers[0]["text"], messages
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        stopped_cleanly(proc, output)
