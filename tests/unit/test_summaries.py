"""Lead summaries as agents read them in CRM fields and notes: dates, ranges and yes/no in words."""

from __future__ import annotations

from core.models import MediaRef
from tests.unit.test_bot_engine import Chat, _intake_to_consent


def test_the_intake_summary_writes_the_travel_dates_and_consent_for_people() -> None:
    chat = Chat("health_tourism_intake", language="en", sender="4915112345678")
    _intake_to_consent(chat)
    chat.send("I agree", choice="yes")
    chat.send(None, kind="media", media=[MediaRef(kind="image", media_id="m-1")])
    chat.send("Tom & Jerry <3")
    summary = chat.leads[0].summary
    assert "Travel: 10–17 March 2027" in summary and "Consent: yes" in summary
    assert "Note: Tom & Jerry <3" in summary  # plain text: as written (notes escape it where they are HTML)
    assert "{'start'" not in summary and "True" not in summary


def test_a_declined_consent_reads_no() -> None:
    chat = Chat("health_tourism_intake", language="en")
    _intake_to_consent(chat)
    chat.send("No", choice="no")
    assert "Consent: no" in chat.leads[0].summary


def test_the_meeting_summary_writes_the_time_for_people() -> None:
    chat = Chat("meeting_request", language="tr")
    for said in ("Merhaba, hafta içi bir görüşme ayarlamak istiyorum", "Süreç otomasyonu ve raporlama.",
                 "ABC Lojistik, info@abc.com", "Çarşamba 11:00 uygun."):
        chat.send(said)
    summary = chat.leads[0].summary
    assert 'Preferred time: 25 November 2026, 11:00 ("Çarşamba 11:00 uygun.")' in summary, summary
