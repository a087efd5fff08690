"""Stage changes in Pipedrive reach the relay: the emulated Pipedrive sends its webhooks v2 ``change`` notifications
over real HTTP to the relay's route, and a deal moved to another stage (in the web app, or by another integration)
or a lead given another label reaches :func:`connector.crm_events.take` as one :class:`~core.inbox.FieldsEdited`
with the stage's new value (and name) and Pipedrive's event id, once per change whatever Pipedrive retries; the
relay's own create and writes never do, and completeness still counts only people's edits of lead fields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from ruamel.yaml import YAML

from adapters.pipedrive.webhooks import EDITS_PATH, credentials
from connector import completeness, crm_events, edits
from connector.app import create_app
from connector.runtime import Runtime, set_current_runtime
from core import metrics
from core.inbox import FieldsEdited, InboxEvent
from core.plan import Ref, SyncResult
from emulators.pipedrive import PipedriveEmulator
from emulators.pipedrive.emulator import DEFAULT_STAGES
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS, make_settings
from tests.integration._pipedrive_app_env import API_TOKEN, FAST, Late, write_relay_config
from tests.integration.test_completeness_hubspot import lead
from tests.paths import MAPPINGS


@dataclass
class Taken:
    """What reached :func:`connector.crm_events.take`: the edits, in order (the real ``take`` runs on them too)."""

    edits: list[FieldsEdited] = field(default_factory=list)


@dataclass
class World:
    emulator: PipedriveEmulator
    url: str
    relay: str
    runtime: Runtime
    taken: Taken

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = requests.request(method, self.url + path, headers={"x-api-token": API_TOKEN}, timeout=5, **kwargs)
        assert answer.ok, answer.text
        return dict(answer.json())

    def edit(self, kind: str, record: str, values: dict[str, Any], **who: Any) -> None:
        """A change made in the web app (or, with ``source="api"`` and a ``user``, by another integration)."""
        answer = requests.post(f"{self.url}/_emulator/edit/{kind}/{record}", json={"values": values, **who}, timeout=5)
        assert answer.status_code == 200, answer.text

    def delivered(self) -> list[dict[str, Any]]:
        assert self.emulator.wait_for_webhooks(5)
        return list(self.emulator.webhook_attempts)


def _deal_mapping(directory: Path) -> None:
    """The shipped deal mapping in place of the lead mapping ``write_relay_config`` wrote (same options)."""
    yaml = YAML(typ="rt")
    mapping = yaml.load((MAPPINGS / "pipedrive-deal.yaml").read_text(encoding="utf-8"))
    for key, value in {**FAST, "inbox": "none"}.items():
        mapping["options"][key] = value
    with (directory / "pipedrive.yaml").open("w", encoding="utf-8") as handle:
        yaml.dump(mapping, handle)


def _world(redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
           deals: bool) -> Iterator[World]:
    emulator = PipedriveEmulator(API_TOKEN, webhook_retry_delays=(0.05, 0.1, 0.2))
    served = ServedApp(emulator.app).start()
    late = Late()
    relay = ServedApp(late).start()
    config = write_relay_config(tmp_path, inbox="none")
    if deals:
        _deal_mapping(tmp_path)
    settings = make_settings(redis_url, chat2crm_config=config, public_base_url=relay.url,
                             pipedrive_api_token=API_TOKEN, pipedrive_api_base=served.url)
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    taken = Taken()
    real_take = crm_events.take

    def recording(runtime: Runtime, crm: str, events: list[InboxEvent], **kwargs: Any) -> dict[str, int]:
        taken.edits += [e for e in events if isinstance(e, FieldsEdited)]
        return real_take(runtime, crm, events, **kwargs)

    monkeypatch.setattr(crm_events, "take", recording)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    try:
        yield World(emulator, served.url, relay.url, runtime, taken)
    finally:
        relay.stop()
        served.stop()
        set_current_runtime(None)
    assert not emulator.violations, emulator.violations


@pytest.fixture
def deal_world(redis_url: str, redis_client: redis.Redis, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from _world(redis_url, redis_client, tmp_path, monkeypatch, deals=True)


@pytest.fixture
def lead_world(redis_url: str, redis_client: redis.Redis, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from _world(redis_url, redis_client, tmp_path, monkeypatch, deals=False)


def test_a_deals_stage_change_reaches_the_relay_once_with_its_new_stage(deal_world: World) -> None:
    world, runtime = deal_world, deal_world.runtime
    url = world.relay + EDITS_PATH
    assert edits.setup(runtime, apply=True) == [f"created webhook v2: change.person → {url}",
                                                f"created webhook v2: change.deal → {url}"]
    first, second, third, fourth = (s["id"] for s in world.emulator.stages[:4])
    # the relay's own create and its own later write of the deal (through the API, with its token): not taken
    person = str(world.call("POST", "/api/v2/persons", json={"name": "Ayşe Yılmaz"})["data"]["id"])
    deal = str(world.call("POST", "/api/v2/deals", json={"title": "Implant – Ayşe (#1042)", "stage_id": first,
                                                         "person_id": int(person)})["data"]["id"])
    completeness.lead_written(runtime, lead("#1042", {"topic": "Implant", "company": "Acme", "email": "a@acme.io",
                                                      "preferred_time": "2026-11-25T11:00:00+00:00"}),
                              SyncResult(contact=Ref(object="person", id=person), record=Ref(object="deal", id=deal)))
    world.call("PATCH", f"/api/v2/deals/{deal}", json={"stage_id": second})
    sent = world.delivered()
    assert [(a["body"]["meta"]["action"], a["body"]["meta"]["change_source"], a["status"]) for a in sent] == [
        ("change", "api", 200)]  # the create matches no change webhook; the relay's write is answered, not taken
    assert world.taken.edits == []
    # a coordinator moves the deal in the web app; another integration (its own user's token) moves it on
    world.edit("deals", deal, {"stage_id": third})
    world.edit("deals", deal, {"stage_id": fourth}, source="api", user=2)
    sent = world.delivered()
    assert [a["status"] for a in sent] == [200, 200, 200]
    person_move, integration_move = world.taken.edits
    assert (person_move.crm_object, person_move.crm_id, person_move.fields) == ("deal", deal, ["stage_id"])
    assert person_move.values == {"stage_id": third, "stage_name": DEFAULT_STAGES[2]}
    assert person_move.by_person and person_move.source == "userId:1"
    assert person_move.event_id == sent[1]["body"]["meta"]["id"]
    assert integration_move.values == {"stage_id": fourth, "stage_name": DEFAULT_STAGES[3]}
    assert not integration_move.by_person and integration_move.source == "userId:2"
    assert integration_move.event_id == sent[2]["body"]["meta"]["id"] != person_move.event_id
    # Pipedrive's retry of a notification already taken reaches nothing
    user, password = credentials(TEST_SECRETS["transcript_secret"])
    again = requests.post(url, json=sent[1]["body"], auth=(user, password), timeout=5)
    assert again.status_code == 200 and again.json() == {"edits": 0, "duplicates": 1}
    assert len(world.taken.edits) == 2
    # completeness measures people's edits of lead fields only: a stage is none
    assert metrics.read(runtime.redis, "fields_asked_again") == {}


def test_a_leads_label_change_reaches_the_relay_with_the_labels_names(lead_world: World) -> None:
    world, runtime = lead_world, lead_world.runtime
    assert edits.setup(runtime, apply=True)
    labels = {name: str(world.call("POST", "/v1/leadLabels", json={"name": name, "color": "green"})["data"]["id"])
              for name in ("New enquiry", "Planned")}
    person = str(world.call("POST", "/api/v2/persons", json={"name": "Ayşe Yılmaz"})["data"]["id"])
    record = str(world.call("POST", "/v1/leads", json={"title": "Implant", "person_id": int(person),
                                                        "label_ids": [labels["New enquiry"]]})["data"]["id"])
    world.call("PATCH", f"/v1/leads/{record}", json={"title": "Implant (#1043)"})  # the relay's own write
    world.delivered()
    assert world.taken.edits == []
    world.edit("leads", record, {"label_ids": [labels["Planned"]]})
    sent = world.delivered()
    (moved,) = world.taken.edits
    assert (moved.crm_object, moved.crm_id, moved.fields, moved.by_person) == ("lead", record, ["label_ids"], True)
    assert moved.values == {"label_ids": [labels["Planned"]], "label_names": ["Planned"]}
    assert moved.event_id == sent[-1]["body"]["meta"]["id"]
    # a label made since the adapter read them is found by reading them again
    made = str(world.call("POST", "/v1/leadLabels", json={"name": "Done", "color": "blue"})["data"]["id"])
    world.edit("leads", record, {"label_ids": [made]})
    world.delivered()
    assert world.taken.edits[-1].values == {"label_ids": [made], "label_names": ["Done"]}
    assert len(world.taken.edits) == 2
