"""Patients' words for a day and time → an ISO 8601 time in the clinic's zone.

General date parsers misread what patients actually write: bare hours ("saat 3", "в 10"), weekday
names with suffixes ("Çarşamba'ya"), Arabic forms ("الأربعاء"), month names without diacritics
("subat"), in Russian cases ("марта") or in the Levantine series ("آذار"), and they happily return a
past weekday. So this module reads the common shapes itself, in Turkish, English, German, Arabic and
Russian (the words are in :mod:`connector.bot.calendar_words`, found by :mod:`connector.bot.date_scan`):

- a day: today / tomorrow / the day after, "in 3 days", a weekday (the coming one; "haftaya" or "next
  week" the one of next week), or an explicit date (``14.03.``, ``14/3``, ``14.03.2027``, ``12 Aralık``,
  ``December 12``, ``12 марта``, ``١٢ آذار``); a date without a year is the next one to come;
- a time: ``11:00``, ``11.30``, ``11h``, ``2pm``, ``saat 3``, ``11 Uhr``, ``в 10``, ``الساعة 10``, ``10 buçuk``,
  ``halb 11``, with morning/afternoon words; a bare hour from 1 to 7 with no such word is read as the
  afternoon (clinics work 8:00–19:00: nobody books 3 at night), and said so in ``assumptions``; a part of
  the day with no hour ("yarın öğleden sonra") is kept as ``part_of_day`` and gives no time.

What stays ambiguous is asked back, never guessed: a time with no day, or two different days, carry
``candidates`` to choose from; "next Tuesday" said in the week of that Tuesday is either; a slashed date
an English speaker may have written either way round (``3/4``) is both. When a weekday and an explicit
date both appear, the date wins; if they disagree ("Monday 12 March", a Friday) the result carries the
date in ``confirm``, for the bot to confirm with a yes or a no.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from connector.bot.date_scan import Scan, resolve, scan, weekday_dates


@dataclass
class WhenResult:
    """What the patient's words say about a day and time.

    Attributes:
        value: ISO 8601 with the zone's offset (``2026-11-25T11:00:00+03:00``), or a date
            (``2026-11-25``) when no time was given; None when nothing was understood, or when the words
            must be confirmed first.
        text: the patient's own words.
        ambiguous: the words fit several times; ``candidates`` lists them (ISO) to choose from.
        has_time: a time of day was given.
        assumptions: readings made without the patient saying so (for the transcript).
        confirm: an explicit date (and time) that a weekday or a relative day in the same words contradicts:
            to confirm with the patient before it is taken.
        part_of_day: ``morning``, ``afternoon`` or ``night`` when said without an hour.
        time_only: a time with no day at all ("11:00", "saat 3"): ``candidates`` are today's and tomorrow's.
    """

    value: str | None
    text: str
    ambiguous: bool = False
    candidates: list[str] = field(default_factory=list)
    has_time: bool = False
    assumptions: list[str] = field(default_factory=list)
    confirm: str | None = None
    part_of_day: str | None = None
    time_only: bool = False


def warm_dates(languages: list[str]) -> None:
    """Compile the word tables and patterns once, before the job processes are forked."""
    now = datetime.now(UTC)
    for language in [*languages, None]:
        parse_when("12 December 10:00", language=language, now=now, zone=ZoneInfo("UTC"))


def parse_when(text: str, *, language: str | None, now: datetime, zone: ZoneInfo) -> WhenResult:
    """Read a day and time from the patient's words.

    Args:
        text: what the patient wrote.
        language: the conversation's language, if known (an English speaker's ``3/4`` may be the 4th of March).
        now: the current time (timezone-aware).
        zone: the clinic's time zone; the result is in it.

    Returns:
        A :class:`WhenResult`; ``value`` is None when nothing was understood or something must be asked.
    """
    local_now = now.astimezone(zone)
    today = local_now.date()
    found = scan(text, language=language)
    clock = found.clock
    explicit: list[date] = []
    for mention in found.dates:
        for swapped in (False, True) if mention.swapped else (False,):
            day = resolve(mention, today, swapped=swapped)
            if day is not None and day not in explicit:
                explicit.append(day)
    relative = [today + timedelta(days=days) for days, _ in found.relative]
    if found.dates and not explicit:
        return _result(found, text)  # a date that does not exist, or is past
    if len(explicit) > 1:
        return _result(found, text, candidates=[_iso(d, clock, zone) for d in explicit])
    if explicit:
        day = explicit[0]
        agrees = all(day.weekday() == weekday for weekday, _, _ in found.weekdays) and all(
            day == other for other in relative)
        dotted = found.dates[0].dotted_time
        if not agrees and clock is None and dotted is not None and len(found.dates) == 1:
            found.dates, found.clock = [], dotted  # "cuma 10.10": Friday at 10:10, not the 10th of October
            return _without_date(found, text, today, local_now, zone)
        if clock is not None and datetime.combine(day, clock, zone) < local_now:
            return _result(found, text)
        if not agrees:  # "Monday 12 March", a Friday: the date wins, once the patient says yes
            return _result(found, text, confirm=_iso(day, clock, zone))
        return _result(found, text, _iso(day, clock, zone))
    return _without_date(found, text, today, local_now, zone)


def _without_date(found: Scan, text: str, today: date, local_now: datetime, zone: ZoneInfo) -> WhenResult:
    """The day said by relative words and weekdays alone (or by nothing: a time of today or tomorrow)."""
    clock = found.clock
    days: list[date] = []
    for options in [[today + timedelta(days=n)] for n, _ in found.relative] + weekday_dates(
            found, today, clock, local_now, zone):
        days.extend(d for d in options if d not in days)
    if len(days) > 1:
        return _result(found, text, candidates=[_iso(d, clock, zone) for d in days])
    if days:
        if clock is not None and datetime.combine(days[0], clock, zone) < local_now:
            return _result(found, text)  # in the past: ask again
        return _result(found, text, _iso(days[0], clock, zone))
    if clock is not None:
        first = today if datetime.combine(today, clock, zone) > local_now else today + timedelta(days=1)
        candidates = [_iso(first, clock, zone), _iso(first + timedelta(days=1), clock, zone)]
        return _result(found, text, candidates=candidates, time_only=True)
    return WhenResult(None, text)


def _result(found: Scan, text: str, value: str | None = None, *, candidates: list[str] | None = None,
            confirm: str | None = None, time_only: bool = False) -> WhenResult:
    return WhenResult(value, text, ambiguous=bool(candidates), candidates=candidates or [],
                      has_time=found.clock is not None, assumptions=found.assumptions, confirm=confirm,
                      part_of_day=found.part, time_only=time_only)


def _iso(day: date, clock: time | None, zone: ZoneInfo) -> str:
    if clock is None:
        return day.isoformat()
    return datetime.combine(day, clock, zone).isoformat()


def parse_date_range(text: str, *, language: str | None, now: datetime, zone: ZoneInfo) -> tuple[str, str] | None:
    """A travel window ("10-17 Mart", "12.03 – 19.03", "с 10 по 14 марта") as two ISO dates; None otherwise.

    :func:`connector.bot.ranges.read_range` says more (a single day, a date to confirm); this is its plain form.
    """
    from connector.bot.ranges import read_range  # the range reader builds on this module

    found = read_range(text, language=language, now=now, zone=zone)
    start, end = (found.value or {}).get("start"), (found.value or {}).get("end")
    return (start, end) if start and end else None
