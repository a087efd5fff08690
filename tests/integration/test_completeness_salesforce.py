"""A person's edit in Salesforce reaches the completeness figures: the emulated org publishes the Lead's change
events on ``/data/LeadChangeEvent`` (the object selected for Change Data Capture), ``chat2crm listen salesforce``
subscribes to them over the real Pub/Sub API beside the message object's channel, and an edit committed by a
person counts the lead's required field as asked again, once; the relay's own write (committed by the
integration user) does not."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
import redis
import requests

from adapters.salesforce.edits import change_channel, edited
from connector import completeness
from connector.listen import CHECKPOINT, EDITS_CHECKPOINT
from connector.runtime import Runtime, set_current_runtime
from core import metrics
from core.plan import Ref, SyncResult
from emulators.salesforce import API_USER_ID, COORDINATOR_ID
from tests.conftest import make_settings
from tests.e2e.conftest import write_config
from tests.integration.test_completeness_hubspot import lead
from tests.integration.test_salesforce_inbox_org import Org, running_org
from tests.integration.test_salesforce_inbox_stream import Running, until
from tests.paths import MAPPINGS

LEAD_CHANNEL = "/data/LeadChangeEvent"


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    with running_org(tmp_path / "tls", keepalive_seconds=0.3) as found:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(found.tls.ca_bundle))
        for name, kind in (("Chat2CRM_Contact_Key__c", "string"), ("Chat2CRM_Preferred_Time__c", "datetime"),
                           ("Chat2CRM_Topic__c", "string")):
            found.emulator.add_field("Lead", name, kind=kind)
        yield found
    assert not found.emulator.violations, found.emulator.violations


@pytest.fixture
def runtime(org: Org, redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Runtime]:
    config = write_config(tmp_path, crm="salesforce", mapping=str(MAPPINGS / "salesforce.yaml"))
    found = Runtime(make_settings(redis_url, chat2crm_config=config, public_base_url="https://relay.example",
                                  **org.settings), redis_client=redis_client)
    set_current_runtime(found)
    try:
        yield found
    finally:
        set_current_runtime(None)


def select(org: Org, sobject: str) -> None:
    answer = requests.post(f"{org.url}/_emulator/changes/select", json={"object": sobject}, timeout=5,
                           verify=str(org.tls.ca_bundle))
    assert answer.status_code == 200 and answer.json()["channel"] == change_channel(sobject)


def edit(org: Org, record: str, fields: dict[str, object]) -> None:
    """A person (the coordinator) edits the Lead in Salesforce's UI."""
    answer = requests.post(f"{org.url}/_emulator/edit/Lead/{record}", json={"fields": fields}, timeout=5,
                           verify=str(org.tls.ca_bundle))
    assert answer.status_code == 200, answer.text


def asked(runtime: Runtime) -> dict[tuple[str, ...], float]:
    return metrics.read(runtime.redis, "fields_asked_again")


def test_a_persons_edit_in_salesforce_counts_the_field_asked_again(org: Org, runtime: Runtime) -> None:
    select(org, "Lead")
    record = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "Acme", "Email": "a@acme.io"})
    written = lead("#1042", {"topic": "Reporting", "company": "Acme", "email": "a@acme.io",
                             "preferred_time": "2026-11-25T11:00:00+00:00"})
    completeness.lead_written(runtime, written, SyncResult(contact=Ref(object="Lead", id=record),
                                                           record=Ref(object="Lead", id=record)))
    running = Running(runtime)
    try:
        assert set(running.listener.edit_streams) == {"Lead"}
        until(lambda: runtime.redis.get(EDITS_CHECKPOINT.key("salesforce", "Lead")) is not None,
              "the Lead's channel is subscribed to (a keep-alive stores its position)")
        # the relay's own write (the integration user, through the REST API): not a person's edit
        session = runtime.adapter.session  # type: ignore[attr-defined]
        session.request("lead_update", "PATCH", f"sobjects/Lead/{record}",
                        json={"Email": "ayse@acme.io", "Chat2CRM_Topic__c": "Reporting"})
        ours = org.emulator.change_events(LEAD_CHANNEL)[-1]
        assert ours.header["commitUser"] == API_USER_ID and ours.header["changeOrigin"].startswith(
            "com/salesforce/api/rest/")
        until(lambda: runtime.redis.get(EDITS_CHECKPOINT.key("salesforce", "Lead")) == ours.replay.to_bytes(8, "big"),
              "the relay's write is taken")
        assert asked(runtime) == {}
        # a person's edits: the preferred time (twice: counted once) and the e-mail, then a field no lead field fills
        edit(org, record, {"Chat2CRM_Preferred_Time__c": "2026-11-26T10:00:00.000+0000"})
        edit(org, record, {"Chat2CRM_Preferred_Time__c": "2026-11-27T10:00:00.000+0000", "Email": "ayse@example.org"})
        edit(org, record, {"Company": "Acme Health"})
        last = org.emulator.change_events(LEAD_CHANNEL)[-1]
        assert last.header["commitUser"] == COORDINATOR_ID
        until(lambda: runtime.redis.get(EDITS_CHECKPOINT.key("salesforce", "Lead")) == last.replay.to_bytes(8, "big"),
              "the person's edits are taken")
    finally:
        running.stop()
    assert running.ended is None
    assert asked(runtime) == {("meeting_request", "preferred_time", "crm_edit", "full", "none"): 1.0,
                              ("meeting_request", "email", "crm_edit", "full", "none"): 1.0}
    assert metrics.read(runtime.redis, "leads_asked_again") == {
        ("meeting_request", "en", "none", "full", "none", "complete"): 1.0}
    # the message object's stream ran beside it, with its own position
    assert runtime.redis.get(CHECKPOINT.key("salesforce")) is not None


def test_the_edits_read_from_an_event_tell_the_relay_from_a_person(org: Org) -> None:
    select(org, "Lead")
    record = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    edit(org, record, {"FirstName": "Ayşe", "Chat2CRM_Topic__c": "Implant"})
    (event,) = org.emulator.change_events(LEAD_CHANNEL)
    schema = org.emulator.channels[LEAD_CHANNEL].schema
    parsed = fastavro.parse_schema(schema)
    (person,) = edited(schema, parsed, event.payload, integration_user=API_USER_ID)
    assert person.crm_object == "Lead" and person.crm_id == record and person.by_person
    assert set(person.fields) == {"FirstName", "Chat2CRM_Topic__c"}  # LastModifiedDate is no one's edit
    # the same change, committed by the integration user (its 15-character id), or by anyone through the relay's
    # client id, is the relay's own write
    (ours,) = edited(schema, parsed, event.payload, integration_user=COORDINATOR_ID[:15])
    assert not ours.by_person
    header = {**event.header, "changeOrigin": "com/salesforce/api/rest/62.0;client=chat2crm"}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, {**{f["name"]: None for f in schema["fields"]}, **event.fields,
                                             "ChangeEventHeader": header})
    (client,) = edited(schema, parsed, out.getvalue(), integration_user=API_USER_ID)
    assert not client.by_person
    created = {**event.header, "changeType": "CREATE", "changedFields": []}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, {**{f["name"]: None for f in schema["fields"]},
                                             "ChangeEventHeader": created})
    assert edited(schema, parsed, out.getvalue(), integration_user=API_USER_ID) == []
