"""Patients' words for a day and time → an ISO 8601 time in the clinic's zone.

``dateparser`` alone misreads what patients actually write: bare hours ("saat 3", "в 10"),
weekday names with suffixes ("Çarşamba'ya", "Mittwochs"), Arabic forms ("الأربعاء"), and it
happily returns a past weekday. So this module reads the common shapes itself, in Turkish,
English, German, Arabic and Russian:

- a day: today / tomorrow / the day after, a weekday (the next one; "next <weekday>" skips the
  coming one when it is this week), or an explicit date (``12.12``, ``12/12/2026``, ``12 Aralık``,
  ``December 12``; month names through dateparser);
- a time: ``11:00``, ``11.30``, ``11h``, ``2pm``, ``saat 3``, ``11 Uhr``, ``в 10``, ``الساعة 10``, with
  morning/afternoon words; a bare hour from 1 to 7 with no such word is read as the afternoon
  (clinics work 8:00–19:00: nobody books 3 at night), and said so in ``assumptions``.

When the words stay ambiguous (a time with no day, two different days) the result carries
``candidates`` and the bot confirms with buttons instead of guessing. Anything this module does
not recognise goes to dateparser (future preferred), and is accepted only if it lies ahead.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS: dict[str, list[str]] = {
    # index 0 = Monday; stems match suffixed forms (Çarşamba'ya, Mittwochs, среду)
    "tr": ["pazartesi", "salı", "çarşamba", "perşembe", "cuma", "cumartesi", "pazar"],
    "en": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "de": ["montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag"],
    "ru": ["понедельник", "вторник", "сред", "четверг", "пятниц", "суббот", "воскресень"],
    "ar": ["الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد"],
}
_WEEKDAY_EXTRA = {"en": {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4,
                         "sat": 5, "sun": 6},
                  "ar": {"الإثنين": 0, "الاربعاء": 2, "الاحد": 6, "الثلاثا": 1},
                  "ru": {"понедельн": 0, "вторн": 1}}
# Turkish "cumartesi" must win over "cuma": try longer names first.
_WEEKDAY_TABLE = sorted(
    [(name, i) for names in WEEKDAYS.values() for i, name in enumerate(names)]
    + [(name, i) for extra in _WEEKDAY_EXTRA.values() for name, i in extra.items()],
    key=lambda item: -len(item[0]),
)
RELATIVE = [
    (["öbür gün", "yarından sonra", "day after tomorrow", "übermorgen", "послезавтра", "بعد غد"], 2),
    (["yarın", "tomorrow", "morgen", "завтра", "غدا", "غداً", "بكرة", "بكره"], 1),
    (["bugün", "today", "heute", "сегодня", "اليوم"], 0),
]
PM_WORDS = ["öğleden sonra", "öğlen", "akşam", "afternoon", "evening", "pm", "p.m.", "nachmittag", "nachmittags",
            "abends", "abend",
            "после обеда", "днём", "днем", "вечера", "вечером", "مساء", "مساءً", "بعد الظهر", "ظهرا", "ظهراً"]
AM_WORDS = ["sabah", "öğleden önce", "morning", "am", "a.m.", "morgens", "vormittag", "vormittags", "früh", "утра", "утром",
            "صباحا", "صباحاً", "صباح"]
_TIME_HHMM = re.compile(r"(?<!\d)([01]?\d|2[0-3])[:.](\d{2})(?!\d)")
_TIME_AMPM = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s*(?:[:.](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)", re.I)
_TIME_WORD = re.compile(
    r"(?:saat|at|um|в|الساعة|ساعة)\s*(\d{1,2})(?:[:.](\d{2}))?(?!\d)|(?<!\d)(\d{1,2})(?:[:.](\d{2}))?\s*(?:uhr|h\b|'?(?:de|da|te|ta)\b|часов|часа|час)",
    re.I,
)
_DATE_NUMERIC = re.compile(r"(?<![\d:])(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?(?![\d:])")
_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


@dataclass
class WhenResult:
    """What the patient's words say about a day and time.

    Attributes:
        value: ISO 8601 with the zone's offset (``2026-11-25T11:00:00+03:00``), or a date
            (``2026-11-25``) when no time was given; None when nothing was understood.
        text: the patient's own words.
        ambiguous: the words fit several times; ``candidates`` lists them (ISO) to confirm.
        has_time: a time of day was given.
        assumptions: readings made without the patient saying so (for the transcript).
    """

    value: str | None
    text: str
    ambiguous: bool = False
    candidates: list[str] = field(default_factory=list)
    has_time: bool = False
    assumptions: list[str] = field(default_factory=list)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_ARABIC_DIGITS)
    # Turkish dotted capital I lower-cases to i + combining dot; fold it back.
    return text.replace("İ", "i").replace("I", "ı").lower().replace("i̇", "i")


def _find_weekdays(text: str) -> list[tuple[int, int]]:
    """(weekday, position) of every weekday name in ``text`` (Arabic prefixes "ال"/"يوم" allowed)."""
    found: list[tuple[int, int]] = []
    taken: list[range] = []
    for name, index in _WEEKDAY_TABLE:
        for match in re.finditer(re.escape(name), text):
            start = match.start()
            if any(start in r for r in taken):
                continue
            before = text[start - 1] if start else " "
            is_latin = name.isascii()
            if is_latin and len(name) <= 4:
                # short English forms must stand alone ("wed", "fri.")
                after = text[match.end(): match.end() + 1]
                if before.isalpha() or (after.isalpha()):
                    continue
            elif before.isalpha() and not ("\u0600" <= before <= "\u06ff"):
                continue
            found.append((index, start))
            taken.append(range(start, match.end()))
    return sorted(found, key=lambda f: f[1])


def _find_time(text: str) -> tuple[time | None, list[str]]:
    assumptions: list[str] = []
    pm = any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text) for w in PM_WORDS)
    am = any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text) for w in AM_WORDS)
    hour: int | None = None
    minute = 0
    match = _TIME_AMPM.search(text)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        marker = match.group(3).lower().replace(".", "")
        hour = (hour % 12) + (12 if marker == "pm" else 0)
        return time(hour, minute), assumptions
    match = _TIME_HHMM.search(text)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
    else:
        match = _TIME_WORD.search(text)
        if match:
            hour = int(match.group(1) or match.group(3))
            minute = int(match.group(2) or match.group(4) or 0)
    if hour is None and (am or pm):
        bare = re.search(r"(?<![\d:./])(\d{1,2})(?![\d:./])(?!\s*(?:[./]|ocak|şubat|mart|nisan|mayıs|haziran|temmuz|"
                         r"ağustos|eylül|ekim|kasım|aralık))", text)
        if bare:
            hour = int(bare.group(1))
    if hour is None or hour > 23 or minute > 59:
        return None, assumptions
    if pm and hour < 12:
        hour += 12
    elif am and hour == 12:
        hour = 0
    elif not am and not pm and 1 <= hour <= 7:
        hour += 12
        assumptions.append("bare hour read as afternoon (clinic hours)")
    return time(hour, minute), assumptions


def _find_relative(text: str) -> int | None:
    for words, days in RELATIVE:
        for word in words:
            if re.search(rf"(?<!\w){re.escape(word)}", text):
                return days
    return None


def _find_date(text: str, today: date, language: str | None) -> date | None:
    match = _DATE_NUMERIC.search(text)
    if match:
        day, month = int(match.group(1)), int(match.group(2))
        year = int(match.group(3)) if match.group(3) else today.year
        if year < 100:
            year += 2000
        try:
            found = date(year, month, day)
        except ValueError:
            return None
        if not match.group(3) and found < today:
            found = found.replace(year=today.year + 1)
        return found
    return None


def _month_name_date(text: str, now: datetime, language: str | None) -> date | None:
    """A date written with a month name ("12 Aralık", "December 12", "12. Dezember")."""
    # imported on first use: the date parser takes a fifth of a second to import and more to load its
    # languages, which the web process and the CLI never need (the worker warms it up before forking)
    import dateparser.search

    languages = [language] if language else ["tr", "en", "de", "ru", "ar"]
    try:
        found = dateparser.search.search_dates(
            text, languages=languages,
            settings={"PREFER_DATES_FROM": "future", "RELATIVE_BASE": now.replace(tzinfo=None),
                      "REQUIRE_PARTS": ["day", "month"], "STRICT_PARSING": False})
    except Exception:  # dateparser raises assorted errors on odd input; the bot then asks again
        return None
    for _words, value in found or []:
        candidate = value.date()
        if candidate >= now.date():
            return candidate
    return None


def warm_dates(languages: list[str]) -> None:
    """Load the date parser's data and compile its patterns for ``languages`` (and for the list tried when
    a conversation's language is unknown) once, before the job processes are forked, instead of on
    each process's first date answer."""
    now = datetime.now(UTC)
    for language in [*languages, None]:
        _month_name_date("12 December", now, language)


def parse_when(text: str, *, language: str | None, now: datetime, zone: ZoneInfo) -> WhenResult:
    """Read a day and time from the patient's words.

    Args:
        text: what the patient wrote.
        language: the conversation's language (helps dateparser with month names), if known.
        now: the current time (timezone-aware).
        zone: the clinic's time zone; the result is in it.

    Returns:
        A :class:`WhenResult`; ``value`` is None when nothing was understood.
    """
    local_now = now.astimezone(zone)
    today = local_now.date()
    norm = _normalise(text)
    clock, assumptions = _find_time(norm)
    days: list[date] = []
    relative = _find_relative(norm)
    if relative is not None:
        days.append(today + timedelta(days=relative))
    next_week = _says_next_week(norm)
    for weekday, _pos in _find_weekdays(norm):
        ahead = (weekday - today.weekday()) % 7
        if ahead == 0 and (clock is None or datetime.combine(today, clock, zone) <= local_now):
            ahead = 7
        candidate = today + timedelta(days=ahead)
        if next_week and candidate.isocalendar()[1] == today.isocalendar()[1]:
            candidate += timedelta(days=7)  # "haftaya çarşamba": Wednesday of next week
        if candidate not in days:
            days.append(candidate)
    explicit = _find_date(norm, today, language)
    if explicit is None and not days:
        # strip times first: dateparser reads "saat 11" in "12 Aralık saat 11" as a year
        dateless = _TIME_AMPM.sub(" ", _TIME_WORD.sub(" ", _TIME_HHMM.sub(" ", norm)))
        explicit = _month_name_date(dateless, local_now, language)
    if explicit is not None and explicit not in days:
        days.append(explicit)

    if len(days) > 1:
        values = [_iso(d, clock, zone) for d in days]
        return WhenResult(None, text, ambiguous=True, candidates=values, has_time=clock is not None,
                          assumptions=assumptions)
    if days:
        day = days[0]
        if clock is not None and datetime.combine(day, clock, zone) < local_now:
            return WhenResult(None, text, has_time=True)  # in the past: ask again
        return WhenResult(_iso(day, clock, zone), text, has_time=clock is not None, assumptions=assumptions)
    if clock is not None:
        first = today if datetime.combine(today, clock, zone) > local_now else today + timedelta(days=1)
        candidates = [_iso(first, clock, zone), _iso(first + timedelta(days=1), clock, zone)]
        return WhenResult(None, text, ambiguous=True, candidates=candidates, has_time=True, assumptions=assumptions)
    return WhenResult(None, text)


def _says_next_week(norm: str) -> bool:
    return any(w in norm for w in ("haftaya", "gelecek hafta", "önümüzdeki hafta", "next week", "nächste woche",
                                   "nächsten woche", "kommende woche", "следующей неделе", "на следующей неделе",
                                   "الأسبوع القادم", "الاسبوع القادم", "الأسبوع المقبل"))


def _iso(day: date, clock: time | None, zone: ZoneInfo) -> str:
    if clock is None:
        return day.isoformat()
    return datetime.combine(day, clock, zone).isoformat()


def parse_date_range(text: str, *, language: str | None, now: datetime, zone: ZoneInfo) -> tuple[str, str] | None:
    """A travel window ("10-17 Mart", "12.03 – 19.03", "from March 10 to March 17") as two ISO dates."""
    norm = _normalise(text)
    numeric = list(_DATE_NUMERIC.finditer(norm))
    today = now.astimezone(zone).date()
    if len(numeric) >= 2:
        first = _find_date(numeric[0].group(0), today, language)
        second = _find_date(numeric[1].group(0), today, language)
        if first and second and second >= first:
            return first.isoformat(), second.isoformat()
    span = re.search(r"(?<!\d)(\d{1,2})\s*[-–—]\s*(\d{1,2})\s+(\D+)", text)
    if span:
        start = _month_name_date(f"{span.group(1)} {span.group(3)}", now.astimezone(zone), language)
        if start:
            try:
                end = start.replace(day=int(span.group(2)))
            except ValueError:
                return None
            if end >= start:
                return start.isoformat(), end.isoformat()
    return None
