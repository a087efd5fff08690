"""Meta lead forms through the whole relay into Salesforce and Pipedrive: the signed ``leadgen`` webhook
(redelivered), the Graph API read (the Meta emulator), the job, the CRM's emulator over real HTTP(S). The form's
lead lands as one contact (the Salesforce Lead, the Pipedrive person) with its request record and its note; a
redelivered webhook changes nothing; the same person's later WhatsApp chat lands on the same contact and
completes the same request. (HubSpot runs the same story in ``test_lead_forms.py``.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connector.jobs import sync_lead
from emulators.meta_graph import MetaGraphEmulator
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack
from tests.leadform_fixtures import AD, FORM_ID, PAGE_TOKEN, answers, served_meta, write_lead_forms

WA_ID = "4917612345678"  # +49 176 12345678


@pytest.fixture(params=["salesforce", "pipedrive"])
def crm_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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


def _texts(stack: Stack) -> list[str]:
    texts = []
    for sent in stack.whatsapp.messages_to(WA_ID):
        payload = sent.payload
        if payload["type"] == "text":
            texts.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            texts.append(payload["interactive"]["body"]["text"])
    return texts


def test_a_form_lead_lands_once_and_the_later_chat_is_the_same_contact(stack: Stack,
                                                                       meta: MetaGraphEmulator) -> None:
    crm = stack.crm
    leadgen_id = meta.submit(FORM_ID, answers(), ad=AD, platform="ig", times=3,  # Meta delivers at least once
                             consent={"whatsapp_optin": True})
    meta.wait_for_webhooks()
    assert [status for _, status in meta.delivered] == [200, 200, 200]
    stack.work()
    assert len(meta.reads) == 1, "a redelivered leadgen_id is read once"
    assert crm.counts() == (1, 1, 1)
    (contact,), (record,), (note,) = crm.contacts(), crm.records(), crm.notes()
    assert contact[crm.mapping.contact.key_property] == f"whatsapp:{WA_ID}"
    assert contact[crm.field("contact", "contact.phone")] == f"+{WA_ID}"
    assert contact[crm.field("contact", "contact.email")] == "anna.schaefer@example.com"
    assert record[crm.field("record", "answers.treatment")] == "dental"  # through the form's values
    assert record[crm.field("record", "last_touch.utm_source")] == "instagram"
    assert record[crm.field("record", "last_touch.utm_medium")] == "paid_social"
    assert record[crm.field("record", "last_touch.ad_source_id")] == AD["ad_id"]
    assert record["_stage"] == crm.mapping.record.statuses["new"]  # type: ignore[union-attr]
    reference = str(record[crm.mapping.record.reference_property])  # type: ignore[union-attr]
    assert "Meta lead form Zahnbehandlung DE (Instagram, ad)" in note and f"#{reference}" in note
    assert stack.runtime.redis.get(f"c2c:leadgen:{leadgen_id}") == f"#{reference}".encode()

    # Meta delivers the same lead once more, later: answered, nothing read or written again
    meta.deliver(leadgen_id)
    meta.wait_for_webhooks()
    stack.work()
    sync_lead(f"#{reference}")  # and the lead's own job replayed: the same records, updated in place
    assert len(meta.reads) == 1 and crm.counts() == (1, 1, 1)

    # the consent box was ticked: the greeting template; the patient answers on WhatsApp
    (greeting,) = stack.whatsapp.messages_to(WA_ID)
    assert greeting.payload["type"] == "template"
    patient = stack.whatsapp.patient(WA_ID, "Anna")
    patient.send_text("Hallo!")
    stack.work()
    assert _texts(stack)[-1].endswith("Wann möchten Sie anreisen? (z. B. 10.03.-17.03.)")
    patient.send_text("10.05.-17.05.")
    stack.work()
    patient.choose_from_list("de", "Deutsch")
    stack.work()
    patient.press_button("no", "Ich stimme nicht zu")
    stack.work()
    assert f"#{reference}" in _texts(stack)[-1]  # the chat completed the form's request
    (same,) = crm.contacts()
    assert same["_id"] == contact["_id"] and same[crm.mapping.contact.key_property] == f"whatsapp:{WA_ID}"
    (updated,) = crm.records()
    assert updated["_id"] == record["_id"]
    assert updated[crm.field("record", "request.preferred_time_text")]
    (kept,) = crm.notes()  # one note per request: the form's
    assert "Meta lead form Zahnbehandlung DE" in kept
