"""The HubSpot adapter's matching rule as pure functions: phone numbers as people type them, a company that
is only the patient's name, the properties `crm setup` adds for the adapter; and the opt-out job's argument."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.hubspot.identity import (
    has_number,
    is_persons_name,
    phone_compatible,
    phone_filter_groups,
    phone_variants,
    same_number,
)
from adapters.hubspot.schema import own_fields
from connector.leads import opt_out_request
from core.models import Conversation
from core.plan import CRMSchema, FieldInfo, ObjectInfo


@pytest.mark.parametrize("typed", ["+905321112233", "905321112233", "00905321112233", "+90 532 111 22 33",
                                   "0532 111 22 33", "(0532) 111-2233", "532 111 22 33"])
def test_the_ways_a_person_types_the_number_are_the_number(typed: str) -> None:
    assert same_number(typed, "+905321112233")


@pytest.mark.parametrize("typed", ["+44 532 111 22 33", "0044 5321112233", "+905321112234", "", None, "n/a"])
def test_another_number_is_not_the_number(typed: str | None) -> None:
    assert not same_number(typed, "+905321112233")


def test_the_search_asks_for_the_spellings_and_the_national_digits_within_hubspots_limits() -> None:
    groups = phone_filter_groups("+905321112233")
    assert len(groups) <= 5 and sum(len(g["filters"]) for g in groups) <= 25
    assert {"+905321112233", "905321112233", "+90 532 111 22 33", "0532 111 22 33"} <= set(
        phone_variants("+905321112233"))
    assert {"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ",
            "value": "5321112233"} in [f for g in groups for f in g["filters"]]


def test_a_contact_with_only_other_numbers_is_not_the_patient() -> None:
    assert phone_compatible({}, "+905321112233") and phone_compatible({"email": "x@example.com"}, None)
    assert phone_compatible({"mobilephone": "0532 111 22 33", "phone": "+44 20 7946 0000"}, "+905321112233")
    assert not phone_compatible({"phone": "+44 20 7946 0000"}, "+905321112233")
    assert not phone_compatible({"phone": "+44 20 7946 0000"}, None)
    assert has_number({"mobilephone": "0532 111 22 33"}, "+905321112233")


@pytest.mark.parametrize(("company", "refused"), [
    ("Ayşe Yılmaz", True), ("AYSE YILMAZ", True), ("yılmaz, ayşe", True), ("Ayşe", True), ("Yılmaz", True),
    ("Yılmaz Lojistik", False), ("ABC Lojistik", False), ("", False)])
def test_a_company_made_only_of_the_patients_name_is_not_a_company(company: str, refused: bool) -> None:
    assert is_persons_name(company, "Ayşe", "Yılmaz") is refused
    assert not is_persons_name(company)  # without a name nothing is refused


def test_crm_setup_adds_the_conflict_and_opt_out_companions_beside_the_mappings_flag() -> None:
    required = CRMSchema(objects={"contacts": ObjectInfo(name="contacts", fields={
        "chat2crm_contact_key": FieldInfo(name="chat2crm_contact_key", unique=True),
        "chat2crm_opted_out": FieldInfo(name="chat2crm_opted_out", type="bool")})})
    fields = own_fields(required).objects["contacts"].fields
    assert fields["chat2crm_opted_out_at"].type == "datetime" and fields["chat2crm_opted_out_channel"].type == "string"
    assert {"chat2crm_identity_conflict", "chat2crm_conflicting_email", "chat2crm_contact_key"} <= set(fields)
    assert fields["chat2crm_contact_key"].unique and "chat2crm_opted_out_at" not in required.objects["contacts"].fields


def test_the_opt_out_job_carries_who_when_and_where() -> None:
    conversation = Conversation(key="whatsapp:106540352242922:905321112233", channel="whatsapp",
                                account="106540352242922", sender_id="905321112233",
                                known={"email": "Ayse@Example.com"})
    asked = json.loads(opt_out_request(conversation, at=datetime(2026, 11, 24, 8, 15, tzinfo=UTC)))
    assert asked == {"contact_key": "whatsapp:905321112233", "conversation": conversation.key,
                     "channel": "whatsapp", "phone": "+905321112233", "email": "ayse@example.com",
                     "at": "2026-11-24T08:15:00+00:00"}
