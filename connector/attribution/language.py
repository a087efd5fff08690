"""The patient's language: resolved in DESIGN.md's order, and detected on short first messages.

Detection uses lingua restricted to the deployment's languages (a handful, not seventy-five: more
accurate on short texts, and a fraction of the memory), after two checks lingua cannot make alone:

- a message that is only a greeting is looked up (:mod:`connector.attribution.greetings`): "Hallo" is
  German, "Hi" English or German (unsure: the channel's hint or the patient decides);
- languages that share a script with a configured one are told apart from it: Persian and Urdu are not
  Arabic, Ukrainian, Bulgarian and Serbian are not Russian, Azerbaijani is not Turkish. A second
  detector knows those languages too, and the letters each alphabet lacks rule it out ("ы" is not
  Ukrainian, "ي" is not Persian). A text in a language the bot does not speak, or one the detector
  cannot tell from its configured sibling, is reported as such and the patient is asked to choose.

The detectors are built once per process, lazily, and shared by every job the worker forks
(:func:`preload_detector`; the siblings' models add about 25 MB a language).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import redis
from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from connector.attribution.greetings import greeting_languages
from connector.heap import trim_heap
from core import metrics

log = logging.getLogger("chat2crm.attribution")

#: where a phone number's country usually speaks (only for the channel hint, step 5)
COUNTRY_LANGUAGE = {
    "TR": "tr", "DE": "de", "AT": "de", "CH": "de", "LI": "de", "RU": "ru", "BY": "ru", "KZ": "ru", "KG": "ru",
    "SA": "ar", "AE": "ar", "EG": "ar", "IQ": "ar", "JO": "ar", "KW": "ar", "LB": "ar", "LY": "ar", "MA": "ar",
    "OM": "ar", "QA": "ar", "BH": "ar", "DZ": "ar", "TN": "ar", "SY": "ar", "YE": "ar", "SD": "ar",
    "GB": "en", "US": "en", "IE": "en", "AU": "en", "CA": "en", "NZ": "en", "ZA": "en",
    "FR": "fr", "ES": "es", "IT": "it", "NL": "nl", "PL": "pl", "UA": "uk", "AZ": "az", "GE": "ka", "IR": "fa",
}

#: below this many letters detection is not tried (a greeting is still looked up)
MIN_LETTERS = 5

#: languages written in one script that a detector confuses on short texts; each is checked against the others
SCRIPT_SIBLINGS: tuple[tuple[str, ...], ...] = (("ar", "fa", "ur"), ("ru", "uk", "bg", "sr"), ("tr", "az"))
#: languages told by letters only they use (no model loaded for them)
OWN_LETTERS = {"be": "ў", "mk": "ѓќѕ", "kk": "әғқңөұүһ"}
#: letters that rule a language out: its alphabet lacks them
FOREIGN_LETTERS = {
    "ar": "پچژگیکٹڈڑںے", "fa": "يكةىٹڈڑںے", "ur": "يكةى",
    "ru": "іїєґўђћџљњјѓќѕәғқңөұүһ", "uk": "ыэёъ", "bg": "ыэёіїєґ", "sr": "ыэёъьйщюяіїєґ",
    "tr": "ə",
}
#: a sibling this close to the best (its share of the best one's confidence) leaves the detector unsure
SIBLING_DOUBT = 0.5

Outcome = Literal["greeting", "detected", "unsure", "too_short", "not_configured", "shared_script"]


@dataclass(frozen=True)
class Detection:
    """What the first message says about the patient's language.

    Attributes:
        language: a configured language the text is in (None when unsure, or not in one).
        confidence: lingua's confidence in ``language`` among the configured ones (1.0 for a greeting).
        detected: the most likely language, configured or not (None when nothing could be told).
        outcome: how it was decided; ``not_configured`` and ``shared_script`` mean: ask the patient.
    """

    language: str | None
    confidence: float
    detected: str | None
    outcome: Outcome

    @property
    def ask(self) -> bool:
        """The patient must be asked: the text is in a language the bot does not speak, or in one it cannot
        tell from a configured language of the same script (no channel hint should guess instead)."""
        return self.outcome in ("not_configured", "shared_script")


#: one detector per set of languages; lingua loads a language's models on first use, or all at once
_DETECTORS: dict[tuple[str, ...], Any] = {}


def _detector(languages: tuple[str, ...], *, preload: bool = False) -> Any:
    if languages in _DETECTORS and not preload:
        return _DETECTORS[languages]
    chosen = []
    for code in languages:
        try:
            chosen.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
        except (AttributeError, ValueError):
            continue
    builder = LanguageDetectorBuilder.from_languages(*chosen) if len(chosen) >= 2 else None
    if builder is not None and preload:
        builder = builder.with_preloaded_language_models()
    _DETECTORS[languages] = detector = builder.build() if builder is not None else None
    return detector


def _group(language: str) -> tuple[str, ...]:
    return next((group for group in SCRIPT_SIBLINGS if language in group), ())


def _with_siblings(languages: list[str]) -> tuple[str, ...]:
    """The configured languages and every language sharing a script with one of them."""
    return tuple(sorted({*languages, *(code for language in languages for code in _group(language))}))


def preload_detector(languages: list[str]) -> None:
    """Load every model of ``languages`` and of their script siblings now (about 1.5 s for five, 1 s more for
    the siblings), so that processes forked afterwards share them instead of each loading them on its first
    messages."""
    _detector(tuple(sorted(languages)), preload=True)
    extended = _with_siblings(languages)
    if extended != tuple(sorted(languages)):
        _detector(extended, preload=True)
    trim_heap()  # the buffers the models were unpacked from: freed, but resident until the heap is trimmed


def identify_language(text: str, languages: list[str]) -> Detection:
    """The language of a first message, among ``languages`` (see the module's docstring)."""
    greeting = greeting_languages(text)
    if greeting is not None:  # only greetings ("Hello merhaba": of two languages, so unsure)
        return _by_greeting(greeting, languages)
    letters = re.sub(r"[\W\d_]+", " ", text).strip()
    if len(letters.replace(" ", "")) < MIN_LETTERS:
        return Detection(None, 0.0, None, "too_short")  # "ok", "👍": too little to tell one language from another
    for code, own in OWN_LETTERS.items():
        if code not in languages and any(letter in own for letter in letters.lower()):
            return Detection(None, 0.0, code, "not_configured")
    configured = tuple(sorted(languages))
    detector = _detector(configured)
    if detector is None:
        return Detection(languages[0], 1.0, languages[0], "detected") if languages else Detection(
            None, 0.0, None, "unsure")
    values = detector.compute_language_confidence_values(letters)
    if not values:
        return Detection(None, 0.0, None, "unsure")
    best, confidence = values[0].language.iso_code_639_1.name.lower(), float(values[0].value)
    doubt = _sibling_doubt(letters, languages, best)
    return doubt or Detection(best, confidence, best, "detected")


def _by_greeting(found: set[str], languages: list[str]) -> Detection:
    spoken = sorted(found & set(languages))
    others = sorted(found - set(languages))
    shares_script = any(set(_group(code)) & set(languages) for code in others)
    if len(spoken) == 1 and not (set(_group(spoken[0])) & set(others)):
        return Detection(spoken[0], 1.0, spoken[0], "greeting")
    if others and shares_script:  # "سلام": Arabic and Persian; "Salam": Azerbaijani, close to Turkish
        return Detection(None, 0.0, others[0], "shared_script")
    if others and not spoken:
        return Detection(None, 0.0, others[0], "not_configured")
    return Detection(None, 0.0, None, "unsure")  # "Hi": English or German


def _sibling_doubt(letters: str, languages: list[str], best: str) -> Detection | None:
    """A Detection that asks, when the text may be in a language sharing ``best``'s script that the bot does
    not speak; None when ``best`` stands."""
    group = _group(best)
    if not group or set(group) <= set(languages):
        return None
    lowered = letters.lower()
    possible = [code for code in group if not any(letter in FOREIGN_LETTERS.get(code, "") for letter in lowered)]
    if not possible:
        possible = list(group)  # letters of several alphabets: the detector decides alone
    extended = _detector(_with_siblings(languages))
    if extended is None:
        return None
    values = {v.language.iso_code_639_1.name.lower(): float(v.value)
              for v in extended.compute_language_confidence_values(letters)}
    scores = {code: values.get(code, 0.0) for code in possible}
    top = max(scores, key=lambda code: scores[code])
    if scores[top] <= 0.0:
        return None
    if top not in languages:
        near = max((scores[code] for code in possible if code in languages), default=0.0)
        outcome: Outcome = "shared_script" if near / scores[top] >= SIBLING_DOUBT else "not_configured"
        return Detection(None, 0.0, top, outcome)
    rival = max((scores[code] for code in possible if code not in languages), default=0.0)
    if rival / scores[top] >= SIBLING_DOUBT:
        return Detection(None, 0.0, top, "shared_script")
    return None


def detect_language(text: str, languages: list[str]) -> tuple[str | None, float]:
    """The most likely of ``languages`` for ``text``, with lingua's confidence (0 to 1; 1 for a greeting).

    Returns (None, 0.0) for text with fewer than ``MIN_LETTERS`` letters, when fewer than two languages are
    configured, or when the text is (or may be) in a language the bot does not speak.
    """
    found = identify_language(text, languages)
    return found.language, found.confidence


def note_detection(client: redis.Redis, detection: Detection, languages: list[str]) -> None:
    """Count the detection (``language_detections``), and log a language the bot does not speak (no text)."""
    if detection.ask:
        log.info("first message in a language not configured: the patient is asked to choose",
                 extra={"detected": detection.detected, "outcome": detection.outcome,
                        "configured": ",".join(languages)})
    metrics.incr(client, "language_detections", language=detection.detected or "none", outcome=detection.outcome)


def language_of_country(country: str | None, languages: list[str]) -> str | None:
    """The usual language of a country, if the bot speaks it."""
    language = COUNTRY_LANGUAGE.get(country or "")
    return language if language in languages else None
