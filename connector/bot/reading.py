"""Reading a patient's answer to one step: typed values, options, places, dates.

A message may also answer steps not asked yet: :func:`take_typed_values` takes the e-mail addresses and
phone numbers written in it for those.

Each step type has its reader (:data:`READERS`); a reader gets the step, the message and its text
(:class:`Reading`) and returns the value, or the kind of error the bot explains before asking again
(a key of :data:`connector.bot.flows.ERROR_TEXTS`). Pure: no I/O, no clock (the time comes in the
:class:`Reading`). Days, times and travel dates may have to be confirmed: that is a conversation, not a
reading (:mod:`connector.bot.when`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from connector.bot import fields as readers
from connector.bot import validate
from connector.bot.flows import Step
from core.models import InboundMessage

#: a reader's answer: the value (None when there is none), and the kind of error (None when it is good)
Answer = tuple[Any, str | None]


@dataclass
class Reading:
    """One answer to read, with what a reader may need besides the message."""

    step: Step
    message: InboundMessage
    #: the message's text, less the typed values already taken from it for other steps
    text: str
    #: the conversation's answers: a date range keeps the patient's own words there too
    answers: dict[str, Any]
    language: str | None
    now: datetime
    zone: ZoneInfo
    #: the conversation's phone number, whose country is the default for a number given without one
    phone: str | None


def norm(text: str | None) -> str:
    """``text`` lower-cased, its punctuation and runs of spaces made single spaces, for comparing words."""
    return re.sub(r"[\s.!?¡¿,;:]+", " ", (text or "").strip().lower()).strip()


def match_option(step: Step, said: str | None, *, loose: bool, only: Any = None) -> Any:
    """The option of ``step`` that ``said`` picks (its id, its number in the list, a title or synonym),
    or None.

    Args:
        loose: also accept a title or synonym found inside a longer text.
        only: look at this option alone.
    """
    if not said:
        return None
    options = [only] if only is not None else step.options
    for option in options:
        if said == option.id:
            return option
    said_norm = norm(said)
    if not loose and said_norm.isdigit() and 1 <= int(said_norm) <= len(step.options) and only is None:
        return step.options[int(said_norm) - 1]  # answering a numbered list
    for option in options:
        titles = {norm(t) for t in option.title.values()}
        synonyms = {norm(s) for words in option.synonyms.values() for s in words}
        if said_norm in titles or said_norm in synonyms:
            return option
        inside = any(s and re.search(rf"(?<!\w){re.escape(s)}", said_norm) for s in synonyms | titles if len(s) > 2)
        if (loose or len(said_norm) > 3) and inside:
            return option
    return None


def take_typed_values(text: str, steps: Iterable[Step], answers: dict[str, Any], *, phone: str | None,
                      exclude: str | None = None) -> str:
    """Fill the unanswered e-mail and phone steps among ``steps`` (but ``exclude``) with the addresses and
    numbers written in ``text``; return what is left of the text.

    Args:
        answers: the conversation's answers, filled in place.
        phone: the conversation's phone number, whose country is the default for a number without one.
    """
    remaining = text
    for step in steps:
        if step.field == exclude or step.field in answers:
            continue
        if step.type == "email":
            value, _ = readers.read_email(remaining)
            match = readers.EMAIL_IN_TEXT.search(remaining)
            if value and match:
                answers[step.field] = value
                remaining = readers.remove_spans(remaining, match.group(0))
        elif step.type == "phone":
            match = readers.PHONE_IN_TEXT.search(remaining)
            value, _ = readers.read_phone(remaining, default_region=readers.phone_region(phone))
            if value and match:
                answers[step.field] = value
                remaining = readers.remove_spans(remaining, match.group(0))
    return remaining


def format_when(value: str, language: str) -> str:
    """A date (and time) as a short button title in ``language``: "Çar 12.03 11:00"."""
    moment = datetime.fromisoformat(value)
    day = moment.strftime("%d.%m")
    names = {"tr": ["Pzt", "Sal", "Çar", "Per", "Cum", "Cmt", "Paz"],
             "de": ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"],
             "ru": ["Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"],
             "ar": ["الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد"]}
    weekday = names.get(language, ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])[moment.weekday()]
    clock = f" {moment.strftime('%H:%M')}" if "T" in value else ""
    return f"{weekday} {day}{clock}"


def read_answer(reading: Reading) -> Answer:
    """The value of the answer in ``reading``, by its step's type (any text, for a type with no reader).

    A written answer to a free-text step is first checked (:func:`connector.bot.validate.check`): a question
    is kept with the answers for the coordinator and answered with the ``question`` error; an answer that
    cannot be what the step expects, with the step's error.
    """
    if reading.message.kind == "text" and reading.message.location is None:
        problem = validate.check(reading.step, reading.text)
        if problem == validate.QUESTION:
            validate.keep_question(reading.answers, reading.message.text or reading.text)
        if problem is not None:
            return None, problem
    reader = READERS.get(reading.step.type)
    if reader is not None:
        return reader(reading)
    text = reading.text.strip()
    return text or None, None if text else "text"


def _text(reading: Reading) -> Answer:
    cleaned = reading.text.strip()
    return (cleaned, None) if len(cleaned) >= 2 else (None, "text")


def _phone(reading: Reading) -> Answer:
    message, region = reading.message, readers.phone_region(reading.phone)
    if message.kind == "contact" and message.contacts and message.contacts[0].phones:
        return readers.read_phone(message.contacts[0].phones[0], default_region=region)
    return readers.read_phone(reading.text, default_region=region)


def _yes_no(reading: Reading) -> Answer:
    if reading.message.choice_id in ("yes", "no"):
        return reading.message.choice_id == "yes", None
    return readers.read_yes_no(reading.text)


def _choice(reading: Reading) -> Answer:
    option = match_option(reading.step, reading.message.choice_id or reading.text, loose=False)
    return (option.id, None) if option else (None, "choice")


def _multi_choice(reading: Reading) -> Answer:
    step, chosen = reading.step, reading.message.choice_id
    picked = [o.id for o in step.options if match_option(step, reading.text, loose=True, only=o)]
    if chosen:
        picked = [chosen] if any(o.id == chosen for o in step.options) else picked
    return (picked, None) if picked else (None, "choice")


def _location(reading: Reading) -> Answer:
    if reading.message.location is not None:
        loc = reading.message.location
        return loc.name or loc.address or f"{loc.latitude:.5f},{loc.longitude:.5f}", None
    cleaned = reading.text.strip()
    return (cleaned, None) if len(cleaned) >= 2 else (None, "location")


def _media(reading: Reading) -> Answer:
    if reading.message.media:
        return [m.media_id for m in reading.message.media], None
    return None, "media"


#: the reader of each step type (``datetime`` and ``date_range`` are the engine's: they may ask back, see
#: :mod:`connector.bot.when`)
READERS: dict[str, Callable[[Reading], Answer]] = {
    "text": _text,
    "note": _text,
    "name": lambda reading: readers.read_name(reading.text),
    "email": lambda reading: readers.read_email(reading.text),
    "phone": _phone,
    "number": lambda reading: readers.read_number(reading.text, minimum=reading.step.min, maximum=reading.step.max),
    "yes_no": _yes_no,
    "consent": _yes_no,
    "choice": _choice,
    "multi_choice": _multi_choice,
    "location": _location,
    "media": _media,
}
