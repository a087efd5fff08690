"""Finding the words for days and times in a patient's message: dates, weekdays, relative days, a time.

:func:`scan` folds the text (:func:`connector.bot.calendar_words.fold`), cuts it into tokens (numbers,
words, punctuation, each with its place) and marks what it recognises, in this order, each token used
once: numeric dates (``14.03.``, ``14/3``, ``2027-03-14``; ``14.30`` and ``10.30 Uhr`` are times), dates
with a month name in either order (``12 Aralık``, ``December 3rd``, ``10-го марта``, ``10 شهر 3``), the
time (anchored by a word or a sign: ``saat 3``, ``11 Uhr``, ``2pm``, ``11'de``, ``halb 11``; or a bare hour
next to a part of the day: ``sabah 10``), relative days (``yarın``, ``послезавтра``, ``in 3 days``,
``بعد غد``), "next week", and weekdays with what qualifies them (``next``, ``bu``, ``القادم``).

It decides nothing: :mod:`connector.bot.datetimes` (a day and time) and :mod:`connector.bot.ranges`
(travel dates) read the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from connector.bot import calendar_words as words

_TOKEN = re.compile(r"\d+|[^\W\d_]+|[^\w\s]")
#: written after a day's number ("3rd", "10'u", "10-го"; folded, so Turkish "ı" and "ü" are "i" and "u")
_SUFFIXES = {"st", "nd", "rd", "th", "inci", "nci", "uncu", "si", "i", "u", "го", "ого", "е", "ое"}
_AMPM = {"am", "pm"}


@dataclass
class Tok:
    """One token of the folded text: a number, a word, or a punctuation mark, with its place."""

    text: str
    start: int
    end: int

    @property
    def number(self) -> int | None:
        # ASCII only: other scripts' digits were folded to ASCII, and "①" or "²" are not numbers to read
        return int(self.text) if self.text.isascii() and self.text.isdigit() else None


@dataclass
class Mention:
    """An explicit date in the words: day and month (and year) at tokens ``first``..``last``."""

    first: int
    last: int
    day: int
    month: int
    year: int | None = None
    #: read the other way round (month/day), when an English speaker may have meant that
    swapped: tuple[int, int] | None = None
    #: written with slashes; ``american``: only the month/day reading makes a date ("3/14")
    slash: bool = False
    american: bool = False
    #: the time the same digits make ("10.10"), when they could be one
    dotted_time: time | None = None


@dataclass
class Scan:
    """Everything found in the words, by token; :func:`parse_when` and :mod:`connector.bot.ranges` decide."""

    toks: list[Tok]
    used: set[int] = field(default_factory=set)
    dates: list[Mention] = field(default_factory=list)
    #: (weekday, token, modifier: "coming", "next" or None)
    weekdays: list[tuple[int, int, str | None]] = field(default_factory=list)
    #: (days from today, token)
    relative: list[tuple[int, int]] = field(default_factory=list)
    clock: time | None = None
    assumptions: list[str] = field(default_factory=list)
    part: str | None = None
    next_week: bool = False

    def word(self, index: int) -> str:
        return self.toks[index].text if 0 <= index < len(self.toks) else ""

    def glued(self, first: int, last: int) -> bool:
        """Tokens ``first``..``last`` are written without spaces between them."""
        return all(self.toks[i].end == self.toks[i + 1].start for i in range(first, last))


def month_of(word: str) -> int | None:
    """The month a (folded) word names, if it names one."""
    if word in words.MONTH_WORDS:
        return words.MONTH_WORDS[word]
    if word and "\u0600" <= word[0] <= "\u06ff" and word[0] in "بلوف" and word[1:] in words.MONTH_WORDS:
        return words.MONTH_WORDS[word[1:]]  # Arabic "بمارس", "لآذار"
    if word in words.NOT_MONTHS:
        return None
    for stem, month in words.MONTH_STEMS:
        if word.startswith(stem) and len(word) - len(stem) <= 4:
            return month
    return None


def weekday_of(word: str) -> int | None:
    """The weekday (0 = Monday) a (folded) word names, if it names one."""
    if word in words.WEEKDAY_WORDS:
        return words.WEEKDAY_WORDS[word]
    if word and "\u0600" <= word[0] <= "\u06ff" and word[0] in "بلو" and word[1:] in words.WEEKDAY_WORDS:
        return words.WEEKDAY_WORDS[word[1:]]
    for stem, weekday in words.WEEKDAY_STEMS:
        if word.startswith(stem) and len(word) - len(stem) <= 4:
            return weekday
    return None


def scan(text: str, *, language: str | None, times: bool = True) -> Scan:
    """Find the dates, days, weekdays and the time in ``text`` (``times=False``: days only, for ranges)."""
    folded = words.fold(text).replace("o'clock", "oclock").replace("o clock", "oclock")
    for pattern, joined in words.ARABIC_TWO_WORD_MONTHS:
        folded = pattern.sub(joined, folded)
    found = Scan([Tok(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(folded)])
    _numeric_dates(found, language, times=times)
    _named_dates(found)
    if times:
        _times(found)
    _relative_days(found)
    _weekdays(found)
    return found


def _numeric_dates(s: Scan, language: str | None, *, times: bool) -> None:
    toks = s.toks
    for i, tok in enumerate(toks):
        if i in s.used or tok.number is None:
            continue
        if len(tok.text) == 4:
            _iso_date(s, i)
            continue
        sep = s.word(i + 1)
        if len(tok.text) > 2 or sep not in (".", "/", "-") or i + 2 >= len(toks) or toks[i + 2].number is None \
                or len(toks[i + 2].text) > 2 or not s.glued(i, i + 2):
            continue
        last, year = i + 2, None
        if s.word(i + 3) == sep and i + 4 < len(toks) and toks[i + 4].number is not None \
                and len(toks[i + 4].text) in (2, 4) and s.glued(i + 2, i + 4):
            last, year = i + 4, int(toks[i + 4].text)
            year = year + 2000 if year < 100 else year
        elif sep == "-":
            continue  # "10-14" is two days of a range, not a date
        day, month = tok.number, toks[i + 2].number or 0
        if sep == "." and year is None and times and _is_time(s, i, month, toks[i + 2]):
            continue
        trailing = last + 1 if s.word(last + 1) == "." and s.glued(last, last + 1) else last
        mention = Mention(i, trailing, day, month, year, slash=sep == "/")
        if sep == "." and year is None and trailing == last and day <= 23 and len(toks[i + 2].text) == 2 \
                and month <= 59:
            mention.dotted_time = time(day + 12 if 1 <= day <= 7 and not tok.text.startswith("0") else day, month)
        if sep == "/" and language in (None, "en"):
            if 1 <= day <= 12 and 1 <= month <= 12 and day != month:
                mention.swapped = (month, day)  # "3/4": the 3rd of April, or March the 4th
            elif month > 12 and 1 <= day <= 12:
                mention.day, mention.month, mention.american = month, day, True  # "3/14": only March the 14th
        if 1 <= mention.day <= 31 and 1 <= mention.month <= 12:
            s.dates.append(mention)
            s.used.update(range(i, trailing + 1))


def _iso_date(s: Scan, i: int) -> None:
    toks = s.toks
    if (i + 4 < len(toks) and s.word(i + 1) == "-" and s.word(i + 3) == "-" and s.glued(i, i + 4)
            and 2000 <= (toks[i].number or 0) <= 2100 and toks[i + 2].number is not None
            and toks[i + 4].number is not None):
        s.dates.append(Mention(i, i + 4, toks[i + 4].number or 0, toks[i + 2].number or 0, toks[i].number))
        s.used.update(range(i, i + 5))


def _is_time(s: Scan, i: int, month: int, second: Tok) -> bool:
    """``a.b`` is a time rather than a date: b cannot be a month, or an hour word is written around it."""
    if len(second.text) == 2 and (month == 0 or month > 12) and (s.toks[i].number or 0) <= 23:
        return True
    after = s.word(i + 3)
    return (s.word(i - 1) in words.HOUR_BEFORE or after in words.HOUR_AFTER or after in _AMPM
            or (after == "'" and s.word(i + 4) in words.HOUR_SUFFIXES) or after in words.HALF_AFTER)


def _named_dates(s: Scan) -> None:
    toks = s.toks
    for i, tok in enumerate(toks):
        if i in s.used or tok.number is None or not 1 <= tok.number <= 31 or s.word(i + 1) == ":":
            continue
        j = i + 1  # forward: "12 Aralık", "12. Dezember", "3rd of December", "10-го марта"
        while j < len(toks) and j - i <= 4 and (toks[j].text in (".", "'", "-", "of") or (toks[j].text in _SUFFIXES
                                                  and s.glued(j - 1, j))):
            j += 1
        month = month_of(s.word(j)) if j not in s.used else None
        if month is not None and len(s.word(j)) <= 3 and s.word(i - 1) in words.HOUR_BEFORE:
            month = None  # "saat 10 ara" is "call at 10", not the 10th of December
        if month is None and s.word(j) in ("شهر", "الشهر") and j + 1 < len(toks) and toks[j + 1].number in range(1, 13):
            month, j = toks[j + 1].number, j + 1  # "10 شهر 3": the tenth of the third month
        if month is not None:
            last, year = _year_after(s, j)
            s.dates.append(Mention(i, last, tok.number, month, year))
            s.used.update(range(i, last + 1))
            continue
        k = i - 1  # backward: "December 12", "Dec. 3rd", "March 10, 2027"
        while k >= 0 and toks[k].text in (".", ","):
            k -= 1
        month = month_of(s.word(k)) if k >= 0 and k not in s.used else None
        if month is not None and i - k <= 2:
            last = i
            while last + 1 < len(toks) and toks[last + 1].text in _SUFFIXES and s.glued(last, last + 1):
                last += 1
            last, year = _year_after(s, last)
            s.dates.append(Mention(k, last, tok.number, month, year))
            s.used.update(range(k, last + 1))


def _year_after(s: Scan, j: int) -> tuple[int, int | None]:
    k = j + 1 + (s.word(j + 1) in (",", "."))
    year = s.toks[k].number if k < len(s.toks) else None
    if year is not None and len(s.toks[k].text) == 4 and 2000 <= year <= 2100:
        return k, year
    return j, None


def _times(s: Scan) -> None:
    toks = s.toks
    for i, tok in enumerate(toks):
        if i in s.used or tok.number is None or len(tok.text) > 2:
            continue
        last = _hour_written(s, i)
        if last is None:
            continue
        hour, minute = tok.number, toks[last].number if last > i else 0
        marker = s.word(last + 1)
        if marker in ("a", "p") and s.word(last + 2) == "." and s.word(last + 3) == "m":
            marker += "m"
        if s.word(i - 1) in words.HALF_BEFORE:  # "halb 11" is half past ten
            hour, minute = (hour or 24) - 1, 30
        elif any(s.word(k) in words.HALF_AFTER for k in (last + 1, last + 2, last + 3)):
            minute = 30
        if not 0 <= hour <= 23 or minute is None or minute > 59:
            continue
        if marker in _AMPM:
            s.clock = time(hour % 12 + (12 if marker == "pm" else 0), minute)
        else:
            s.clock = _with_part(s, hour, minute, leading_zero=tok.text.startswith("0"))
        s.used.update(range(i, last + 1))
        return
    _bare_hour(s)


def _hour_written(s: Scan, i: int) -> int | None:
    """The last token of a time written at token ``i`` ("11:30", "saat 3", "11 Uhr", "2pm", "11'de"), or None
    when the number there is not said to be an hour."""
    toks = s.toks
    if s.word(i + 1) in (":", ".") and i + 2 < len(toks) and len(toks[i + 2].text) == 2 and s.glued(i, i + 2) \
            and toks[i + 2].number is not None and i + 2 not in s.used:
        return i + 2
    before, after = s.word(i - 1), s.word(i + 1)
    anchored = (before in words.HOUR_BEFORE or before in words.HALF_BEFORE or after in words.HOUR_AFTER
                or after in _AMPM or after in words.HALF_AFTER
                or (after in ("a", "p") and s.word(i + 2) == "." and s.word(i + 3) == "m")
                or (after == "'" and s.word(i + 2) in words.HOUR_SUFFIXES)
                or (after in words.HOUR_SUFFIXES and s.glued(i, i + 1)))
    return i if anchored else None


def _bare_hour(s: Scan) -> None:
    """With no hour written as one: a bare number next to a part of the day ("sabah 10", "вечером 6"), or
    noon alone."""
    _part_of_day(s)
    if s.part is None:
        return
    for i, tok in enumerate(s.toks):
        if i not in s.used and tok.number is not None and len(tok.text) <= 2 and 1 <= tok.number <= 23 \
                and s.word(i + 1) not in words.DAY_UNITS:
            s.clock = _with_part(s, tok.number, 0, leading_zero=False)
            s.used.add(i)
            return
    if s.part == words.NOON:
        s.clock, s.part = time(12, 0), None


def _part_of_day(s: Scan) -> None:
    if s.part is not None:
        return
    texts = [t.text for t in s.toks]
    for phrase, part in words.PARTS_OF_DAY:
        for i in range(len(texts) - len(phrase) + 1):
            if tuple(texts[i:i + len(phrase)]) == phrase:
                s.part = part
                return


def _with_part(s: Scan, hour: int, minute: int, *, leading_zero: bool) -> time:
    """The hour read with the part of the day said around it, or as clinic hours when none was said."""
    _part_of_day(s)
    part = s.part
    if ((part == words.PM and 1 <= hour < 12) or (part == words.NOON and 1 <= hour <= 6)
            or (part == words.NIGHT and 8 <= hour <= 11)):
        hour += 12
    elif part in (words.AM, words.NIGHT) and hour == 12:
        hour = 0
    elif part is None and 1 <= hour <= 7 and not leading_zero:  # "07:30" is written as a 24-hour time
        hour += 12
        s.assumptions.append("bare hour read as afternoon (clinic hours)")
    s.part = None  # the hour says it all
    return time(hour, minute)


def _relative_days(s: Scan) -> None:
    texts = [t.text for t in s.toks]
    for phrase, days in words.RELATIVE_DAYS:
        for i in range(len(texts) - len(phrase) + 1):
            if tuple(texts[i:i + len(phrase)]) != phrase or any(k in s.used for k in range(i, i + len(phrase))):
                continue
            if phrase == ("morgen",) and texts[i - 1:i] and texts[i - 1] in words.MORGEN_AS_MORNING:
                if texts[i - 1] != "guten":  # "Guten Morgen" is a greeting
                    s.part = s.part or words.AM
                continue
            s.relative.append((days, i))
            s.used.update(range(i, i + len(phrase)))
    for i, tok in enumerate(s.toks):  # "in 3 days", "3 gün sonra", "через 3 дня", "بعد 3 أيام"
        if i not in s.used and tok.number is not None and tok.number <= 366 and s.word(i + 1) in words.DAY_UNITS and (
                s.word(i - 1) in words.IN_DAYS_BEFORE or s.word(i + 2) in words.IN_DAYS_AFTER):
            s.relative.append((tok.number, i))
            s.used.update({i, i + 1})
    for phrase in words.NEXT_WEEK:
        for i in range(len(texts) - len(phrase) + 1):
            if tuple(texts[i:i + len(phrase)]) == phrase:
                s.next_week = True
                s.used.update(range(i, i + len(phrase)))


def _weekdays(s: Scan) -> None:
    for i, tok in enumerate(s.toks):
        if i in s.used or tok.number is not None:
            continue
        weekday = weekday_of(tok.text)
        if weekday is None:
            continue
        before, after = s.word(i - 1), s.word(i + 1)
        modifier = ("next" if before in words.NEXT else "coming" if before in words.COMING or after in words.COMING
                    else None)
        s.weekdays.append((weekday, i, modifier))
        s.used.add(i)


def resolve(mention: Mention, today: date, *, swapped: bool = False) -> date | None:
    """The date a mention names: with no year, the next one to come (today included); None if impossible or past."""
    day, month = mention.swapped if swapped and mention.swapped else (mention.day, mention.month)
    years = [mention.year] if mention.year else [today.year, today.year + 1, today.year + 4]
    for year in years:
        try:
            found = date(year, month, day)
        except ValueError:
            continue
        if found >= today:
            return found
    return None


def weekday_dates(s: Scan, today: date, clock: time | None, now: datetime, zone: ZoneInfo) -> list[list[date]]:
    """For each weekday named, the dates it can mean (two for "next Tuesday" said in Tuesday's week)."""
    result = []
    for weekday, _index, modifier in s.weekdays:
        ahead = (weekday - today.weekday()) % 7
        if ahead == 0 and (clock is None or datetime.combine(today, clock, zone) <= now):
            ahead = 7
        day = today + timedelta(days=ahead)
        this_week = day.isocalendar()[:2] == today.isocalendar()[:2]
        if s.next_week and this_week:
            day += timedelta(days=7)  # "haftaya çarşamba": Wednesday of next week
        result.append([day, day + timedelta(days=7)] if modifier == "next" and this_week and not s.next_week
                      else [day])
    return result
