"""The words patients use for a travel window rather than dates, in Turkish, English, German, Arabic and Russian.

A part of a month or season ("early", "Anfang", "в конце", "başı", "أواخر"), the seasons, the school
holidays, "after Ramadan", "as soon as possible", "soon", "next month" and "next year". Read by
:mod:`connector.bot.windows`; kept apart so that a new spelling is one line here. Every word is compared
after :func:`connector.bot.calendar_words.fold` (lower case, no diacritics, one form of alif and ta
marbuta), like the words of :mod:`connector.bot.calendar_words`.
"""

from __future__ import annotations

from connector.bot.calendar_words import fold

EARLY, MID, LATE = "early", "mid", "late"
SPRING, SUMMER, AUTUMN, WINTER = "spring", "summer", "autumn", "winter"
#: the months of each season, northern hemisphere (meteorological seasons: whole months)
SEASON_MONTHS = {SPRING: (3, 4, 5), SUMMER: (6, 7, 8), AUTUMN: (9, 10, 11), WINTER: (12, 1, 2)}


def _fold_all(words: dict[str, str]) -> dict[str, str]:
    return {fold(word): value for word, value in words.items()}


def _phrases(phrases: list[str]) -> list[tuple[str, ...]]:
    """Word sequences, longest first (so "as soon as possible" is tried before "soon")."""
    return sorted({tuple(fold(p).split()) for p in phrases}, key=lambda p: -len(p))


#: a part of the month or season, written before it ("early March", "Anfang April", "в конце мая", "أواخر مارس")
PART_BEFORE = _fold_all({
    "early": EARLY, "beginning": EARLY, "start": EARLY, "mid": MID, "middle": MID, "late": LATE, "end": LATE,
    "anfang": EARLY, "anfangs": EARLY, "beginn": EARLY, "mitte": MID, "ende": LATE,
    "начале": EARLY, "начало": EARLY, "середине": MID, "середина": MID, "конце": LATE, "конец": LATE,
    "أوائل": EARLY, "بداية": EARLY, "مطلع": EARLY, "منتصف": MID, "أواسط": MID, "وسط": MID, "أواخر": LATE,
    "آخر": LATE, "نهاية": LATE,
})
#: a part written after it, the Turkish way ("Nisan başı", "Mart'ın sonunda", "yaz ortası")
PART_AFTER = _fold_all({
    "başı": EARLY, "başında": EARLY, "başları": EARLY, "başlarında": EARLY, "başlarına": EARLY, "başına": EARLY,
    "ortası": MID, "ortasında": MID, "ortaları": MID, "ortalarında": MID, "ortalarına": MID, "ortasına": MID,
    "sonu": LATE, "sonunda": LATE, "sonları": LATE, "sonlarında": LATE, "sonlarına": LATE, "sonuna": LATE,
})
#: words that may stand between a part and its month ("the end of March", "Mart'ın sonu", "في شهر")
PART_FILLERS = {fold(w) for w in ("the", "of", "in", "'", "-", "ın", "in", "un", "ün", "nın", "nin", "im", "des",
                                  "в", "во", "في", "شهر", "من", "ayı", "ayının", "ayın")}
#: words before a month that make a short or ambiguous name a month ("in May", "im Mai", "в мае", "شهر آب")
MONTH_CUES = {fold(w) for w in ("in", "im", "ab", "until", "for", "sometime", "irgendwann", "в", "во", "с", "до",
                                "في", "شهر", "بشهر", "خلال")}
#: short month names that are no other word (other short names, "may", "ara", "ماي", need a cue)
SHORT_MONTHS = {fold(w) for w in ("mai", "май", "мая", "мае", "jan", "feb", "jun", "jul", "aug", "sep", "oct", "nov",
                                  "dec", "dez", "okt", "mrz", "янв", "фев", "апр", "авг", "сен", "окт", "ноя", "дек")}

#: a season's name; German compounds say the part too ("Frühsommer")
SEASON_WORDS: dict[str, tuple[str, str | None]] = {fold(w): value for w, value in {
    "spring": (SPRING, None), "springtime": (SPRING, None), "summer": (SUMMER, None), "summertime": (SUMMER, None),
    "autumn": (AUTUMN, None), "fall": (AUTUMN, None), "winter": (WINTER, None), "midsummer": (SUMMER, MID),
    "frühling": (SPRING, None), "frühjahr": (SPRING, None), "sommer": (SUMMER, None), "herbst": (AUTUMN, None),
    "frühsommer": (SUMMER, EARLY), "hochsommer": (SUMMER, MID), "spätsommer": (SUMMER, LATE),
    "frühherbst": (AUTUMN, EARLY), "spätherbst": (AUTUMN, LATE), "spätwinter": (WINTER, LATE),
    "весна": (SPRING, None), "весной": (SPRING, None), "весну": (SPRING, None), "весны": (SPRING, None),
    "весне": (SPRING, None), "лето": (SUMMER, None), "летом": (SUMMER, None), "лета": (SUMMER, None),
    "осень": (AUTUMN, None), "осенью": (AUTUMN, None), "осени": (AUTUMN, None), "зима": (WINTER, None),
    "зимой": (WINTER, None), "зиму": (WINTER, None), "зимы": (WINTER, None), "зиме": (WINTER, None),
    "ilkbahar": (SPRING, None), "ilkbaharda": (SPRING, None), "bahar": (SPRING, None), "baharda": (SPRING, None),
    "yaz": (SUMMER, None), "yazın": (SUMMER, None), "yazında": (SUMMER, None), "yazına": (SUMMER, None),
    "baharında": (SPRING, None), "ilkbaharında": (SPRING, None), "sonbaharında": (AUTUMN, None),
    "kışında": (WINTER, None), "yazin": (SUMMER, None), "yazda": (SUMMER, None),
    "yaza": (SUMMER, None), "sonbahar": (AUTUMN, None), "sonbaharda": (AUTUMN, None),
    "kış": (WINTER, None), "kışın": (WINTER, None),
    "الربيع": (SPRING, None), "ربيع": (SPRING, None), "الصيف": (SUMMER, None), "صيف": (SUMMER, None),
    "صيفا": (SUMMER, None), "الخريف": (AUTUMN, None), "خريف": (AUTUMN, None), "الشتاء": (WINTER, None),
    "شتاء": (WINTER, None), "الشتا": (WINTER, None), "شتاءا": (WINTER, None),
}.items()}

#: "next" said of a month or season: the one after the current one ("next summer", "nächsten Herbst",
#: "следующим летом", "gelecek yaz"; Arabic after it: "الصيف القادم")
NEXT_BEFORE = {fold(w) for w in ("next", "following", "nächsten", "nächster", "nächste", "kommenden", "kommender",
                                 "gelecek", "önümüzdeki", "следующим", "следующей", "следующий", "следующую",
                                 "следующая", "будущим", "будущей")}
NEXT_AFTER = {fold(w) for w in ("القادم", "القادمة", "المقبل", "المقبلة", "الجاي", "الجاية")}

#: a school holiday: the word, and the season its name says (None: the long holidays, in summer)
HOLIDAY_STEMS = [(fold(stem), season) for stem, season in [
    ("sommerferien", SUMMER), ("osterferien", SPRING), ("pfingstferien", SPRING), ("herbstferien", AUTUMN),
    ("winterferien", WINTER), ("weihnachtsferien", WINTER), ("faschingsferien", WINTER), ("schulferien", None),
    ("ferien", None), ("каникул", None), ("tatil", None),
]]
#: an English or Arabic holiday word, a holiday only with a word for school or a season beside it
HOLIDAY_WORDS = {fold(w) for w in ("holiday", "holidays", "vacation", "vacations", "break", "half-term", "عطلة",
                                   "العطلة", "بالعطلة", "عطلة", "إجازة", "الإجازة", "اجازة", "بالإجازة")}
#: words beside a holiday word: school, or the season they name
HOLIDAY_HINTS: dict[str, str | None] = {fold(w): season for w, season in {
    "school": None, "schools": None, "kids": None, "children's": None, "summer": SUMMER, "easter": SPRING,
    "spring": SPRING, "christmas": WINTER, "winter": WINTER, "autumn": AUTUMN, "fall": AUTUMN,
    "okul": None, "okulların": None, "okullar": None, "yaz": SUMMER, "yarıyıl": WINTER, "sömestr": WINTER,
    "sömestir": WINTER, "somestr": WINTER, "kış": WINTER, "bahar": SPRING,
    "школьные": None, "летние": SUMMER, "летних": SUMMER, "зимние": WINTER, "зимних": WINTER,
    "новогодние": WINTER, "весенние": SPRING, "весенних": SPRING, "осенние": AUTUMN, "осенних": AUTUMN,
    "المدرسية": None, "المدارس": None, "الدراسية": None, "الصيفية": SUMMER, "الصيف": SUMMER,
    "الشتوية": WINTER, "الربيع": SPRING, "الربيعية": SPRING,
}.items()}

#: Ramadan (or the feast that ends it), and "after" written before or after it
RAMADAN_STEMS = tuple(fold(w) for w in ("ramadan", "ramazan", "рамадан", "рамазан", "ураза", "уразы", "رمضان",
                                        "الفطر", "fitr"))
AFTER_BEFORE = {fold(w) for w in ("after", "nach", "после", "بعد", "following")}
AFTER_AFTER = {fold(w) for w in ("sonra", "sonrasında", "sonrasi", "sonrası")}

#: as soon as possible: from today, for a month
ASAP = _phrases([
    "asap", "as soon as possible", "as soon as i can", "right away", "immediately",
    "en kısa zamanda", "en kısa sürede", "en yakın zamanda", "en erken", "bir an önce", "hemen", "acilen",
    "so schnell wie möglich", "so bald wie möglich", "sobald wie möglich", "schnellstmöglich", "baldmöglichst",
    "möglichst bald", "möglichst schnell", "so früh wie möglich", "sofort",
    "как можно скорее", "как можно быстрее", "как можно раньше", "срочно", "поскорее", "побыстрее",
    "в ближайшее время", "في أقرب وقت", "بأقرب وقت", "في أسرع وقت", "بأسرع وقت", "فورا", "حالا", "بأقرب فرصة",
])
#: soon: from today for a month too, but asked back
SOON = _phrases([
    "soon", "shortly", "sometime soon", "yakında", "yakın zamanda", "yakinda", "bald", "demnächst", "zeitnah",
    "скоро", "вскоре", "в скором времени", "قريبا", "عن قريب",
])
#: the next calendar month
NEXT_MONTH = _phrases([
    "next month", "gelecek ay", "önümüzdeki ay", "nächsten monat", "nächster monat",
    "kommenden monat", "im nächsten monat", "в следующем месяце", "следующем месяце", "в следующий месяц",
    "الشهر القادم", "الشهر الجاي", "الشهر المقبل", "الشهر الجاية",
])
#: next year (alone: the whole year, asked back; with a month or season: that one, next year)
NEXT_YEAR = _phrases([
    "next year", "seneye", "gelecek yıl", "gelecek sene", "önümüzdeki yıl", "önümüzdeki sene",
    "nächstes jahr", "nächsten jahr", "im nächsten jahr", "kommendes jahr", "kommenden jahr",
    "в следующем году", "следующем году", "в будущем году", "на следующий год", "следующий год",
    "السنة القادمة", "العام القادم", "السنة الجاية", "العام المقبل", "السنة المقبلة", "العام الجاي",
])
#: two months or seasons joined by these are either one or the other ("March or April"): asked back
OR_WORDS = {fold(w) for w in ("or", "oder", "veya", "ya", "da", "yada", "или", "либо", "أو", "او")}
