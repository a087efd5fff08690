"""The whole loop with Pipedrive's panel, as the end-to-end and the browser tests share it: the relay served
over HTTP with real Redis and in-process rq workers, the WhatsApp emulator (with its status webhooks), and
the Pipedrive emulator with the relay's app installed through the relay's own install page and the mapping's
fields set up, as a clinic's admin leaves them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.pipedrive.inbox import PipedriveInbox
from connector.app import create_app
from connector.mapping import required_schema
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.integration._pipedrive_app_env import API_TOKEN, JWT_SECRET, Clock, Late, PipedriveWorld, write_relay_config

PATIENT = "905321112233"


@dataclass
class PipedriveLoop:
    runtime: Runtime
    whatsapp: Any
    world: PipedriveWorld
    relay_url: str

    @property
    def pipedrive(self) -> PipedriveEmulator:
        return self.world.emulator

    @property
    def inbox(self) -> PipedriveInbox:
        inbox = self.runtime.inbox
        assert isinstance(inbox, PipedriveInbox)
        return inbox

    @property
    def key(self) -> str:
        return f"whatsapp:{self.runtime.settings.whatsapp_phone_number_id}:{PATIENT}"

    def work(self) -> None:
        run_worker(self.runtime, burst=True)
        run_worker(self.runtime, burst=True)

    def until(self, check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Run the workers until ``check`` holds: webhooks from the emulators arrive on their own threads."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"never: {what}"
            with contextlib.suppress(TimeoutError):  # still posting on a loaded machine: this loop's deadline rules
                self.whatsapp.wait_for_webhooks(1.0)
            self.work()
            time.sleep(0.05)

    def sent_to_patient(self) -> list[dict[str, Any]]:
        return [s.payload for s in self.whatsapp.messages_to(PATIENT)]

    def person(self) -> str:
        """The patient's person in Pipedrive (the one the lead's write made)."""
        (person,) = self.pipedrive.records("persons")
        return str(person["id"])

    def notes(self) -> list[str]:
        return [str(n["content"]) for n in self.pipedrive.records("notes")]

    def host_page(self, resource: str, record: str, user: int = 1) -> str:
        """Pipedrive's detail view with the panel, as the user opens it."""
        return f"{self.world.url}/_emulator/ui/{resource}/{record}?user={user}"

    # -- the panel's requests, as its page makes them ------------------------------------------------
    def thread(self, person: str, user: int = 1) -> dict[str, Any]:
        answer = requests.get(f"{self.relay_url}/crm/pipedrive/panel/thread", params={"resource": "person", "id": person},
                              headers={"Authorization": f"Bearer {self.world.token(user)}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def reply(self, person: str, key: str, text: str, *, files: dict[str, Any] | None = None,
              user: int = 1) -> requests.Response:
        return requests.post(f"{self.relay_url}/crm/pipedrive/panel/reply",
                             data={"resource": "person", "id": person, "key": key, "text": text}, files=files,
                             headers={"Authorization": f"Bearer {self.world.token(user)}"}, timeout=10)

    def close(self, person: str, user: int = 1) -> requests.Response:
        return requests.post(f"{self.relay_url}/crm/pipedrive/panel/close", data={"resource": "person", "id": person},
                             headers={"Authorization": f"Bearer {self.world.token(user)}"}, timeout=10)

    def shown(self, person: str, message_id: str) -> dict[str, Any]:
        return next(m for m in self.thread(person)["messages"] if m["id"] == message_id)

    def handed_over(self, patient: Any) -> str:
        """The patient asks for a person; once the lead and the bot's part are in Pipedrive, the person's id."""
        patient.send_text("Merhaba, burun estetiği hakkında bilgi almak istiyorum")
        self.work()
        patient.send_text("temsilci")  # the flow's word for a person
        self.until(lambda: self.pipedrive.count("persons") == 1, "the lead's person is in Pipedrive")
        person = self.person()
        self.until(lambda: len(self.inbox.thread(person)) >= 3, "the bot's part is in the panel's thread")
        return person


@pytest.fixture(name="pipedrive_loop")
def pipedrive_loop_fixture(redis_url: str, redis_client: redis.Redis, whatsapp_emulator: Any, telegram_emulator: Any,
                   tmp_path: Path) -> Iterator[PipedriveLoop]:
    """The relay and Pipedrive with the relay's app installed and the mapping's fields set up."""
    clock = Clock()
    emulator = PipedriveEmulator(API_TOKEN, jwt_secret=JWT_SECRET, timeout_seconds=2.0, clock=clock)
    served = ServedApp(emulator.app).start()
    emulator.public_url = served.url
    world = PipedriveWorld(emulator, served.url, redis_client, clock)
    late = Late()
    relay = ServedApp(late).start()
    config = write_relay_config(tmp_path, inbox="panel", **{"delivery.backoff_base_seconds": 0.05,
                                                            "delivery.backoff_max_seconds": 0.5})
    settings = make_settings(redis_url, chat2crm_config=config, whatsapp_api_base=whatsapp_emulator.url,
                             telegram_api_base=telegram_emulator.url, public_base_url=relay.url, **world.settings())
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    emulator.panel_url = f"{relay.url}/crm/pipedrive/panel"
    emulator.redirect_uris = (f"{relay.url}/crm/pipedrive/oauth/callback",)
    whatsapp_emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
    whatsapp_emulator.status_webhooks = True
    try:
        # the admin installs the app from the relay's install page, then runs `crm setup`
        installed = requests.get(f"{relay.url}/crm/pipedrive/install", timeout=10)
        assert installed.status_code == 200 and installed.text.startswith("Installed"), installed.text
        runtime.adapter.setup(required_schema(runtime.mapping), apply=True)
        emulator.calls.clear()
        yield PipedriveLoop(runtime, whatsapp_emulator, world, relay.url)
    finally:
        relay.stop()
        served.stop()
        set_current_runtime(None)
    assert not emulator.violations, emulator.violations
