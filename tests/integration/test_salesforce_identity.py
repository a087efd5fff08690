"""What lands in Salesforce is right: Leads and Contacts matched without overwriting another person, opt-outs
on the records the clinic already has, channel identities, campaign membership, a Lead's Company.

Against the Salesforce emulator over HTTPS (its External ID uniqueness and duplicate rules as Salesforce's),
with real Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests

from adapters.salesforce.identity import CONFLICTING_EMAIL, EMAIL_DIFFERS, IDENTITY_CONFLICT, NO_COMPANY
from connector.mapping import Mapping, check_online, opt_out_plan, plan, required_schema
from core.errors import FatalError
from core.models import Lead
from core.plan import ContactWrite, OptOutMark
from emulators.salesforce import LocalTLS
from tests.contract import make_lead
from tests.integration.test_salesforce_contract import (  # noqa: F401 - the module's fixtures
    CASE_MAPPING,
    LEAD_MAPPING,
    Org,
    Switch,
    open_org,
    switch,
    tls,
)

KEY = "Chat2CRM_Contact_Key__c"
BSUID = "Chat2CRM_WhatsApp_User_Id__c"


@pytest.fixture
def org(request: pytest.FixtureRequest, switch: Switch, tls: LocalTLS, redis_client: redis.Redis,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """An org set up as `crm setup` leaves it; ``@pytest.mark.parametrize("org", [...], indirect=True)`` picks the
    mapping and the org's duplicate rule."""
    mapping, kwargs = getattr(request, "param", (LEAD_MAPPING, {}))
    current = open_org(switch, tls, redis_client, monkeypatch, mapping, **kwargs)
    try:
        yield current
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


def lead(reference: str = "#1042", sender: str = "905321112233", *, email: str | None, **changes: Any) -> Lead:
    """A complete lead whose patient gave ``email``."""
    made = make_lead(reference, sender, **changes)
    return made.model_copy(update={"contact": made.contact.model_copy(update={"email": email})})


def record(org: Org, record_id: str) -> dict[str, Any]:
    obj = org.mapping.contact.object
    return next(r for r in org.emulator.records(obj) if r["Id"] == record_id)


def opt_out(org: Org, sender: str, *, phone: str | None = None, email: str | None = None) -> ContactWrite:
    write = opt_out_plan(f"whatsapp:{sender}", org.mapping)
    assert write is not None and org.mapping.opt_out is not None
    mark = OptOutMark(property=org.mapping.opt_out.property, at=datetime(2026, 11, 24, 8, 15, tzinfo=UTC),
                      channel="whatsapp")
    return write.model_copy(update={"phone": phone, "email": email, "opt_out": mark})


# -- Salesforce's own uniqueness, as the emulator answers it ---------------------------------------------
def test_an_external_id_is_unique_and_an_email_rule_answers_duplicates_detected(
        switch: Switch, tls: LocalTLS, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    current = open_org(switch, tls, redis_client, monkeypatch, LEAD_MAPPING, duplicate_rule="block",
                       duplicate_match="email")
    try:
        adapter = current.adapter
        first = adapter._call("create", "POST", "sobjects/Lead", json={
            "LastName": "Yılmaz", "Company": NO_COMPANY, "Email": "family@example.com", KEY: "whatsapp:1"})["id"]
        second = adapter._call("create", "POST", "sobjects/Lead", json={"LastName": "Kaya", "Company": NO_COMPANY})["id"]
        with pytest.raises(FatalError) as taken:
            adapter._call("update", "PATCH", f"sobjects/Lead/{second}", json={KEY: "WHATSAPP:1"})
        assert taken.value.details["errorCode"] == "DUPLICATE_VALUE" and first in taken.value.message
        with pytest.raises(FatalError) as blocked:
            adapter._call("create", "POST", "sobjects/Lead", json={"LastName": "Demir", "Company": NO_COMPANY,
                                                                   "Email": "FAMILY@example.com"})
        assert blocked.value.details["errorCode"] == "DUPLICATES_DETECTED" and blocked.value.details["matches"] == [first]
        assert blocked.value.field == "Chat2CRM_Lead_Email_Duplicate_Rule" and current.emulator.count("Lead") == 2
    finally:
        current.close()
    assert not current.emulator.violations


# -- two patients, one e-mail ----------------------------------------------------------------------------
@pytest.mark.parametrize("org", [(LEAD_MAPPING, {}), (LEAD_MAPPING, {"duplicate_rule": "block",
                                                                      "duplicate_match": "email"}),
                                 (CASE_MAPPING, {})], indirect=True, ids=["lead", "lead-email-rule", "contact"])
def test_a_second_patient_with_the_first_ones_email_never_overwrites_the_first(org: Org) -> None:
    first = org.adapter.sync(plan(lead("#1042", email="family@example.com"), org.mapping))
    second_lead = lead("#1043", sender="4915100000000", email="family@example.com")
    second = org.adapter.sync(plan(second_lead, org.mapping))
    assert second.contact.id != first.contact.id and second.calls == 2
    ayse = record(org, first.contact.id)
    assert (ayse["Phone"], ayse[KEY], ayse["Email"]) == ("+905321112233", "whatsapp:905321112233",
                                                         "family@example.com")
    assert not ayse.get(IDENTITY_CONFLICT)
    theirs = record(org, second.contact.id)
    assert theirs[KEY] == "whatsapp:4915100000000" and theirs["Phone"] == "+4915100000000"
    assert not theirs.get("Email") and theirs[CONFLICTING_EMAIL] == "family@example.com"
    assert f"ID {first.contact.id}" in theirs[IDENTITY_CONFLICT]
    assert second.contact.properties[IDENTITY_CONFLICT] == theirs[IDENTITY_CONFLICT]
    note = next(n for n in org.emulator.records("Note") if n["Id"] == second.note.id)
    assert note["Body"].startswith("Identity check:") and f"ID {first.contact.id}" in note["Body"]
    again = org.adapter.sync(plan(second_lead, org.mapping))  # a replay: the key finds the second patient
    assert again.contact.id == second.contact.id and org.emulator.count(org.mapping.contact.object) == 2
    assert record(org, first.contact.id)["Phone"] == "+905321112233"


def test_a_person_made_lead_with_the_email_but_another_phone_is_someone_else(org: Org) -> None:
    theirs = org.emulator.add_record("Lead", {"LastName": "Kaya", "Company": "-", "Email": "p905321112233@example.com",
                                              "Phone": "+44 20 7946 0000"})
    before = record(org, theirs)
    result = org.adapter.sync(plan(make_lead(), org.mapping))
    assert result.contact.id != theirs and record(org, theirs) == before  # not one of their fields touched
    assert record(org, result.contact.id)[CONFLICTING_EMAIL] == "p905321112233@example.com"


def test_a_person_made_lead_with_the_email_and_no_phone_is_adopted_and_keeps_what_was_typed(org: Org) -> None:
    theirs = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "Clinic walk-in",
                                              "Email": "P905321112233@example.com"})
    result = org.adapter.sync(plan(make_lead(), org.mapping))
    assert result.contact.id == theirs and org.emulator.count("Lead") == 1 and result.calls == 2
    adopted = record(org, theirs)
    assert adopted[KEY] == "whatsapp:905321112233" and adopted["Phone"] == "+905321112233"
    assert adopted["Email"] == "P905321112233@example.com" and not adopted.get(IDENTITY_CONFLICT)
    assert adopted["Company"] == "Clinic walk-in"


def test_a_person_made_lead_found_by_the_number_as_typed_keeps_its_number_and_email(org: Org) -> None:
    theirs = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "-", "MobilePhone": "0532 111 22 33",
                                              "Email": "ayse.y@example.com"})
    other = org.emulator.add_record("Lead", {"LastName": "Not her", "Company": "-", "Phone": "+44 532 111 22 33"})
    result = org.adapter.sync(plan(make_lead(), org.mapping))
    assert result.contact.id == theirs and org.emulator.count("Lead") == 2
    adopted = record(org, theirs)
    assert (adopted["MobilePhone"], adopted["Email"], adopted["Phone"]) == (  # an empty Phone is filled
        "0532 111 22 33", "ayse.y@example.com", "+905321112233")
    assert adopted[CONFLICTING_EMAIL] == "p905321112233@example.com" and adopted[IDENTITY_CONFLICT] == EMAIL_DIFFERS
    assert not record(org, other).get(KEY)
    assert org.adapter.sync(plan(make_lead("#1043"), org.mapping)).contact.id == theirs  # the key finds it now


def test_the_conflict_is_written_even_before_crm_setup_made_its_fields(org: Org, caplog: pytest.LogCaptureFixture
                                                                        ) -> None:
    for name in (IDENTITY_CONFLICT, CONFLICTING_EMAIL):
        del org.emulator.schema["Lead"][name]
    first = org.adapter.sync(plan(lead("#1042", email="family@example.com"), org.mapping))
    with caplog.at_level(logging.WARNING):
        second = org.adapter.sync(plan(lead("#1043", sender="4915100000000", email="family@example.com"),
                                       org.mapping))
    assert second.contact.id != first.contact.id and not record(org, second.contact.id).get("Email")
    assert "run `chat2crm crm setup`" in caplog.text and second.calls == 3
    org.emulator.violations.clear()  # the refused first try is what is tested


# -- channel identities ----------------------------------------------------------------------------------
def test_a_patient_on_a_new_number_is_found_by_their_whatsapp_user_id(org: Org) -> None:
    old = make_lead("#1042")
    old.contact.whatsapp_user_id = "TR.1234567890"
    old.contact.telegram_username = "ayse_y"
    first = org.adapter.sync(plan(old, org.mapping))
    written = record(org, first.contact.id)
    assert written[BSUID] == "TR.1234567890" and written["Chat2CRM_Telegram_Username__c"] == "ayse_y"
    moved = make_lead("#1043", sender="905329998877")
    moved.contact.whatsapp_user_id = "TR.1234567890"
    second = org.adapter.sync(plan(moved, org.mapping))
    assert second.contact.id == first.contact.id and org.emulator.count("Lead") == 1
    now = record(org, first.contact.id)
    assert now[KEY] == "whatsapp:905329998877" and now["Chat2CRM_Reference__c"] == "1043"
    assert now["Phone"] == "+905321112233"  # a number on the record is never replaced
    other = make_lead("#1044", sender="4915100000000")
    other.contact.whatsapp_user_id = "DE.999"
    assert org.adapter.sync(plan(other, org.mapping)).contact.id != first.contact.id


# -- opt-outs --------------------------------------------------------------------------------------------
def test_an_opt_out_marks_the_lead_the_clinic_made_by_hand(org: Org) -> None:
    theirs = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "-", "Phone": "+90 532 111 22 33"})
    before = org.adapter.calls
    result = org.adapter.upsert_contact(opt_out(org, "905321112233", phone="+905321112233"))
    assert result.id == theirs and not result.created and org.emulator.count("Lead") == 1
    assert org.adapter.calls - before == 2  # one query, one composite request
    marked = record(org, theirs)
    assert marked["Chat2CRM_Opted_Out__c"] in (True, "true") and marked["Chat2CRM_Opted_Out_Channel__c"] == "whatsapp"
    assert marked["Chat2CRM_Opted_Out_At__c"].startswith("2026-11-24T08:15")
    assert not marked.get(KEY)  # marked, not taken over


@pytest.mark.parametrize("org", [(LEAD_MAPPING, {}), (CASE_MAPPING, {})], indirect=True, ids=["lead", "contact"])
def test_an_opt_out_marks_the_relays_record_and_the_hand_made_ones_but_not_another_channels(org: Org) -> None:
    obj = org.mapping.contact.object
    company = {"Company": "-"} if obj == "Lead" else {}
    own = org.adapter.sync(plan(make_lead(), org.mapping)).contact.id
    by_hand = org.emulator.add_record(obj, {"LastName": "Y", "MobilePhone": "05321112233", **company})
    spaced = org.emulator.add_record(obj, {"LastName": "Y", "Phone": "0532 111 22 33", **company})
    by_email = org.emulator.add_record(obj, {"LastName": "A.", "Email": "ayse.work@example.com", **company})
    telegram = org.emulator.add_record(obj, {"LastName": "T", "Phone": "+905321112233", KEY: "telegram:77", **company})
    abroad = org.emulator.add_record(obj, {"LastName": "Z", "Phone": "+44 532 111 22 33", **company})
    org.adapter.upsert_contact(opt_out(org, "905321112233", phone="+905321112233", email="ayse.work@example.com"))
    flags = {r["Id"]: r.get("Chat2CRM_Opted_Out__c") in (True, "true") for r in org.emulator.records(obj)}
    assert flags == {own: True, by_hand: True, spaced: True, by_email: True, telegram: False, abroad: False}
    assert org.emulator.count(obj) == 6


def test_an_opt_out_of_someone_unknown_keeps_their_number_on_a_new_lead(org: Org) -> None:
    org.emulator.add_record("Lead", {"LastName": "Else", "Company": "-", "Phone": "+90 532 999 99 99"})
    result = org.adapter.upsert_contact(opt_out(org, "905321112233", phone="+905321112233"))
    assert result.created and org.emulator.count("Lead") == 2
    made = record(org, result.id)
    assert made[KEY] == "whatsapp:905321112233" and made["Phone"] == "+905321112233"
    assert made["Chat2CRM_Opted_Out__c"] in (True, "true") and made["Company"] == NO_COMPANY
    assert org.adapter.upsert_contact(opt_out(org, "905321112233", phone="+905321112233")).id == result.id
    assert org.emulator.count("Lead") == 2


def test_an_opt_out_is_marked_even_before_crm_setup_made_its_companions(org: Org) -> None:
    for name in ("Chat2CRM_Opted_Out_At__c", "Chat2CRM_Opted_Out_Channel__c"):
        del org.emulator.schema["Lead"][name]
    theirs = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "-", "Phone": "+905321112233"})
    org.adapter.upsert_contact(opt_out(org, "905321112233", phone="+905321112233"))
    assert record(org, theirs)["Chat2CRM_Opted_Out__c"] in (True, "true")
    org.emulator.violations.clear()  # the refused first try is what is tested


# -- a Lead's Company --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "company"), [(None, NO_COMPANY), ("Ayşe Yılmaz", NO_COMPANY),
                                                 ("yilmaz AYSE", NO_COMPANY), ("ABC Lojistik", "ABC Lojistik")])
def test_a_leads_company_is_never_the_patients_own_name(org: Org, answer: str | None, company: str) -> None:
    result = org.adapter.sync(plan(make_lead(organization=answer), org.mapping))
    assert record(org, result.contact.id)["Company"] == company


def test_a_company_named_later_is_written_and_never_blanked_or_replaced_by_the_name(org: Org) -> None:
    first = org.adapter.sync(plan(make_lead("#1042"), org.mapping)).contact.id
    org.adapter.sync(plan(make_lead("#1043", organization="ABC Lojistik"), org.mapping))
    assert record(org, first)["Company"] == "ABC Lojistik"
    org.adapter.sync(plan(make_lead("#1044"), org.mapping))
    org.adapter.sync(plan(make_lead("#1045", organization="Ayşe Yılmaz"), org.mapping))
    assert record(org, first)["Company"] == "ABC Lojistik"


# -- campaign membership ---------------------------------------------------------------------------------
def test_the_campaign_named_by_the_utm_campaign_gets_the_lead_once(org: Org) -> None:
    campaign = org.emulator.add_record("Campaign", {"Name": "implant-spring", "IsActive": True})
    first = make_lead("#1042")
    first.last_touch.utm_campaign = "implant-spring"
    org.adapter.sync(plan(first, org.mapping))
    org.adapter.sync(plan(first, org.mapping))  # a replay
    org.adapter.sync(plan(first.model_copy(update={"reference": "#1043"}), org.mapping))  # the same patient again
    members = [m for m in org.emulator.records("CampaignMember") if m["CampaignId"] == campaign]
    assert len(members) == 1 and members[0]["Status"] == "Responded"


def test_a_campaign_salesforce_does_not_have_is_logged_in_one_line_and_the_lead_written(
        org: Org, caplog: pytest.LogCaptureFixture) -> None:
    missing = make_lead()
    missing.last_touch.campaign = "no-such-campaign"
    with caplog.at_level(logging.INFO, logger="chat2crm.salesforce"):
        result = org.adapter.sync(plan(missing, org.mapping))
    assert result.note is not None and org.emulator.count("CampaignMember") == 0
    lines = [r for r in caplog.records if "campaign" in r.getMessage()]
    assert len(lines) == 1 and "not found" in lines[0].getMessage()
    text = lines[0].getMessage() + str(lines[0].__dict__)
    assert "905321112233" not in text and "Ayşe" not in text and "example.com" not in text


def test_the_mapping_writes_identities_to_fields_setup_makes(org: Org) -> None:
    mapping: Mapping = org.mapping
    written = {name: spec.source for name, spec in mapping.contact.fields.items()}
    assert written[BSUID] == "contact.whatsapp_user_id"
    assert written["Chat2CRM_Telegram_Username__c"] == "contact.telegram_username"


# -- the clinic's statuses, the demo's view --------------------------------------------------------------
SCHEME = {"new": {"en": "New", "tr": "Yeni"}, "reviewing": {"en": "Reviewing", "tr": "İnceleniyor"},
          "planned": {"en": "Planned", "tr": "Planlandı"}, "done": {"en": "Done", "tr": "Tamamlandı"},
          "on_hold": {"en": "On hold", "tr": "Beklemede"}}


def test_setup_says_how_to_add_the_clinics_statuses_and_doctor_checks_them(org: Org) -> None:
    assert org.mapping.record is not None
    clinic = org.mapping.model_copy(update={"record": org.mapping.record.model_copy(update={
        "statuses": SCHEME})}).in_language("tr")
    lines = org.adapter.setup(required_schema(clinic), apply=False)
    todo = [line for line in lines if "Lead.Status values" in line]
    assert len(todo) == 1 and "'Yeni', 'İnceleniyor', 'Planlandı', 'Tamamlandı', 'Beklemede'" in todo[0]
    assert todo[0].startswith("would add the Lead.Status values")  # a dry run
    assert any("Yeni" in p.message for p in check_online(clinic, org.adapter))
    org.emulator.add_picklist_values("Lead", "Status", ["Yeni", "İnceleniyor", "Planlandı", "Tamamlandı",
                                                        "Beklemede"])  # what the admin does
    assert not [p for p in check_online(clinic, org.adapter) if "Status" in p.message]
    result = org.adapter.sync(plan(make_lead(), clinic))
    assert record(org, result.contact.id)["Status"] == "Yeni"


def test_the_demo_view_shows_field_labels(org: Org) -> None:
    org.adapter.sync(plan(make_lead(handoff_reason="patient_request"), org.mapping))
    view = requests.get(f"{org.served.url}/_emulator/view", timeout=5).json()
    person, request = view["contacts"][0], view["records"][0]
    assert person["labels"]["FirstName"] == "First Name" and person["labels"]["Chat2CRM_Contact_Key__c"] == \
        "Chat2CRM Contact Key" and person["labels"]["Owner"] == "Owner"
    assert set(person["labels"]) == set(person["fields"]) and set(request["labels"]) == set(request["fields"])
    assert request["labels"]["Chat2CRM_Transcript_URL__c"] == "Chat2CRM Transcript URL"
    assert view["tasks"][0]["labels"]["ActivityDate"] == "Due Date"
    assert view["extras"][0]["labels"]["Status"] == "Status"
