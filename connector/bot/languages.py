"""A patient asking for another language, at any step: in words, or from the language menu.

Patients write "English please", "can we speak German", "auf Deutsch bitte", "Türkçe yazabilir miyiz",
"по-русски пожалуйста", "بالعربية من فضلك"; or they open the menu ("language", "dil", "Sprache", "язык",
"اللغة", ``/language``) and press a language. :func:`switch` tells the engine which; the engine asks the
current step again in that language and keeps the answers so far.

A message is a request when it names exactly one language and every other word in it is a word of
asking (please, can we, speak, bitte, auf, lütfen, пожалуйста, من فضلك…): "I do not speak English" or
"English lessons" are not requests. A language named alone switches only when it is another language
the flow speaks, and not when it answers a choice among languages ("Which language should our
coordinator use?"). A language the flow does not speak opens the menu of those it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from connector.bot.calendar_words import fold
from connector.bot.flows import LANGUAGE_NAMES, Flow, Step
from connector.bot.reading import match_option
from core.models import InboundMessage, Option

#: the button id prefix of the language menu
MENU_PREFIX = "lang:"

#: words naming each language, in the bot's five languages and its own (folded: see calendar_words.fold)
LANGUAGE_WORDS: dict[str, set[str]] = {code: {fold(w) for w in forms} for code, forms in {
    "tr": ["türkçe", "turkce", "türkce", "turkish", "türkisch", "turkisch", "турецкий", "турецком", "турецки",
           "التركية", "تركي", "التركي", "بالتركي", "بالتركية"],
    "en": ["english", "englisch", "ingilizce", "inglizce", "английский", "английском", "английски", "англ",
           "الإنجليزية", "الانجليزية", "الإنجليزي", "إنجليزي", "انجليزي", "بالإنجليزي", "بالانجليزي",
           "بالإنجليزية", "بالانجليزية", "انكليزي", "بالانكليزي"],
    "de": ["deutsch", "german", "almanca", "немецкий", "немецком", "немецки", "الألمانية", "الالمانية", "ألماني",
           "الماني", "بالألماني", "بالالماني", "بالألمانية", "بالالمانية"],
    "ar": ["arabic", "arabisch", "arapça", "arapca", "арабский", "арабском", "арабски", "العربية", "عربي",
           "العربي", "بالعربي", "بالعربية", "عربى"],
    "ru": ["russian", "russisch", "rusça", "rusca", "русский", "русском", "русски", "الروسية", "روسي", "الروسي",
           "بالروسي", "بالروسية"],
    "fr": ["french", "français", "francais", "französisch", "fransızca", "французский", "الفرنسية", "بالفرنسي"],
    "es": ["spanish", "español", "espanol", "spanisch", "ispanyolca", "испанский", "الإسبانية", "بالإسباني"],
    "it": ["italian", "italiano", "italienisch", "italyanca", "итальянский"],
    "fa": ["persian", "farsi", "فارسی", "فارسي", "persisch", "farsça", "персидский", "بالفارسي"],
    "uk": ["ukrainian", "українська", "українською", "ukrainisch", "ukraynaca", "украинский"],
    "az": ["azerbaijani", "azərbaycanca", "azerice", "azerbaycan", "aserbaidschanisch", "азербайджанский"],
}.items()}
_NAMED = {word: code for code, forms in LANGUAGE_WORDS.items() for word in forms}

#: the words of asking that may stand around a language's name
ASKING = {fold(w) for w in (
    # English
    "please", "pls", "plz", "can", "could", "we", "i", "you", "u", "speak", "talk", "write", "chat", "continue",
    "switch", "change", "to", "in", "use", "let", "lets", "s", "do", "is", "it", "possible", "us", "me", "with",
    "would", "like", "prefer", "rather", "only", "the", "language", "ok", "okay", "go", "on", "into",
    # German
    "bitte", "auf", "sprechen", "schreiben", "können", "koennen", "wir", "sie", "ich", "weiter", "gerne", "gern",
    "möchte", "moechte", "lieber", "sprache", "mit", "mir", "uns", "geht", "das", "es", "auch", "wechseln", "sprichst",
    "du", "kann", "man",
    # Turkish
    "lütfen", "yazabilir", "yazabilirmiyiz", "konuşabilir", "konuşabilirmiyiz", "miyiz", "misiniz", "mısınız",
    "mi", "mı", "devam", "edelim", "edebilir", "edebilirmiyiz", "yaz", "yazın", "yazar", "yazalım", "konuşalım",
    "konuş", "konuşun", "ile", "dilinde", "olarak", "dil", "olsun", "geçelim", "geçebilir", "biliyor", "musunuz",
    "bilen", "var", "ye", "ya", "e", "a", "ben", "biz", "rica", "ederim", "istiyorum", "tercih", "dilde",
    "konuşabilirsiniz", "yazabilirsiniz",
    # Russian
    "пожалуйста", "пожалуста", "плиз", "можно", "давайте", "давай", "говорить", "писать", "на", "по", "языке",
    "язык", "продолжить", "продолжим", "перейти", "перейдем", "перейдём", "я", "мы", "вы", "говорите",
    "понимаете", "хочу", "бы", "ли", "лучше", "со", "мной", "пишите", "напишите",
    # Arabic
    "من", "فضلك", "لو", "سمحت", "ممكن", "نتكلم", "نتحدث", "تكلم", "تتكلم", "اتكلم", "أتكلم", "تحدث", "باللغة",
    "اللغة", "لغة", "أرجو", "ارجو", "اريد", "أريد", "ابغى", "ابي", "بدي", "عايز", "نكمل", "كمل", "تكلمني", "معي",
    "رجاء", "الرجاء", "هل", "تتحدث", "تعرف", "تحكي", "نحكي", "احكي", "نكتب", "اكتب", "يا", "بس",
)}
#: the language menu, as a whole message
MENU = {fold(w) for w in ("language", "languages", "change language", "switch language", "other language", "dil",
                          "dil değiştir", "dili değiştir", "başka dil", "sprache", "sprache ändern", "andere sprache",
                          "язык", "сменить язык", "поменять язык", "другой язык", "اللغة", "تغيير اللغة",
                          "لغة أخرى", "/language", "/lang", "🌐")}
_WORD = re.compile(r"[^\W\d_]+")


@dataclass
class Switch:
    """A language asked for: ``language`` a code the flow speaks, or None for the menu (asked for, or a
    language the flow does not speak)."""

    language: str | None


def named_language(text: str | None, *, bare: bool) -> str | None:
    """The language ``text`` asks for ("English please", "по-русски"), or with ``bare`` also names alone."""
    tokens = _WORD.findall(fold(text or ""))
    codes = {_NAMED[t] for t in tokens if t in _NAMED}
    if len(codes) != 1:
        return None
    rest = [t for t in tokens if t not in _NAMED]
    if not all(t in ASKING for t in rest) or not (rest or bare):
        return None
    return codes.pop()


def wants_menu(text: str | None) -> bool:
    """The message opens the language menu."""
    said = fold((text or "").strip()).strip(" .!?")
    return said in MENU or " ".join(_WORD.findall(said)) in MENU


def switch(message: InboundMessage, *, step: Step | None, current: str | None, languages: list[str]) -> Switch | None:
    """The language ``message`` asks for at ``step`` (None: the message is not about the language)."""
    choice = message.choice_id or ""
    if choice.startswith(MENU_PREFIX):
        pressed = choice[len(MENU_PREFIX):]
        return Switch(pressed if pressed in languages else None)
    if message.kind != "text" or not message.text:
        return None
    if wants_menu(message.text):
        return Switch(None)
    if step is not None and step.type in ("choice", "multi_choice") and match_option(step, message.text, loose=False):
        return None  # it answers the question ("Which language should our coordinator use?")
    alone = named_language(message.text, bare=True)
    code = named_language(message.text, bare=False) or (alone if alone in languages and alone != current else None)
    if code is None:
        return None
    return Switch(code if code in languages else None)


def menu(flow: Flow) -> tuple[str, list[Option]]:
    """The language question and its buttons: one per language the flow speaks."""
    options = [Option(id=f"{MENU_PREFIX}{code}", title=LANGUAGE_NAMES.get(code, code)) for code in flow.languages]
    texts = flow.texts.get("choose_language", {})
    # Not knowing the language (or changing it), say it in every language the flow speaks (short texts).
    lines = [texts[code] for code in flow.languages if code in texts]
    return "\n".join(dict.fromkeys(lines)) or "Language?", options


def chosen_language(message: InboundMessage, languages: list[str]) -> str | None:
    """The language picked at the language question: its button, its number, its name, or a request."""
    choice = message.choice_id or ""
    if choice.startswith(MENU_PREFIX):
        return choice[len(MENU_PREFIX):] if choice[len(MENU_PREFIX):] in languages else None
    said = fold((message.text or "").strip()).strip(" .!?")
    for code in languages:
        if said in (code, fold(LANGUAGE_NAMES.get(code, ""))):
            return code
    if said.isdigit() and 1 <= int(said) <= len(languages):
        return languages[int(said) - 1]
    named = named_language(message.text, bare=True)
    return named if named in languages else None
