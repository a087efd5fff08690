"""Typed vendor payload parts: the value types both channels share, and parsing a part at a time.

Webhook bodies are read through pydantic models written from the vendors' documentation
(:mod:`connector.channels.whatsapp_payload`, :mod:`connector.channels.telegram_update`). Every model
derives from :class:`Part`: it keeps fields it does not name (vendors add fields all the time) and
refuses wrong types (a number where text belongs, a string where an object belongs). Text must be
valid Unicode without NUL characters; times must be plausible.

A list of parts (the messages of a WhatsApp batch, say) is validated one item at a time with
:func:`valid_parts`: an item that does not fit is dropped alone, and logged with the fields at fault and
the kind of fault, never with their values (they may be a patient's words or phone number).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainValidator, StringConstraints, ValidationError

log = logging.getLogger("chat2crm.channels")

#: no channel message is older than this (both channels are younger)
EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)
#: how far a channel's clock may run ahead of ours
CLOCK_SKEW = timedelta(days=1)
#: the most problems one dropped part logs
MAX_PROBLEMS = 10

P = TypeVar("P", bound=BaseModel)


class Part(BaseModel):
    """A vendor object: unknown fields are kept, wrong types are refused (strict, no coercion)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, populate_by_name=True)


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON may carry "\ud800": valid JSON, but no text; Redis and every CRM would refuse it
        raise ValueError("text holds an unpaired surrogate") from None
    return value


#: text as a channel sends it: valid Unicode, no NUL character (may be empty)
Text = Annotated[str, AfterValidator(_clean)]
#: an identifier (message id, user id, phone digits, media id): 1 to 256 characters of clean text
Id = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_clean)]


def plausible(moment: datetime, now: datetime | None = None) -> datetime:
    """``moment`` when a channel message can carry it: not before 2009, not more than a day ahead.

    Raises:
        ValueError: the time is outside that range.
    """
    latest = (now or datetime.now(UTC)) + CLOCK_SKEW
    if not EARLIEST <= moment <= latest:
        raise ValueError("timestamp outside any plausible range")
    return moment


def _unix_time(value: Any) -> datetime:
    # WhatsApp sends seconds as a string of digits, Telegram as an integer: both are unambiguous
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        seconds = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise ValueError("a Unix time in seconds expected")
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("timestamp outside any plausible range") from None
    return plausible(moment)


#: a Unix time in seconds (``"1763800000"`` or ``1763800000``) that a message can plausibly carry
UnixTime = Annotated[datetime, PlainValidator(_unix_time)]


def problems(exc: ValidationError) -> list[str]:
    """What was wrong with a part, by field path and kind of fault only: never a value."""
    found = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False)[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in error["loc"]) or "(part)"
        # our own validators' messages name the fault, not the value; pydantic's others are not shown
        found.append(f"{where}: {error['msg'] if error['type'] == 'value_error' else error['type']}")
    return found


def valid_part(model: type[P], item: Any, *, channel: str, part: str) -> P | None:
    """``item`` as a ``model``, or None (logged without its values) when it does not fit."""
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        log.warning("webhook part dropped", extra={"channel": channel, "part": part, "problems": problems(exc)})
        return None


def valid_parts(model: type[P], items: Any, *, channel: str, part: str) -> tuple[list[P], int]:
    """The items of a vendor list that fit ``model``, and how many did not (each dropped alone, logged).

    ``items`` that is not a list at all counts as one part dropped.
    """
    if items is None:
        return [], 0
    if not isinstance(items, list):
        log.warning("webhook part dropped", extra={"channel": channel, "part": part, "problems": ["(list): list_type"]})
        return [], 1
    found: list[P] = []
    for item in items:
        parsed = valid_part(model, item, channel=channel, part=part)
        if parsed is not None:
            found.append(parsed)
    return found, len(items) - len(found)
