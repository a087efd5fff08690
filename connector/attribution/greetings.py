"""Greetings, and the languages they belong to: the first message is often nothing else.

A statistical detector cannot tell a language from one word ("Hallo" reads as English, "Servus" as
Turkish), so a message made only of greetings is looked up here: "Hallo", "Moin", "Servus", "Guten
Tag", "Merhaba", "Selam", "Günaydın", "Привет", "Здравствуйте", "مرحبا", "السلام عليكم", "Hi", "Hello",
"Hey", with the misspellings patients make (letters doubled or dropped: "Hallooo", "Merhba", "Helo",
"Здраствуйте"). A greeting several languages share gives them all ("Hi": English and German; "سلام":
Arabic and Persian), and the caller decides (:mod:`connector.attribution.language`).

Greetings of languages that share a script with the bot's are listed too (Persian, Urdu, Ukrainian,
Bulgarian, Serbian, Azerbaijani), so that their speakers are recognised and asked, not misread.
"""

from __future__ import annotations

import re

from connector.bot.calendar_words import fold

#: greetings by language, as patients write them (compared folded, with doubled letters made single)
GREETINGS: dict[str, list[str]] = {
    "tr": ["merhaba", "merhabalar", "mrb", "mrhb", "mrhaba", "meraba", "slm", "selam", "selamlar",
           "selamün aleyküm", "selamun aleykum", "sa", "iyi günler", "günaydın", "tünaydın", "iyi akşamlar",
           "hayırlı günler", "kolay gelsin", "hoş bulduk"],
    "en": ["hi", "hey", "hello", "hiya", "howdy", "good morning", "good afternoon", "good evening", "greetings",
           "hi there", "hello there", "hey there", "hello everyone"],
    "de": ["hi", "hey", "hallo", "hallöchen", "hallo zusammen", "moin", "moinsen", "servus", "grüß gott",
           "grüss gott", "grüezi", "guten tag", "guten morgen", "guten abend", "tag", "tach"],
    "ar": ["مرحبا", "مرحبتين", "اهلا", "اهلين", "هلا", "هلا والله", "اهلا وسهلا", "هاي", "السلام عليكم",
           "سلام عليكم", "السلام عليكم ورحمة الله", "السلام عليكم ورحمة الله وبركاته", "صباح الخير", "مساء الخير",
           "سلام", "سلامات"],
    "ru": ["привет", "приветик", "приветствую", "здравствуйте", "здрасте", "здрасьте", "здравствуй",
           "добрый день", "доброе утро", "добрый вечер", "доброго дня", "privet"],
    "fa": ["سلام", "درود", "سلام علیکم", "السلام علیکم", "وقت بخیر", "روز بخیر", "صبح بخیر", "عصر بخیر", "وقتتون بخیر"],
    "ur": ["السلام علیکم", "اسلام علیکم", "سلام علیکم", "آداب"],
    "uk": ["привіт", "вітаю", "добрий день", "доброго дня", "добрий вечір", "доброго ранку"],
    "bg": ["здравейте", "здравей", "добър ден", "добро утро", "добър вечер"],
    "sr": ["здраво", "добар дан", "добро јутро", "добро вече"],
    "az": ["salam", "salamlar", "salam aleykum", "sabahınız xeyir", "günortanız xeyir", "axşamınız xeyir"],
}

_LETTERS = re.compile(r"[^\W\d_]+")
_REPEATS = re.compile(r"(\w)\1+")


def _key(text: str) -> str:
    """A greeting as compared: folded (Persian letters kept), letters only, doubled letters made single."""
    return _REPEATS.sub(r"\1", " ".join(_LETTERS.findall(fold(text, keep_persian=True))))


_TABLE: dict[str, set[str]] = {}
for _code, _phrases in GREETINGS.items():
    for _phrase in _phrases:
        _TABLE.setdefault(_key(_phrase), set()).add(_code)
_LONGEST = max(len(key.split()) for key in _TABLE)


def _close(word: str) -> set[str] | None:
    """The languages of the one greeting a word of five letters or more misses by one letter ("merhba")."""
    if len(word) < 5:
        return None
    found = [languages for key, languages in _TABLE.items() if len(key) >= 5 and _one_edit(word, key)]
    return found[0] if found and all(languages == found[0] for languages in found) else None


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def greeting_languages(text: str) -> set[str] | None:
    """The languages a message made only of greetings is in ("Hallo!" → {de}, "Hi" → {en, de}, "Hello merhaba"
    → empty: two languages); None when the message says more than hello."""
    words = _key(text).split()
    if not words:
        return None
    languages: set[str] | None = None
    i = 0
    while i < len(words):
        for size in range(min(_LONGEST, len(words) - i), 0, -1):
            found = _TABLE.get(" ".join(words[i:i + size]))
            if found is None and size == 1:
                found = _close(words[i])
            if found is not None:
                languages = set(found) if languages is None else languages & found
                i += size
                break
        else:
            return None
    return languages
