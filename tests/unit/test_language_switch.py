"""Switching language mid-conversation, in words or from the menu: the current step is asked again in the
new language and the answers so far are kept (the engine, with the shipped flows)."""

from __future__ import annotations

import pytest

from tests.unit.test_bot_engine import Chat

COMPANY = {"tr": "Şirketinizin adı ve e-posta adresiniz nedir?",
           "en": "What is your company's name and your e-mail address?",
           "de": "Wie heißt Ihr Unternehmen und wie lautet Ihre E-Mail-Adresse?",
           "ar": "ما اسم شركتك وبريدك الإلكتروني؟", "ru": "Как называется ваша компания и какой у вас e-mail?"}
MENU = ["lang:tr", "lang:en", "lang:de", "lang:ar", "lang:ru"]


def _at_company_step(language: str) -> Chat:
    chat = Chat("meeting_request", language=language)
    chat.send("Hi")
    chat.send("Reporting automation")
    assert chat.conv.step == "company"
    return chat


@pytest.mark.parametrize(("start", "said", "target"), [
    ("tr", "English please", "en"), ("tr", "english pls", "en"), ("en", "can we speak German", "de"),
    ("en", "auf Deutsch bitte", "de"), ("en", "Türkçe yazabilir miyiz", "tr"), ("de", "turkce konusabilir miyiz?", "tr"),
    ("en", "по-русски пожалуйста", "ru"), ("tr", "Можно на русском?", "ru"), ("en", "بالعربية من فضلك", "ar"),
    ("ru", "ممكن نتكلم عربي", "ar"), ("de", "in English please", "en"), ("ar", "Can we continue in English?", "en"),
    ("ru", "Deutsch", "de"), ("en", "İngilizce değil, Almanca lütfen", None),
])
def test_asking_for_a_language_in_words_switches_and_asks_the_step_again(start: str, said: str,
                                                                         target: str | None) -> None:
    chat = _at_company_step(start)
    replies = chat.send(said)
    if target is None:  # two languages named: not a request the bot can be sure of, it answers the step
        assert chat.conv.language == start and chat.conv.answers.get("company")
        return
    assert chat.conv.language == target and chat.conv.language_source == "asked"
    assert replies == [COMPANY[target]]
    assert chat.conv.answers == {"topic": "Reporting automation"} and chat.conv.step == "company"
    chat.send("ABC Lojistik, info@abc.com")
    assert chat.conv.answers["company"] == "ABC Lojistik" and chat.conv.step == "preferred_time"


@pytest.mark.parametrize("said", ["I do not speak English", "English lessons for our team", "Almanca bilmiyorum",
                                  "Deutsche Bahn AG, info@db.de"])
def test_a_language_named_in_an_answer_is_not_a_switch(said: str) -> None:
    chat = _at_company_step("en" if "Deutsch" not in said else "de")
    language = chat.conv.language
    chat.send(said)
    assert chat.conv.language == language and chat.conv.answers.get("company")


def test_the_menu_command_lists_the_flows_languages_and_resumes_where_the_patient_was() -> None:
    chat = _at_company_step("en")
    replies = chat.send("language")
    assert chat.options() == MENU and "Which language shall we continue in?" in replies[0]
    assert chat.send("العربية", choice="lang:ar") == [COMPANY["ar"]]  # no greeting again: the conversation goes on
    assert chat.conv.language == "ar" and chat.conv.answers == {"topic": "Reporting automation"}
    chat.send("Sprache")
    assert chat.options() == MENU
    assert chat.send("3") == [COMPANY["de"]]  # the third button, typed


def test_a_menu_button_pressed_later_still_switches() -> None:
    chat = _at_company_step("tr")
    assert chat.send("English", choice="lang:en") == [COMPANY["en"]]


def test_a_language_the_flow_does_not_speak_opens_the_menu() -> None:
    chat = _at_company_step("en")
    chat.send("French please")
    assert chat.options() == MENU and chat.conv.language == "en"
    assert chat.send("Русский пожалуйста") == [COMPANY["ru"]]


def test_an_answer_to_a_choice_among_languages_is_an_answer() -> None:
    chat = Chat("health_tourism_intake", language="en")
    for said in ("Hi, dental", "Berlin", "10-14 March", "Hans Müller"):
        chat.send(said)
    chat.send("Skip", choice="__skip__")
    assert chat.conv.step == "contact_language"
    chat.send("German please")  # which language the coordinator should use, not the bot
    assert chat.conv.answers["contact_language"] == "de" and chat.conv.language == "en"
    assert chat.conv.answers["travel_dates"] == {"start": "2027-03-10", "end": "2027-03-14"}


def test_a_first_message_asking_for_a_language_starts_in_it() -> None:
    chat = Chat("meeting_request", language="tr")  # the phone number said Turkish
    replies = chat.send("English please")
    assert replies == ["Hello! Happy to help you on behalf of Demo Clinic.", "What would you like to discuss?"]
    assert chat.conv.language == "en"


@pytest.mark.parametrize(("said", "chosen"), [("English please", "en"), ("auf Deutsch", "de"), ("2", "en"),
                                              ("Русский", "ru"), ("türkçe", "tr"), ("عربي", "ar")])
def test_the_language_question_understands_typed_answers(said: str, chosen: str) -> None:
    chat = Chat("health_tourism_intake", language=None)
    chat.send("hair transplant price")
    assert chat.options() == MENU
    chat.send(said)
    assert chat.conv.language == chosen and chat.conv.answers["treatment"] == "hair_transplant"


def test_an_unspoken_language_is_asked_among_the_configured_ones() -> None:
    chat = Chat("health_tourism_intake", language=None)  # detection said Persian: nothing was chosen
    chat.send("سلام، قیمت کاشت مو چقدر است؟")
    assert chat.options() == MENU
    chat.send("فارسی")  # not spoken: asked again
    assert chat.options() == MENU and chat.conv.language is None
    chat.send("English", choice="lang:en")
    assert chat.conv.language == "en" and chat.conv.step == "treatment"
