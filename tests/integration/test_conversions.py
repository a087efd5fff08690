"""Conversion events to Meta, on real Redis, the HubSpot emulator and the Meta emulator over real HTTP: a stage
moved in HubSpot sends exactly one event (a redelivered webhook none more); LeadSubmitted at the lead's first
write; nothing without consent; a lead form's event carries its lead id; Meta's hashing known answers; an event
outside the window refused with a reason; Meta's transient error retried; the mapping's checks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from pydantic import ValidationError
from rq.job import Job

from adapters.hubspot.inbox import fields_edited
from connector import capi, conversions, crm_events, leads, queues
from connector.config import load_config
from connector.jobs import send_conversion
from connector.mapping import Mapping
from connector.runtime import Runtime, set_current_runtime
from core.inbox import FieldsEdited
from core.models import Attribution, Consent, Lead, LeadContact
from emulators.meta_graph import MetaGraphEmulator
from tests.conftest import TEST_SECRETS, make_settings
from tests.integration._hubspot_emulator_env import (
    Env,
    env_fixture,  # noqa: F401 - the fixture
    install,
)
from tests.leadform_fixtures import PAGE_TOKEN, served_meta
from tests.paths import SHIPPED_CONFIG

DATASET = "1234567890123"
WABA = "102290129340398"
CONVERSIONS = {"dataset_id": DATASET, "whatsapp_business_account_id": WABA, "events": [
    {"name": "LeadSubmitted"},
    {"name": "InitiateCheckout", "stage": "qualifiedtobuy"},  # HubSpot's stage id
    {"name": "Purchase", "stage": "closedwon", "value": 2500, "currency": "EUR"}]}
NOW = datetime.now(UTC)


@pytest.fixture
def meta() -> Iterator[MetaGraphEmulator]:
    yield from served_meta(TEST_SECRETS["whatsapp_app_secret"])


@pytest.fixture
def runtime(redis_url: str, redis_client: redis.Redis, tmp_path: Path, meta: MetaGraphEmulator,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The shipped configuration, its HubSpot mapping with ``conversions:``, Meta's API the emulator."""
    config = load_config(SHIPPED_CONFIG)
    shipped = config.mapping_path.read_text(encoding="utf-8")
    config.mapping = tmp_path / "hubspot.yaml"
    config.mapping.write_text(shipped + "\nconversions: " + json.dumps(CONVERSIONS) + "\n", encoding="utf-8")
    monkeypatch.setenv("META_CONVERSIONS_TOKEN", PAGE_TOKEN)
    settings = make_settings(redis_url, meta_graph_base=meta.url)  # type: ignore[attr-defined]
    made = Runtime(settings, config=config, redis_client=redis_client)
    set_current_runtime(made)
    try:
        yield made
    finally:
        set_current_runtime(None)


def a_lead(reference: str = "#1042", *, consent: bool = True, ctwa: str | None = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",
           ) -> Lead:
    touch = Attribution(ctwa_clid=ctwa, ad_source_id="120210000000001" if ctwa else None)
    return Lead(reference=reference, conversation_key="whatsapp:acc:905321112233", contact_key="whatsapp:905321112233",
                contact=LeadContact(channel="whatsapp", channel_id="905321112233", phone="+90 532 111 22 33",
                                    email=" Ayse@Example.com"),
                first_touch=touch, last_touch=touch, created_at=NOW - timedelta(minutes=5),
                consent=Consent(given=True, text_version="1", at=NOW) if consent else None)


def written(runtime: Runtime, lead: Lead, deal: str) -> None:
    """The lead's CRM write recorded, as ``sync_lead`` records it."""
    leads.mark_synced(runtime, lead, {"contact": {"object": "contacts", "id": "501", "created": True},
                                      "record": {"object": "deals", "id": deal, "created": True}})


def run_sends(runtime: Runtime) -> list[Any]:
    """Run the queued ``send_conversion`` jobs, in order; what each returned."""
    queue = runtime.queue(queues.CRM)
    done = []
    for job_id in list(queue.job_ids):
        job = Job.fetch(job_id, connection=runtime.redis)
        if job.func_name == queues.SEND_CONVERSION:
            queue.remove(job)
            done.append(send_conversion(*job.args, **job.kwargs))
    return done


def test_hashing_gives_metas_documented_answers() -> None:
    # Meta's "Customer Information Parameters" examples: normalised, then SHA-256 in lower-case hex
    assert capi.hashed_email("  John_Smith@gmail.com ") == \
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    assert capi.normalise_phone("+1 (650) 555-1212") == "16505551212"
    assert capi.hashed_phone("+1 (650) 555-1212") == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    assert capi.hashed_phone("0016505551212") == capi.hashed_phone("16505551212")
    assert capi.hashed_email("not an address") is None and capi.hashed_phone("") is None


def test_a_stage_moved_in_hubspot_sends_one_event(env: Env, runtime: Runtime, meta: MetaGraphEmulator) -> None:
    token = install(env)["access_token"]
    deal = str(env.call("POST", "/crm/v3/objects/deals", token, json={
        "properties": {"dealname": "#1042", "dealstage": "appointmentscheduled"}, "associations": []}).json()["id"])
    written(runtime, a_lead(), deal)
    assert run_sends(runtime) == ["sent"]  # LeadSubmitted, sent by the relay at the first write
    written(runtime, a_lead(), deal)  # the record updated later (the chat completes a form's request): no more
    assert run_sends(runtime) == []
    env.http.post(f"{env.url}/_emulator/webhooks/settings", json={
        "targetUrl": env.receiver.url + "/events",
        "subscriptions": [{"eventType": "deal.propertyChange", "propertyName": "dealstage"}]})
    moved = env.http.post(f"{env.url}/_emulator/objects/deals/{deal}", json={"properties": {"dealstage": "qualifiedtobuy"}})
    assert moved.status_code == 200, moved.text
    assert env.hubspot.wait_for_deliveries(5.0)
    events = [found for hook in env.receiver.at("/events") for event in json.loads(hook["body"])
              if (found := fields_edited(event)) is not None]
    assert [(e.crm_object, e.fields, e.values) for e in events] == [("deals", ["dealstage"],
                                                                      {"dealstage": "qualifiedtobuy"})]
    crm_events.take(runtime, "hubspot", events)
    crm_events.take(runtime, "hubspot", events)  # HubSpot delivered it again
    assert run_sends(runtime) == ["sent"]
    received = meta.conversions.received
    assert [e["event_name"] for e in received] == ["LeadSubmitted", "InitiateCheckout"]
    qualified = received[1]
    assert qualified["event_id"] == "1042:InitiateCheckout" and qualified["dataset_id"] == DATASET
    assert qualified["action_source"] == "business_messaging" and qualified["messaging_channel"] == "whatsapp"
    assert qualified["user_data"]["ctwa_clid"].startswith("ARAkLkA8") and \
        qualified["user_data"]["whatsapp_business_account_id"] == WABA
    assert qualified["user_data"]["ph"] == [capi.sha256("905321112233")]
    assert qualified["user_data"]["em"] == [capi.sha256("ayse@example.com")]
    assert abs(qualified["event_time"] - time.time()) < 30
    assert conversions.status(runtime, "#1042", "InitiateCheckout") == "sent"
    # a stage no event names, and a record the relay did not write, send nothing
    crm_events.take(runtime, "hubspot", [FieldsEdited(crm_object="deals", crm_id=deal, fields=["dealstage"],
                                                      values={"dealstage": "contractsent"}),
                                         FieldsEdited(crm_object="deals", crm_id="999", fields=["dealstage"],
                                                      values={"dealstage": "closedwon"})])
    assert run_sends(runtime) == []


def test_the_purchase_carries_its_value(runtime: Runtime, meta: MetaGraphEmulator) -> None:
    written(runtime, a_lead("#1043"), "7001")
    crm_events.take(runtime, "hubspot", [FieldsEdited(crm_object="deals", crm_id="7001", fields=["dealstage"],
                                                      values={"dealstage": "ClosedWon"}, by_person=True)])
    assert run_sends(runtime) == ["sent", "sent"]
    purchase = meta.conversions.received[-1]
    assert purchase["event_name"] == "Purchase" and purchase["custom_data"] == {"value": 2500, "currency": "EUR"}


def test_no_consent_no_event(runtime: Runtime, meta: MetaGraphEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chat2crm.conversions")
    written(runtime, a_lead("#1044", consent=False), "7002")
    crm_events.take(runtime, "hubspot", [FieldsEdited(crm_object="deals", crm_id="7002", fields=["dealstage"],
                                                      values={"dealstage": "qualifiedtobuy"})])
    assert run_sends(runtime) == [] and meta.conversions.received == []
    said = [r for r in caplog.records if r.getMessage() == "conversion not sent: no consent"]
    assert len(said) == 2 and all("905321112233" not in json.dumps(r.__dict__, default=str) for r in said)


def test_a_lead_form_leads_event_carries_its_lead_id(runtime: Runtime, meta: MetaGraphEmulator) -> None:
    conversions.lead_form_taken(runtime, "#1045", "1234567890123456")
    form_lead = a_lead("#1045", consent=False, ctwa=None)  # a form's submission counts as consent
    written(runtime, form_lead, "7003")
    assert run_sends(runtime) == ["sent"]
    event = meta.conversions.received[0]
    assert event["action_source"] == "system_generated" and event["user_data"]["lead_id"] == 1234567890123456
    assert event["custom_data"] == {"event_source": "crm", "lead_event_source": "chat2crm"}
    assert "messaging_channel" not in event and "ctwa_clid" not in event["user_data"]


def test_a_chat_without_an_ad_sends_nothing(runtime: Runtime, meta: MetaGraphEmulator) -> None:
    written(runtime, a_lead("#1046", ctwa=None), "7004")
    assert run_sends(runtime) == [] and conversions.status(runtime, "#1046", "LeadSubmitted") is None


def test_an_event_outside_the_window_is_refused_with_a_reason(runtime: Runtime, meta: MetaGraphEmulator,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chat2crm.conversions")
    written(runtime, a_lead("#1047"), "7005")
    run_sends(runtime)
    late = FieldsEdited(crm_object="deals", crm_id="7005", fields=["dealstage"], values={"dealstage": "qualifiedtobuy"},
                        at=datetime.now(UTC) - timedelta(days=8))
    assert conversions.fields_edited(runtime, late) == []
    refused = [r for r in caplog.records if r.getMessage() == "conversion refused"]
    assert [getattr(r, "reason", None) for r in refused] == ["event_time is more than 7 days old"]
    # Meta's side refuses it too, with Graph's error body
    event = capi.event({"reference": "#1047", "ctwa_clid": "x", "ph": capi.sha256("1")}, name="InitiateCheckout",
                       event_time=int(time.time()) - 8 * 86400, waba_id=WABA)
    answer = requests.post(f"{meta.url}/v23.0/{DATASET}/events", json={"data": [event]},  # type: ignore[attr-defined]
                           headers={"Authorization": f"Bearer {PAGE_TOKEN}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"]["error_subcode"] == 2804003


def test_metas_transient_error_is_retried(runtime: Runtime, meta: MetaGraphEmulator) -> None:
    meta.conversions.fail_next(1, "2")
    written(runtime, a_lead("#1048"), "7006")
    assert run_sends(runtime) == [None]  # refused for now: a retry is scheduled
    scheduled = runtime.queue(queues.CRM).scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 1 and meta.conversions.received == []
    job = Job.fetch(scheduled[0], connection=runtime.redis)
    assert job.kwargs["attempt"] == 1
    assert send_conversion(*job.args, **job.kwargs) == "sent"
    assert [e["event_id"] for e in meta.conversions.received] == ["1048:LeadSubmitted"]


def test_the_emulator_refuses_what_meta_would(meta: MetaGraphEmulator) -> None:
    url = f"{meta.url}/v23.0/{DATASET}/events"  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {PAGE_TOKEN}"}
    base = {"event_name": "Purchase", "event_time": int(time.time()), "action_source": "business_messaging",
            "messaging_channel": "whatsapp", "custom_data": {"value": 10, "currency": "EUR"},
            "user_data": {"ctwa_clid": "c", "whatsapp_business_account_id": WABA}}
    cases = {2804012: {**base, "user_data": {**base["user_data"], "ph": ["905321112233"]}},  # not hashed
             2804066: {**base, "event_name": "Schedule"}, 2804067: {**base, "user_data": {"ctwa_clid": "c"}},
             2804004: {**base, "event_time": int(time.time()) + 3600}, 2804019: {**base, "action_source": "crm"},
             2804030: {**base, "custom_data": {}}, 2804050: {k: v for k, v in base.items() if k != "event_time"}}
    for subcode, event in cases.items():
        answer = requests.post(url, json={"data": [event]}, headers=headers, timeout=5)
        assert answer.status_code == 400 and answer.json()["error"]["error_subcode"] == subcode, (subcode, answer.text)
    wrong = requests.post(url, json={"data": [base]}, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.json()["error"]["code"] == 190
    fine = requests.post(url, json={"data": [base]}, headers=headers, timeout=5).json()
    assert fine["events_received"] == 1 and fine["messages"] == [] and fine["fbtrace_id"]
    listed = requests.get(f"{meta.url}/_emulator/conversions", timeout=5).json()  # type: ignore[attr-defined]
    assert len(listed["events"]) == 1 and len(listed["refused"]) == len(cases)


def test_the_mapping_refuses_events_meta_would_not_take(runtime: Runtime) -> None:
    shipped = runtime.mapping.model_dump(exclude_none=True)
    for events, said in (([{"name": "Schedule", "stage": "planned"}], "not one Meta's Conversions API"),
                         ([{"name": "Purchase", "stage": "done"}], "needs a value and a currency"),
                         ([{"name": "QualifiedLead", "stage": "new"}], "cannot be sent on 'new'"),
                         ([{"name": "QualifiedLead"}], "needs the stage"),
                         ([{"name": "LeadSubmitted", "stage": "planned"}], "give it no stage")):
        with pytest.raises(ValidationError, match=said):
            Mapping.model_validate({**shipped, "conversions": {"dataset_id": DATASET, "events": events}})
    assert runtime.mapping.conversions is not None and len(runtime.mapping.conversions.on_stages()) == 2


def test_business_messaging_takes_no_qualified_lead_a_lead_form_lead_does() -> None:
    """Meta refuses QualifiedLead for business messaging (subcode 2804066): a click-to-WhatsApp conversation's
    event is not built; a lead-form lead's CRM event is."""
    now = int(time.time())
    chat = {"reference": "#1050", "ctwa_clid": "ARAkLkA8rmlF", "ph": capi.sha256("905321112233")}
    assert capi.event(chat, name="QualifiedLead", event_time=now, waba_id=WABA) is None
    assert capi.event(chat, name="Purchase", event_time=now, value=10, currency="EUR",
                      waba_id=WABA)["action_source"] == "business_messaging"  # type: ignore[index]
    form = capi.event({"reference": "#1051", "lead_id": "1234567890", "ph": chat["ph"]}, name="QualifiedLead",
                      event_time=now, waba_id=WABA)
    assert form is not None and form["action_source"] == "system_generated"
    assert form["user_data"]["lead_id"] == 1234567890
