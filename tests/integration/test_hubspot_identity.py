"""What lands in HubSpot is right: contacts matched without overwriting another person, opt-outs on the
contacts the clinic already has, companies associated with the contact and the deal.

Against the HubSpot emulator over HTTP (its search lagging behind writes, as HubSpot's does), with real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests

from adapters.hubspot import HubSpotAdapter
from adapters.hubspot.identity import CONFLICTING_EMAIL, EMAIL_DIFFERS, IDENTITY_CONFLICT
from connector.mapping import Mapping, load_mapping, opt_out_plan, plan, required_schema
from connector.mapping.model import CompanySection, FieldSource
from core.models import Lead
from core.plan import OptOutMark
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import make_lead
from tests.paths import MAPPINGS

MAPPING = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot")
WITH_COMPANY = MAPPING.model_copy(update={"company": CompanySection(object="companies",
                                                                    name=FieldSource(source="organization"))})
BY_PHONE = MAPPING.model_copy(update={"contact": MAPPING.contact.model_copy(update={"match_by": ["key", "phone",
                                                                                                  "email"]})})
TOKEN = "pat-identity"


class World:
    """The emulator and an adapter on it, set up as `crm setup` leaves an account."""

    def __init__(self, emulator: HubSpotEmulator, url: str, redis_client: redis.Redis) -> None:
        self.emulator, self.url, self.redis = emulator, url, redis_client
        self.adapter = self.fresh()
        self.adapter.setup(required_schema(WITH_COMPANY), apply=True)

    def fresh(self) -> HubSpotAdapter:
        settings = make_settings("unix:///unused", hubspot_access_token=TOKEN, hubspot_api_base=self.url)
        return HubSpotAdapter.from_settings(settings, options={**MAPPING.crm_options(), "timeout_seconds": 2.0},
                                            redis=self.redis)

    def sync(self, lead: Lead, mapping: Mapping = MAPPING) -> Any:
        return self.adapter.sync(plan(lead, mapping))

    def contact(self, contact_id: str) -> dict[str, Any]:
        return next(c["properties"] for c in self.emulator.records("contacts") if c["id"] == contact_id)

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", json=body, timeout=5,
                                headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def world(redis_client: redis.Redis) -> Iterator[World]:
    emulator = HubSpotEmulator(TOKEN, search_lag=5.0)
    served = ServedApp(emulator.app).start()
    try:
        yield World(emulator, served.url, redis_client)
    finally:
        served.stop()
    assert not emulator.violations, emulator.violations


def lead(reference: str = "#1042", sender: str = "905321112233", *, email: str) -> Lead:
    """A complete lead whose patient gave ``email``."""
    made = make_lead(reference, sender)
    return made.model_copy(update={"contact": made.contact.model_copy(update={"email": email})})


def opt_out(sender: str, *, phone: str | None = None, email: str | None = None) -> Any:
    write = opt_out_plan(f"whatsapp:{sender}", MAPPING)
    assert write is not None
    mark = OptOutMark(property="chat2crm_opted_out", at=datetime(2026, 11, 24, 8, 15, tzinfo=UTC), channel="whatsapp")
    return write.model_copy(update={"phone": phone, "email": email, "opt_out": mark})


# -- HubSpot's own uniqueness, as the emulator answers it -----------------------------------------------
def test_a_taken_email_is_refused_with_hubspots_conflict_everywhere(world: World) -> None:
    first = world.api("POST", "/crm/v3/objects/contacts", {"properties": {"email": "Ayse@Example.com"},
                                                           "associations": []}).json()["id"]
    other = world.api("POST", "/crm/v3/objects/contacts", {"properties": {"firstname": "Can"},
                                                           "associations": []}).json()["id"]
    refused = [
        world.api("POST", "/crm/v3/objects/contacts", {"properties": {"email": "ayse@example.com"},
                                                       "associations": []}),
        world.api("PATCH", f"/crm/v3/objects/contacts/{other}", {"properties": {"email": "AYSE@example.com"}}),
        world.api("POST", "/crm/v3/objects/contacts/batch/upsert", {"inputs": [
            {"id": "whatsapp:1", "idProperty": "chat2crm_contact_key", "properties": {"email": "ayse@example.com"}}]}),
        world.api("POST", "/crm/v3/objects/contacts/batch/update", {"inputs": [
            {"id": other, "properties": {"email": "ayse@example.com"}}]}),
    ]
    for answer in refused:
        body = answer.json()
        assert answer.status_code == 409, answer.text
        assert body["message"] == f"Contact already exists. Existing ID: {first}" and body["category"] == "CONFLICT"
        assert body["status"] == "error" and body["correlationId"]
    assert world.emulator.count("contacts") == 2 and "email" not in world.contact(other)
    calculated = world.api("PATCH", f"/crm/v3/objects/contacts/{other}",
                           {"properties": {"hs_searchable_calculated_phone_number": "5321112233"}})
    assert calculated.status_code == 400 and "READ_ONLY_VALUE" in calculated.text


# -- two patients, one e-mail ------------------------------------------------------------------------
def test_a_second_patient_with_the_first_ones_email_never_overwrites_the_first(world: World) -> None:
    first = world.sync(lead("#1042", email="family@example.com"))
    second_lead = lead("#1043", sender="4915100000000", email="family@example.com")
    second = world.sync(second_lead)
    assert second.contact.id != first.contact.id
    assert second.calls == 5  # the refused upsert, the e-mail's contact read, the upsert without it, deal, note
    ayse = world.contact(first.contact.id)
    assert (ayse["phone"], ayse["chat2crm_contact_key"], ayse["email"]) == (
        "+905321112233", "whatsapp:905321112233", "family@example.com")
    assert IDENTITY_CONFLICT not in ayse
    theirs = world.contact(second.contact.id)
    assert theirs["chat2crm_contact_key"] == "whatsapp:4915100000000" and theirs["phone"] == "+4915100000000"
    assert "email" not in theirs and theirs[CONFLICTING_EMAIL] == "family@example.com"
    assert f"ID {first.contact.id}" in theirs[IDENTITY_CONFLICT]
    note = next(n["properties"]["hs_note_body"] for n in world.emulator.records("notes") if n["id"] == second.note.id)
    assert "Identity check:" in note and f"ID {first.contact.id}" in note
    world.redis.delete(*world.redis.keys("c2c:hubspot:*"))  # the id cache lost: HubSpot alone decides
    again = world.fresh().sync(plan(second_lead, MAPPING))
    assert again.contact.id == second.contact.id and world.emulator.count("contacts") == 2
    assert world.contact(first.contact.id)["phone"] == "+905321112233"


def test_a_person_made_contact_with_the_email_but_another_phone_is_someone_else(world: World) -> None:
    theirs = world.emulator.add_record("contacts", {"email": "p905321112233@example.com", "firstname": "Mehmet",
                                                    "phone": "+44 20 7946 0000"})
    result = world.sync(make_lead())
    assert result.contact.id != theirs["id"]
    assert world.contact(theirs["id"]) == theirs["properties"]  # not one of Mehmet's properties touched
    assert world.contact(result.contact.id)[CONFLICTING_EMAIL] == "p905321112233@example.com"


def test_a_person_made_contact_with_the_email_and_no_phone_is_adopted_and_keeps_what_was_typed(
        world: World) -> None:
    theirs = world.emulator.add_record("contacts", {"email": "P905321112233@example.com", "firstname": "Ayse"})
    world.sync(make_lead("#1000", sender="4915199999999"))  # the tags' options known: calls counted below are the lead's
    result = world.sync(make_lead())
    assert result.contact.id == theirs["id"] and world.emulator.count("contacts") == 2
    assert result.calls == 6  # the refused upsert, the e-mail's contact read, the key looked up, the update…
    adopted = world.contact(theirs["id"])
    assert adopted["chat2crm_contact_key"] == "whatsapp:905321112233" and adopted["phone"] == "+905321112233"
    assert adopted["email"] == "P905321112233@example.com" and IDENTITY_CONFLICT not in adopted
    assert world.sync(make_lead("#1043")).calls == 3  # …once: the key finds it from now on


def test_a_person_made_contact_found_by_the_number_as_typed_keeps_its_number_and_email(world: World) -> None:
    theirs = world.emulator.add_record("contacts", {"phone": "0532 111 22 33", "email": "ayse.y@example.com",
                                                    "firstname": "Ayse"})
    world.emulator.add_record("contacts", {"phone": "+44 532 111 22 33", "firstname": "Not her"})  # same digits
    result = world.sync(make_lead(), BY_PHONE)
    assert result.contact.id == theirs["id"] and world.emulator.count("contacts") == 2
    adopted = world.contact(theirs["id"])
    assert adopted["chat2crm_contact_key"] == "whatsapp:905321112233"
    assert (adopted["phone"], adopted["email"]) == ("0532 111 22 33", "ayse.y@example.com")
    assert adopted[CONFLICTING_EMAIL] == "p905321112233@example.com" and adopted[IDENTITY_CONFLICT] == EMAIL_DIFFERS
    assert world.sync(make_lead("#1043"), BY_PHONE).contact.id == theirs["id"]  # the key finds it from now on


def test_the_conflict_is_written_even_before_crm_setup_made_its_properties(world: World) -> None:
    for name in (IDENTITY_CONFLICT, CONFLICTING_EMAIL):
        del world.emulator.properties["contacts"][name]
    first = world.sync(lead("#1042", email="family@example.com"))
    second = world.sync(lead("#1043", sender="4915100000000", email="family@example.com"))
    assert second.contact.id != first.contact.id and "email" not in world.contact(second.contact.id)
    assert world.contact(first.contact.id)["phone"] == "+905321112233"


# -- opt-outs ----------------------------------------------------------------------------------------
def test_crm_setup_makes_the_opt_out_and_conflict_properties(world: World) -> None:
    made = world.emulator.properties["contacts"]
    assert made["chat2crm_opted_out_at"].type == "datetime" and made["chat2crm_opted_out_channel"].type == "string"
    assert made[IDENTITY_CONFLICT].group == "chat2crm" and made[CONFLICTING_EMAIL].type == "string"


def test_an_opt_out_marks_the_contact_the_clinic_made_by_hand(world: World) -> None:
    theirs = world.emulator.add_record("contacts", {"phone": "+90 532 111 22 33", "firstname": "Ayse"})
    before = world.adapter.calls
    result = world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233"))
    assert result.id == theirs["id"] and world.emulator.count("contacts") == 1
    assert world.adapter.calls - before == 3  # the key read, one search, one batch update
    marked = world.contact(theirs["id"])
    assert marked["chat2crm_opted_out"] == "true" and marked["chat2crm_opted_out_channel"] == "whatsapp"
    assert marked["chat2crm_opted_out_at"] == "2026-11-24T08:15:00.000Z"
    assert "chat2crm_contact_key" not in marked  # marked, not taken over


def test_an_opt_out_marks_the_relays_contact_and_the_hand_made_ones_but_not_another_channels(world: World) -> None:
    own = world.sync(make_lead()).contact.id
    by_hand = world.emulator.add_record("contacts", {"mobilephone": "05321112233", "firstname": "Ayse"})
    by_email = world.emulator.add_record("contacts", {"email": "ayse.work@example.com", "firstname": "A."})
    telegram = world.emulator.add_record("contacts", {"phone": "+905321112233", "chat2crm_contact_key": "telegram:77"})
    world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233", email="ayse.work@example.com"))
    flags = {c["id"]: c["properties"].get("chat2crm_opted_out") for c in world.emulator.records("contacts")}
    assert flags == {own: "true", by_hand["id"]: "true", by_email["id"]: "true", telegram["id"]: None}


def test_an_opt_out_of_someone_unknown_keeps_their_number_on_a_new_contact(world: World) -> None:
    world.emulator.add_record("contacts", {"phone": "+90 532 999 99 99"})  # someone else
    result = world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233"))
    assert result.created and world.emulator.count("contacts") == 2
    made = world.contact(result.id)
    assert made["chat2crm_contact_key"] == "whatsapp:905321112233" and made["phone"] == "+905321112233"
    assert made["chat2crm_opted_out"] == "true" and made["chat2crm_opted_out_at"].startswith("2026-11-24T08:15")
    assert world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233")).id == result.id
    assert world.emulator.count("contacts") == 2


def test_the_opt_out_job_writes_its_time_and_reads_a_job_queued_before_an_upgrade(world: World) -> None:
    from connector import leads
    from connector.runtime import Runtime
    from core.models import Conversation

    by_hand = world.emulator.add_record("contacts", {"phone": "+49 151 00000000"})
    runtime = Runtime(make_settings("unix:///unused", hubspot_access_token=TOKEN, hubspot_api_base=world.url),
                      redis_client=world.redis)
    conversation = Conversation(key="whatsapp:1:905321112233", channel="whatsapp", account="1",
                                sender_id="905321112233", phone="+90 532 111 22 33")
    at = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
    own = world.emulator.add_record("contacts", {"phone": "0532 111 22 33"})
    assert leads.write_opt_out(runtime, leads.opt_out_request(conversation, at=at))
    assert world.contact(own["id"])["chat2crm_opted_out_at"] == "2026-11-24T08:15:00.000Z"
    assert leads.write_opt_out(runtime, "whatsapp:4915100000000")  # the argument of an older job: a contact key
    assert world.contact(by_hand["id"])["chat2crm_opted_out"] == "true"
    assert world.emulator.count("contacts") == 2


# -- companies ---------------------------------------------------------------------------------------
def test_the_company_is_associated_with_the_contact_and_the_deal_once(world: World) -> None:
    world.sync(make_lead("#1000", sender="4915199999999"))  # the tags' options known: calls counted are the lead's
    first = world.sync(make_lead("#1042", organization="ABC Lojistik"), WITH_COMPANY)
    assert first.company is not None and first.record is not None
    assert first.calls == 3 + 1  # the company created with its association to the contact
    company = first.company.id
    assert world.emulator.associated("companies", company, "contacts") == [first.contact.id]
    assert world.emulator.associated("deals", first.record.id, "companies") == [company]
    assert world.emulator.associated("contacts", first.contact.id, "companies") == [company]
    replay = world.sync(make_lead("#1042", organization="ABC Lojistik"), WITH_COMPANY)
    assert replay.calls == 3 + 2  # a replay's 3, and the two default associations (changing nothing)
    colleague = world.sync(make_lead("#1043", sender="4915100000000", organization="ABC Lojistik"), WITH_COMPANY)
    assert colleague.calls == 3 + 1  # the deal created with its company; the contact associated
    assert world.emulator.count("companies") == 1 and colleague.company is not None
    assert colleague.company.id == company and colleague.record is not None
    assert sorted(world.emulator.associated("companies", company, "contacts")) == sorted(
        [first.contact.id, colleague.contact.id])
    assert sorted(world.emulator.associated("companies", company, "deals")) == sorted(
        [first.record.id, colleague.record.id])
    assert world.emulator.associated("deals", first.record.id, "companies") == [company]


def test_a_deal_known_from_an_earlier_write_is_associated_with_the_company(world: World) -> None:
    plain = world.sync(make_lead("#1042"))  # written before the mapping had a company
    again = world.sync(make_lead("#1042", organization="ABC Lojistik"), WITH_COMPANY)
    assert again.company is not None and again.record is not None and again.record.id == plain.record.id
    assert world.emulator.associated("deals", plain.record.id, "companies") == [again.company.id]


def test_a_company_upserted_on_its_key_is_associated(world: World) -> None:
    world.emulator.add_property("companies", "chat2crm_company_key", unique=True)
    keyed = WITH_COMPANY.model_copy(update={"company": WITH_COMPANY.company.model_copy(  # type: ignore[union-attr]
        update={"key_property": "chat2crm_company_key"})})
    result = world.sync(make_lead("#1042", organization="ABC Lojistik"), keyed)
    assert result.company is not None and result.record is not None
    assert world.emulator.associated("contacts", result.contact.id, "companies") == [result.company.id]
    assert world.emulator.associated("deals", result.record.id, "companies") == [result.company.id]


@pytest.mark.parametrize("answer", ["Ayşe Yılmaz", "yilmaz AYSE", "Ayşe"])
def test_a_company_that_is_the_patients_own_name_is_not_written(world: World, answer: str) -> None:
    result = world.sync(make_lead(organization=answer), WITH_COMPANY)
    assert result.company is None and world.emulator.count("companies") == 0
    assert result.record is not None and world.emulator.associated("deals", result.record.id, "companies") == []
