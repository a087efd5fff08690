"""Travel windows: what a patient writes instead of dates ("sometime in March", "early summer", "after Ramadan").

:mod:`connector.bot.ranges` reads explicit days first; when the words hold none, this module reads the
window they name, as a first and last day, and says whether it is sure enough to take or is to be
confirmed with the patient (the bot shows the window and asks Yes or No; No asks the question again).
The conventions (documented in ``docs/flows.md``, "Days and times"):

- a month ("in March", "в апреле", "Mart'ta", "في شهر أبريل"): the whole month, the next one to come;
  the current month from today (confirmed when less than a third of it is left); "next March": the one
  after the current one. Taken.
- a part of a month: early = the 1st to the 10th, mid = the 11th to the 20th, late = the 21st to the
  last day ("Anfang April", "в конце мая", "Nisan başı", "أواخر مارس"). Taken.
- a season, northern hemisphere, in whole months: spring March–May, summer June–August, autumn
  September–November, winter December–February; early = the first half (the 1st of the first month to
  the 15th of the middle one), mid = the middle month, late = the second half. Taken.
- two months or seasons joined ("March-April", "Mart ile Nisan arası"): from the first's start to the
  second's end, taken; "March or April": the same window, confirmed.
- a school holiday ("okul tatilinde", "in den Sommerferien"): the month or season said with it, or the
  season its name says, or summer (the long holidays); always confirmed, since holidays differ by
  country and school.
- after Ramadan: from Eid al-Fitr (1 Shawwal, Umm al-Qura, :mod:`connector.bot.ramadan`) for 30 days,
  the next one to come; confirmed (the month after the feast is a convention, not the patient's words).
- as soon as possible: from today for 30 days (today + 30 days), taken; "soon": the same window,
  confirmed; "next month": the whole next month, taken; "next year" alone: the whole next year,
  confirmed ("next year in March" is March of next year, taken).

A window the patient's words put in the past ("March 2025") is not a window. Pure: ``today`` is given.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from connector.bot import calendar_words
from connector.bot import window_words as ww
from connector.bot.date_scan import Scan, month_of
from connector.bot.ramadan import eids_from

#: as soon as possible, soon: from today for this long
SOON_DAYS = 30
#: after Ramadan: from Eid al-Fitr for this many days (about the month of Shawwal)
AFTER_RAMADAN_DAYS = 30
#: a window longer than this is not a trip (two joined seasons at most)
_LONGEST = timedelta(days=366)
_ARABIC_PREFIXES = "بلوف"


@dataclass
class Window:
    """A travel window: its first and last day, whether it can be taken as it is, and what named it
    (``month``, ``season``, ``holiday``, ``ramadan``, ``asap``, ``soon``, ``next_month``, ``next_year``)."""

    start: date
    end: date
    sure: bool
    named_by: str


@dataclass
class _Anchor:
    """A month or a season named at token ``index``, with the part of it and the year said around it."""

    index: int
    month: int | None = None
    season: str | None = None
    part: str | None = None
    year: int | None = None
    #: "next summer": the one after the current one
    following: bool = False


def read_window(s: Scan, today: date) -> Window | None:
    """The travel window the scanned words name (see the module's docstring), or None."""
    next_year = _has_phrase(s, ww.NEXT_YEAR)
    anchors = _anchors(s)
    holiday, hint = _holiday(s)
    if anchors:
        joined = _joined_span(s, anchors, today, today.year + 1 if next_year else None)
        if joined is None:
            return None
        (start, end), either = joined
        named_by = "holiday" if holiday else "month" if any(a.month for a in anchors) else "season"
        return Window(start, end, sure=not holiday and not either, named_by=named_by)
    if holiday:
        season = _resolve(_Anchor(-1, season=hint or ww.SUMMER), today, None)
        return Window(max(season[0], today), season[1], sure=False, named_by="holiday") if season else None
    if _after_ramadan(s):
        for eid in eids_from(today):
            end = eid + timedelta(days=AFTER_RAMADAN_DAYS - 1)
            if end >= today:
                return Window(max(eid, today), end, sure=False, named_by="ramadan")
        return None  # past the end of the table: asked again rather than guessed
    if _has_phrase(s, ww.NEXT_MONTH):
        month, year = (today.month % 12) + 1, today.year + (today.month == 12)
        return Window(date(year, month, 1), _last_day(year, month), sure=True, named_by="next_month")
    for phrases, sure, named_by in ((ww.ASAP, True, "asap"), (ww.SOON, False, "soon")):
        if _has_phrase(s, phrases):
            return Window(today, today + timedelta(days=SOON_DAYS), sure=sure, named_by=named_by)
    if next_year:
        return Window(date(today.year + 1, 1, 1), date(today.year + 1, 12, 31), sure=False, named_by="next_year")
    return None


# -- months and seasons ----------------------------------------------------------------------------
def _anchors(s: Scan) -> list[_Anchor]:
    words = [t.text for t in s.toks if t.number is None and t.text.isalpha()]
    found = []
    for i, tok in enumerate(s.toks):
        if i in s.used or tok.number is not None:
            continue
        month = month_of(tok.text)
        if month is not None and len(tok.text) <= 3 and not _cued(s, i) and words != ["may"]:
            month = None  # "may", "ara", "اب": a month only when said as one ("in May", "شهر آب")
        season = None if month is not None else _season(tok.text)
        if month is None and season is None:
            continue
        anchor = _Anchor(i, month=month, season=season[0] if season else None, part=season[1] if season else None)
        anchor.part = anchor.part or _part(s, i)
        anchor.year = _year(s, i)
        anchor.following = s.word(i - 1) in ww.NEXT_BEFORE or s.word(i + 1) in ww.NEXT_AFTER
        found.append(anchor)
    return found


def _season(word: str) -> tuple[str, str | None] | None:
    if word in ww.SEASON_WORDS:
        return ww.SEASON_WORDS[word]
    if word[:1] in _ARABIC_PREFIXES and word[1:] in ww.SEASON_WORDS:  # "بالصيف", "والشتاء"
        return ww.SEASON_WORDS[word[1:]]
    return None


def _cued(s: Scan, i: int) -> bool:
    """A short month name said as a month: a name nothing else is spelt like ("Mai", "мая"), or a word
    before it that asks for a month ("in May", "Ende Mai"), or another month joined after it ("May or June")."""
    before, after = s.word(i - 1), s.word(i + 1)
    joined = (after in calendar_words.RANGE_JOINERS or after in ww.OR_WORDS) and month_of(s.word(i + 2)) is not None
    return (s.word(i) in ww.SHORT_MONTHS or before in ww.MONTH_CUES or before in ww.PART_BEFORE
            or before in calendar_words.RANGE_JOINERS or before in ww.OR_WORDS or joined)


def _part(s: Scan, i: int) -> str | None:
    """The part said before the month or season ("early", "Anfang", "в конце", "أواخر") or after it, the
    Turkish way ("başı", "sonunda"), with only small words between."""
    for j in range(i - 1, max(i - 5, -1), -1):
        word = s.word(j)
        if word in ww.PART_BEFORE:
            return ww.PART_BEFORE[word]
        if word[:1] in _ARABIC_PREFIXES and word[1:] in ww.PART_BEFORE:  # "بأواخر"
            return ww.PART_BEFORE[word[1:]]
        if word not in ww.PART_FILLERS and word not in ww.MONTH_CUES:
            break
    for j in range(i + 1, min(i + 5, len(s.toks))):
        word = s.word(j)
        if word in ww.PART_AFTER:
            return ww.PART_AFTER[word]
        if word not in ww.PART_FILLERS:
            break
    return None


def _year(s: Scan, i: int) -> int | None:
    """A year written next to the month or season ("März 2027", "2027 yazında")."""
    for j in (i + 1, i + 2, i - 1):
        if 0 <= j < len(s.toks) and j not in s.used:
            number = s.toks[j].number
            if number is not None and len(s.toks[j].text) == 4 and 2000 <= number <= 2100:
                return number
    return None


def _joined_span(s: Scan, anchors: list[_Anchor], today: date,
                 next_year: int | None) -> tuple[tuple[date, date], bool] | None:
    """One anchor's window, or two joined anchors' window from the first's start to the second's end, and
    whether the words said "or"; None for anything else (not joined, in the past, too long)."""
    if len(anchors) == 2 and not _joined(s, anchors[0], anchors[1]):
        inside = _month_in_season(anchors)
        anchors = [inside] if inside is not None else anchors
    if len(anchors) == 1:
        span = _resolve(anchors[0], today, next_year)
        return ((max(span[0], today), span[1]), _mostly_past(span, today)) if span else None
    if len(anchors) != 2:
        return None
    first = _resolve(anchors[0], today, next_year)
    if first is None:
        return None
    second = _resolve(anchors[1], first[0], None)  # the next one to come after the first
    if second is None or second[1] < first[0] or second[1] - first[0] > _LONGEST:
        return None
    between = {t.text for t in s.toks[anchors[0].index + 1:anchors[1].index]}
    return (max(first[0], today), second[1]), bool(between & ww.OR_WORDS)


def _joined(s: Scan, a: _Anchor, b: _Anchor) -> bool:
    gap = [t.text for t in s.toks[a.index + 1:b.index]]
    joiners = calendar_words.RANGE_JOINERS | ww.OR_WORDS
    allowed = (joiners | calendar_words.RANGE_FILLERS | ww.PART_FILLERS | ww.MONTH_CUES | set(ww.PART_BEFORE)
               | set(ww.PART_AFTER) | {"arasi", "between", "zwischen", "from", "von", "vom", "с", "من", "بين"})
    return any(w in joiners for w in gap) and all(w in allowed or w.isdigit() for w in gap)


def _month_in_season(anchors: list[_Anchor]) -> _Anchor | None:
    """"This summer, in July": the month, when the season is the one it lies in."""
    months = [a for a in anchors if a.month]
    seasons = [a for a in anchors if a.season]
    if len(months) == 1 and len(seasons) == 1 and months[0].month in ww.SEASON_MONTHS[seasons[0].season or ""]:
        return months[0]
    return None


def _resolve(anchor: _Anchor, today: date, year: int | None) -> tuple[date, date] | None:
    """The anchor's whole window: in the year written (or given), else the next one to come (the current
    one while it is not over; "next": the one after it). None when it is over."""
    fixed = anchor.year or year
    for candidate in [fixed] if fixed else [today.year - 1, today.year, today.year + 1, today.year + 2]:
        start, end = _span(anchor, candidate)
        if end >= today and not (anchor.following and start <= today):
            return start, end
    return None


def _mostly_past(span: tuple[date, date], today: date) -> bool:
    """Under way with less than a third of it left ("autumn" said on 23 November): to be confirmed."""
    start, end = span
    return start < today and ((end - today).days + 1) * 3 < (end - start).days + 1


def _span(anchor: _Anchor, year: int) -> tuple[date, date]:
    """The window of a month or season of ``year`` (a winter: from December of ``year``), or of its part."""
    if anchor.month:
        month, last = anchor.month, _last_day(year, anchor.month).day
        first_day, last_day = {ww.EARLY: (1, 10), ww.MID: (11, 20), ww.LATE: (21, last)}.get(anchor.part or "",
                                                                                            (1, last))
        return date(year, month, first_day), date(year, month, last_day)
    first, middle, last_month = ww.SEASON_MONTHS[anchor.season or ww.SUMMER]
    middle_year = year + (middle < first)
    last_year = year + (last_month < first)
    if anchor.part == ww.EARLY:
        return date(year, first, 1), date(middle_year, middle, 15)
    if anchor.part == ww.MID:
        return date(middle_year, middle, 1), _last_day(middle_year, middle)
    if anchor.part == ww.LATE:
        return date(middle_year, middle, 16), _last_day(last_year, last_month)
    return date(year, first, 1), _last_day(last_year, last_month)


def _last_day(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


# -- holidays, Ramadan, phrases ----------------------------------------------------------------------
def _holiday(s: Scan) -> tuple[bool, str | None]:
    """Whether a school holiday is named, and the season its words say (None: not said)."""
    for i, tok in enumerate(s.toks):
        word = tok.text
        stem = next(((stem, season) for stem, season in ww.HOLIDAY_STEMS
                     if (stem in word if stem == "ferien" or stem.endswith("ferien") else word.startswith(stem))),
                    None)
        near = [s.word(j) for j in (i - 2, i - 1, i + 1, i + 2)]
        hinted = [ww.HOLIDAY_HINTS[w] for w in near if w in ww.HOLIDAY_HINTS]
        if stem is None and not (word in ww.HOLIDAY_WORDS and hinted):
            continue
        season = stem[1] if stem and stem[1] else next((h for h in hinted if h), None)
        return True, season
    return False, None


def _after_ramadan(s: Scan) -> bool:
    for i, tok in enumerate(s.toks):
        if not any(tok.text.startswith(stem) or (stem in tok.text and not stem.isascii())
                   for stem in ww.RAMADAN_STEMS):
            continue
        if any(s.word(j) in ww.AFTER_BEFORE for j in range(max(i - 3, 0), i)) or any(
                s.word(j) in ww.AFTER_AFTER for j in range(i + 1, i + 5)):
            return True
    return False


def _has_phrase(s: Scan, phrases: list[tuple[str, ...]]) -> bool:
    texts = [t.text for t in s.toks]
    return any(tuple(texts[i:i + len(p)]) == p for p in phrases for i in range(len(texts) - len(p) + 1))
