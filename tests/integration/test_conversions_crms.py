"""Conversion events to Meta from Salesforce and Pipedrive stage changes, over real HTTP(S), real gRPC and real
Redis: a coordinator moving a Lead's Status in the emulated org (read by the relay's Pub/Sub listener) and a deal
moved to another stage in Pipedrive's web app (delivered to the relay's route as webhooks v2) each send exactly
one mapped event to the emulated Conversions API; a redelivered change, or a stage moved back and forth, sends
none more; a lead without consent sends none. The mappings are copies of the shipped ones with a
``conversions:`` section naming the scheme's statuses (``reviewing``, ``planned``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from ruamel.yaml import YAML

from adapters.pipedrive.webhooks import EDITS_PATH, credentials
from connector import capi, conversions, edits, leads
from connector.app import create_app
from connector.listen import EDITS_CHECKPOINT
from connector.mapping import required_schema
from connector.runtime import Runtime, set_current_runtime
from core.inbox import FieldsEdited
from core.models import Lead
from emulators.meta_graph import MetaGraphEmulator
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS, make_settings
from tests.e2e.conftest import write_config
from tests.integration._pipedrive_app_env import API_TOKEN, FAST, Late, write_relay_config
from tests.integration.test_completeness_salesforce import LEAD_CHANNEL, select
from tests.integration.test_conversions import a_lead, run_sends
from tests.integration.test_salesforce_inbox_org import Org, running_org
from tests.integration.test_salesforce_inbox_stream import Running, until
from tests.leadform_fixtures import PAGE_TOKEN, served_meta
from tests.paths import MAPPINGS

DATASET = "1234567890123"
WABA = "102290129340398"
CONVERSIONS = {"dataset_id": DATASET, "whatsapp_business_account_id": WABA, "consent": "required", "events": [
    {"name": "InitiateCheckout", "stage": "reviewing"},  # statuses of the scheme: the CRM's labels in English
    {"name": "Purchase", "stage": "planned", "value": 2500, "currency": "EUR"}]}
STATUSES = ["New", "Reviewing", "Planned", "Done", "On hold"]


def mapping_copy(shipped: str, directory: Path, **changes: Any) -> Path:
    """The shipped mapping ``shipped`` with a ``conversions:`` section and ``changes`` (``section.name``)."""
    yaml = YAML(typ="rt")
    data = yaml.load((MAPPINGS / shipped).read_text(encoding="utf-8"))
    data["conversions"] = CONVERSIONS
    for key, value in changes.items():
        section, _, name = key.partition(".")
        data[section][name] = value
    path = directory / shipped
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


@pytest.fixture
def meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetaGraphEmulator]:
    monkeypatch.setenv("META_CONVERSIONS_TOKEN", PAGE_TOKEN)
    yield from served_meta(TEST_SECRETS["whatsapp_app_secret"])


def written(runtime: Runtime, lead: Lead, crm_object: str, record: str) -> None:
    """The lead's CRM write recorded, as ``sync_lead`` records it (this keeps its events' context)."""
    leads.mark_synced(runtime, lead, {"contact": {"object": crm_object, "id": record, "created": True},
                                      "record": {"object": crm_object, "id": record, "created": True}})


def sent(meta: MetaGraphEmulator) -> list[tuple[str, str]]:
    """(event id, action source) of every event the emulated Conversions API took."""
    return [(e["event_id"], e["action_source"]) for e in meta.conversions.received]


# -- Salesforce: the Lead's Status, read from Change Data Capture by the listener --------------------------------
@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    with running_org(tmp_path / "tls", keepalive_seconds=0.3) as found:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(found.tls.ca_bundle))
        found.emulator.add_field("Lead", "Chat2CRM_Contact_Key__c", kind="string")
        yield found
    assert not found.emulator.violations, found.emulator.violations


@pytest.fixture
def sf_runtime(org: Org, meta: MetaGraphEmulator, redis_url: str, redis_client: redis.Redis,
               tmp_path: Path) -> Iterator[Runtime]:
    config = write_config(tmp_path, crm="salesforce", mapping=str(mapping_copy("salesforce.yaml", tmp_path)))
    found = Runtime(make_settings(redis_url, chat2crm_config=config, public_base_url="https://relay.example",
                                  meta_graph_base=meta.url, **org.settings),  # type: ignore[attr-defined]
                    redis_client=redis_client)
    set_current_runtime(found)
    try:
        yield found
    finally:
        set_current_runtime(None)


def test_a_salesforce_status_moved_by_a_person_sends_one_event(org: Org, sf_runtime: Runtime,
                                                               meta: MetaGraphEmulator) -> None:
    runtime = sf_runtime
    select(org, "Lead")
    org.emulator.add_picklist_values("Lead", "Status", STATUSES)
    session = runtime.adapter.session  # type: ignore[attr-defined]
    made = {}
    for reference, consent in (("#2042", True), ("#2043", False)):  # the relay's own creates, status New
        answer = session.request("lead_create", "POST", "sobjects/Lead",
                                 json={"LastName": "Yılmaz", "Company": "Acme", "Status": "New"})
        made[reference] = str(answer["id"])
        written(runtime, a_lead(reference, consent=consent), "Lead", made[reference])
    assert run_sends(runtime) == []  # no LeadSubmitted configured: nothing at the write

    def position() -> Any:
        return runtime.redis.get(EDITS_CHECKPOINT.key("salesforce", "Lead"))

    def read_all(what: str) -> None:
        last = org.emulator.change_events(LEAD_CHANNEL)[-1]
        until(lambda: position() == last.replay.to_bytes(8, "big"), what)

    def edit(record: str, status: str) -> None:
        answer = requests.post(f"{org.url}/_emulator/edit/Lead/{record}", json={"fields": {"Status": status}},
                               timeout=5, verify=str(org.tls.ca_bundle))
        assert answer.status_code == 200, answer.text

    listener = Running(runtime)
    try:
        until(lambda: position() is not None, "the Lead's channel is subscribed to")
        edit(made["#2042"], "Reviewing")  # a coordinator reviews the consented patient's Lead…
        edit(made["#2043"], "Reviewing")  # …and the other one's, who did not consent
        read_all("the status changes are read")
        assert run_sends(runtime) == ["sent"]
        edit(made["#2042"], "New")  # moved back and forth: nothing more
        edit(made["#2042"], "Reviewing")
        read_all("the moves back and forth are read")
        assert run_sends(runtime) == []
    finally:
        listener.stop()
    assert listener.ended is None
    assert sent(meta) == [("2042:InitiateCheckout", "business_messaging")]
    event = meta.conversions.received[0]
    assert event["user_data"]["ph"] == [capi.sha256("905321112233")] and event["dataset_id"] == DATASET
    assert conversions.status(runtime, "#2043", "InitiateCheckout") is None
    # a listener that lost its position reads every change again: Meta hears nothing more
    runtime.redis.delete(EDITS_CHECKPOINT.key("salesforce", "Lead"))
    again = Running(runtime)
    try:
        read_all("the changes are read again")
    finally:
        again.stop()
    assert run_sends(runtime) == [] and len(meta.conversions.received) == 1


# -- Pipedrive: a deal's stage, delivered as webhooks v2 ---------------------------------------------------------
@pytest.fixture
def pipedrive(meta: MetaGraphEmulator, redis_url: str, redis_client: redis.Redis,
              tmp_path: Path) -> Iterator[tuple[PipedriveEmulator, str, str, Runtime]]:
    """The emulated Pipedrive (its pipeline and stages made by ``crm setup``, the relay's webhooks registered) and
    the relay's web app, with the deal mapping and its ``conversions:``."""
    emulator = PipedriveEmulator(API_TOKEN, webhook_retry_delays=(0.05, 0.1, 0.2))
    served = ServedApp(emulator.app).start()
    late = Late()
    relay = ServedApp(late).start()
    config = write_relay_config(tmp_path, inbox="none")
    # the deal's stage is Pipedrive's stage_id: the property the conversions follow
    mapping_copy("pipedrive-deal.yaml", tmp_path, **{f"options.{k}": v for k, v in {**FAST, "inbox": "none"}.items()},
                 **{"record.stage_property": "stage_id"}).replace(tmp_path / "pipedrive.yaml")
    runtime = Runtime(make_settings(redis_url, chat2crm_config=config, public_base_url=relay.url,
                                    pipedrive_api_token=API_TOKEN, pipedrive_api_base=served.url,
                                    meta_graph_base=meta.url), redis_client=redis_client)  # type: ignore[attr-defined]
    set_current_runtime(runtime)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    try:
        runtime.adapter.setup(required_schema(runtime.mapping), apply=True)
        assert edits.setup(runtime, apply=True)
        yield emulator, served.url, relay.url, runtime
    finally:
        relay.stop()
        served.stop()
        set_current_runtime(None)
    assert not emulator.violations, emulator.violations


def test_a_pipedrive_deal_moved_in_the_web_app_sends_one_event(
        pipedrive: tuple[PipedriveEmulator, str, str, Runtime], meta: MetaGraphEmulator) -> None:
    emulator, url, relay, runtime = pipedrive
    headers = {"x-api-token": API_TOKEN}

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = requests.request(method, url + path, headers=headers, timeout=5, **kwargs)
        assert answer.ok, answer.text
        return dict(answer.json()["data"])

    def move(deal: str, stage: int) -> None:  # a coordinator drags the deal in the web app
        answer = requests.post(f"{url}/_emulator/edit/deals/{deal}", json={"values": {"stage_id": stage}}, timeout=5)
        assert answer.status_code == 200, answer.text
        assert emulator.wait_for_webhooks(5)

    (pipeline,) = [p for p in emulator.pipelines if p["name"] == "Patients"]  # made by `crm setup`
    stages = {s["name"]: int(s["id"]) for s in emulator.stages if s["pipeline_id"] == pipeline["id"]}
    deals = {}
    for reference, lead_id, consent in (("#3042", "1234567890123456", True), ("#3043", None, False)):
        person = call("POST", "/api/v2/persons", json={"name": "Ayşe Yılmaz"})["id"]
        deals[reference] = str(call("POST", "/api/v2/deals", json={
            "title": f"Implant ({reference})", "person_id": person, "stage_id": stages["New enquiry"]})["id"])
        if lead_id:  # a lead form's lead: its events carry Meta's lead id
            conversions.lead_form_taken(runtime, reference, lead_id)
        written(runtime, a_lead(reference, consent=consent, ctwa=None if lead_id else "ARAkclid"), "deal",
                deals[reference])
    move(deals["#3042"], stages["Reviewing"])
    move(deals["#3043"], stages["Reviewing"])  # the lead whose patient did not consent
    assert run_sends(runtime) == ["sent"]
    assert sent(meta) == [("3042:InitiateCheckout", "system_generated")]
    assert meta.conversions.received[0]["user_data"]["lead_id"] == 1234567890123456
    # Pipedrive delivers the notification again; the deal goes back and forth: nothing more
    notification = next(a["body"] for a in reversed(emulator.webhook_attempts)
                        if str(a["body"]["data"]["id"]) == deals["#3042"])
    user, password = credentials(TEST_SECRETS["transcript_secret"])
    again = requests.post(relay + EDITS_PATH, json=notification, auth=(user, password), timeout=5)
    assert again.status_code == 200 and again.json() == {"edits": 0, "duplicates": 1}
    move(deals["#3042"], stages["New enquiry"])
    move(deals["#3042"], stages["Reviewing"])
    assert run_sends(runtime) == []
    # the treatment planned: the purchase, with its value
    move(deals["#3042"], stages["Planned"])
    assert run_sends(runtime) == ["sent"]
    purchase = meta.conversions.received[-1]
    assert purchase["event_id"] == "3042:Purchase" and purchase["custom_data"]["value"] == 2500
    assert len(meta.conversions.received) == 2 and json.dumps(meta.conversions.received).count("Ayşe") == 0


# -- Pipedrive leads: the status is a label among the lead's labels ----------------------------------------------
def test_a_pipedrive_lead_given_a_status_label_sends_one_event(meta: MetaGraphEmulator, redis_url: str,
                                                               redis_client: redis.Redis, tmp_path: Path) -> None:
    """A lead's new labels, as Pipedrive's webhooks v2 parser hands them on (ids with their names), match the
    status label the conversions name; the lead's other labels (tags) are no stage."""
    config = write_relay_config(tmp_path, inbox="none")
    mapping_copy("pipedrive.yaml", tmp_path, **{f"options.{k}": v for k, v in {**FAST, "inbox": "none"}.items()},
                 **{"record.stage_property": "label_ids"}).replace(tmp_path / "pipedrive.yaml")
    runtime = Runtime(make_settings(redis_url, chat2crm_config=config, pipedrive_api_token=API_TOKEN,
                                    meta_graph_base=meta.url), redis_client=redis_client)  # type: ignore[attr-defined]
    set_current_runtime(runtime)
    try:
        _labels_send_once(runtime, meta)
    finally:
        set_current_runtime(None)


def _labels_send_once(runtime: Runtime, meta: MetaGraphEmulator) -> None:
    record = "6c0b7f1e-2d2a-4d6a-9a51-6a3c2b1d0e9f"
    written(runtime, a_lead("#4042", consent=True, ctwa="ARAkclid"), "lead", record)

    def labelled(*names: str, event: str) -> list[str]:
        return conversions.fields_edited(runtime, FieldsEdited(
            crm_object="lead", crm_id=record, fields=["label_ids"], by_person=True, event_id=event,
            values={"label_ids": [f"id-{n}" for n in names], "label_names": list(names)}))

    assert labelled("hair", event="1") == []  # a tag only: no status
    assert labelled("hair", "Reviewing", event="2") == ["InitiateCheckout"]
    assert labelled("Reviewing", "vip", event="3") == []  # still Reviewing: sent once
    assert run_sends(runtime) == ["sent"]
    assert sent(meta) == [("4042:InitiateCheckout", "business_messaging")]
