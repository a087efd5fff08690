"""Days, times and travel dates as a short conversation: the answer is taken, or what is not sure is asked back.

The engine hands here the answer to a ``datetime`` or ``date_range`` step. The words are read by
:mod:`connector.bot.datetimes` and :mod:`connector.bot.ranges`; what they leave open becomes a question,
kept in the conversation's ``pending["confirm"]`` until the patient answers it:

- several readings (a time with no day, two days, "next Tuesday", ``3/4``): a button for each
  (``when:0``, ``when:1``…), with the flow's ``confirm_time`` text;
- an explicit date its weekday contradicts ("Monday 12 March", a Friday): the flow's ``confirm_date``
  text ("Do you mean Fri 12.03?") with Yes (``when:0``) and No (``when:no``); a typed yes or no answers
  it too, and a No asks the step's question again;
- a day without the time a step requires: the day is kept, and a time alone in the next message
  completes it ("Mittwoch", then "11 Uhr").

Any other message is read afresh. Pure: the time and zone come from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from connector.bot.datetimes import parse_when
from connector.bot.fields import read_yes_no
from connector.bot.flows import Step, Texts
from connector.bot.ranges import read_range
from connector.bot.reading import format_when
from core.models import InboundMessage, Option

CONFIRM_PREFIX = "when:"
#: the No button of a yes/no confirmation
DECLINE = f"{CONFIRM_PREFIX}no"
#: the confirmation of a date, for flows that do not word it themselves (``{date}``: the date, with its weekday)
CONFIRM_DATE: Texts = {"tr": "{date} mi demek istediniz?", "en": "Do you mean {date}?", "de": "Meinen Sie {date}?",
                       "ar": "هل تقصد {date}؟", "ru": "Вы имеете в виду {date}?"}


@dataclass
class Question:
    """What the bot asks back: the flow text (``confirm_time`` or ``confirm_date``), its ``{date}``, the buttons,
    and what to keep in ``pending["confirm"]`` until the answer."""

    text_key: str
    shown: str
    options: list[Option]
    pending: dict[str, Any]


@dataclass
class Answer:
    """The outcome of one message: a value (with the patient's words), an error, a question, or a No."""

    value: Any = None
    words: str = ""
    error: str | None = None
    question: Question | None = None
    declined: bool = False
    #: kept in ``pending["confirm"]`` with an error (a day waiting for its time)
    keep: dict[str, Any] = field(default_factory=dict)


def settle(pending: dict[str, Any] | None, message: InboundMessage) -> Answer | None:
    """The answer to the question asked back, when ``message`` gives one (a button, a typed yes or no)."""
    if not pending or "candidates" not in pending:
        return None
    candidates, choice = pending["candidates"], message.choice_id or ""
    if choice == DECLINE:
        return Answer(declined=True)
    if choice.startswith(CONFIRM_PREFIX):
        index = choice[len(CONFIRM_PREFIX):]
        if index.isdigit() and int(index) < len(candidates):
            return Answer(candidates[int(index)], pending.get("text", ""))
        return None
    if pending.get("yes_no") and message.kind == "text" and message.text and not any(
            c.isdigit() for c in message.text):  # "no, the 14th at 10": read afresh
        yes, _ = read_yes_no(message.text)
        if yes is not None:
            return Answer(candidates[0], pending.get("text", "")) if yes else Answer(declined=True)
    return None


def read(step: Step, text: str, *, pending: dict[str, Any] | None, language: str | None, speaking: str,
         yes_no: tuple[str, str], now: datetime, zone: ZoneInfo) -> Answer:
    """Read the answer to ``step`` from ``text``.

    Args:
        pending: the question asked back before this message, if any (a kept day is completed by a time).
        language: the conversation's language (None: every language's words are tried).
        speaking: the language the bot speaks (button titles).
        yes_no: the titles of the Yes and No buttons in that language.
    """
    words = text.strip()
    if step.type == "date_range":
        found = read_range(text, language=language, now=now, zone=zone)
        if found.value is not None:
            return Answer(found.value, words)
        if found.confirm is not None:
            return _confirm(found.confirm, words, speaking, yes_no)
        return Answer(error="date_range")
    when = parse_when(text, language=language, now=now, zone=zone)
    day = (pending or {}).get("day")
    if day and when.time_only:  # "Mittwoch" was kept; "11 Uhr" completes it
        clock = datetime.fromisoformat(when.candidates[0]).timetz()
        moment = datetime.combine(datetime.fromisoformat(day).date(), clock)
        if moment > now:
            return Answer(moment.isoformat(), f"{pending.get('text', '')} {words}".strip() if pending else words)
    if when.confirm is not None:
        return _confirm(when.confirm, words, speaking, yes_no)
    if when.ambiguous and when.candidates:
        options = [Option(id=f"{CONFIRM_PREFIX}{i}", title=format_when(value, speaking))
                   for i, value in enumerate(when.candidates[:3])]
        return Answer(question=Question("confirm_time", "", options,
                                        {"text": words, "candidates": when.candidates[:3]}))
    if not when.value:
        return Answer(error="datetime")
    return finish(step, when.value, words)


def finish(step: Step, value: Any, words: str) -> Answer:
    """A value taken, unless the step wants a time and only a day was given: then the day waits for it."""
    if step.type == "datetime" and step.require_time and isinstance(value, str) and "T" not in value:
        return Answer(error="time", keep={"day": value, "text": words})
    return Answer(value, words)


def _confirm(value: Any, words: str, speaking: str, yes_no: tuple[str, str]) -> Answer:
    if isinstance(value, dict):
        shown = format_when(value["start"], speaking)
        shown += f" – {format_when(value['end'], speaking)}" if value.get("end") else ""
    else:
        shown = format_when(value, speaking)
    options = [Option(id=f"{CONFIRM_PREFIX}0", title=yes_no[0]), Option(id=DECLINE, title=yes_no[1])]
    return Answer(question=Question("confirm_date", shown, options,
                                    {"text": words, "candidates": [value], "yes_no": True}))
