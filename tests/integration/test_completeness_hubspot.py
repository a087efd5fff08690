"""A person's edit in HubSpot reaches the completeness figures: the emulator sends ``deal.propertyChange`` and
``contact.propertyChange`` as HubSpot does for an edit in its UI, the adapter reads the batch, the relay takes
the events as it takes every CRM event, and the lead's required field is counted as asked again, once.
Also: how the relay's own writes are told apart, and the conservative question matcher."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from adapters.hubspot.inbox import fields_edited
from connector import completeness, crm_events
from connector.runtime import Runtime
from core import metrics
from core.models import Consent, Lead, LeadContact, TranscriptEntry
from core.plan import Ref, SyncResult
from tests.integration._hubspot_emulator_env import (
    Env,
    contact,
    env_fixture,  # noqa: F401 - the fixture
    install,
)

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def lead(reference: str, answers: dict[str, object]) -> Lead:
    return Lead(reference=reference, conversation_key="whatsapp:acc:447700900123", contact_key="whatsapp:447700900123",
                contact=LeadContact(channel="whatsapp", channel_id="447700900123"), answers=answers,
                flow="meeting_request", language="en", rollout="full",
                transcript=[TranscriptEntry(direction="in", at=AT, text="Hi")],
                consent=Consent(given=True, text_version="1", at=AT))


def test_a_persons_edit_in_hubspot_counts_the_field_asked_again(env: Env, runtime: Runtime) -> None:
    token = install(env)["access_token"]
    person = contact(env, token)
    env.hubspot.add_property("deals", "chat2crm_preferred_time")
    deal = env.call("POST", "/crm/v3/objects/deals", token, json={"properties": {"dealname": "#1042"},
                                                                   "associations": []}).json()["id"]
    written = lead("#1042", {"topic": "Reporting", "company": "Acme", "email": "a@acme.io",
                             "preferred_time": "2026-11-25T11:00:00+00:00"})
    completeness.lead_written(runtime, written, SyncResult(contact=Ref(object="contacts", id=person),
                                                           record=Ref(object="deals", id=str(deal))))
    env.http.post(f"{env.url}/_emulator/webhooks/settings", json={
        "targetUrl": env.receiver.url + "/events",
        "subscriptions": [{"eventType": "deal.propertyChange", "propertyName": "chat2crm_preferred_time"},
                          {"eventType": "deal.propertyChange", "propertyName": "dealname"},
                          {"eventType": "contact.propertyChange", "propertyName": "email"}]})
    for properties in ({"chat2crm_preferred_time": "2026-11-26T10:00:00Z", "dealname": "Acme"},
                       {"chat2crm_preferred_time": "2026-11-27T10:00:00Z"}):
        edited = env.http.post(f"{env.url}/_emulator/objects/deals/{deal}", json={"properties": properties})
        assert edited.status_code == 200, edited.text
    assert env.http.post(f"{env.url}/_emulator/objects/deals/999", json={"properties": {"dealname": "x"}}
                         ).status_code == 404
    env.hubspot.edit_contact(person, {"email": "ayse@acme.io"})
    assert env.hubspot.wait_for_deliveries(5.0)
    events = [found for hook in env.receiver.at("/events") for event in json.loads(hook["body"])
              if (found := fields_edited(event)) is not None]
    assert [(e.crm_object, e.fields, e.by_person) for e in events] == [
        ("deals", ["chat2crm_preferred_time"], True), ("deals", ["dealname"], True),
        ("deals", ["chat2crm_preferred_time"], True), ("contacts", ["email"], True)]
    crm_events.take(runtime, "hubspot", list(events))
    crm_events.take(runtime, "hubspot", list(events))  # redelivered: nothing more
    assert metrics.read(runtime.redis, "fields_asked_again") == {
        ("meeting_request", "preferred_time", "crm_edit", "full", "none"): 1.0,
        ("meeting_request", "email", "crm_edit", "full", "none"): 1.0}
    assert metrics.read(runtime.redis, "leads_asked_again") == {
        ("meeting_request", "en", "none", "full", "none", "complete"): 1.0}
    assert metrics.read(runtime.redis, "leads_first_pass") == {
        ("meeting_request", "en", "none", "full", "none", "complete"): 1.0}


def test_the_relays_own_writes_and_other_events_are_no_edit_by_a_person() -> None:
    base = {"eventId": 1, "subscriptionId": 2, "portalId": 3, "appId": 4, "occurredAt": 1764000000000,
            "attemptNumber": 0, "objectId": 77, "propertyName": "email", "propertyValue": "a@b.c"}
    ui = fields_edited({**base, "subscriptionType": "contact.propertyChange", "changeSource": "CRM_UI",
                        "sourceId": "userId:12345"})
    assert ui is not None and ui.by_person and ui.crm_object == "contacts" and ui.crm_id == "77"
    ours = fields_edited({**base, "subscriptionType": "contact.propertyChange", "changeSource": "INTEGRATION",
                          "sourceId": "4"})
    assert ours is not None and not ours.by_person
    workflow = fields_edited({**base, "subscriptionType": "deal.propertyChange", "changeSource": "AUTOMATION_PLATFORM",
                              "sourceId": "enrollmentId:9"})
    assert workflow is not None and not workflow.by_person and workflow.crm_object == "deals"
    assert fields_edited({**base, "subscriptionType": "contact.propertyChange", "propertyName": "chat2crm_reply",
                          "changeSource": "CRM_UI"}) is None  # an agent's reply in the timeline inbox
    assert fields_edited({**base, "subscriptionType": "conversation.propertyChange", "propertyName": "status"}) is None


def test_an_agents_question_is_matched_to_the_prompt_it_asks_again(runtime: Runtime) -> None:
    flow = runtime.flows["meeting_request"]
    fields = ["topic", "company", "email", "preferred_time"]
    assert completeness.fields_asked(flow, fields, "en", "Thanks! Which day and time suit you best?") == [
        "preferred_time"]
    assert completeness.fields_asked(flow, fields, "en", "Which time suits you? We will call.") == ["preferred_time"]
    assert completeness.fields_asked(flow, fields, "en", "Thanks, which day and time suit you.") == []  # no question
    assert completeness.fields_asked(flow, fields, "en", "Any other questions?") == []
    assert completeness.fields_asked(flow, fields, "tr", "Merhaba! Hangi gün ve saat size uygun?") == [
        "preferred_time"]
    assert completeness.fields_asked(flow, fields, "de", "Wie lautet Ihre E-Mail-Adresse?") == ["company", "email"]
    assert completeness.crm_fields(runtime.mapping, "deals")["chat2crm_preferred_time"] == ("preferred_time",
                                                                                            "travel_dates")
    assert "dealname" not in completeness.crm_fields(runtime.mapping, "deals")  # a template: no lead field

