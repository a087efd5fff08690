"""The whole relay over real HTTP: the web app, real Redis, rq workers, and every emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from connector.app import create_app
from connector.mapping import load_mapping
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from core.settings import Settings
from demo.stack import RunningCRM, prepare_crm, start_crm
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS, make_settings
from tests.e2e.crm_probes import Probe
from tests.paths import MAPPINGS, SHIPPED_CONFIG


@dataclass
class Stack:
    runtime: Runtime
    settings: Settings
    relay_url: str
    whatsapp: Any
    telegram: Any
    crm: Probe
    config_path: Path

    @property
    def hubspot(self) -> Any:
        """The HubSpot emulator (for the tests that run on HubSpot only)."""
        assert self.crm.name == "hubspot", "this test reads HubSpot's own objects"
        return self.crm.emulator

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
                       "PUBLIC_BASE_URL": self.settings.public_base_url, "LOG_FORMAT": "json",
                       **self.crm.running.environment})
        return values


def write_config(directory: Path, **changes: Any) -> Path:
    """The shipped main configuration with ``changes``, paths made absolute."""
    yaml = YAML(typ="rt")
    data = yaml.load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    for key in ("mapping", "flows", "campaigns"):
        data[key] = str(SHIPPED_CONFIG.parent / data[key])
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
def crm_name() -> str:
    """The CRM the stack writes to (parametrize or override to run a test on another CRM)."""
    return "hubspot"


#: adapter options the end-to-end tests change in the shipped mappings: the emulators enforce no
#: burst limit there, so the shipped (smallest-plan) limits would only slow the tests down
_FAST_OPTIONS = {"pipedrive": {"rate_limit": {"requests": 1000, "per_seconds": 2},
                               "search_rate_limit": {"requests": 1000, "per_seconds": 2}}}


def crm_environment() -> dict[str, str]:
    """The credentials every CRM emulator of the tests accepts."""
    return {k.upper(): str(v) for k, v in TEST_SECRETS.items()}


def start_test_crm(crm: str, directory: Path, monkeypatch: pytest.MonkeyPatch, **emulator_options: Any,
                   ) -> tuple[RunningCRM, Path]:
    """Start ``crm``'s emulator, prepare it as `crm setup` would, and return it with the mapping to use."""
    yaml = YAML(typ="rt")
    mapping_path = directory / f"{crm}.yaml"
    data = yaml.load((MAPPINGS / f"{crm}.yaml").read_text(encoding="utf-8"))
    for key, value in _FAST_OPTIONS.get(crm, {}).items():
        data["options"][key] = value
    with mapping_path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    running = start_crm(crm, crm_environment(), directory=directory / "tls", **{"search_lag": 3.0, **emulator_options})
    if "REQUESTS_CA_BUNDLE" in running.environment:  # the relay in this process talks to an https emulator
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.environment["REQUESTS_CA_BUNDLE"])
    prepare_crm(crm, {**crm_environment(), **running.environment}, mapping_path)
    running.emulator.calls.clear()
    return running, mapping_path


@pytest.fixture
def stack(redis_url: str, redis_client: redis.Redis, whatsapp_emulator: Any, telegram_emulator: Any,
          tmp_path: Path, stack_config: dict[str, Any], crm_name: str, monkeypatch: pytest.MonkeyPatch,
          ) -> Iterator[Stack]:
    running, mapping_path = start_test_crm(crm_name, tmp_path, monkeypatch)
    config_path = write_config(tmp_path, **{"crm": crm_name, "mapping": str(mapping_path),
                                            "delivery.backoff_base_seconds": 0.05,
                                            "delivery.backoff_max_seconds": 0.5, **stack_config})
    settings = make_settings(redis_url, chat2crm_config=config_path, whatsapp_api_base=whatsapp_emulator.url,
                             telegram_api_base=telegram_emulator.url, public_base_url="https://relay.example",
                             **{k.lower(): v for k, v in running.environment.items() if k != "REQUESTS_CA_BUNDLE"})
    probe = Probe(running, load_mapping(mapping_path, crm=crm_name))
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    relay = ServedApp(create_app({"TESTING": True}, runtime=runtime)).start()
    whatsapp_emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
    telegram_emulator.relay_url = f"{relay.url}/webhooks/telegram"
    try:
        yield Stack(runtime, settings, relay.url, whatsapp_emulator, telegram_emulator, probe, config_path)
    finally:
        relay.stop()
        running.stop()
        set_current_runtime(None)
    assert not running.emulator.violations, running.emulator.violations
