"""Free-text answers are checked: a question is passed on to the coordinator and the step asked again; a
greeting, digits or a paragraph is not a name, a city or a company."""

from __future__ import annotations

import pytest

from connector.bot import validate
from connector.bot.flows import ERROR_TEXTS
from tests.unit.test_bot_engine import Chat

LOCATION_PROMPT = {"tr": "Hangi ülke ve şehirde yaşıyorsunuz?", "en": "Which country and city do you live in?",
                   "de": "In welchem Land und welcher Stadt wohnen Sie?", "ar": "في أي بلد ومدينة تقيم؟",
                   "ru": "В какой стране и городе вы живёте?"}
QUESTIONS = [("en", "is the first consultation free?"), ("en", "How much is it"), ("en", "Can I pay by card"),
             ("tr", "ne kadar tutar?"), ("tr", "otel dahil mi"), ("tr", "Kaç gün kalmam gerekiyor"),
             ("de", "Ist die erste Beratung kostenlos?"), ("de", "Wie lange dauert das"), ("de", "Was kostet das"),
             ("ar", "هل الاستشارة الأولى مجانية؟"), ("ar", "كم السعر"), ("ar", "ما هي مدة العملية"),
             ("ru", "Первая консультация бесплатная?"), ("ru", "сколько это стоит"), ("ru", "есть ли скидки")]


def _at(step: str, language: str, flow: str = "health_tourism_intake") -> Chat:
    chat = Chat(flow, language=language)
    chat.send("Hi")
    if flow == "health_tourism_intake":
        chat.send("Dental", choice="dental")
        if step != "location":
            chat.send("Berlin, Germany")
            chat.send("10-17 March")
    assert chat.conv.step == step, chat.conv.step
    return chat


@pytest.mark.parametrize(("language", "question"), QUESTIONS)
def test_a_question_for_a_city_is_passed_on_and_the_step_asked_again(language: str, question: str) -> None:
    chat = _at("location", language)
    replies = chat.send(question)
    assert replies == [chat.flow.texts["question_noted"][language], LOCATION_PROMPT[language]]
    assert "location" not in chat.conv.answers and chat.conv.step == "location"
    assert chat.conv.answers[validate.QUESTIONS_FIELD] == [question]


def test_the_questions_reach_the_lead_with_the_answers() -> None:
    chat = _at("location", "tr")
    chat.send("ne kadar tutar?")
    chat.send("İstanbul, Türkiye")
    assert chat.conv.answers["location"] == "İstanbul, Türkiye"
    for said in ("10-17 Mart", "Ayşe Yılmaz", "Atla"):
        chat.send(said)
    chat.send("Türkçe", choice="tr")
    chat.send("Evet", choice="yes")
    chat.send("Atla")
    chat.send("Atla")
    (lead,) = chat.leads
    assert lead.answers[validate.QUESTIONS_FIELD] == ["ne kadar tutar?"] and lead.request.location == "İstanbul, Türkiye"


def test_questions_count_as_attempts_so_a_person_answers_them_in_the_end() -> None:
    chat = _at("location", "en")
    chat.send("how much is it?")
    chat.send("is the hotel included?")
    assert "passing you to a patient coordinator" in chat.send("what about the flights?")[0]
    assert chat.leads[0].answers[validate.QUESTIONS_FIELD] == [
        "how much is it?", "is the hotel included?", "what about the flights?"]


@pytest.mark.parametrize("answer", ["Merhaba", "hello", "12345", "👍", "yes", "tamam",
                                    "I am not sure yet where we will be living next year because of my job"])
def test_what_cannot_be_a_place_is_asked_again(answer: str) -> None:
    chat = _at("location", "en")
    assert chat.send(answer) == [ERROR_TEXTS["location"]["en"], LOCATION_PROMPT["en"]]
    assert "location" not in chat.conv.answers and validate.QUESTIONS_FIELD not in chat.conv.answers


@pytest.mark.parametrize(("language", "answer"), [
    ("en", "Berlin, Germany"), ("en", "Berlin?"), ("de", "Ich wohne in Wien, Österreich"), ("tr", "İzmir"),
    ("ar", "دبي، الإمارات"), ("ru", "Алматы, Казахстан"), ("en", "Manchester UK"), ("en", "I live in London")])
def test_a_place_is_accepted(language: str, answer: str) -> None:
    chat = _at("location", language)
    chat.send(answer)
    assert chat.conv.answers["location"] == answer


@pytest.mark.parametrize(("language", "answer", "error"), [
    ("en", "Hello", "name"), ("tr", "Merhaba", "name"), ("en", "what is this for?", "question"),
    ("de", "Warum brauchen Sie das?", "question"), ("ru", "Зачем вам моё имя?", "question"),
    ("ar", "لماذا تحتاج اسمي؟", "question")])
def test_a_greeting_or_a_question_is_not_a_name(language: str, answer: str, error: str) -> None:
    chat = _at("name", language)
    replies = chat.send(answer)
    expected = chat.flow.texts["question_noted"] if error == "question" else ERROR_TEXTS["name"]
    assert replies[0] == expected[language] and "name" not in chat.conv.answers


@pytest.mark.parametrize(("answer", "name"), [("Will Smith", "Will Smith"), ("Can Yılmaz", "Can Yılmaz"),
                                              ("kim lee", "Kim Lee"), ("AYŞE YILMAZ", "Ayşe Yılmaz")])
def test_names_that_look_like_question_words_are_names(answer: str, name: str) -> None:
    chat = _at("name", "en")
    chat.send(answer)
    assert chat.conv.answers["name"] == name


def test_a_question_as_the_company_is_passed_on_but_a_plain_answer_is_kept() -> None:
    chat = _at("topic", "en", flow="meeting_request")
    chat.send("Reporting automation")
    assert chat.conv.step == "company"
    replies = chat.send("Do you also work with small companies?")
    assert replies == [chat.flow.texts["question_noted"]["en"], "What is your company's name and your e-mail address?"]
    chat.send("none, I am a freelancer")
    assert chat.conv.answers["company"] == "none, I am a freelancer"


def test_a_note_takes_a_question() -> None:
    step = next(s for s in Chat("health_tourism_intake").flow.steps if s.field == "note")
    assert validate.expectation(step) == "free" and validate.check(step, "Is the hotel included?") is None


def test_a_flow_can_let_a_text_step_take_anything() -> None:
    topic = Chat("meeting_request").flow.step("topic")
    assert topic is not None and validate.check(topic, "Can you automate our reports?") == validate.QUESTION
    assert validate.check(topic.model_copy(update={"expects": "free"}), "Can you automate our reports?") is None


@pytest.mark.parametrize(("text", "question"), [
    ("is the first consultation free?", True), ("ne kadar tutar", True), ("otel dahil mi", True),
    ("هل يوجد فندق", True), ("كم السعر", True), ("есть ли скидки", True), ("Kostet das extra", True),
    ("first consultation free?", True), ("Berlin?", False), ("Berlin", False), ("Can Yılmaz", False),
    ("Will Smith", False), ("I live in London", False), ("Kim Lee", False), ("Muster GmbH", False)])
def test_what_is_a_question(text: str, question: bool) -> None:
    assert validate.is_question(text) is question
