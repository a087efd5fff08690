"""The whole relay over real HTTP: the web app, real Redis, rq workers, and every emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from adapters.hubspot import HubSpotAdapter
from connector.app import create_app
from connector.mapping import load_mapping, required_schema
from connector.runtime import Runtime, set_current_runtime
from connector.settings import PROJECT_ROOT, Settings
from connector.worker import run_worker
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS, make_settings


@dataclass
class Stack:
    runtime: Runtime
    settings: Settings
    relay_url: str
    whatsapp: Any
    telegram: Any
    hubspot: HubSpotEmulator
    config_path: Path

    def work(self) -> None:
        """Run the queued jobs (conversation, then CRM) to completion in an rq worker."""
        run_worker(self.runtime, burst=True)
        run_worker(self.runtime, burst=True)

    def env(self) -> dict[str, str]:
        """The environment a worker process of this stack needs."""
        values = {k.upper(): str(v) for k, v in TEST_SECRETS.items()}
        values.update({"REDIS_URL": self.settings.redis_url or "", "CHAT2CRM_CONFIG": str(self.config_path),
                       "WHATSAPP_API_BASE": self.settings.whatsapp_api_base,
                       "TELEGRAM_API_BASE": self.settings.telegram_api_base,
                       "HUBSPOT_API_BASE": self.settings.hubspot_api_base,
                       "PUBLIC_BASE_URL": self.settings.public_base_url, "LOG_FORMAT": "json"})
        return values


def write_config(directory: Path, **changes: Any) -> Path:
    """The shipped main configuration with ``changes``, paths made absolute."""
    yaml = YAML(typ="rt")
    data = yaml.load((PROJECT_ROOT / "chat2crm.yaml").read_text(encoding="utf-8"))
    for key in ("mapping", "flows", "campaigns"):
        data[key] = str(PROJECT_ROOT / data[key])
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            data[section][name] = value
        else:
            data[key] = value
    path = directory / "chat2crm.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


@pytest.fixture
def stack_config() -> dict[str, Any]:
    """Overrides of chat2crm.yaml for this test (override the fixture to change them)."""
    return {}


@pytest.fixture
def stack(redis_url: str, redis_client: redis.Redis, whatsapp_emulator: Any, telegram_emulator: Any,
          tmp_path: Path, stack_config: dict[str, Any]) -> Iterator[Stack]:
    hubspot = HubSpotEmulator(TEST_SECRETS["hubspot_access_token"])
    hubspot_served = ServedApp(hubspot.app).start()
    config_path = write_config(tmp_path, **{"delivery.backoff_base_seconds": 0.05,
                                            "delivery.backoff_max_seconds": 0.5, **stack_config})
    settings = make_settings(redis_url, chat2crm_config=config_path, whatsapp_api_base=whatsapp_emulator.url,
                             telegram_api_base=telegram_emulator.url, hubspot_api_base=hubspot_served.url,
                             public_base_url="https://relay.example")
    mapping = load_mapping(PROJECT_ROOT / "mappings" / "hubspot.yaml", crm="hubspot")
    HubSpotAdapter(settings, options=mapping.crm_options()).setup(required_schema(mapping), apply=True)
    hubspot.calls.clear()
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    relay = ServedApp(create_app({"TESTING": True}, runtime=runtime)).start()
    whatsapp_emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
    telegram_emulator.relay_url = f"{relay.url}/webhooks/telegram"
    try:
        yield Stack(runtime, settings, relay.url, whatsapp_emulator, telegram_emulator, hubspot, config_path)
    finally:
        relay.stop()
        hubspot_served.stop()
        set_current_runtime(None)
    assert not hubspot.violations, hubspot.violations
