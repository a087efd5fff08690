"""Where a patient lives, read from their answer: a city and a country (ISO 3166-1 alpha-2).

A location answer is words ("Munich, Germany", "Amsterdam, Hollanda", "Москва, Россия", "دبي، الإمارات",
"İzmir") or a shared pin. :func:`read_place` finds the country among the words (its name in the bot's
languages, from the ``phonenumbers`` package's localized country names, plus :data:`ALIASES`: the short and
everyday names patients write, "Holland", "UK", "USA", "Deutschland", "Almanya", "РФ", "الإمارات") and
takes what is left as the city. A city written alone has a country only when :data:`CITIES` (a small table of
cities patients often come from) knows it; the phone number's country is never used here: a Dutch resident
with a Turkish number lives in the Netherlands. A shared pin's address is read the same way.

Everything is compared folded (:func:`connector.bot.commands.fold`: case, diacritics, Turkish I/ı, Arabic
letter forms), and a Turkish suffix after an apostrophe is dropped ("Almanya'da" is "Almanya").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from connector.bot.commands import fold
from core.models import Conversation, Location

#: the languages whose country names ``phonenumbers`` ships that are read ("aa" is its English)
_NAME_LANGUAGES = ("aa", "de", "ru", "ar", "tr", "fr", "es", "it", "nl")

#: everyday country names the package does not list, per country, in the bot's languages
ALIASES: dict[str, list[str]] = {
    "DE": ["Almanya", "Deutschland", "Germania", "ФРГ", "Германии", "ألمانيا", "المانيا", "BRD"],
    "NL": ["Holland", "Hollanda", "Netherlands", "The Netherlands", "Nederland", "Niederlande", "Holland",
           "Голландия", "Нидерланды", "هولندا"],
    "GB": ["UK", "U.K.", "England", "Britain", "Great Britain", "Scotland", "Wales", "İngiltere", "Birleşik Krallık",
           "Großbritannien", "England", "Англия", "Великобритания", "بريطانيا", "المملكة المتحدة", "انجلترا"],
    "US": ["USA", "U.S.A.", "US", "U.S.", "America", "United States of America", "Amerika", "ABD", "Amerika Birleşik "
           "Devletleri", "USA", "Vereinigte Staaten", "США", "Америка", "أمريكا", "امريكا", "الولايات المتحدة"],
    "TR": ["Türkiye", "Turkiye", "Turkey", "Türkei", "Turkei", "Турция", "تركيا"],
    "RU": ["Rusya", "Russland", "Россия", "РФ", "Russian Federation", "روسيا"],
    "AE": ["UAE", "U.A.E.", "Emirates", "BAE", "Birleşik Arap Emirlikleri", "VAE", "Emirate", "ОАЭ", "Эмираты",
           "الإمارات", "الامارات العربية المتحدة", "الإمارات العربية المتحدة", "امارات"],
    "FR": ["Fransa", "Frankreich", "Франция", "فرنسا"],
    "IT": ["İtalya", "Italien", "Италия", "إيطاليا"],
    "ES": ["İspanya", "Spanien", "Испания", "إسبانيا"],
    "AT": ["Avusturya", "Österreich", "Австрия", "النمسا"],
    "CH": ["İsviçre", "Schweiz", "Швейцария", "سويسرا"],
    "BE": ["Belçika", "Belgien", "Бельгия", "بلجيكا"],
    "SE": ["İsveç", "Schweden", "Швеция", "السويد"],
    "NO": ["Norveç", "Norwegen", "Норвегия", "النرويج"],
    "DK": ["Danimarka", "Dänemark", "Дания", "الدنمارك"],
    "PL": ["Polonya", "Polen", "Польша", "بولندا"],
    "UA": ["Ukrayna", "Ukraine", "Украина", "أوكرانيا"],
    "AZ": ["Azerbaycan", "Aserbaidschan", "Азербайджан", "أذربيجان"],
    "KZ": ["Kazakistan", "Kasachstan", "Казахстан", "كازاخستان"],
    "IR": ["İran", "Иран", "إيران"],
    "IQ": ["Irak", "Ирак", "العراق"],
    "SA": ["Suudi Arabistan", "Saudi Arabia", "KSA", "Saudi-Arabien", "Саудовская Аравия", "السعودية",
           "المملكة العربية السعودية"],
    "KW": ["Kuveyt", "Кувейт", "الكويت"],
    "QA": ["Katar", "Катар", "قطر"],
    "EG": ["Mısır", "Ägypten", "Египет", "مصر"],
    "LY": ["Libya", "Libyen", "Ливия", "ليبيا"],
    "GE": ["Gürcistan", "Georgien", "Грузия", "جورجيا"],
    "IL": ["İsrail", "Израиль"],
    "GR": ["Yunanistan", "Griechenland", "Греция", "اليونان"],
    "BG": ["Bulgaristan", "Bulgarien", "Болгария", "بلغاريا"],
    "CA": ["Kanada", "Канада", "كندا"],
    "AU": ["Avustralya", "Australien", "Австралия", "أستراليا"],
}

#: cities patients often write alone, and their country (a city anywhere else keeps the country unknown)
CITIES: dict[str, list[str]] = {
    "TR": ["İstanbul", "Istanbul", "Стамбул", "إسطنبول", "اسطنبول", "İzmir", "Izmir", "Ankara", "Анкара", "أنقرة",
           "Antalya", "Анталья", "أنطاليا", "Bursa"],
    "DE": ["Berlin", "Берлин", "برلين", "München", "Munich", "Muenchen", "Мюнхен", "ميونخ", "Hamburg", "Гамбург",
           "Köln", "Cologne", "Frankfurt", "Франкфурт", "Stuttgart", "Düsseldorf", "Duesseldorf", "Dortmund", "Essen"],
    "NL": ["Amsterdam", "Амстердам", "أمستردام", "Rotterdam", "Den Haag", "The Hague", "Utrecht"],
    "GB": ["London", "Londra", "Лондон", "لندن", "Manchester", "Birmingham"],
    "FR": ["Paris", "Париж", "باريس"],
    "AT": ["Wien", "Vienna", "Viyana", "Вена", "فيينا"],
    "CH": ["Zürich", "Zurich", "Цюрих"],
    "BE": ["Brüssel", "Brussels", "Brüksel", "Брюссель"],
    "RU": ["Москва", "Moscow", "Moskau", "Moskova", "موسكو", "Санкт-Петербург", "Saint Petersburg", "St. Petersburg",
           "Петербург", "Питер", "Казань", "Новосибирск", "Екатеринбург"],
    "AE": ["دبي", "Dubai", "Dubaj", "Дубай", "أبوظبي", "ابوظبي", "أبو ظبي", "Abu Dhabi", "Абу-Даби", "الشارقة",
           "Sharjah"],
    "SA": ["الرياض", "Riyadh", "Riad", "جدة", "Jeddah", "الدمام"],
    "KW": ["الكويت", "Kuwait City"],
    "QA": ["الدوحة", "Doha"],
    "IQ": ["بغداد", "Baghdad", "أربيل", "Erbil"],
    "EG": ["القاهرة", "Cairo", "Kairo"],
    "AZ": ["Bakü", "Baku", "Баку"],
    "KZ": ["Almatı", "Almaty", "Алматы", "Astana", "Астана"],
    "UA": ["Kyiv", "Kiev", "Киев", "Київ", "Odessa", "Одесса"],
    "US": ["New York", "Нью-Йорк"],
}

_PARTS = re.compile(r"\s*(?:[,،;/|\n]|\s[-–—]\s)\s*")
_APOSTROPHE = re.compile(r"(?<=\w)['’ʼ`´]\w*")
#: a postcode before a city in an address ("10117 Berlin", "1012 JS Amsterdam", "SW1A 1AA London")
_POSTCODE = re.compile(r"\b(?:\d{4}\s?[A-Z]{2}|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]{0,2}[- ]?\d[\d\s-]{2,8})\b")


@dataclass(frozen=True)
class Place:
    """A place as read: the city as written (None when only a country was given) and the country's ISO code."""

    city: str | None
    country: str | None


def _key(text: str) -> str:
    """``text`` as the tables compare it: folded, a Turkish suffix after an apostrophe dropped."""
    return fold(_APOSTROPHE.sub("", text))


def _variants(key: str) -> list[str]:
    """The forms of a folded Arabic name, with and without its article (الإمارات, إمارات)."""
    return [key, key[2:]] if key.startswith("ال") and len(key) > 4 else [key]


@cache
def _countries() -> dict[str, str]:
    """Every country name the tables know, folded, to its ISO code."""
    from phonenumbers.geodata.locale import LOCALE_DATA  # localized country names, shipped with phonenumbers

    names: dict[str, str] = {}
    for code, localized in LOCALE_DATA.items():
        if len(code) != 2 or not code.isalpha():
            continue
        for language in _NAME_LANGUAGES:
            name = localized.get(language, "")
            if name and not name.startswith("*"):
                for key in _variants(_key(name)):
                    names.setdefault(key, code)
    for code, aliases in ALIASES.items():
        for alias in aliases:
            for key in _variants(_key(alias)):
                names[key] = code
    names.pop("", None)
    return names


@cache
def _cities() -> dict[str, str]:
    return {key: code for code, cities in CITIES.items() for city in cities for key in _variants(_key(city))}


def warm_places() -> None:
    """Build the country and city tables now (a worker about to fork: each child then shares them)."""
    _countries()
    _cities()


def country_code(text: str | None) -> str | None:
    """The ISO code of a country named by ``text`` alone ("Hollanda" → NL, "РФ" → RU), or None."""
    if not text:
        return None
    key = _key(text)
    for variant in _variants(key):
        if variant in _countries():
            return _countries()[variant]
    return None


def _split_country(part: str) -> tuple[str, str | None]:
    """A part of the answer without the country its words name, and the words before it ("Munich Germany" →
    Munich, DE; "Almanya'da yaşıyorum" → nothing, DE). The last country named wins."""
    words = part.split()
    for end in range(len(words), 0, -1):
        for size in range(min(4, end), 0, -1):
            code = country_code(" ".join(words[end - size:end]))
            if code is not None:
                return " ".join(words[:end - size]), code
    return part, None


def read_place(text: str | None) -> Place:
    """The city and country in a written location answer (either may be None)."""
    parts = [p.strip(" .!?") for p in _PARTS.split((text or "").strip()) if p.strip(" .!?")]
    country: str | None = None
    rest: list[str] = []
    for part in reversed(parts):
        if country is None:
            left, found = _split_country(part)
            if found is not None:
                country = found
                if left.strip():
                    rest.insert(0, left.strip())
                continue
        rest.insert(0, part)
    city = rest[0] if rest else None
    if city is not None and country is None:
        country = _cities().get(_key(city))
    return Place(city=_tidy_city(city), country=country)


def _tidy_city(city: str | None) -> str | None:
    if not city:
        return None
    cleaned = _APOSTROPHE.sub("", _POSTCODE.sub(" ", city)).strip(" .,-")
    return " ".join(cleaned.split()) or None


def read_pin(location: Location) -> Place:
    """The city and country of a shared location: read from its address (then its name)."""
    for words in (location.address, location.name):
        if words:
            place = read_place(words)
            if place.country is not None:
                parts = [p for p in _PARTS.split(words) if p.strip()]
                # an address ends "…, 10115 Berlin, Germany": the city is the part before the country
                city = _tidy_city(parts[-2]) if len(parts) >= 2 and country_code(parts[-1]) else place.city
                return Place(city=city, country=place.country)
    return Place(None, None)


def country_name(code: str | None, language: str | None) -> str | None:
    """A country's name in ``language`` (English when the package has none in it), for a place's words."""
    if not code:
        return None
    from phonenumbers.geodata.locale import LOCALE_DATA

    localized = LOCALE_DATA.get(code.upper(), {})
    name = localized.get(language or "aa", "") or ""
    while name.startswith("*"):
        name = localized.get(name[1:], "") or ""
    return name or localized.get("aa") or code.upper()


def keep(answers: dict[str, Any], field: str, value: Any, pin: Location | None) -> None:
    """Keep the city and country of a location answer beside its words: ``<field>_city`` and
    ``<field>_country`` (None when the answer does not say)."""
    place = read_pin(pin) if pin is not None else read_place(str(value) if value else "")
    answers[f"{field}_city"], answers[f"{field}_country"] = place.city, place.country


def iso(value: Any) -> str | None:
    """A country as its ISO code, whether written as one ("DE") or named ("Germany", "Almanya")."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) == 2 and text.isalpha() and text.isupper():
        return text
    return country_code(text)


def known_words(known: dict[str, Any], language: str | None) -> str | None:
    """Where a returning patient lives, from what the CRM holds (``city``, ``country``), as words for a
    location answer ("Munich, Deutschland"); None without a city (a country alone may be a phone's guess)."""
    city = known.get("city")
    if not isinstance(city, str) or not city.strip():
        return None
    country = known.get("country")
    return ", ".join(w for w in (city.strip(), country_name(iso(country), language) if iso(country) else None) if w)


def known(conv: Conversation, field: str, location: bool, language: str | None) -> None:
    """A location step answered from what was known: its city and country kept beside it too."""
    if not location:
        return
    answers, remembered = conv.answers, conv.known
    if f"{field}_city" in remembered or f"{field}_country" in remembered:
        answers[f"{field}_city"] = remembered.get(f"{field}_city")
        answers[f"{field}_country"] = remembered.get(f"{field}_country")
    elif known_words(remembered, language) == answers.get(field):
        answers[f"{field}_city"], answers[f"{field}_country"] = remembered.get("city"), iso(remembered.get("country"))
    else:
        keep(answers, field, answers.get(field), None)
