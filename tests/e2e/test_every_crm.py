"""The same end-to-end exchanges on every CRM: signed webhooks → relay → Redis → worker → bot → channel
emulator → CRM job → the CRM's emulator (HubSpot over HTTP, Salesforce over HTTPS, Pipedrive over HTTP).

Each CRM must hold exactly one contact, one request record and one note per request (Salesforce, by
default, writes the request on the patient's own Lead: one Lead, one Note per request), plus the
campaign membership where the CRM keeps attribution that way; nothing is duplicated by a replayed
job, a redelivered webhook or a returning patient; no patient data reaches the logs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from connector.jobs import sync_lead
from connector.leads import PENDING
from tests.e2e.conftest import Stack
from tests.e2e.test_end_to_end import _bot_texts, _next_wednesday_11

pytestmark = pytest.mark.weight(40)  # seconds, about: see pytest_collection_modifyitems

CRMS = ["hubspot", "salesforce", "pipedrive"]
PATIENT = "905327778899"


@pytest.fixture(params=CRMS)
def crm_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request"}


def _campaign_text(stack: Stack, slug: str) -> str:
    """Follow a campaign link as a visitor would: the text WhatsApp opens with."""
    click = requests.get(f"{stack.relay_url}/c/{slug}", allow_redirects=False, timeout=5)
    assert click.status_code == 302
    return parse_qs(urlparse(click.headers["Location"]).query)["text"][0]


def test_turkish_meeting_request_from_a_campaign_lands_once(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # as the relay's logging sets it (connector.logs): urllib3 writes every URL, query included, at DEBUG
    caplog.set_level(logging.WARNING, logger="urllib3")
    crm = stack.crm
    if crm.name == "salesforce":  # the marketing team's Campaign, named by the UTM campaign
        crm.emulator.add_record("Campaign", {"Name": "meeting-tr", "IsActive": True})
    patient = stack.whatsapp.patient(PATIENT, "Ayşe Yılmaz")
    exchange = [
        (_campaign_text(stack, "meeting-tr"), "Görüşmenin konusu nedir?"),
        ("Süreç otomasyonu ve raporlama.", "Şirketinizin adı ve e-posta adresiniz nedir?"),
        ("ABC Lojistik, info@abc.com", "Hangi gün ve saat size uygun?"),
        ("Çarşamba 11:00 uygun.", "numarasıyla kaydedildi"),
    ]
    for said, expected in exchange:
        assert patient.send_text(said) == 200
        stack.work()
        assert expected in _bot_texts(stack, PATIENT)[-1]
    reference = _bot_texts(stack, PATIENT)[-1].split("#")[1].split()[0]

    assert crm.counts() == (1, 1, 1)
    (contact,), (record,), (note,) = crm.contacts(), crm.records(), crm.notes()
    assert contact[crm.mapping.contact.key_property] == f"whatsapp:{PATIENT}"
    assert contact[crm.field("contact", "contact.phone")] == f"+{PATIENT}"
    assert contact[crm.field("contact", "contact.email")] == "info@abc.com"
    assert record[crm.mapping.record.reference_property] == reference  # type: ignore[union-attr]
    assert record["_stage"] == crm.mapping.record.statuses["new"]  # type: ignore[union-attr]
    assert {"meeting", "lang:tr"} <= set(record["_tags"])
    assert str(record[crm.field("record", "request.preferred_time")]).startswith(_next_wednesday_11()[:16])
    assert str(record[crm.field("record", "transcript_url")]).startswith("https://relay.example/t/")
    assert f"#{reference}" in note and "ABC Lojistik" in note
    if crm.name == "salesforce":
        (member,) = crm.campaign_members()
        assert member["LeadId"] == contact["_id"]
        from emulators.salesforce import COORDINATOR_ID

        # (a composite of queries only, as the returning-patient look-up sends, carries no header)
        writes = [c for c in crm.emulator.calls if c["path"].endswith("/composite") and c["auto_assign"]]
        assert writes[0]["auto_assign"] == "TRUE"  # the org's assignment rules ran when the Lead was made…
        assert contact["OwnerId"] == COORDINATOR_ID  # …and gave it to the rule's coordinator
    assert not stack.runtime.redis.zcard(PENDING.key())

    # the same job again (a replay): nothing new
    sync_lead(f"#{reference}")
    assert crm.counts() == (1, 1, 1) and len(crm.campaign_members()) == (1 if crm.name == "salesforce" else 0)

    # a redelivered webhook is dropped
    before = len(stack.whatsapp.messages_to(PATIENT))
    assert patient.redeliver() == 200
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before

    # the same patient starts again with a new request: a new record on the same contact (or, for a
    # Salesforce Lead, the same Lead with a second note), and never a second contact
    for said in ("baştan başla", "Fiyatlandırma", "Perşembe 10:00"):
        patient.send_text(said)
        stack.work()
    assert crm.counts() == ((1, 2, 2) if crm.record_per_request else (1, 1, 2))
    assert len(crm.campaign_members()) == (1 if crm.name == "salesforce" else 0)
    if crm.name == "salesforce":  # updates never re-run assignment: the Lead stays with the agent who has it
        later = [c for c in crm.emulator.calls if c["path"].endswith("/composite") and c["auto_assign"]][1:]
        assert later and all(c["auto_assign"] == "FALSE" for c in later)

    logs = "\n".join(record.getMessage() + " " + str(record.__dict__) for record in caplog.records)
    for secret in (PATIENT, PATIENT[2:], "info@abc.com", "Ayşe", "Yılmaz", "ABC Lojistik", "Süreç otomasyonu"):
        assert secret not in logs, secret


def test_health_intake_over_telegram_from_a_campaign_link(stack: Stack) -> None:
    crm = stack.crm
    if crm.name == "salesforce":
        crm.emulator.add_record("Campaign", {"Name": "aesthetic-ru-2026q4", "IsActive": True})
    click = requests.get(f"{stack.relay_url}/c/aesthetic-ru-tg?utm_content=story-2", allow_redirects=False, timeout=5)
    code = click.headers["Location"].rsplit("start=", 1)[1]
    user = stack.telegram.user(555002, "Мария Иванова", language_code="en")
    assert user.start(code) == 200
    stack.work()
    (first,) = stack.telegram.messages_to(555002)  # the greeting and the first question: one message
    assert first["text"].endswith("\n\nКакое лечение вас интересует?")
    for kind, value in [("press", "dental"), ("text", "Москва, Россия"), ("text", "10-17 марта"),
                        ("text", "maria@example.ru"), ("press", "ru"), ("press", "yes"), ("press", "__skip__"),
                        ("text", "Боюсь уколов")]:
        assert (user.send_text(value) if kind == "text" else user.press(value)) == 200
        stack.work()
    assert "зарегистрирована под номером #" in stack.telegram.messages_to(555002)[-1]["text"]
    assert crm.counts() == (1, 1, 1)
    (contact,), (record,) = crm.contacts(), crm.records()
    assert contact[crm.mapping.contact.key_property] == "telegram:555002"
    assert contact[crm.field("contact", "contact.email")] == "maria@example.ru"
    assert record[crm.field("record", "answers.treatment")] == "dental"
    assert record[crm.field("record", "last_touch.utm_content")] == "story-2"
    language = crm.field("record", "language_source")
    assert record[language] == "campaign"
    if crm.name == "salesforce":
        (member,) = crm.campaign_members()
        assert member["Status"] == "Responded"


def test_a_crm_outage_is_retried_until_the_lead_lands(stack: Stack) -> None:
    from datetime import datetime, timedelta

    crm = stack.crm
    patient = stack.whatsapp.patient("4915112340000", "Hans Müller")
    for said in ("Hello, I would like a meeting", "Reporting", "Muster GmbH, hans@muster.de"):
        patient.send_text(said)
        stack.work()
    crm.emulator.fail_next(3, "503")
    patient.send_text("Thursday 15:00")
    deadline = datetime.now() + timedelta(seconds=30)
    while crm.counts()[2] == 0 and datetime.now() < deadline:
        stack.work()
    assert crm.counts() == (1, 1, 1)


def test_a_returning_contact_is_not_asked_what_the_crm_knows(stack: Stack) -> None:
    stack.crm.seed_contact("whatsapp:4915166660000", email="known@example.de", first_name="Known")
    patient = stack.whatsapp.patient("4915166660000", "Known Patient")
    for said in ("Hello, I would like a meeting", "Reporting"):
        patient.send_text(said)
        stack.work()
    patient.send_text("Acme GmbH")
    stack.work()
    assert _bot_texts(stack, "4915166660000")[-1] == "Which day and time suit you?"  # the e-mail was known
