"""Meta lead forms through the whole relay: the signed ``leadgen`` webhook (redelivered), the Graph API read
(the Meta emulator), the job, HubSpot's emulator; the same person's chat lead and form lead on one contact; the
WhatsApp greeting and the bot that skips what the form answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from emulators.meta_graph import MetaGraphEmulator
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack
from tests.leadform_fixtures import AD, FORM_ID, PAGE_TOKEN, answers, served_meta, write_lead_forms

WA_ID = "4917612345678"  # +49 176 12345678


@pytest.fixture
def stack_config(tmp_path: Path) -> dict[str, Any]:
    return {"lead_forms": str(write_lead_forms(tmp_path))}


@pytest.fixture
def meta(stack: Stack) -> Iterator[MetaGraphEmulator]:
    generator = served_meta(TEST_SECRETS["whatsapp_app_secret"])
    emulator = next(generator)
    settings = stack.runtime.settings
    settings.meta_graph_base = emulator.url  # type: ignore[attr-defined]
    settings.meta_page_access_token = SecretStr(PAGE_TOKEN)
    emulator.relay_url = f"{stack.relay_url}/webhooks/meta/leadgen"
    yield emulator
    generator.close()


def _contact_key(stack: Stack) -> str:
    return stack.crm.mapping.contact.key_property


def test_a_form_lead_lands_once_with_its_answers_and_ad(stack: Stack, meta: MetaGraphEmulator) -> None:
    leadgen_id = meta.submit(FORM_ID, answers(), ad=AD, platform="ig", times=3)  # Meta delivers at least once
    meta.wait_for_webhooks()
    assert [status for _, status in meta.delivered] == [200, 200, 200]
    stack.work()
    assert len(meta.reads) == 1, "a redelivered leadgen_id is read once"
    assert set(meta.reads[0]["fields"]) >= {"field_data", "ad_id", "campaign_name", "platform", "is_organic",
                                             "custom_disclaimer_responses"}
    (contact,) = stack.crm.contacts()
    assert contact[_contact_key(stack)] == f"whatsapp:{WA_ID}"
    assert contact["firstname"] == "Anna" and contact["email"] == "anna.schaefer@example.com"
    assert contact["phone"] == f"+{WA_ID}"
    (deal,) = stack.crm.records()
    assert deal["chat2crm_treatment"] == "dental"  # the choice's key, through the form's values
    assert deal["chat2crm_utm_source"] == "instagram" and deal["chat2crm_ad_id"] == AD["ad_id"]
    assert deal["chat2crm_first_campaign"] == "dental-de" and deal["chat2crm_language"] == "de"
    (note,) = stack.crm.notes()
    assert "Meta lead form Zahnbehandlung DE (Instagram, ad)" in note
    assert "5000 EUR" in note  # a custom question with a non-ASCII key, mapped to answers.budget
    assert stack.runtime.redis.get(f"c2c:leadgen:{leadgen_id}") == f"#{deal['chat2crm_reference']}".encode()
    # the form was not consented for messaging: nobody is greeted
    assert stack.whatsapp.messages_to(WA_ID) == []


def test_leads_delivered_out_of_order_and_an_organic_one_without_ad_id(stack: Stack, meta: MetaGraphEmulator) -> None:
    first = meta.create_lead(FORM_ID, answers())  # organic or a test lead: no ad at all
    second = meta.create_lead(FORM_ID, answers(phone="+90 532 111 22 33", full_name="Mehmet Yılmaz",
                                               email="mehmet@example.com"), ad=AD)
    meta.deliver(second)
    meta.deliver(first, delay=0.1)
    meta.deliver(second, delay=0.2)
    meta.wait_for_webhooks()
    stack.work()
    assert len(meta.reads) == 2
    deals = {d["chat2crm_reference"]: d for d in stack.crm.records()}
    assert len(deals) == 2 and len(stack.crm.contacts()) == 2
    organic = next(d for d in deals.values() if not d.get("chat2crm_ad_id"))
    assert organic["chat2crm_utm_source"] == "facebook"
    assert any("organic or test lead, no ad" in note for note in stack.crm.notes())


def test_a_chat_lead_then_a_form_lead_of_the_same_person_share_one_contact(stack: Stack,
                                                                           meta: MetaGraphEmulator) -> None:
    patient = stack.whatsapp.patient(WA_ID, "Anna Schäfer")
    patient.send_text("Hello, I am interested in dental implants.")
    stack.work()
    for said in ("Köln, Germany", "10-17 March", "anna.schaefer@example.com"):
        patient.send_text(said)
        stack.work()
    patient.choose_from_list("en", "English")
    stack.work()
    patient.press_button("no", "I do not agree")
    stack.work()
    assert len(stack.crm.records()) == 1
    # the same person fills a form a week later: the contact is theirs (by the phone's WhatsApp id); the finished
    # chat request is the agents', so the form is a request of its own on it
    meta.submit(FORM_ID, answers(phone="0049 176 12345678"), ad=AD)
    meta.wait_for_webhooks()
    stack.work()
    (contact,) = stack.crm.contacts()
    assert contact[_contact_key(stack)] == f"whatsapp:{WA_ID}"
    assert len(stack.crm.records()) == 2


def test_the_greeting_and_the_bot_skip_what_the_form_answered(stack: Stack, meta: MetaGraphEmulator) -> None:
    meta.submit(FORM_ID, answers(), ad=AD, consent={"whatsapp_optin": True})
    meta.wait_for_webhooks()
    stack.work()
    (greeting,) = stack.whatsapp.messages_to(WA_ID)
    template = greeting.payload["template"]
    assert greeting.payload["type"] == "template" and template["name"] == "leadform_welcome"
    assert template["language"]["code"] == "de"
    assert template["components"][0]["parameters"] == [{"type": "text", "text": "Anna"}]
    (deal,) = stack.crm.records()

    patient = stack.whatsapp.patient(WA_ID, "Anna")
    patient.send_text("Hallo!")
    stack.work()
    asked = _texts(stack)
    assert asked[-1].endswith("Wann möchten Sie anreisen? (z. B. 10.03.-17.03.)"), asked[-1]
    for said in ("10.05.-17.05.",):
        patient.send_text(said)
        stack.work()
    patient.choose_from_list("de", "Deutsch")
    stack.work()
    patient.press_button("no", "Ich stimme nicht zu")
    stack.work()
    said = "\n".join(_texts(stack))
    for skipped in ("Für welche Behandlung", "In welchem Land", "Vor- und Nachname", "E-Mail-Adresse"):
        assert skipped not in said
    assert deal["chat2crm_reference"] in _texts(stack)[-1]  # the chat completed the form's request
    (updated,) = stack.crm.records()  # one request: the chat updated the form's record
    assert updated["_id"] == deal["_id"] and updated.get("chat2crm_preferred_time")
    assert len(stack.crm.contacts()) == 1


def _texts(stack: Stack) -> list[str]:
    texts = []
    for sent in stack.whatsapp.messages_to(WA_ID):
        payload = sent.payload
        if payload["type"] == "text":
            texts.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            texts.append(payload["interactive"]["body"]["text"])
    return texts


def test_a_form_sent_while_the_chat_is_under_way_is_one_request(stack: Stack, meta: MetaGraphEmulator) -> None:
    patient = stack.whatsapp.patient(WA_ID, "Anna")
    patient.send_text("Hello, I am interested in dental implants.")
    stack.work()
    assert _texts(stack)[-1].endswith("Which country and city do you live in?")
    meta.submit(FORM_ID, answers(), ad=AD, consent={"whatsapp_optin": True})  # the chat is under way: no greeting
    meta.wait_for_webhooks()
    stack.work()
    (deal,) = stack.crm.records()
    assert all(m.payload["type"] != "template" for m in stack.whatsapp.messages_to(WA_ID))
    for said in ("Köln, Germany", "10-17 March"):
        patient.send_text(said)
        stack.work()
    patient.choose_from_list("en", "English")
    stack.work()
    patient.press_button("no", "I do not agree")
    stack.work()
    said = "\n".join(_texts(stack))
    assert "What is your first and last name?" not in said and "Your e-mail address?" not in said
    assert f"#{deal['chat2crm_reference']}" in _texts(stack)[-1]
    assert len(stack.crm.records()) == 1 and len(stack.crm.contacts()) == 1
