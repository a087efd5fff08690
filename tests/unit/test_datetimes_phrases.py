"""The phrase table (``tests/data/dates/phrases.yaml``): days, times and travel dates as patients write them.

Each phrase is read as the conversation's language would read it, against the table's fixed "now" and
time zone, and must give exactly the value listed: a value, ``ask`` (nothing taken: the bot asks back),
or ``{confirm: ...}`` (a weekday contradicts the explicit date: the bot confirms the date).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from connector.bot.datetimes import parse_when
from connector.bot.ranges import read_range

TABLE = yaml.safe_load((Path(__file__).parents[1] / "data" / "dates" / "phrases.yaml").read_text(encoding="utf-8"))
NOW = datetime.fromisoformat(TABLE["now"])
ZONE = ZoneInfo(TABLE["zone"])
PHRASES: list[dict[str, Any]] = TABLE["phrases"]
LANGUAGES = {"tr", "en", "de", "ar", "ru"}


def _read(phrase: dict[str, Any]) -> Any:
    """What the relay makes of the phrase, in the table's notation."""
    if phrase["kind"] == "when":
        when = parse_when(phrase["text"], language=phrase["lang"], now=NOW, zone=ZONE)
        assert when.text == phrase["text"]
        if when.value is not None:
            assert not when.ambiguous and when.confirm is None
            return when.value
        return {"confirm": when.confirm} if when.confirm else "ask"
    found = read_range(phrase["text"], language=phrase["lang"], now=NOW, zone=ZONE)
    if found.value is not None:
        assert found.confirm is None
        return [found.value["start"], found.value["end"]]
    return {"confirm": [found.confirm["start"], found.confirm["end"]]} if found.confirm else "ask"


@pytest.mark.parametrize("phrase", PHRASES, ids=[f"{p['lang']}:{p['text']}" for p in PHRASES])
def test_phrase(phrase: dict[str, Any]) -> None:
    assert _read(phrase) == phrase["expect"]


def test_the_table_covers_every_language_with_both_kinds_and_the_ambiguous() -> None:
    assert len(PHRASES) >= 120
    per_language = Counter(p["lang"] for p in PHRASES)
    assert set(per_language) == LANGUAGES and min(per_language.values()) >= 20, per_language
    for language in LANGUAGES:
        mine = [p for p in PHRASES if p["lang"] == language]
        assert {p["kind"] for p in mine} == {"when", "range"}
        assert any(p["expect"] == "ask" for p in mine) and any(isinstance(p["expect"], dict) for p in mine)
    assert len({(p["lang"], p["text"]) for p in PHRASES}) == len(PHRASES)  # no phrase twice


def test_a_range_without_a_month_is_asked_whatever_the_language() -> None:
    for text in ("10-14", "с 10 по 14", "vom 10. bis 14.", "10 إلى 14", "10'dan 14'e kadar"):
        assert read_range(text, language=None, now=NOW, zone=ZONE).value is None, text


def test_nothing_a_patient_writes_makes_the_readers_fail() -> None:
    pieces = ["10", "14", "3", "2027", "0000", "99999999999", "in", "days", ".", "/", "-", ":", "'", " ", "Mart", "марта", "آذار", "كانون الثاني", "pm",
              "saat", "um", "в", "الساعة", "yarın", "next", "week", "Monday", "cuma", "①", "²", "½", "١٠", "۱۴",
              "\u200f", "\u0301", "İ", "ı", "ё", "😀", "\n", "bis", "по", "إلى", "halb", "buçuk", "0", "99", "31.02."]
    rng = random.Random(20261123)
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        for language in (None, "tr", "en", "de", "ar", "ru"):
            parse_when(text, language=language, now=NOW, zone=ZONE)
            read_range(text, language=language, now=NOW, zone=ZONE)
