"""The first message's language: greetings, languages sharing a script with a configured one, and what the
relay does with a language it does not speak (real lingua models; the attribution tests on real Redis)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from connector.attribution import attribute
from connector.attribution.language import detect_language, identify_language
from connector.runtime import Runtime
from core import metrics
from core.models import Conversation, InboundMessage, SenderProfile, utcnow

FIVE = ["tr", "en", "de", "ar", "ru"]


@pytest.mark.parametrize(("text", "expected"), [
    ("Hallo", "de"), ("Hallo!", "de"), ("Hallooo", "de"), ("Halo", "de"), ("Moin", "de"), ("Moin moin!", "de"),
    ("Servus", "de"), ("Guten Tag", "de"), ("guten morgen", "de"), ("Hallo zusammen 👋", "de"),
    ("Merhaba", "tr"), ("Merhba", "tr"), ("meraba", "tr"), ("Merhabalar", "tr"), ("Selam", "tr"), ("Slm", "tr"),
    ("Günaydın", "tr"), ("Gunaydin", "tr"), ("iyi günler", "tr"), ("Selamün aleyküm", "tr"),
    ("Привет", "ru"), ("Приветик)", "ru"), ("Здравствуйте", "ru"), ("Здраствуйте", "ru"), ("Здрасьте", "ru"),
    ("Добрый день", "ru"), ("مرحبا", "ar"), ("مرحباً", "ar"), ("مرحبااا", "ar"), ("السلام عليكم", "ar"),
    ("السلام عليكم ورحمة الله وبركاته", "ar"), ("اهلا", "ar"), ("Hello", "en"), ("Helo", "en"), ("Hellooo!", "en"),
    ("Good morning", "en"), ("Hi there", "en"),
])
def test_greetings_are_classified(text: str, expected: str) -> None:
    found = identify_language(text, FIVE)
    assert (found.language, found.outcome, found.ask) == (expected, "greeting", False)
    assert detect_language(text, FIVE) == (expected, 1.0)


@pytest.mark.parametrize("text", ["Hi", "Hey", "Hiii", "hey!", "Hello merhaba"])
def test_greetings_of_two_configured_languages_are_left_open(text: str) -> None:
    found = identify_language(text, FIVE)
    assert found.language is None and not found.ask  # the channel's hint, or the patient, decides
    assert detect_language(text, FIVE) == (None, 0.0)


def test_a_greeting_of_one_configured_language_is_that_language() -> None:
    assert identify_language("Hi", ["tr", "en", "ar"]).language == "en"  # German is not spoken: "Hi" is English
    assert identify_language("Hallo", ["tr", "en"]).language is None  # German greeting, German not spoken
    assert identify_language("Hallo", ["tr", "en"]).outcome == "not_configured"


@pytest.mark.parametrize(("text", "detected"), [
    ("سلام، قیمت کاشت مو چقدر است؟", "fa"), ("هزینه ایمپلنت دندان چقدره؟", "fa"), ("سلام وقت بخیر", "fa"),
    ("آسلام علیکم، ریٹ کیا ہے؟", "ur"),
    ("Привіт, скільки коштує імплант?", "uk"), ("Вітаю, хочу записатися на консультацію", "uk"),
    ("Здравейте, колко струва имплант?", "bg"), ("Добър ден, искам информация", "bg"),
    ("Здраво, колико кошта имплант?", "sr"), ("Сәлеметсіз бе, қанша тұрады?", "kk"),
    ("Salam, saç əkimi nə qədərdir?", "az"), ("Salam, qiymət nədir?", "az"),
])
def test_a_language_sharing_a_configured_script_is_not_taken_for_it(text: str, detected: str) -> None:
    found = identify_language(text, FIVE)
    assert found.language is None and found.detected == detected and found.ask
    assert detect_language(text, FIVE) == (None, 0.0)


@pytest.mark.parametrize(("text", "detected"), [
    ("سلام", "fa"),  # Persian, and Arabic too
    ("Salam", "az"), ("Salam, sac ekimi qiymeti neche?", "az"),  # Azerbaijani or Turkish without its letters
    ("Цена импланта", "bg"),  # Russian, Bulgarian and Serbian alike
])
def test_unsure_between_script_siblings_the_patient_is_asked(text: str, detected: str) -> None:
    found = identify_language(text, FIVE)
    assert (found.language, found.detected, found.outcome, found.ask) == (None, detected, "shared_script", True)


@pytest.mark.parametrize(("text", "expected"), [
    ("Merhaba, hafta içi bir görüşme ayarlamak istiyorum", "tr"), ("sac ekimi fiyati ne kadar", "tr"),
    ("Diş implantı ne kadar", "tr"), ("Hi, price for hair transplant?", "en"),
    ("Hallo, was kostet eine Zahnbehandlung?", "de"), ("مرحبا، كم سعر زراعة الشعر؟", "ar"),
    ("اريد حجز موعد", "ar"), ("عايز اعرف سعر زراعة الاسنان", "ar"), ("ابغى اعرف السعر", "ar"),
    ("بكم زراعة الاسنان", "ar"), ("Здравствуйте, хочу узнать цену", "ru"), ("Хочу записаться", "ru"),
    ("Добрый день, сколько стоит?", "ru"), ("Сколько стоит пересадка волос", "ru"),
])
def test_the_configured_languages_are_still_detected(text: str, expected: str) -> None:
    found = identify_language(text, FIVE)
    assert (found.language, found.outcome) == (expected, "detected") and found.confidence > 0.5


def test_a_configured_sibling_is_detected_as_itself() -> None:
    with_persian = ["tr", "en", "ar", "fa"]
    assert identify_language("سلام، قیمت کاشت مو چقدر است؟", with_persian).language == "fa"
    assert identify_language("مرحبا، كم سعر زراعة الشعر؟", with_persian).language == "ar"
    found = identify_language("سلام", with_persian)  # both spoken: neither is guessed, nothing is refused
    assert found.language is None and not found.ask


ACCOUNT = "106540352242922"


def _message(text: str, sender: str, **extra: Any) -> InboundMessage:
    return InboundMessage(channel="whatsapp", account=ACCOUNT, sender_id=sender, message_id=f"wamid.{sender}",
                          timestamp=utcnow(), kind="text", text=text, sender_phone=f"+{sender}", **extra)


def _conversation(sender: str) -> Conversation:
    return Conversation(key=f"whatsapp:{ACCOUNT}:{sender}", channel="whatsapp", account=ACCOUNT, sender_id=sender)


def test_an_unspoken_language_is_reported_and_asked_not_guessed_from_the_phone(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    text = "سلام، قیمت کاشت مو چقدر است؟"
    conv = _conversation("971501234567")  # a UAE number would say Arabic
    with caplog.at_level(logging.INFO, logger="chat2crm.attribution"):
        attribute(runtime, conv, _message(text, "971501234567"))
    assert conv.language is None and conv.language_source is None  # the bot asks with the configured languages
    (record,) = [r for r in caplog.records if getattr(r, "detected", None)]
    assert record.detected == "fa" and record.outcome == "not_configured"  # type: ignore[attr-defined]
    assert "configured" in record.getMessage() and text not in caplog.text
    counted = metrics.read(runtime.redis, "language_detections")
    assert counted == {("fa", "not_configured"): 1.0}


def test_greetings_and_hints_on_real_redis(runtime: Runtime) -> None:
    german = _conversation("905321112233")
    attribute(runtime, german, _message("Hallo", "905321112233"))  # a Turkish number, a German greeting
    assert (german.language, german.language_source) == ("de", "detected")
    unsure = _conversation("905321112234")
    attribute(runtime, unsure, _message("Hi", "905321112234"))  # English or German: the number decides
    assert (unsure.language, unsure.language_source) == ("tr", "channel_hint")
    telegram = _conversation("905321112235")
    attribute(runtime, telegram, _message("سلام", "905321112235", profile=SenderProfile(language_code="ar")))
    assert telegram.language is None  # Persian or Arabic: asked, whatever the hints
    counted = metrics.read(runtime.redis, "language_detections")
    assert counted == {("de", "greeting"): 1.0, ("none", "unsure"): 1.0, ("fa", "shared_script"): 1.0}
