"""The bot engine, table-driven: flow + messages in; replies, state and lead out."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.bot.engine import EngineContext, HandedOver, LeadReady, OptedOut, handle
from connector.bot.flows import Flow, load_flows
from core.models import Conversation, InboundMessage, Location, MediaRef, SenderProfile
from tests.paths import FLOWS as SHIPPED_FLOWS

ZONE = ZoneInfo("Europe/Istanbul")
MONDAY = datetime(2026, 11, 23, 9, 30, tzinfo=ZONE)
FLOWS = load_flows(SHIPPED_FLOWS)


class Chat:
    """One patient talking to one flow, with a clock the test moves."""

    def __init__(self, flow: str, *, language: str | None = "tr", sender: str = "905321112233",
                 profile_name: str | None = None, channel: str = "whatsapp", known: dict[str, Any] | None = None) -> None:
        self.flow: Flow = FLOWS[flow]
        self.now = MONDAY
        self.refs = itertools.count(1042)
        self.conv = Conversation(key=f"{channel}:acc:{sender}", channel=channel, account="acc",  # type: ignore[arg-type]
                                 sender_id=sender, language=language, language_source="detected" if language else None,
                                 known=known or {})
        self.profile_name = profile_name
        self.events: list[Any] = []
        self.leads: list[Any] = []
        self.ids = itertools.count(1)

    def ctx(self) -> EngineContext:
        return EngineContext(now=self.now.astimezone(ZONE), timezone=ZONE, languages=["tr", "en", "de", "ar", "ru"],
                             fallback_language="en", resume_window=timedelta(hours=2),
                             handoff_release=timedelta(hours=24), new_reference=lambda: f"#{next(self.refs)}",
                             transcript_url=lambda c: f"https://relay.example/t/{c.reference}", clinic_name="Demo Clinic")

    def send(self, text: str | None = None, *, choice: str | None = None, minutes: float = 1, **extra: Any) -> list[str]:
        self.now += timedelta(minutes=minutes)
        kind = "choice" if choice else extra.pop("kind", "text")
        message = InboundMessage(channel=self.conv.channel, account="acc", sender_id=self.conv.sender_id,
                                 message_id=f"m{next(self.ids)}", timestamp=self.now, kind=kind, text=text,
                                 choice_id=choice, choice_title=text if choice else None,
                                 profile=extra.pop("profile", SenderProfile(name=self.profile_name)), **extra)
        turn = handle(self.conv, message, flow=self.flow, ctx=self.ctx())
        self.conv = turn.conversation
        self.events += turn.events
        self.leads += [e.lead for e in turn.events if isinstance(e, LeadReady)]
        self.last = turn.replies
        return [r.text for r in turn.replies]

    def options(self) -> list[str]:
        return [o.id for r in self.last for o in r.options]


def test_turkish_meeting_request_word_for_word() -> None:
    chat = Chat("meeting_request")
    replies = chat.send("Merhaba, hafta içi bir görüşme ayarlamak istiyorum")
    assert replies[-1] == "Görüşmenin konusu nedir?"
    assert chat.send("Süreç otomasyonu ve raporlama.") == ["Şirketinizin adı ve e-posta adresiniz nedir?"]
    assert chat.send("ABC Lojistik, info@abc.com") == ["Hangi gün ve saat size uygun?"]
    done = chat.send("Çarşamba 11:00 uygun.")
    assert len(done) == 1 and "#1042" in done[0]
    (lead,) = chat.leads
    assert lead.reference == "#1042"
    assert lead.request.topic == "Süreç otomasyonu ve raporlama"  # a sentence's full stop is not the topic's
    assert lead.organization == "ABC Lojistik" and lead.contact.email == "info@abc.com"
    assert lead.request.preferred_time == "2026-11-25T11:00:00+03:00"  # the next Wednesday, Istanbul time
    assert lead.request.preferred_time_text == "Çarşamba 11:00 uygun."
    assert lead.contact.phone == "+905321112233" and lead.contact_key == "whatsapp:905321112233"
    assert lead.tags == ["meeting", "lang:tr"] and "ABC Lojistik" in lead.summary
    assert lead.transcript_url == "https://relay.example/t/#1042"
    assert [e.direction for e in lead.transcript] == ["in", "out", "out", "in", "out", "in", "out", "in", "out"]
    assert chat.conv.status == "closed"


def test_company_without_email_asks_only_for_the_email() -> None:
    chat = Chat("meeting_request", language="en")
    chat.send("Hello")
    chat.send("A demo of the reporting")
    assert chat.send("Acme Travel Ltd") == ["Could you also write your e-mail address?"]
    assert chat.send("no idea") == ["That does not look like an e-mail address. Example: name@example.com",
                                    "Could you also write your e-mail address?"]
    assert chat.send("Sales@ACME.Example") == ["Which day and time suit you?"]
    assert chat.conv.answers["email"] == "Sales@acme.example"  # the domain is lower-cased


def test_ambiguous_time_is_confirmed_with_buttons() -> None:
    chat = Chat("meeting_request", language="en")
    for text in ("Hi", "Pricing", "Acme, a@acme.io"):
        chat.send(text)
    assert chat.send("11:00") == ["Which one did you mean?"]
    assert chat.options() == ["when:0", "when:1"]
    done = chat.send("Tue 24.11 11:00", choice="when:1")
    assert "#1042" in done[0]
    assert chat.leads[0].request.preferred_time == "2026-11-24T11:00:00+03:00"


def test_day_without_time_asks_for_the_time() -> None:
    chat = Chat("meeting_request", language="de")
    for text in ("Hallo", "Automatisierung", "Muster GmbH, info@muster.de"):
        chat.send(text)
    assert chat.send("Mittwoch") == ["Um wie viel Uhr passt es Ihnen?", "Welcher Tag und welche Uhrzeit passen Ihnen?"]
    assert "#1042" in chat.send("Mittwoch 11 Uhr")[0]


def test_too_many_failed_attempts_hands_over() -> None:
    chat = Chat("meeting_request", language="en")
    for text in ("Hi", "Topic", "Acme"):
        chat.send(text)
    chat.send("nope")
    chat.send("still nope")
    replies = chat.send("no")
    assert "passing you to a colleague" in replies[0]
    assert chat.conv.status == "handoff" and any(isinstance(e, HandedOver) for e in chat.events)
    assert chat.leads[0].handoff_reason == "too_many_attempts" and chat.leads[0].organization == "Acme"
    # the bot stays silent while an agent has the conversation …
    assert chat.send("hello?") == []
    # … and takes it back after the release window
    assert chat.send("anyone?", minutes=25 * 60)[0].startswith("Welcome back")


@pytest.mark.parametrize(("language", "word"), [("tr", "temsilci"), ("en", "Human"), ("de", "Mitarbeiter"),
                                                ("ar", "موظف"), ("ru", "Оператор")])
def test_talk_to_a_human_in_every_language(language: str, word: str) -> None:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("Hi")
    chat.send(word)
    assert chat.conv.status == "handoff" and chat.leads[0].handoff_reason == "patient_request"


@pytest.mark.parametrize(("language", "word"), [("tr", "dur"), ("en", "STOP"), ("de", "Stopp"), ("ar", "توقف"),
                                                ("ru", "стоп")])
def test_stop_opts_out_and_silences_the_bot(language: str, word: str) -> None:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("Hi")
    assert len(chat.send(word)) == 1
    assert chat.conv.opted_out and any(isinstance(e, OptedOut) for e in chat.events)
    assert chat.send("hello again") == []


def test_restart_command_starts_over() -> None:
    chat = Chat("meeting_request", language="en")
    chat.send("Hi")
    chat.send("Topic one")
    replies = chat.send("start over")
    assert replies == ["Hello! Happy to help you on behalf of Demo Clinic.", "What would you like to discuss?"]
    assert chat.conv.answers == {}


def _intake_to_consent(chat: Chat) -> None:
    chat.send("Hi, price for hair transplant?")
    assert chat.conv.answers["treatment"] == "hair_transplant"  # taken from the first message
    chat.send("Berlin, Germany")
    chat.send("10-17 March")
    chat.send("hans müller")
    chat.send("hans@example.DE")
    chat.send("German", choice="de")


def test_health_intake_complete_with_consent_photos_and_note() -> None:
    chat = Chat("health_tourism_intake", language="en", sender="4915112345678")
    _intake_to_consent(chat)
    assert chat.options() == ["yes", "no"]
    chat.send("I agree", choice="yes")
    chat.send(None, kind="media", media=[MediaRef(kind="image", media_id="m-1")])
    done = chat.send("Norwood 5, no medication")
    assert "#1042" in done[-1]
    lead = chat.leads[0]
    assert lead.contact.name == "Hans Müller" and lead.contact.email == "hans@example.de"
    assert lead.contact.phone == "+4915112345678" and lead.contact.country == "DE"
    assert lead.request.topic == "Hair transplant" and lead.request.location == "Berlin, Germany"
    assert lead.request.preferred_time == "2027-03-10" and lead.request.preferred_end == "2027-03-17"
    assert lead.consent is not None and lead.consent.given and lead.consent.text_version == "2026-01"
    assert lead.answers["photos"] == ["m-1"] and lead.media[0].media_id == "m-1"
    assert lead.request.note == "Norwood 5, no medication"
    assert lead.tags == ["hair_transplant", "lang:en", "photos"]


def test_declined_consent_skips_health_questions() -> None:
    chat = Chat("health_tourism_intake", language="en")
    _intake_to_consent(chat)
    replies = chat.send("No", choice="no")
    assert "will not ask for health information" in replies[0] and "#1042" in replies[-1]
    lead = chat.leads[0]
    assert lead.consent is not None and not lead.consent.given
    assert "photos" not in lead.answers and "note" not in lead.answers


def test_known_profile_name_is_not_asked() -> None:
    chat = Chat("health_tourism_intake", language="tr", profile_name="AYŞE YILMAZ")
    chat.send("Merhaba, diş implantı fiyatı?")
    chat.send("İstanbul, Türkiye")
    assert chat.send("10-17 Mart") == ["E-posta adresiniz? (isteğe bağlı)"]  # the name came from the profile
    assert chat.conv.answers["name"] == "Ayşe Yılmaz"
    assert chat.send("Atla", choice="__skip__")[0].startswith("Koordinatörümüz")
    assert chat.conv.answers["email"] is None


def test_choice_by_number_and_synonym() -> None:
    chat = Chat("health_tourism_intake", language="ru")
    chat.send("Здравствуйте")
    assert chat.send("2")[0].startswith("В какой стране")
    assert chat.conv.answers["treatment"] == "dental"


def test_choice_option_can_hand_over() -> None:
    chat = Chat("health_tourism_intake", language="en")
    chat.send("Hello")
    chat.send("Other", choice="other")
    assert chat.conv.status == "handoff" and chat.leads[0].handoff_reason == "option:other"


def test_unknown_language_is_asked_with_buttons_then_first_message_is_used() -> None:
    chat = Chat("health_tourism_intake", language=None)
    replies = chat.send("hair transplant price")
    assert chat.options() == ["lang:tr", "lang:en", "lang:de", "lang:ar", "lang:ru"]
    assert "Which language" in replies[0]
    replies = chat.send("English", choice="lang:en")
    assert chat.conv.language == "en" and chat.conv.language_source == "asked"
    assert chat.conv.answers["treatment"] == "hair_transplant"
    assert replies[-1] == "Which country and city do you live in?"


def test_resume_within_window_and_after_it_keeping_every_answer() -> None:
    chat = Chat("health_tourism_intake", language="en", profile_name="Hans Müller")
    chat.send("hello")
    chat.send("Dental care", choice="dental")
    assert chat.send("Berlin", minutes=90) == ["When are you thinking of travelling? (e.g. 10-17 March)"]
    replies = chat.send("hi again", minutes=180)
    assert replies == ["Welcome back! Let us go on where we left off.",
                       "When are you thinking of travelling? (e.g. 10-17 March)"]
    assert chat.conv.answers["treatment"] == "dental" and chat.conv.answers["location"] == "Berlin"


def test_returning_patient_gets_a_new_reference_and_keeps_contact_data() -> None:
    chat = Chat("meeting_request", language="en")
    for text in ("Hi", "Topic", "Acme, a@acme.io", "Wednesday 11:00"):
        chat.send(text)
    assert chat.leads[0].reference == "#1042"
    chat.send("Hello again", minutes=60 * 24 * 3)
    # company and e-mail were remembered: only the topic and the time are asked again
    assert chat.send("Another topic") == ["Which day and time suit you?"]
    chat.send("Thursday 10:00")
    assert [lead.reference for lead in chat.leads] == ["#1042", "#1043"]
    assert chat.leads[1].contact.email == "a@acme.io"


def test_shared_location_answers_a_location_step() -> None:
    chat = Chat("health_tourism_intake", language="en")
    chat.send("Hi")
    chat.send("Eye (laser)", choice="eye")
    chat.send(None, kind="location", location=Location(latitude=52.52, longitude=13.405, name="Berlin"))
    assert chat.conv.answers["location"] == "Berlin"


def test_arabic_intake_names_keep_their_script() -> None:
    chat = Chat("health_tourism_intake", language="ar", sender="971501234567")
    chat.send("مرحبا، أريد زراعة الشعر")
    chat.send("دبي، الإمارات")
    chat.send("10-17 مارس")
    chat.send("محمد عبد الله")
    assert chat.conv.answers["name"] == "محمد عبد الله"


TYPES_FLOWS = load_flows(Path(__file__).parents[1] / "data" / "engine_flows")


@pytest.mark.parametrize(("travelling", "asked_companions"), [("yes", True), ("no", False)])
def test_conditions_number_multi_choice_and_known_phone(travelling: str, asked_companions: bool) -> None:
    chat = Chat("health_tourism_intake", language="en")
    chat.flow = TYPES_FLOWS["types_demo"]
    assert chat.send("Hello")[-1] == "Will you travel?"
    replies = chat.send(travelling)
    if asked_companions:
        assert replies == ["How many people come with you?"]
        assert chat.send("nine")[0] == "Please write a number."
        assert chat.send("9")[0] == "That number is out of range."
        replies = chat.send("2")
        assert chat.conv.answers["companions"] == 2
    assert replies == ["What interests you?"]
    assert ("companions" in chat.conv.answers) == asked_companions
    done = chat.send("hair and teeth please")
    assert chat.conv.answers["interests"] == ["hair", "teeth"]
    # the phone is known from the WhatsApp id: never asked
    assert done[0].startswith("Done #1042") and chat.leads[0].answers["phone"] == "+905321112233"
