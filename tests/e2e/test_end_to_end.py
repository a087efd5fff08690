"""Signed webhook → relay → Redis → worker → bot → channel emulator → CRM job → HubSpot emulator, with
HubSpot's own fields checked in detail. `test_every_crm.py` plays exchanges on all three CRMs (an outage
retried, a returning contact not asked again among them)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.jobs import sync_lead
from connector.leads import PENDING
from tests.e2e.conftest import Stack

TURKISH_PATIENT = "905321112233"


def _next_wednesday_11() -> str:
    zone = ZoneInfo("Europe/Istanbul")
    now = datetime.now(zone)
    ahead = (2 - now.weekday()) % 7
    day = now.date() + timedelta(days=ahead)
    if ahead == 0 and now.time() >= datetime.strptime("11:00", "%H:%M").time():
        day += timedelta(days=7)
    return datetime(day.year, day.month, day.day, 11, 0, tzinfo=zone).isoformat()


def _bot_texts(stack: Stack, wa_id: str) -> list[str]:
    texts = []
    for sent in stack.whatsapp.messages_to(wa_id):
        payload = sent.payload
        if payload["type"] == "text":
            texts.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            texts.append(payload["interactive"]["body"]["text"])
    return texts


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request"}


def test_turkish_meeting_request_reaches_hubspot_once(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    patient = stack.whatsapp.patient(TURKISH_PATIENT, "Ayşe Yılmaz")
    exchange = [
        ("Merhaba, hafta içi bir görüşme ayarlamak istiyorum", "Görüşmenin konusu nedir?"),
        ("Süreç otomasyonu ve raporlama.", "Şirketinizin adı ve e-posta adresiniz nedir?"),
        ("ABC Lojistik, info@abc.com", "Hangi gün ve saat size uygun?"),
        ("Çarşamba 11:00 uygun.", "numarasıyla kaydedildi"),
    ]
    for said, expected in exchange:
        assert patient.send_text(said) == 200
        stack.work()
        assert expected in _bot_texts(stack, TURKISH_PATIENT)[-1]
    # one message a turn: the greeting and the first question went out together, a blank line between them
    first, *_ = texts = _bot_texts(stack, TURKISH_PATIENT)
    assert len(texts) == len(exchange)
    assert first == "Merhaba! Demo Clinic adına size yardımcı olmaktan memnuniyet duyarız.\n\nGörüşmenin konusu nedir?"
    confirmation = _bot_texts(stack, TURKISH_PATIENT)[-1]
    reference = confirmation.split("#")[1].split()[0]

    contacts, deals, notes = (stack.hubspot.records(t) for t in ("contacts", "deals", "notes"))
    assert len(contacts) == 1 and len(deals) == 1 and len(notes) == 1
    contact, deal = contacts[0]["properties"], deals[0]["properties"]
    assert contact["chat2crm_contact_key"] == f"whatsapp:{TURKISH_PATIENT}" and contact["phone"] == "+905321112233"
    assert contact["email"] == "info@abc.com" and contact["firstname"] == "Ayşe"
    stages = {s["id"]: (p["label"], s["label"]) for p in stack.hubspot.pipelines["deals"] for s in p["stages"]}
    assert deal["chat2crm_reference"] == reference and stages[deal["dealstage"]] == ("Patient enquiries", "New")
    assert deal["dealname"] == f"Süreç otomasyonu ve raporlama – Ayşe Yılmaz (#{reference})"
    assert deal["chat2crm_preferred_time"] == _next_wednesday_11()
    assert deal["chat2crm_preferred_time_text"] == "Çarşamba 11:00 uygun."
    assert deal["chat2crm_language"] == "tr" and deal["chat2crm_language_source"] == "detected"
    assert set(deal["chat2crm_tags"].split(";")) == {"meeting", "lang:tr"}
    assert deal["chat2crm_transcript_url"].startswith("https://relay.example/t/")
    assert "ABC Lojistik" in notes[0]["properties"]["hs_note_body"]
    assert not stack.whatsapp.read  # every message was answered: a reply says it arrived, no read receipt
    assert not stack.runtime.redis.zcard(PENDING.key())

    # the same job again (a replay): nothing new
    sync_lead(f"#{reference}")
    assert (stack.hubspot.count("contacts"), stack.hubspot.count("deals"), stack.hubspot.count("notes")) == (1, 1, 1)

    # a redelivered webhook is dropped
    before = len(stack.whatsapp.messages_to(TURKISH_PATIENT))
    assert patient.redeliver() == 200
    stack.work()
    assert len(stack.whatsapp.messages_to(TURKISH_PATIENT)) == before

    # after the bot, the patient's message is for the agents: a note on the contact's timeline, no bot turn
    before = len(stack.whatsapp.messages_to(TURKISH_PATIENT))
    patient.send_text("Teşekkürler, bekliyorum")
    stack.work()
    assert len(stack.whatsapp.messages_to(TURKISH_PATIENT)) == before
    assert (stack.hubspot.count("contacts"), stack.hubspot.count("deals"), stack.hubspot.count("notes")) == (1, 1, 2)

    # the patient starts again on purpose, with a new request: a new deal on the same contact
    for said in ("baştan başla", "Fiyatlandırma", "Perşembe 10:00"):
        patient.send_text(said)
        stack.work()
    assert (stack.hubspot.count("contacts"), stack.hubspot.count("deals"), stack.hubspot.count("notes")) == (1, 2, 3)

    # nothing the patient said or is reached by appears in the logs
    logs = "\n".join(record.getMessage() + " " + str(record.__dict__) for record in caplog.records)
    for secret in ("905321112233", "5321112233", "info@abc.com", "Ayşe", "Yılmaz", "ABC Lojistik", "Süreç otomasyonu"):
        assert secret not in logs, secret


def test_health_intake_over_telegram_from_a_campaign_link(stack: Stack) -> None:
    import requests

    click = requests.get(f"{stack.relay_url}/c/aesthetic-ru-tg?utm_content=story-2", allow_redirects=False, timeout=5)
    assert click.status_code == 302
    code = click.headers["Location"].rsplit("start=", 1)[1]
    user = stack.telegram.user(555001, "Мария Иванова", language_code="en")
    assert user.start(code) == 200
    stack.work()
    (first,) = stack.telegram.messages_to(555001)  # the greeting and the first question: one message
    assert first["text"].endswith("\n\nКакое лечение вас интересует?")  # in the campaign's language
    steps = [
        ("press", "dental"),
        ("text", "Москва, Россия"),
        ("text", "10-17 марта"),
        ("text", "maria@example.ru"),
        ("press", "ru"),
        ("press", "yes"),
        ("press", "__skip__"),
        ("text", "Боюсь уколов"),
    ]
    for kind, value in steps:
        status = user.send_text(value) if kind == "text" else user.press(value)
        assert status == 200
        stack.work()
    sent = stack.telegram.messages_to(555001)
    assert "зарегистрирована под номером #" in sent[-1]["text"]
    assert stack.telegram.answered_callbacks  # every button press was acknowledged
    (deal,) = stack.hubspot.records("deals")
    props = deal["properties"]
    assert props["chat2crm_treatment"] == "dental" and props["chat2crm_consent"] == "true"
    assert props["chat2crm_consent_version"] == "2026-01" and props["chat2crm_language"] == "ru"
    (contact,) = stack.hubspot.records("contacts")
    assert contact["properties"]["chat2crm_contact_key"] == "telegram:555001"
    assert contact["properties"]["firstname"] == "Мария" and contact["properties"]["email"] == "maria@example.ru"
    assert props["chat2crm_first_campaign"] == "aesthetic-ru-tg" and props["chat2crm_utm_content"] == "story-2"
    assert props["chat2crm_language_source"] == "campaign"


def test_an_agent_releases_a_handed_over_conversation(stack: Stack) -> None:
    from connector.commands.release import release

    patient = stack.whatsapp.patient("4915155555555", "Released")
    for said in ("Hello, I would like a meeting", "human"):
        patient.send_text(said)
        stack.work()
    before = len(stack.whatsapp.messages_to("4915155555555"))
    assert not stack.whatsapp.read  # each message so far was answered
    patient.send_text("hello?")
    stack.work()
    assert len(stack.whatsapp.messages_to("4915155555555")) == before  # an agent has it: the bot is quiet
    # no reply went out, so the read receipt tells the patient their message arrived
    (value,) = (c["value"] for e in json.loads(patient.last_body or b"")["entry"] for c in e["changes"])
    assert stack.whatsapp.read == [value["messages"][0]["id"]]
    assert release(stack.runtime, "+4915155555555") == 1
    patient.send_text("thanks, one more question")
    stack.work()
    assert "Welcome back" in _bot_texts(stack, "4915155555555")[-1]  # with the first question, one message
