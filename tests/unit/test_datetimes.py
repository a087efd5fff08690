"""Day-and-time phrases in Turkish, English, German, Arabic and Russian → ISO 8601 in Europe/Istanbul.

``now`` is Monday 23 November 2026, 09:30 in Istanbul. Bare hours from 1 to 7 are read as the
afternoon (clinic hours); a time with no day, or two days, must be confirmed (candidates). The larger
table of patients' phrases is ``tests/data/dates/phrases.yaml`` (``test_datetimes_phrases.py``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from connector.bot.datetimes import parse_date_range, parse_when

ZONE = ZoneInfo("Europe/Istanbul")
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=ZONE)
T = "+03:00"

TABLE = [
    # Turkish
    ("tr", "Çarşamba 11:00 uygun.", f"2026-11-25T11:00:00{T}"),
    ("tr", "yarın saat 3", f"2026-11-24T15:00:00{T}"),
    ("tr", "Cumartesi sabah 10", f"2026-11-28T10:00:00{T}"),
    ("tr", "cuma 14.30", f"2026-11-27T14:30:00{T}"),
    ("tr", "haftaya salı 10:00", f"2026-12-01T10:00:00{T}"),
    ("tr", "12 Aralık saat 11", f"2026-12-12T11:00:00{T}"),
    ("tr", "Perşembe öğleden sonra 3", f"2026-11-26T15:00:00{T}"),
    ("tr", "Çarşamba'ya 11'de", f"2026-11-25T11:00:00{T}"),
    ("tr", "bugün 16:00", f"2026-11-23T16:00:00{T}"),
    ("tr", "PAZARTESİ 10:30", f"2026-11-23T10:30:00{T}"),  # Monday, and 10:30 is still ahead
    ("tr", "PAZARTESİ 09:00", f"2026-11-30T09:00:00{T}"),  # already past today: next Monday
    ("tr", "öbür gün saat 9", f"2026-11-25T09:00:00{T}"),
    ("tr", "25.11 saat 14:00", f"2026-11-25T14:00:00{T}"),
    # English
    ("en", "this Tuesday 2pm", f"2026-11-24T14:00:00{T}"),
    ("en", "Friday at 4", f"2026-11-27T16:00:00{T}"),
    ("en", "12/12 10:00", f"2026-12-12T10:00:00{T}"),
    ("en", "today 5pm", f"2026-11-23T17:00:00{T}"),
    ("en", "December 3rd at 10am", f"2026-12-03T10:00:00{T}"),
    ("en", "tomorrow at 11:30", f"2026-11-24T11:30:00{T}"),
    ("en", "Thursday morning 9", f"2026-11-26T09:00:00{T}"),
    ("en", "wed 12:15", f"2026-11-25T12:15:00{T}"),
    ("en", "next week Monday 10:00", f"2026-11-30T10:00:00{T}"),
    # German
    ("de", "Mittwoch 11 Uhr", f"2026-11-25T11:00:00{T}"),
    ("de", "am Donnerstag um 15 Uhr", f"2026-11-26T15:00:00{T}"),
    ("de", "übermorgen 9 Uhr", f"2026-11-25T09:00:00{T}"),
    ("de", "12. Dezember um 10 Uhr", f"2026-12-12T10:00:00{T}"),
    ("de", "morgen nachmittag 3", f"2026-11-24T15:00:00{T}"),
    ("de", "Freitag 16:30", f"2026-11-27T16:30:00{T}"),
    ("de", "nächste Woche Montag 10 Uhr", f"2026-11-30T10:00:00{T}"),
    ("de", "Samstag vormittags 10", f"2026-11-28T10:00:00{T}"),
    # Russian
    ("ru", "завтра в 10", f"2026-11-24T10:00:00{T}"),
    ("ru", "в пятницу в 16:00", f"2026-11-27T16:00:00{T}"),
    ("ru", "в среду в 11", f"2026-11-25T11:00:00{T}"),
    ("ru", "12 декабря в 11:30", f"2026-12-12T11:30:00{T}"),
    ("ru", "послезавтра в 14:00", f"2026-11-25T14:00:00{T}"),
    ("ru", "четверг 3 часа дня", f"2026-11-26T15:00:00{T}"),
    ("ru", "сегодня вечером в 6", f"2026-11-23T18:00:00{T}"),
    # Arabic
    ("ar", "غدا الساعة 10", f"2026-11-24T10:00:00{T}"),
    ("ar", "الأربعاء 11:00", f"2026-11-25T11:00:00{T}"),
    ("ar", "يوم الخميس الساعة 3 مساء", f"2026-11-26T15:00:00{T}"),
    ("ar", "الجمعة صباحا 9", f"2026-11-27T09:00:00{T}"),
    ("ar", "بعد غد الساعة ١١", f"2026-11-25T11:00:00{T}"),
    ("ar", "السبت ١٠:٣٠", f"2026-11-28T10:30:00{T}"),
    # days without a time keep only the date
    ("en", "tomorrow", "2026-11-24"),
    ("tr", "Perşembe", "2026-11-26"),
]


@pytest.mark.parametrize(("language", "text", "expected"), TABLE, ids=[t for _, t, _ in TABLE])
def test_phrase(language: str, text: str, expected: str) -> None:
    result = parse_when(text, language=language, now=NOW, zone=ZONE)
    assert result.value == expected
    assert not result.ambiguous and result.text == text


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 40 and {lang for lang, _, _ in TABLE} == {"tr", "en", "de", "ar", "ru"}


@pytest.mark.parametrize(("language", "text", "candidates"), [
    ("en", "11:00", [f"2026-11-23T11:00:00{T}", f"2026-11-24T11:00:00{T}"]),
    ("tr", "saat 9", [f"2026-11-24T09:00:00{T}", f"2026-11-25T09:00:00{T}"]),
    ("tr", "pazartesi veya salı 10:00", [f"2026-11-23T10:00:00{T}", f"2026-11-24T10:00:00{T}"]),
    # on Monday, "next Tuesday" is tomorrow for some and Tuesday of next week for others
    ("en", "next Tuesday 2pm", [f"2026-11-24T14:00:00{T}", f"2026-12-01T14:00:00{T}"]),
])
def test_ambiguous_phrases_offer_candidates(language: str, text: str, candidates: list[str]) -> None:
    result = parse_when(text, language=language, now=NOW, zone=ZONE)
    assert result.ambiguous and result.value is None and result.candidates == candidates


@pytest.mark.parametrize("text", ["fiyat nedir?", "hello", "", "bugün 08:00"])
def test_nothing_or_the_past_is_not_a_time(text: str) -> None:
    assert parse_when(text, language="tr", now=NOW, zone=ZONE).value is None


def test_bare_afternoon_hour_is_recorded_as_an_assumption() -> None:
    assert parse_when("yarın saat 3", language="tr", now=NOW, zone=ZONE).assumptions


@pytest.mark.parametrize(("text", "expected"), [
    ("10-17 Mart", ("2027-03-10", "2027-03-17")),
    ("12.03 - 19.03", ("2027-03-12", "2027-03-19")),
    ("5-12 December", ("2026-12-05", "2026-12-12")),
])
def test_date_ranges(text: str, expected: tuple[str, str]) -> None:
    assert parse_date_range(text, language=None, now=NOW, zone=ZONE) == expected
