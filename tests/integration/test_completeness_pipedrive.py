"""A person's edit in Pipedrive reaches the completeness figures: ``crm setup`` creates webhooks v2 (``change`` of the
person and the lead, Basic authentication), the emulated Pipedrive sends a change made in its web app and one
made through the API to the relay's route over real HTTP, and only the person's edit of a mapped field counts the
lead's required field as asked again, once, whatever Pipedrive retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from adapters.pipedrive.webhooks import EDITS_PATH, credentials
from connector import completeness, edits
from connector.app import create_app
from connector.runtime import Runtime, set_current_runtime
from core import metrics
from core.plan import Ref, SyncResult
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS, make_settings
from tests.integration._pipedrive_app_env import API_TOKEN, Late, write_relay_config
from tests.integration.test_completeness_hubspot import lead


@dataclass
class World:
    emulator: PipedriveEmulator
    url: str
    relay: str
    runtime: Runtime

    def call(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        answer = requests.request(method, self.url + path, headers={"x-api-token": API_TOKEN}, timeout=5,
                                  **kwargs)  # type: ignore[arg-type]
        assert answer.ok, answer.text
        return dict(answer.json())

    def edit_in_app(self, kind: str, record: str, values: dict[str, object]) -> None:
        answer = requests.post(f"{self.url}/_emulator/edit/{kind}/{record}", json={"values": values}, timeout=5)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def world(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[World]:
    emulator = PipedriveEmulator(API_TOKEN, webhook_retry_delays=(0.05, 0.1, 0.2))
    served = ServedApp(emulator.app).start()
    late = Late()
    relay = ServedApp(late).start()
    settings = make_settings(redis_url, chat2crm_config=write_relay_config(tmp_path, inbox="none"),
                             public_base_url=relay.url, pipedrive_api_token=API_TOKEN, pipedrive_api_base=served.url)
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    try:
        yield World(emulator, served.url, relay.url, runtime)
    finally:
        relay.stop()
        served.stop()
        set_current_runtime(None)
    assert not emulator.violations, emulator.violations


def test_a_persons_edit_in_pipedrive_counts_the_field_asked_again(world: World) -> None:
    runtime, emulator = world.runtime, world.emulator
    url = world.relay + EDITS_PATH
    assert edits.setup(runtime, apply=False) == [f"would create webhook v2: change.person → {url}",
                                                 f"would create webhook v2: change.lead → {url}"]
    assert edits.setup(runtime, apply=True) == [f"created webhook v2: change.person → {url}",
                                                f"created webhook v2: change.lead → {url}"]
    assert edits.setup(runtime, apply=True) == [f"ok webhook v2: change.person → {url}",
                                                f"ok webhook v2: change.lead → {url}"]  # idempotent
    assert edits.check(runtime) == [f"edits: ok webhook change.person calls {url}",
                                    f"edits: ok webhook change.lead calls {url}"]
    hooks = world.call("GET", "/v1/webhooks")["data"]
    assert [(h["event_action"], h["event_object"], h["version"], h["http_auth_user"]) for h in hooks] == [  # type: ignore[index, union-attr]
        ("change", "person", "2.0", "chat2crm"), ("change", "lead", "2.0", "chat2crm")]
    # the lead as the relay wrote it (its field keys read and cached by the adapter, as a sync does)
    adapter = runtime.adapter
    for name in ("chat2crm preferred time", "chat2crm utm source"):
        emulator.add_field("deal", name)
    preferred = adapter._field("deal", "chat2crm preferred time")["key"]  # type: ignore[attr-defined]
    person = str(world.call("POST", "/api/v2/persons", json={"name": "Ayşe Yılmaz"})["data"]["id"])  # type: ignore[index]
    made = world.call("POST", "/v1/leads", json={"title": "Reporting", "person_id": int(person),
                                                  preferred: "2026-11-25T11:00:00Z"})
    record = str(made["data"]["id"])  # type: ignore[index]
    written = lead("#1042", {"topic": "Reporting", "company": "Acme", "email": "a@acme.io",
                             "preferred_time": "2026-11-25T11:00:00+00:00"})
    completeness.lead_written(runtime, written, SyncResult(contact=Ref(object="person", id=person),
                                                           record=Ref(object="lead", id=record)))
    # the relay's own write (through the API): sent, not counted
    world.call("PATCH", f"/api/v2/persons/{person}", json={"emails": [{"value": "ayse@acme.io", "primary": True}]})
    assert emulator.wait_for_webhooks(5)
    assert metrics.read(runtime.redis, "fields_asked_again") == {}
    # a person's edits in the web app: the preferred time (twice), the e-mail, a field no lead field fills
    world.edit_in_app("leads", record, {preferred: "2026-11-26T10:00:00Z"})
    world.edit_in_app("leads", record, {preferred: "2026-11-27T10:00:00Z", "title": "Reporting (call back)"})
    world.edit_in_app("persons", person, {"emails": [{"value": "ayse@example.org", "primary": True}]})
    assert emulator.wait_for_webhooks(5)
    attempts = list(emulator.webhook_attempts)
    assert [(a["body"]["meta"]["entity"], a["body"]["meta"]["change_source"], a["status"]) for a in attempts] == [
        ("person", "api", 200), ("lead", "app", 200), ("lead", "app", 200), ("person", "app", 200)]
    first = attempts[1]["body"]
    assert first["previous"] == {"custom_fields": {preferred: "2026-11-25T11:00:00Z"}}
    assert first["data"]["custom_fields"][preferred] == "2026-11-26T10:00:00Z"
    assert metrics.read(runtime.redis, "fields_asked_again") == {
        ("meeting_request", "preferred_time", "crm_edit", "full", "none"): 1.0,
        ("meeting_request", "email", "crm_edit", "full", "none"): 1.0}
    # Pipedrive's retry of a notification already taken changes nothing; a wrong password is refused
    user, password = credentials(TEST_SECRETS["transcript_secret"])
    again = requests.post(world.relay + EDITS_PATH, json=first, auth=(user, password), timeout=5)
    assert again.status_code == 200 and again.json() == {"edits": 0, "duplicates": 1}
    wrong = requests.post(world.relay + EDITS_PATH, json=first, auth=(user, password[:-1] + "x"), timeout=5)
    assert wrong.status_code == 401
    assert requests.post(world.relay + EDITS_PATH, json=first, timeout=5).status_code == 401
    assert metrics.read(runtime.redis, "leads_asked_again") == {
        ("meeting_request", "en", "none", "full", "none", "complete"): 1.0}


def test_a_delivery_the_relay_did_not_take_is_retried(world: World) -> None:
    runtime, emulator = world.runtime, world.emulator
    assert edits.setup(runtime, apply=True)
    person = str(world.call("POST", "/api/v2/persons", json={"name": "Ayşe Yılmaz"})["data"]["id"])  # type: ignore[index]
    completeness.lead_written(runtime, lead("#1043", {"topic": "Reporting", "company": "Acme", "email": "a@acme.io",
                                                      "preferred_time": "2026-11-25T11:00:00+00:00"}),
                              SyncResult(contact=Ref(object="person", id=person)))
    runtime.redis.close()
    broken = redis.Redis.from_url("redis://127.0.0.1:1")  # the relay's Redis is out of reach for the first try
    original, runtime._redis = runtime._redis, broken  # type: ignore[attr-defined]
    try:
        world.edit_in_app("persons", person, {"emails": [{"value": "ayse@example.org", "primary": True}]})
        end = time.monotonic() + 5
        while time.monotonic() < end and not emulator.webhook_attempts:
            time.sleep(0.01)
    finally:
        runtime._redis = original  # type: ignore[attr-defined]
    assert emulator.webhook_attempts, "the first delivery never came"
    assert emulator.wait_for_webhooks(5)
    statuses = [a.get("status") for a in emulator.webhook_attempts]
    assert statuses[0] != 200 and statuses[-1] == 200, statuses
    assert [a["attempt"] for a in emulator.webhook_attempts] == list(range(1, len(statuses) + 1))
    assert metrics.read(runtime.redis, "fields_asked_again") == {
        ("meeting_request", "email", "crm_edit", "full", "none"): 1.0}
