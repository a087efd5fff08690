"""The words patients use for days, months and times, in Turkish, English, German, Arabic and Russian.

Kept apart from the reading (:mod:`connector.bot.datetimes`, :mod:`connector.bot.ranges`) so that a
new spelling is one line here. Every word is compared after :func:`fold`: lower case, Latin letters
without diacritics (``Şubat`` = ``subat``, ``März`` = ``marz``), ``ё`` as ``е``, Arabic without its
short vowels and with one form of alif, ya and ta marbuta (``آذار`` = ``اذار``, ``الى`` = ``إلى``), and
Arabic-Indic or Persian digits as ASCII digits. Patients write all of these forms.
"""

from __future__ import annotations

import re
import unicodedata

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_FOLD = str.maketrans({
    "ç": "c", "ğ": "g", "ı": "i", "ö": "o", "ş": "s", "ü": "u", "ä": "a", "â": "a", "î": "i", "û": "u", "é": "e",
    "è": "e", "ê": "e", "à": "a", "ß": "ss", "ё": "е", "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه",
    "ـ": "", "’": "'", "‘": "'", "`": "'", "´": "'", "،": ",", "؛": ";", "٫": ".", "\u0307": "",
})
#: the Persian forms of ya and kaf, read as the Arabic ones (not when the difference matters: languages)
_PERSIAN = str.maketrans({"ی": "ي", "ک": "ك"})
_ARABIC_MARKS = re.compile("[\u064b-\u0652\u0670]")


def fold(text: str, *, keep_persian: bool = False) -> str:
    """``text`` as the tables below compare it (see the module's docstring); ``keep_persian`` keeps the
    Persian letters that tell Persian and Urdu from Arabic."""
    text = unicodedata.normalize("NFC", text).translate(_DIGITS).replace("İ", "i").replace("I", "i").lower()
    text = _ARABIC_MARKS.sub("", text.translate(_FOLD))
    return text if keep_persian else text.translate(_PERSIAN)


def _folded(words: dict[str, int]) -> dict[str, int]:
    return {fold(word): value for word, value in words.items()}


#: month names matched whole (abbreviations, case forms, both Arabic series); 1 = January
MONTH_WORDS = _folded({
    # Turkish, with the abbreviations of calendars
    "ocak": 1, "oca": 1, "şubat": 2, "şub": 2, "mart": 3, "nisan": 4, "nis": 4, "mayıs": 5, "mayis": 5,
    "haziran": 6, "haz": 6, "temmuz": 7, "tem": 7, "ağustos": 8, "ağu": 8, "agu": 8, "ağs": 8, "eylül": 9, "eyl": 9,
    "ekim": 10, "eki": 10, "kasım": 11, "kas": 11, "aralık": 12, "ara": 12,
    # English
    "january": 1, "jan": 1, "february": 2, "feb": 2, "febuary": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
    # German (Austrian Jänner, Feber)
    "januar": 1, "jänner": 1, "jaenner": 1, "februar": 2, "feber": 2, "märz": 3, "maerz": 3, "mrz": 3, "mai": 5,
    "juni": 6, "juli": 7, "oktober": 10, "okt": 10, "dezember": 12, "dez": 12,
    # Russian: nominative, genitive ("10 марта"), prepositional ("в марте"), abbreviations
    "январь": 1, "января": 1, "январе": 1, "янв": 1, "февраль": 2, "февраля": 2, "феврале": 2, "фев": 2, "февр": 2,
    "март": 3, "марта": 3, "марте": 3, "апрель": 4, "апреля": 4, "апреле": 4, "апр": 4, "май": 5, "мая": 5, "мае": 5,
    "июнь": 6, "июня": 6, "июне": 6, "июль": 7, "июля": 7, "июле": 7, "август": 8, "августа": 8, "августе": 8,
    "авг": 8, "сентябрь": 9, "сентября": 9, "сентябре": 9, "сент": 9, "сен": 9, "октябрь": 10, "октября": 10,
    "октябре": 10, "окт": 10, "ноябрь": 11, "ноября": 11, "ноябре": 11, "ноя": 11, "нояб": 11, "декабрь": 12,
    "декабря": 12, "декабре": 12, "дек": 12,
    # Arabic: the Egyptian and Gulf series, the Maghreb's, and the Levantine and Iraqi series (two-word names
    # are joined first, see ARABIC_TWO_WORD_MONTHS)
    "يناير": 1, "فبراير": 2, "مارس": 3, "أبريل": 4, "إبريل": 4, "ابريل": 4, "مايو": 5, "يونيو": 6, "يونيه": 6,
    "يوليو": 7, "يوليه": 7, "أغسطس": 8, "اغسطس": 8, "سبتمبر": 9, "أكتوبر": 10, "اكتوبر": 10, "نوفمبر": 11,
    "ديسمبر": 12, "جانفي": 1, "فيفري": 2, "أفريل": 4, "ماي": 5, "جوان": 6, "جويلية": 7, "أوت": 8,
    "شباط": 2, "آذار": 3, "اذار": 3, "نيسان": 4, "أيار": 5, "ايار": 5, "حزيران": 6, "تموز": 7, "آب": 8, "اب": 8,
    "أيلول": 9, "ايلول": 9, "كانونالثاني": 1, "تشرينالاول": 10, "تشرينالثاني": 11, "كانونالاول": 12,
})
#: Arabic month names of two words, joined into one word of MONTH_WORDS before reading
ARABIC_TWO_WORD_MONTHS = [(re.compile(fold(pattern)), fold(joined)) for pattern, joined in [
    (r"كانون\s+(?:ال)?ثاني", "كانونالثاني"), (r"كانون\s+(?:ال)?[اأ]ول", "كانونالاول"),
    (r"تشرين\s+(?:ال)?ثاني", "تشرينالثاني"), (r"تشرين\s+(?:ال)?[اأ]ول", "تشرينالاول"),
]]
#: stems of full month names that take suffixes: Turkish "Mart'ta", "Martta", Russian cases not listed above
MONTH_STEMS = sorted(_folded({
    "ocak": 1, "şubat": 2, "mart": 3, "nisan": 4, "mayıs": 5, "haziran": 6, "temmuz": 7, "ağustos": 8, "eylül": 9,
    "ekim": 10, "kasım": 11, "aralık": 12, "январ": 1, "феврал": 2, "апрел": 4, "сентябр": 9, "октябр": 10,
    "ноябр": 11, "декабр": 12,
}).items(), key=lambda item: -len(item[0]))
#: words that begin with a month's stem but are not months ("saç ekimi" is a hair transplant)
NOT_MONTHS = {fold(w) for w in ("ekimi", "ekimin", "ekimle", "martin", "nisanli", "nisanlim")}

#: weekday names and abbreviations matched whole; 0 = Monday
WEEKDAY_WORDS = _folded({
    "pazartesi": 0, "pzt": 0, "pazartesı": 0, "salı": 1, "sali": 1, "çarşamba": 2, "carsamba": 2, "çarşemba": 2,
    "çrş": 2, "perşembe": 3, "persembe": 3, "prş": 3, "cuma": 4, "cumartesi": 5, "cmt": 5, "pazar": 6,
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "tusday": 1, "wednesday": 2, "wed": 2, "wensday": 2,
    "wendsday": 2, "wednsday": 2, "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "thursay": 3, "friday": 4,
    "fri": 4, "firday": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
    "montag": 0, "dienstag": 1, "mittwoch": 2, "donnerstag": 3, "freitag": 4, "samstag": 5, "sonnabend": 5,
    "sonntag": 6, "montags": 0, "dienstags": 1, "mittwochs": 2, "donnerstags": 3, "freitags": 4, "samstags": 5,
    "sonntags": 6,
    "понедельник": 0, "пн": 0, "вторник": 1, "вт": 1, "среда": 2, "среду": 2, "среды": 2, "ср": 2, "четверг": 3,
    "чт": 3, "пятница": 4, "пятницу": 4, "пт": 4, "суббота": 5, "субботу": 5, "сб": 5, "воскресенье": 6, "вс": 6,
    "الاثنين": 0, "الإثنين": 0, "اثنين": 0, "الثلاثاء": 1, "الثلاثا": 1, "ثلاثاء": 1, "الأربعاء": 2, "الاربعاء": 2,
    "اربعاء": 2, "الخميس": 3, "خميس": 3, "الجمعة": 4, "جمعة": 4, "السبت": 5, "سبت": 5, "الأحد": 6, "الاحد": 6,
})
#: weekday stems that take suffixes: "Çarşamba'ya", "Cumaya", "понедельника"
WEEKDAY_STEMS = sorted(_folded({
    "pazartesi": 0, "salı": 1, "çarşamba": 2, "perşembe": 3, "cumartesi": 5, "cuma": 4, "pazar": 6,
    "понедельн": 0, "вторник": 1, "четверг": 3, "пятниц": 4, "суббот": 5, "воскресен": 6,
}).items(), key=lambda item: -len(item[0]))

#: words for the day after tomorrow, tomorrow and today, as word sequences (longest tried first)
RELATIVE_DAYS: list[tuple[tuple[str, ...], int]] = sorted(
    [(tuple(fold(phrase).split()), days) for phrase, days in [
        ("öbür gün", 2), ("obür gün", 2), ("yarından sonra", 2), ("day after tomorrow", 2), ("übermorgen", 2),
        ("uebermorgen", 2), ("послезавтра", 2), ("بعد غد", 2), ("بعد غدا", 2), ("بعد الغد", 2), ("بعد بكرة", 2),
        ("بعد بكرا", 2),
        ("yarın", 1), ("tomorrow", 1), ("tomorow", 1), ("tommorow", 1), ("tommorrow", 1), ("tmrw", 1), ("tmr", 1),
        ("morgen", 1), ("завтра", 1), ("غدا", 1), ("الغد", 1), ("بكرة", 1), ("بكرا", 1),
        ("bugün", 0), ("today", 0), ("tonight", 0), ("heute", 0), ("сегодня", 0), ("اليوم", 0), ("النهارده", 0),
        ("النهاردة", 0),
    ]], key=lambda item: -len(item[0]))
#: before these, German "morgen" is the morning ("heute Morgen", "am Morgen"), not tomorrow
MORGEN_AS_MORNING = {"am", "guten", "heute", "jeden", "gestern", "früh", "frueh"}

#: "in 3 days": the words before and after the number
IN_DAYS_BEFORE = {"in", "через", "بعد", "nach"}
DAY_UNITS = {fold(w) for w in ("days", "day", "tagen", "tage", "tag", "дня", "дней", "день", "ايام", "يوم",
                               "gün", "gun")}
IN_DAYS_AFTER = {"sonra"}

#: "next week", "haftaya": a weekday named with it is the one of next week
NEXT_WEEK = [tuple(fold(p).split()) for p in (
    "haftaya", "gelecek hafta", "önümüzdeki hafta", "next week", "nächste woche", "nächsten woche",
    "kommende woche", "kommenden woche", "следующей неделе", "след неделе", "الأسبوع القادم", "الاسبوع القادم",
    "الأسبوع المقبل", "الأسبوع الجاي")]
#: "this Friday", "önümüzdeki cuma", "الخميس القادم": the weekday coming next
COMING = {fold(w) for w in ("this", "coming", "bu", "önümüzdeki", "diesen", "diese", "dieser", "kommenden",
                            "kommender", "эту", "этот", "это", "ближайший", "ближайшую", "القادم", "القادمة", "الجاي",
                            "الجاية", "المقبل", "المقبلة")}
#: "next Tuesday", "nächsten Dienstag", "в следующий вторник": the coming one, or the one a week later
NEXT = {fold(w) for w in ("next", "nächsten", "nächster", "nächste", "naechsten", "gelecek", "следующий",
                          "следующую", "следующее", "следующая", "след")}

#: times: words before an hour ("saat 3", "um 15", "в 10", "الساعة 10") and after it ("11 Uhr", "3 часа")
HOUR_BEFORE = {fold(w) for w in ("saat", "at", "um", "gegen", "в", "к", "الساعة", "ساعة", "الساعه")}
HOUR_AFTER = {fold(w) for w in ("uhr", "h", "oclock", "часов", "часа", "час", "ч")}
#: Turkish case endings written after an hour ("11'de", "15'te", "10'da")
HOUR_SUFFIXES = {"de", "da", "te", "ta", "den", "dan", "ten", "tan", "e", "a", "ye", "ya"}
HALF_AFTER = {fold(w) for w in ("buçuk", "buçukta", "bucuk", "bucukta", "والنص", "ونص", "والنصف", "ونصف")}
HALF_BEFORE = {"halb"}

#: parts of the day: the words, and what they make of an hour
AM, PM, NOON, NIGHT = "morning", "afternoon", "noon", "night"
PARTS_OF_DAY: list[tuple[tuple[str, ...], str]] = sorted(
    [(tuple(fold(phrase).split()), part) for phrase, part in [
        ("öğleden sonra", PM), ("ogleden sonra", PM), ("öğlenden sonra", PM), ("akşam", PM), ("akşamüstü", PM),
        ("aksamleyin", PM), ("afternoon", PM), ("evening", PM), ("tonight", PM),
        ("nachmittag", PM), ("nachmittags", PM), ("abend", PM), ("abends", PM), ("после обеда", PM), ("днём", PM),
        ("дня", PM), ("вечером", PM), ("вечера", PM), ("вечер", PM), ("مساء", PM), ("مساءا", PM), ("المساء", PM),
        ("بعد الظهر", PM), ("العصر", PM), ("عصرا", PM), ("بالليل", NIGHT), ("gece", NIGHT), ("night", NIGHT),
        ("nachts", NIGHT), ("ночью", NIGHT), ("ночи", NIGHT), ("ليلا", NIGHT),
        ("sabah", AM), ("sabahleyin", AM), ("öğleden önce", AM), ("morning", AM),
        ("morgens", AM), ("vormittag", AM), ("vormittags", AM), ("früh", AM), ("am morgen", AM), ("утром", AM),
        ("утра", AM), ("с утра", AM), ("صباحا", AM), ("صباح", AM), ("الصبح", AM), ("الصباح", AM),
        ("öğlen", NOON), ("öğle", NOON), ("öğleyin", NOON), ("noon", NOON), ("midday", NOON), ("mittag", NOON),
        ("mittags", NOON), ("полдень", NOON), ("в обед", NOON), ("обед", NOON), ("الظهر", NOON), ("ظهرا", NOON),
    ]], key=lambda item: -len(item[0]))

#: words joining the two ends of a range ("10-14", "vom 10. bis 14.", "с 10 по 14", "10 إلى 14")
RANGE_JOINERS = {fold(w) for w in ("-", "–", "—", "~", "to", "till", "til", "until", "through", "thru", "and",
                                   "bis", "und", "по", "до", "и", "إلى", "الى", "حتى", "لـ", "ل", "و", "ile", "ve",
                                   "dan", "den", "tan", "ten")}
#: words that may stand between a range's ends or around them without changing it
RANGE_FILLERS = {fold(w) for w in (".", ",", "'", "the", "of", "dem", "zum", "den", "kadar", "e", "a", "ye", "ya", "ine",
                                   "ina", "une", "una", "ne", "na", "si", "i", "ı", "u", "ü", "го", "ого", "числа",
                                   "th", "st", "nd", "rd")}
#: a stay given by its length after the first day ("1 week", "5 nights", "2 hafta", "на 5 ночей", "أسبوعين")
STAY_UNITS = {fold(w): days for w, days in {
    "week": 7, "weeks": 7, "hafta": 7, "woche": 7, "wochen": 7, "неделю": 7, "недели": 7, "недель": 7, "неделя": 7,
    "أسبوع": 7, "اسبوع": 7, "أسابيع": 7, "nights": 1, "night": 1, "gece": 1, "nächte": 1, "nacht": 1, "ночей": 1,
    "ночи": 1, "ночь": 1, "ليال": 1, "ليالي": 1, "ليلة": 1,
}.items()}
#: the Arabic dual: "أسبوعين" is two weeks
STAY_DUALS = {fold("أسبوعين"): 14, fold("اسبوعين"): 14, fold("ليلتين"): 2}
#: one, written as a word before a unit ("a week", "bir hafta", "eine Woche")
ONE = {fold(w) for w in ("a", "one", "bir", "ein", "eine", "einer", "одну", "одна")}
