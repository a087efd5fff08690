"""Travel dates: a range of days in a patient's words → its first and last day.

Read in the five languages the way patients write them: ``10-14 Mart arası``, ``10'dan 14 Mart'a
kadar``, ``between 10 and 14 March``, ``March 10-14``, ``vom 10. bis 14. März``, ``10.–14.3.``,
``с 10 по 14 марта``, ``10 إلى 14 مارس``, ``١٠–١٤ آذار``, ``12.03 - 19.03``, ``28.12-5.01``, or a first
day and a length (``10 March, one week``, ``14 Mart'tan itibaren 5 gece``). The words are found by
:func:`connector.bot.date_scan.scan`; this module pairs them.

A single day is a start without an end (the coordinator asks the rest). What cannot be read for sure
is left to the patient: two days with no month (``10-14``), slashed dates an English speaker may have
written either way round; and when a weekday contradicts its date ("Monday 10 March", a Wednesday) the
range is returned in ``confirm``, for the bot to confirm. Words with no day at all may name a window
(``sometime in March``, ``early summer``, ``after Ramadan``): :mod:`connector.bot.windows` reads it, and
a window that is a convention rather than the patient's words (school holidays, "after Ramadan") is
returned in ``confirm`` too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from connector.bot import calendar_words as words
from connector.bot.date_scan import Mention, Scan, resolve, scan
from connector.bot.datetimes import parse_when
from connector.bot.windows import read_window

#: longer than this is not a trip
LONGEST_STAY = timedelta(days=365)

Range = dict[str, str | None]
#: "a week" said with no number ("на неделю", "لمدة أسبوع")
_A_WEEK = {words.fold("неделю"), words.fold("أسبوع"), words.fold("اسبوع")}


@dataclass
class RangeResult:
    """What the patient's words say about travel dates.

    Attributes:
        value: ``{"start": "2027-03-10", "end": "2027-03-14"}`` (``end`` None for a single day); None when
            nothing was understood for sure.
        text: the patient's own words.
        confirm: a range a weekday in the same words contradicts: to confirm before it is taken.
    """

    value: Range | None
    text: str
    confirm: Range | None = None


@dataclass
class _Item:
    """One end a range may have: a date, or a day of the month alone, at tokens ``first``..``last``."""

    first: int
    last: int
    mention: Mention | None = None  # a date
    day: int | None = None  # a day of the month alone ("10" in "10-14 March")


def read_range(text: str, *, language: str | None, now: datetime, zone: ZoneInfo) -> RangeResult:
    """Read travel dates from the patient's words (see the module's docstring)."""
    today = now.astimezone(zone).date()
    found = scan(text, language=language, times=False)
    items = _items(found)
    for a, b in itertools.pairwise(items):
        if not _joined(found, a, b):
            continue
        ends = _ends(a, b)
        if ends is None:
            return RangeResult(None, text)  # "10-14": no month
        pair = _dates(ends, today)
        if pair is None:
            return RangeResult(None, text)
        return _checked(found, text, {a.first: pair[0], b.first: pair[1]}, pair)
    dates = [item for item in items if item.mention is not None]
    if len(dates) == 1 and dates[0].mention is not None and not dates[0].mention.swapped:
        start = resolve(dates[0].mention, today)
        if start is None:
            return RangeResult(None, text)
        stay = _stay(found, dates[0].last)
        end = start + timedelta(days=stay) if stay else None
        return _checked(found, text, {dates[0].first: start}, (start, end))
    if dates:
        return RangeResult(None, text)  # several dates not joined as a range, or a date that can be read two ways
    when = parse_when(text, language=language, now=now, zone=zone)
    if when.value:
        return RangeResult({"start": when.value[:10], "end": None}, text)
    if when.confirm:
        return RangeResult(None, text, confirm={"start": when.confirm[:10], "end": None})
    window = read_window(found, today)  # no day written: a month, a season, "after Ramadan"…
    if window is None:
        return RangeResult(None, text)
    value: Range = {"start": window.start.isoformat(), "end": window.end.isoformat()}
    return RangeResult(value, text) if window.sure else RangeResult(None, text, confirm=value)


def _items(s: Scan) -> list[_Item]:
    items = [_Item(m.first, m.last, mention=m) for m in s.dates]
    for i, tok in enumerate(s.toks):
        number = tok.number
        if i in s.used or number is None or not 1 <= number <= 31 or len(tok.text) > 2:
            continue
        after = s.word(i + 1)
        if after in words.DAY_UNITS or _unit(after) or after == ":":
            continue  # "5 gece", "2 weeks": a length, not a day
        items.append(_Item(i, i, day=number))
    return sorted(items, key=lambda item: item.first)


def _joined(s: Scan, a: _Item, b: _Item) -> bool:
    """The words between ``a`` and ``b`` make them the two ends of one range."""
    weekdays = {index for _, index, _ in s.weekdays}  # "Monday 10 to Friday 14 March": checked on their own
    gap = [t.text for i, t in enumerate(s.toks[a.last + 1:b.first], a.last + 1) if i not in weekdays]
    return (bool(gap) and any(w in words.RANGE_JOINERS for w in gap)
            and all(w in words.RANGE_JOINERS or w in words.RANGE_FILLERS for w in gap))


def _ends(a: _Item, b: _Item) -> tuple[Mention, Mention] | None:
    """The two ends as dates: a day alone takes the month (and year) of the date at the other end."""
    if a.mention is not None and b.mention is not None:
        first, second = a.mention, b.mention
    elif a.day is not None and b.mention is not None:
        month, year = b.mention.month, b.mention.year
        if a.day > b.mention.day:  # "28 - 3 March": from the end of February
            month, year = (month - 1, year) if month > 1 else (12, year - 1 if year else None)
        if b.mention.swapped:
            return None  # the day's month depends on which way round the date was written
        first, second = Mention(a.first, a.last, a.day, month, year), b.mention
    elif a.mention is not None and b.day is not None and b.day > a.mention.day and not a.mention.swapped:
        first, second = a.mention, Mention(b.first, b.last, b.day, a.mention.month, a.mention.year)
    else:
        return None
    return _oriented(first, second)


def _oriented(first: Mention, second: Mention) -> tuple[Mention, Mention] | None:
    """Both ends read the same way round: slashed dates an English speaker wrote are all day/month or all
    month/day, and one that can only be read one way says which; when none says, nothing is sure."""
    slashed = [m for m in (first, second) if m.slash]
    if not any(m.swapped for m in slashed):
        return first, second
    if any(m.american for m in slashed):
        american = True
    elif any(not m.swapped and m.day != m.month for m in slashed):
        american = False
    else:
        return None
    return tuple(  # type: ignore[return-value]
        Mention(m.first, m.last, *(m.swapped if american and m.swapped else (m.day, m.month)), m.year)
        for m in (first, second))


def _dates(ends: tuple[Mention, Mention], today: date) -> tuple[date, date] | None:
    first, second = ends
    start = resolve(first, today)
    if start is None:
        return None
    try:
        end = date(second.year or start.year, second.month, second.day)
    except ValueError:
        return None
    if end < start and not second.year:
        end = end.replace(year=end.year + 1)  # "28.12-5.01": into the next year
    if end < start or end - start > LONGEST_STAY:
        return None
    return start, end


def _stay(s: Scan, after: int) -> int | None:
    """A length of stay written after the first day: "1 week", "5 gece", "eine Woche", "на неделю", "أسبوعين"."""
    for i in range(after + 1, min(after + 7, len(s.toks))):
        word = s.toks[i].text
        if word in words.STAY_DUALS:
            return words.STAY_DUALS[word]
        unit = _unit(word)
        if unit is None:
            continue
        before = s.toks[i - 1]
        if before.number is not None and 1 <= before.number <= 60:
            return before.number * unit
        if before.text in words.ONE or (unit == 7 and word in _A_WEEK):
            return unit
    return None


def _unit(word: str) -> int | None:
    if word in words.STAY_UNITS:
        return words.STAY_UNITS[word]
    for unit in ("hafta", "gece"):  # "1 haftalık", "5 gecelik"
        if word.startswith(unit) and len(word) - len(unit) <= 5:
            return words.STAY_UNITS[unit]
    return None


def _checked(s: Scan, text: str, at: dict[int, date], pair: tuple[date, date | None]) -> RangeResult:
    """The range, or the range to confirm when a weekday written next to one of its days disagrees with it."""
    value: Range = {"start": pair[0].isoformat(), "end": pair[1].isoformat() if pair[1] else None}
    for weekday, index, _ in s.weekdays:
        nearest = min(at, key=lambda first: abs(first - index))
        if at[nearest].weekday() != weekday:
            return RangeResult(None, text, confirm=value)
    return RangeResult(value, text)
