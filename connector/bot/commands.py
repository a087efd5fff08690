"""Commands in what patients write: stop (opt out), talk to a person, start over (pure).

A flow's ``commands:`` lists, per language, words that are a command when they are the whole message
("STOP", "iptal", "оператор"), and phrases that are one anywhere inside a sentence ("please stop messaging
me", "bir temsilciyle görüşmek istiyorum", "أريد التحدث مع موظف"). Both are compared on folded text
(:func:`fold`): lower-case, without diacritics, Turkish dotted and dotless I as one letter, Arabic without
harakat or tatweel and with one alef, so that "İPTAL", "IPTAL", "ıptal" and "iptal" are one word.

A phrase is words separated by spaces, found in this order in the message:

- ``talk|speak``: any of these words;
- ``temsilci*`` a word beginning so ("temsilciyle"), ``*موظف`` one ending so, ``*راسل*`` one containing it;
- ``..``: up to three other words may stand here.

A phrase stands for the request it names, never for a word that merely occurs: "can I stop taking my
medication?" holds no stop phrase (they name the messages: "stop messaging me"). Two guards keep
sentences that say the opposite from counting: a "talk to a person" phrase just after a negation ("I don't
need to talk to anyone") or before a Turkish negative verb ("temsilciyle görüşmek istemiyorum") is not a
request, and a stop phrase followed by when or how ("don't message me on weekends", "hafta sonu
yazmayın") is a preference, not an opt-out.

A template's quick-reply button (WhatsApp's ``button`` message: the payload the template defined and the
button's label) is read the same way, so a marketing template's "Stop promotions" button opts out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: how many other words ``..`` stands for at most
GAP = 3
#: the commands, in the order they are looked for (a stop wins over a request for a person)
NAMES = ("stop", "human", "restart")

_ARABIC_LETTERS = str.maketrans({"ى": "ي", "ة": "ه", "ی": "ي", "ک": "ك", "ـ": None})
_APOSTROPHES = re.compile(r"['’`´ʼ]")
_WORD = re.compile(r"[^\W_]+")

#: words that may come with a whole-message command without changing it ("stop please", "lütfen iptal")
_COURTESY = {"please", "pls", "plz", "now", "thanks", "lutfen", "artik", "bitte", "jetzt", "danke", "пожалуиста",
             "спасибо", "من", "فضلك", "لو", "سمحت", "الان", "رجاء"}
#: a request for a person is not one right after these ("I don't need to talk to anyone")
_NEGATIONS = {"dont", "not", "never", "doesnt", "without", "nicht", "kein", "keine", "keinen", "nie", "не", "без",
              "لا", "لن", "مش", "ليس"}
#: … nor right before these (Turkish says "I do not want" after the verb)
_NEGATIONS_AFTER = {"istemiyorum", "istemiyoruz", "istemem", "gerek", "gerekmez", "gerekmiyor", "не", "nicht"}
#: a stop phrase followed by one of these names when or how not to write, which is no opt-out
_QUALIFIERS_AFTER = {"on", "before", "after", "during", "until", "till", "between", "at", "via", "by", "except",
                     "vor", "nach", "am", "bis", "wahrend", "zwischen", "ausser", "до", "после", "в", "во", "по",
                     "кроме", "ночью", "утром", "قبل", "بعد", "يوم", "في", "خلال", "الا"}
#: … or preceded by one of these (Turkish puts the when before the verb: "hafta sonu yazmayın")
_QUALIFIERS_BEFORE = {"once", "sonra", "saat", "sabah", "sabahlari", "aksam", "aksamlari", "gece", "geceleri", "sonu",
                      "sonlari", "gunleri", "mesai", "disinda", "pazar", "cumartesi"}


def fold(text: str | None) -> str:
    """``text`` as words compared across writing habits: lower-case, no diacritics or apostrophes, Turkish
    I/İ/ı/i as ``i``, Arabic without harakat or tatweel and with one alef, words separated by one space."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.replace("İ", "i").replace("I", "i").replace("ı", "i").translate(_ARABIC_LETTERS).casefold()
    # NFD splits accents, the dots of ö/ü, Turkish cedillas, Cyrillic й/ё and Arabic hamza and harakat
    # from their letters: dropping the marks leaves the plain letter (أ إ آ → ا, ؤ → و, ئ → ي)
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(_APOSTROPHES.sub("", text)))


def _pattern(alternatives: Iterable[tuple[str, str]]) -> str:
    """A regular expression a whole token matches when it is one of ``alternatives`` (mode, folded stem)."""
    shapes = {"exact": "{}", "prefix": "{}.*", "suffix": ".*{}", "contains": ".*{}.*"}
    return "|".join(shapes[mode].format(re.escape(stem)) for mode, stem in alternatives)


@dataclass(frozen=True)
class _Word:
    """One word of a phrase: its alternatives, each as (how it is compared, the folded stem)."""

    alternatives: tuple[tuple[str, str], ...]
    #: the alternatives as one compiled expression (a token is compared in one call)
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(_pattern(self.alternatives), re.DOTALL))

    def matches(self, token: str) -> bool:
        return self.compiled.fullmatch(token) is not None


_Part = _Word | None  # None: a gap of up to GAP words


def parse_phrase(phrase: str) -> tuple[_Part, ...]:
    """A phrase as its parts.

    Raises:
        ValueError: the phrase is empty, or an alternative is not one word once folded.
    """
    parts: list[_Part] = []
    for chunk in phrase.split():
        if chunk == "..":
            if parts and parts[-1] is not None:
                parts.append(None)
            continue
        alternatives = []
        for alternative in chunk.split("|"):
            head, tail = alternative.startswith("*"), alternative.endswith("*") and len(alternative) > 1
            stem = fold(alternative.strip("*"))
            if not stem or " " in stem:
                raise ValueError(f"{alternative!r} in {phrase!r} is not one word")
            mode = "contains" if head and tail else "suffix" if head else "prefix" if tail else "exact"
            alternatives.append((mode, stem))
        parts.append(_Word(tuple(alternatives)))
    while parts and parts[-1] is None:
        parts.pop()
    if not parts:
        raise ValueError(f"{phrase!r} has no words")
    return tuple(parts)


def _ends(parts: tuple[_Part, ...], tokens: list[str], i: int, j: int) -> list[int]:
    """Where a match of ``parts[i:]`` starting at token ``j`` ends (exclusive), every way it can."""
    if i == len(parts):
        return [j]
    part = parts[i]
    if part is None:
        return [end for skip in range(GAP + 1) if j + skip <= len(tokens) for end in _ends(parts, tokens, i + 1, j + skip)]
    if j < len(tokens) and part.matches(tokens[j]):
        return _ends(parts, tokens, i + 1, j + 1)
    return []


def spans(parts: tuple[_Part, ...], tokens: list[str]) -> Iterable[tuple[int, int]]:
    """Every (start, end) of ``tokens`` the phrase matches."""
    for start in range(len(tokens)):
        for end in _ends(parts, tokens, 0, start):
            yield start, end


class Intents:
    """A flow's commands, ready to be found in messages.

    Args:
        words: per command, per language, what is the command as a whole message.
        phrases: per command, per language, the phrases that are the command inside a sentence.

    Raises:
        ValueError: a phrase cannot be read (:func:`parse_phrase`).
    """

    def __init__(self, words: Mapping[str, Mapping[str, list[str]]],
                 phrases: Mapping[str, Mapping[str, list[str]]]) -> None:
        self.words = {name: {fold(w) for ws in words.get(name, {}).values() for w in ws} - {""} for name in NAMES}
        self.phrases = {name: [parse_phrase(p) for ps in phrases.get(name, {}).values() for p in ps]
                        for name in NAMES}
        # the first words of a command's phrases, as one expression: a message with none of them holds none of
        # the command's phrases, and is passed over without trying each phrase at each word
        self._openers = {name: re.compile(_pattern(alt for parts in found if isinstance(parts[0], _Word)
                                                   for alt in parts[0].alternatives), re.DOTALL)
                         for name, found in self.phrases.items() if found}

    def find(self, *texts: str | None) -> str | None:
        """The command that any of ``texts`` (a message's text; a button's label and payload) is, or None."""
        folded = [fold((t or "").replace("_", " ")) for t in texts if t]
        for name in NAMES:
            if any(self._whole(name, text) for text in folded):
                return name
        for name in NAMES:
            if any(self._inside(name, text.split()) for text in folded):
                return name
        return None

    def _whole(self, name: str, text: str) -> bool:
        if text in self.words[name]:
            return True
        plain = " ".join(t for t in text.split() if t not in _COURTESY)
        return bool(plain) and plain in self.words[name]

    def _inside(self, name: str, tokens: list[str]) -> bool:
        opener = self._openers.get(name)
        if opener is None or not any(opener.fullmatch(token) for token in tokens):
            return False
        for parts in self.phrases[name]:
            for start, end in spans(parts, tokens):
                if name == "human" and _negated(tokens, start, end):
                    continue
                if name == "stop" and _qualified(tokens, start, end):
                    continue
                return True
        return False


def _negated(tokens: list[str], start: int, end: int) -> bool:
    return bool(set(tokens[max(0, start - GAP):start]) & _NEGATIONS or set(tokens[end:end + 2]) & _NEGATIONS_AFTER)


def _qualified(tokens: list[str], start: int, end: int) -> bool:
    after = tokens[end:end + 2]
    # "me"/"mir"/"мне" may come between the phrase and its qualifier: "don't message me on weekends"
    if after and after[0] in {"me", "us", "mir", "uns", "мне", "нам", "لي", "بي"}:
        after = tokens[end + 1:end + 2]
    return bool(set(after[:1]) & _QUALIFIERS_AFTER or set(tokens[max(0, start - 2):start]) & _QUALIFIERS_BEFORE)
