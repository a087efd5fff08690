"""Travel windows: months, parts of months, seasons, "after Ramadan", school holidays, "as soon as possible".

The normalisation table of ``docs/flows.md`` ("Travel windows") is read row by row and each row must read
exactly as written there, against the table's fixed "now"; then the edges of the conventions (a window
under way, a winter across the new year, the Ramadan table), and a conversation that answers the travel
question with "sometime in March" and completes its lead with the window.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.bot.date_scan import scan
from connector.bot.ramadan import RAMADAN, eids_from
from connector.bot.ranges import read_range
from connector.bot.windows import read_window
from tests.unit.test_bot_engine import Chat

DOC = Path(__file__).parents[2] / "docs" / "flows.md"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("Europe/Istanbul"))
ZONE = ZoneInfo("Europe/Istanbul")
_ROW = re.compile(r"^\| (tr|en|de|ar|ru) \| `([^`]+)` \| (\S+) \| (\S+) \| (takes it|asks back|asks again) \|$")


def _table() -> list[tuple[str, str, str, str, str]]:
    """The rows of the "Travel windows" table: language, words, start, end, what the bot does."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Travel windows"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| language")
            and not line.startswith("| ---")]
    parsed = []
    for line in rows:
        match = _ROW.match(line)
        assert match, f"a row of the table the test cannot read: {line}"
        parsed.append(match.groups())
    return parsed  # type: ignore[return-value]


ROWS = _table()


def _read(text: str, language: str, now: datetime = NOW) -> tuple[str, str, str]:
    """What the relay does with the words, in the table's notation: start, end, and the bot's move."""
    found = read_range(text, language=language, now=now, zone=ZONE)
    assert found.text == text  # the patient's words are kept as written
    window = found.value or found.confirm
    move = "takes it" if found.value else "asks back" if found.confirm else "asks again"
    return (window or {}).get("start") or "—", (window or {}).get("end") or "—", move


@pytest.mark.parametrize(("language", "text", "start", "end", "move"), ROWS, ids=[f"{r[0]}:{r[1]}" for r in ROWS])
def test_every_row_of_the_normalisation_table(language: str, text: str, start: str, end: str, move: str) -> None:
    assert _read(text, language) == (start, end, move)


def test_the_table_has_every_kind_of_window_in_every_language() -> None:
    assert len(ROWS) >= 90
    said = {(language, text) for language, text, *_ in ROWS}
    for example in ["sometime in March", "В апреле", "في شهر أبريل", "Mart ayında, okul tatilinde", "early summer",
                    "after Ramadan", "im März", "в марте", "Mart'ta", "Mart ayında", "nisan", "early March",
                    "Anfang April", "в конце мая", "Nisan başı", "أواخر مارس", "Sommer", "летом", "yazın", "الصيف",
                    "Ramazan'dan sonra", "nach dem Ramadan", "после Рамадана", "بعد رمضان", "okul tatilinde",
                    "in den Sommerferien", "next year", "soon", "as soon as possible", "en kısa zamanda",
                    "как можно скорее"]:
        assert any(text == example for _, text in said), example
    for language in ("tr", "en", "de", "ar", "ru"):
        mine = [row for row in ROWS if row[0] == language]
        assert len(mine) >= 15, language
        assert {row[4] for row in mine} >= {"takes it", "asks back"}, language


def test_exact_dates_are_read_as_before_and_never_as_a_window() -> None:
    assert _read("10-14 Mart arası", "tr") == ("2027-03-10", "2027-03-14", "takes it")
    assert _read("12 Mart'ta geleceğim", "tr") == ("2027-03-12", "—", "takes it")  # a day, not March
    assert _read("early March, from the 10th to the 14th", "en")[2] == "asks again"  # days without a month
    assert _read("tomorrow, ASAP", "en") == ("2026-11-24", "—", "takes it")


@pytest.mark.parametrize(("today", "text", "expected"), [
    # a month under way is taken from today, and asked back when less than a third of it is left
    (date(2027, 3, 20), "in March", ("2027-03-20", "2027-03-31", "takes it")),
    (date(2027, 3, 25), "in March", ("2027-03-25", "2027-03-31", "asks back")),
    (date(2027, 3, 25), "next March", ("2028-03-01", "2028-03-31", "takes it")),
    (date(2027, 4, 1), "in March", ("2028-03-01", "2028-03-31", "takes it")),
    # a part that is over is next year's
    (date(2027, 3, 11), "early March", ("2028-03-01", "2028-03-10", "takes it")),
    # winter across the new year: said in January, the one under way
    (date(2027, 1, 10), "winter", ("2027-01-10", "2027-02-28", "takes it")),
    (date(2027, 1, 10), "late winter", ("2027-01-16", "2027-02-28", "takes it")),
    (date(2028, 1, 10), "winter", ("2028-01-10", "2028-02-29", "takes it")),  # a leap year
    (date(2026, 11, 23), "December to February", ("2026-12-01", "2027-02-28", "takes it")),
    (date(2026, 11, 23), "March 2025", ("—", "—", "asks again")),
    # during the month after Eid, "after Ramadan" is from today
    (date(2027, 3, 20), "after Ramadan", ("2027-03-20", "2027-04-07", "asks back")),
    (date(2027, 4, 8), "after Ramadan", ("2028-02-26", "2028-03-26", "asks back")),
    (date(2026, 6, 1), "as soon as possible", ("2026-06-01", "2026-07-01", "takes it")),
    (date(2026, 12, 5), "next month", ("2027-01-01", "2027-01-31", "takes it")),
    # a short month name is a month when said as one
    (date(2026, 11, 23), "May or June", ("2027-05-01", "2027-06-30", "asks back")),
    (date(2026, 11, 23), "May", ("2027-05-01", "2027-05-31", "takes it")),
])
def test_windows_read_against_another_today(today: date, text: str, expected: tuple[str, str, str]) -> None:
    now = datetime(today.year, today.month, today.day, 10, 0, tzinfo=ZONE)
    assert _read(text, "en", now) == expected


def test_words_that_only_look_like_months_or_seasons_are_not_windows() -> None:
    for text, language in [("I may come later", "en"), ("beni ara", "tr"), ("saç ekimi", "tr"), ("Ramadan", "en"),
                           ("en kısa", "tr"), ("yazı", "tr"), ("Martin", "en"), ("after the holidays", "en"),
                           ("ara", "tr")]:
        found = read_range(text, language=language, now=NOW, zone=ZONE)
        assert found.value is None and found.confirm is None, text


def test_the_ramadan_table_is_a_lunar_calendar() -> None:
    years = sorted(RAMADAN)
    assert years == list(range(years[0], years[-1] + 1)) and years[-1] >= 1470
    for year in years:
        start, eid = RAMADAN[year]
        assert (eid - start).days in (29, 30), year  # a lunar month
    for earlier, later in itertools.pairwise(years):
        assert (RAMADAN[later][1] - RAMADAN[earlier][1]).days in (354, 355), later  # a lunar year
    assert RAMADAN[1448] == (date(2027, 2, 8), date(2027, 3, 9))
    assert eids_from(date(2027, 3, 10))[:2] == [date(2027, 3, 9), date(2028, 2, 26)]
    assert read_window(scan("after Ramadan", language="en", times=False), date(2059, 1, 1)) is None


def _at_travel_step(language: str) -> Chat:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("Hi, price for hair transplant?")
    chat.send("Berlin, Germany")
    assert chat.conv.step == "travel_dates"
    return chat


def test_sometime_in_march_completes_the_lead_with_the_window() -> None:
    chat = _at_travel_step("en")
    assert chat.send("sometime in March") == ["What is your first and last name?"]
    chat.send("hans müller")
    chat.send("hans@example.de")
    chat.send("German", choice="de")
    chat.send("I agree", choice="yes")
    chat.send("Skip", choice="__skip__")
    done = chat.send("Skip", choice="__skip__")
    assert "#1042" in done[-1]
    (lead,) = chat.leads
    assert lead.request.preferred_time == "2027-03-01" and lead.request.preferred_end == "2027-03-31"
    assert lead.answers["travel_dates"] == {"start": "2027-03-01", "end": "2027-03-31"}
    assert lead.answers["travel_dates_text"] == "sometime in March"
    assert "Travel: 1–31 March 2027" in lead.summary  # what the agents read in the CRM


def test_after_ramadan_is_confirmed_with_the_window_and_no_asks_again() -> None:
    chat = _at_travel_step("en")
    assert chat.send("after Ramadan") == ["Do you mean Tue 09.03 – Wed 07.04?"]
    assert [o.title for o in chat.last[0].options] == ["Yes", "No"]
    assert chat.send("No", choice="when:no") == ["When are you thinking of travelling? (e.g. 10-17 March)"]
    assert chat.conv.attempts == {} and "travel_dates" not in chat.conv.answers
    assert chat.send("بعد رمضان") == ["Do you mean Tue 09.03 – Wed 07.04?"]
    chat.send("yes")
    assert chat.conv.answers["travel_dates"] == {"start": "2027-03-09", "end": "2027-04-07"}
    assert chat.conv.answers["travel_dates_text"] == "بعد رمضان" and chat.conv.step == "name"


@pytest.mark.parametrize(("language", "said", "question"), [
    ("tr", "Mart ayında, okul tatilinde", "Pzt 01.03 – Çar 31.03 mi demek istediniz?"),
    ("de", "in den Sommerferien", "Meinen Sie Di 01.06 – Di 31.08?"),
    ("ru", "скоро", "Вы имеете в виду Пн 23.11 – Ср 23.12?"),
])
def test_vague_windows_are_asked_back_in_the_patients_language(language: str, said: str, question: str) -> None:
    chat = _at_travel_step(language)
    assert chat.send(said) == [question]
    chat.send("ok", choice="when:0")
    assert chat.conv.answers["travel_dates_text"] == said and chat.conv.step != "travel_dates"


def test_a_month_alone_for_one_day_still_asks_for_the_day() -> None:
    chat = Chat("meeting_request", language="en")
    for said in ("Hi", "Pricing", "Acme, a@acme.io"):
        chat.send(said)
    assert chat.conv.step == "preferred_time"
    chat.send("sometime in March")
    assert chat.conv.step == "preferred_time" and "preferred_time" not in chat.conv.answers
