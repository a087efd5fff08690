"""Whether a written answer can be what a free-text step asks for (pure).

A patient asked for their city may answer "is the first consultation free?" or "ne kadar tutar?": that is a
question for the clinic, not a city. :func:`check` tells such a question (a question mark, or an
interrogative word of one of the bot's languages) and an answer that cannot be what the step expects (a
greeting as a name, a paragraph as a city, digits as a country) from a plausible one. A question is passed
on: it is kept with the answers (:data:`QUESTIONS_FIELD`, which the CRM note lists), the patient is told so
and the step is asked again.

What a step expects is its ``expects:`` in the flow, or follows from its type and field name
(:func:`expectation`). A ``note`` expects anything: a question is a fine note.
"""

from __future__ import annotations

from typing import Any

from connector.bot import fields
from connector.bot.commands import fold
from connector.bot.flows import ERROR_TEXTS, Flow, Step, Texts

#: the error kind of a question asked instead of an answer
QUESTION = "question"
#: where the patient's questions are kept among the answers (the CRM note lists every answer)
QUESTIONS_FIELD = "patient_questions"

_BY_FIELD = {"city": "city", "town": "city", "country": "country", "company": "company", "organization": "company",
             "organisation": "company", "employer": "company", "location": "place", "place": "place",
             "address": "place", "residence": "place"}
#: the error kind each expectation is answered with when the answer is not plausible
_ERRORS = {"place": "location", "city": "location", "country": "location", "name": "name", "company": "text",
           "text": "text"}
#: most words a plausible answer has
_MOST_WORDS = {"place": 8, "city": 6, "country": 5, "name": 6, "company": 12}

#: interrogative words that open a question (folded: see :func:`connector.bot.commands.fold`)
_OPENERS = {
    # en
    "what", "whats", "how", "hows", "why", "when", "where", "wheres", "who", "whos", "which", "whom", "whose",
    # de
    "was", "wie", "warum", "wieso", "weshalb", "weswegen", "wo", "woher", "wohin", "wann", "wer", "wen", "wem",
    "welche", "welcher", "welches", "wieviel", "wieviele",
    # ru (й folds to и)
    "что", "как", "почему", "зачем", "где", "куда", "откуда", "когда", "кто", "какои", "какая", "какие", "какое",
    "сколько", "можно", "разве",
    # ar (ى folds to ي)
    "ما", "ماذا", "كيف", "لماذا", "متي", "اين", "كم", "هل", "اي", "ليش", "وين", "شو", "ايش", "قديش", "بكم", "مين",
    # tr
    "ne", "neden", "niye", "nicin", "nasil", "nerede", "nereden", "nereye", "hangi", "kac",
}
#: interrogative words that make a question wherever they stand (Turkish particles and question words, Arabic
#: هل/كم, Russian ли)
_ANYWHERE = {"mi", "mu", "misin", "misiniz", "miyim", "miyiz", "midir", "mudur", "musun", "musunuz", "muyum",
             "nedir", "nasil", "neden", "kac", "kaca", "hangi", "nerede", "ne", "هل", "كم", "ماذا", "لماذا", "ли",
             "сколько"}
#: verbs that open a question when a pronoun or article follows ("is the…", "can I…", "ist die…")
_AUXILIARIES = {"is", "are", "can", "could", "do", "does", "did", "will", "would", "should", "may", "have", "has",
                "isnt", "arent", "cant", "wont", "dont", "doesnt", "ist", "sind", "kann", "kannst", "konnen", "konnte",
                "konnten", "gibt", "hat", "haben", "habt", "muss", "mussen", "darf", "durfen", "wird", "werden",
                "soll", "sollte", "kostet", "bekomme", "bekommt"}
_PRONOUNS = {"i", "you", "we", "it", "the", "there", "this", "that", "my", "your", "a", "an", "they", "he", "she",
             "es", "die", "der", "das", "ich", "sie", "man", "ein", "eine", "du", "wir", "er", "ihr", "mein", "meine"}
#: what greets or thanks, never a name or a place
_GREETINGS = {fold(g) for g in (
    "hi", "hello", "hey", "hi there", "hello there", "good morning", "good afternoon", "good evening", "thanks",
    "thank you", "thx", "ok", "okay", "test", "merhaba", "mrb", "slm", "selam", "selamlar", "selamün aleyküm",
    "günaydın", "iyi günler", "teşekkürler", "teşekkür ederim", "sağol", "sağolun", "tamam", "peki", "hallo",
    "guten tag", "guten morgen", "moin", "servus", "danke", "danke schön", "vielen dank", "gut", "привет",
    "здравствуйте", "добрый день", "доброе утро", "спасибо", "хорошо", "ладно", "مرحبا", "السلام عليكم", "اهلا",
    "أهلا وسهلا", "شكرا", "حسنا", "تمام")}
_YES_NO = {fold(w) for w in fields.YES | fields.NO} - {""}


def expectation(step: Step) -> str | None:
    """What a written answer to ``step`` must look like, or None when the step is not free text."""
    if step.expects is not None:
        return step.expects
    if step.type == "note":
        return "free"
    if step.type == "location":
        return _BY_FIELD.get(step.field, "place")
    if step.type == "name":
        return "name"
    if step.type == "text":
        return _BY_FIELD.get(step.field, "text")
    return None


def is_question(text: str) -> bool:
    """Whether ``text`` asks something (a question mark, or an interrogative word of the bot's languages)."""
    words = fold(text).split()
    if not words:
        return False
    if words[0] in _OPENERS or set(words) & _ANYWHERE:
        return True
    if words[0] in _AUXILIARIES and len(words) > 1 and words[1] in _PRONOUNS:
        return True
    # "Berlin?" is an unsure answer, "first consultation free?" a question
    return len(words) > 1 and any(mark in text for mark in "?؟¿")


def check(step: Step, text: str) -> str | None:
    """Why ``text`` cannot be the answer to ``step``: :data:`QUESTION`, or the error kind to explain; None
    when it is plausible (or the step takes anything)."""
    expected = expectation(step)
    if expected in (None, "free"):
        return None
    if is_question(text):
        return QUESTION
    folded = fold(text)
    words = folded.split()
    if not words:
        return None  # nothing written: the step's own reader says what is missing
    error = _ERRORS[expected]
    if folded in _GREETINGS or (expected != "company" and folded in _YES_NO):
        return error
    if len(words) > _MOST_WORDS.get(expected, 10 ** 6):
        return error
    if expected in ("place", "city", "country", "name") and sum(ch.isalpha() for ch in text) < 2:
        return error  # digits, emoji, punctuation
    return None


def keep_question(answers: dict[str, Any], text: str) -> None:
    """Keep a question the patient asked among ``answers``, once, for the coordinator."""
    asked: list[str] = answers.setdefault(QUESTIONS_FIELD, [])
    if text.strip() and text.strip() not in asked:
        asked.append(text.strip())


def error_texts(flow: Flow, step: Step, error: str) -> Texts:
    """The texts (by language) that explain ``error`` before ``step`` is asked again: for a question, the
    flow's ``question_noted`` text; otherwise the step's ``error:`` text, or the bot's own for the kind."""
    if error == QUESTION:
        return flow.texts.get("question_noted") or ERROR_TEXTS[QUESTION]
    return step.error or ERROR_TEXTS.get(error, ERROR_TEXTS["text"])
