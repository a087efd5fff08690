"""Stage changes in Salesforce reach the relay: ``chat2crm listen salesforce`` reads the Lead's change events over
the emulated org's real Pub/Sub API, and a Lead's Status moved by a coordinator, or by a flow running as the
Automated Process user, reaches :func:`connector.crm_events.take` as one :class:`~core.inbox.FieldsEdited` with the
new Status (its API name) and a stable event id, once per change; the relay's own create and writes never do, a
listener that reads the events again after a restart hands over the same ids, and completeness still counts
only people's edits of lead fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from connector import completeness, crm_events
from connector.listen import EDITS_CHECKPOINT
from connector.runtime import Runtime, set_current_runtime
from core import metrics
from core.inbox import FieldsEdited, InboxEvent
from core.plan import Ref, SyncResult
from emulators.salesforce import API_USER_ID, COORDINATOR_ID
from emulators.salesforce.changes import AUTOMATION_ID
from tests.conftest import make_settings
from tests.e2e.conftest import write_config
from tests.integration.test_completeness_hubspot import lead
from tests.integration.test_completeness_salesforce import LEAD_CHANNEL, select
from tests.integration.test_salesforce_inbox_org import Org, running_org
from tests.integration.test_salesforce_inbox_stream import Running, until
from tests.paths import MAPPINGS

STATUSES = ["New", "Reviewing", "Planned", "Done", "On hold"]


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


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[FieldsEdited]:
    """The edits that reach :func:`connector.crm_events.take`, in order (the real ``take`` runs on them too)."""
    found: list[FieldsEdited] = []
    real_take = crm_events.take

    def recording(runtime: Runtime, crm: str, events: list[InboxEvent], **kwargs: Any) -> dict[str, int]:
        found.extend(e for e in events if isinstance(e, FieldsEdited))
        return real_take(runtime, crm, events, **kwargs)

    monkeypatch.setattr(crm_events, "take", recording)
    return found


def move(org: Org, record: str, fields: dict[str, object], user: str = COORDINATOR_ID) -> None:
    """A change committed in the org by ``user``: a coordinator in the UI, or the Automated Process user (a flow)."""
    answer = requests.post(f"{org.url}/_emulator/edit/Lead/{record}", json={"fields": fields, "user": user},
                           timeout=5, verify=str(org.tls.ca_bundle))
    assert answer.status_code == 200, answer.text


def position(runtime: Runtime) -> Any:
    return runtime.redis.get(EDITS_CHECKPOINT.key("salesforce", "Lead"))


def test_a_leads_status_change_reaches_the_relay_once_whoever_made_it(
        org: Org, runtime: Runtime, taken: list[FieldsEdited]) -> None:
    select(org, "Lead")
    org.emulator.add_picklist_values("Lead", "Status", STATUSES)
    running = Running(runtime)
    try:
        until(lambda: position(runtime) is not None, "the Lead's channel is subscribed to")
        # the relay's own create (the first status) and its own later write: committed by the integration user
        session = runtime.adapter.session  # type: ignore[attr-defined]
        made = session.request("lead_create", "POST", "sobjects/Lead",
                               json={"LastName": "Yılmaz", "Company": "Acme", "Status": "New"})
        record = str(made["id"])
        completeness.lead_written(runtime, lead("#1042", {"topic": "Implant", "company": "Acme",
                                                          "email": "a@acme.io",
                                                          "preferred_time": "2026-11-25T11:00:00+00:00"}),
                                  SyncResult(contact=Ref(object="Lead", id=record), record=Ref(object="Lead", id=record)))
        session.request("lead_update", "PATCH", f"sobjects/Lead/{record}", json={"Status": "Reviewing"})
        ours = org.emulator.change_events(LEAD_CHANNEL)[-1]
        assert ours.header["commitUser"] == API_USER_ID
        until(lambda: position(runtime) == ours.replay.to_bytes(8, "big"), "the relay's writes are read")
        assert taken == []
        # a coordinator plans the treatment; later a scheduled flow closes it; the flow also rewrites a lead field
        move(org, record, {"Status": "Planned"})
        move(org, record, {"Status": "Done", "Chat2CRM_Preferred_Time__c": "2026-12-01T10:00:00.000+0000"},
             user=AUTOMATION_ID)
        last = org.emulator.change_events(LEAD_CHANNEL)[-1]
        until(lambda: position(runtime) == last.replay.to_bytes(8, "big"), "the stage changes are read")
    finally:
        running.stop()
    assert running.ended is None
    person, flow = taken
    assert (person.crm_object, person.crm_id, person.fields) == ("Lead", record, ["Status"])
    assert person.values == {"Status": "Planned"} and person.by_person and person.source == COORDINATOR_ID
    assert (flow.crm_id, set(flow.fields)) == (record, {"Status", "Chat2CRM_Preferred_Time__c"})
    assert flow.values == {"Status": "Done"}  # only the stage's value travels
    assert not flow.by_person and flow.source == AUTOMATION_ID
    events = org.emulator.change_events(LEAD_CHANNEL)
    assert person.event_id == f"{events[-2].header['transactionKey']}:1:{record}"
    assert flow.event_id == f"{events[-1].header['transactionKey']}:1:{record}" != person.event_id
    # completeness: neither the stage nor the flow's rewrite of a lead field is a person's edit of a lead field
    assert metrics.read(runtime.redis, "fields_asked_again") == {}
    # a listener that lost its position reads the events again: the same changes, with the same ids
    runtime.redis.delete(EDITS_CHECKPOINT.key("salesforce", "Lead"))
    again = Running(runtime)
    try:
        until(lambda: position(runtime) == last.replay.to_bytes(8, "big") and len(taken) == 4,
              "the events are read again")
    finally:
        again.stop()
    assert [(e.event_id, e.values) for e in taken[2:]] == [(person.event_id, person.values),
                                                           (flow.event_id, flow.values)]
