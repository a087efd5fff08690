"""When Ramadan ends: the first day of Shawwal (Eid al-Fitr) in the Umm al-Qura calendar, by Gregorian date.

Patients from the Gulf and from Turkey plan treatment trips "after Ramadan" (:mod:`connector.bot.windows`
reads that as the month after Eid al-Fitr). The dates below are the Umm al-Qura calendar of Saudi
Arabia (the calendar the Gulf states publish in advance), for 1446–1480 AH, as tabulated by the
``hijridate`` package 2.6.0 (MIT): kept here as a table rather than a dependency, because the relay needs
two dates a year and nothing else of a calendar library. Where the crescent is sighted locally the
feast may fall a day either side; a window of a month does not depend on that day.
"""

from __future__ import annotations

from datetime import date

#: Hijri year → (1 Ramadan, 1 Shawwal = Eid al-Fitr), in the Gregorian calendar
RAMADAN: dict[int, tuple[date, date]] = {
    1446: (date(2025, 3, 1), date(2025, 3, 30)),
    1447: (date(2026, 2, 18), date(2026, 3, 20)),
    1448: (date(2027, 2, 8), date(2027, 3, 9)),
    1449: (date(2028, 1, 28), date(2028, 2, 26)),
    1450: (date(2029, 1, 16), date(2029, 2, 14)),
    1451: (date(2030, 1, 5), date(2030, 2, 4)),
    1452: (date(2030, 12, 26), date(2031, 1, 24)),
    1453: (date(2031, 12, 15), date(2032, 1, 14)),
    1454: (date(2032, 12, 4), date(2033, 1, 2)),
    1455: (date(2033, 11, 23), date(2033, 12, 23)),
    1456: (date(2034, 11, 12), date(2034, 12, 12)),
    1457: (date(2035, 11, 1), date(2035, 12, 1)),
    1458: (date(2036, 10, 20), date(2036, 11, 19)),
    1459: (date(2037, 10, 10), date(2037, 11, 8)),
    1460: (date(2038, 9, 30), date(2038, 10, 29)),
    1461: (date(2039, 9, 19), date(2039, 10, 19)),
    1462: (date(2040, 9, 7), date(2040, 10, 7)),
    1463: (date(2041, 8, 28), date(2041, 9, 26)),
    1464: (date(2042, 8, 17), date(2042, 9, 15)),
    1465: (date(2043, 8, 6), date(2043, 9, 4)),
    1466: (date(2044, 7, 26), date(2044, 8, 24)),
    1467: (date(2045, 7, 15), date(2045, 8, 14)),
    1468: (date(2046, 7, 5), date(2046, 8, 3)),
    1469: (date(2047, 6, 24), date(2047, 7, 24)),
    1470: (date(2048, 6, 12), date(2048, 7, 12)),
    1471: (date(2049, 6, 2), date(2049, 7, 1)),
    1472: (date(2050, 5, 22), date(2050, 6, 20)),
    1473: (date(2051, 5, 11), date(2051, 6, 10)),
    1474: (date(2052, 4, 30), date(2052, 5, 29)),
    1475: (date(2053, 4, 20), date(2053, 5, 19)),
    1476: (date(2054, 4, 9), date(2054, 5, 9)),
    1477: (date(2055, 3, 29), date(2055, 4, 28)),
    1478: (date(2056, 3, 17), date(2056, 4, 16)),
    1479: (date(2057, 3, 6), date(2057, 4, 5)),
    1480: (date(2058, 2, 24), date(2058, 3, 25)),
}


def eids_from(today: date) -> list[date]:
    """The Eid al-Fitr dates of the table, from the last one before ``today`` on (a window after it may
    still be running); empty once the table is behind ``today``."""
    eids = sorted(eid for _, eid in RAMADAN.values())
    earlier = [eid for eid in eids if eid < today]
    return ([earlier[-1]] if earlier else []) + [eid for eid in eids if eid >= today]
