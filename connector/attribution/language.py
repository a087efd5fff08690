"""The patient's language: resolved in DESIGN.md's order, and detected on short first messages.

Detection uses lingua restricted to the deployment's languages (a handful, not seventy-five: more
accurate on short texts, and a fraction of the memory). The detector is built once per process,
lazily, and shared by every job the worker forks.
"""

from __future__ import annotations

import re
from typing import Any

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

#: where a phone number's country usually speaks (only for the channel hint, step 5)
COUNTRY_LANGUAGE = {
    "TR": "tr", "DE": "de", "AT": "de", "CH": "de", "LI": "de", "RU": "ru", "BY": "ru", "KZ": "ru", "KG": "ru",
    "SA": "ar", "AE": "ar", "EG": "ar", "IQ": "ar", "JO": "ar", "KW": "ar", "LB": "ar", "LY": "ar", "MA": "ar",
    "OM": "ar", "QA": "ar", "BH": "ar", "DZ": "ar", "TN": "ar", "SY": "ar", "YE": "ar", "SD": "ar",
    "GB": "en", "US": "en", "IE": "en", "AU": "en", "CA": "en", "NZ": "en", "ZA": "en",
    "FR": "fr", "ES": "es", "IT": "it", "NL": "nl", "PL": "pl", "UA": "uk", "AZ": "az", "GE": "ka", "IR": "fa",
}


#: below this many letters detection is not tried
MIN_LETTERS = 5


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


def preload_detector(languages: list[str]) -> None:
    """Load every model of ``languages`` now (about 1.5 s for five), so that processes forked afterwards share
    them instead of each loading them on its first messages."""
    _detector(tuple(sorted(languages)), preload=True)


def detect_language(text: str, languages: list[str]) -> tuple[str | None, float]:
    """The most likely of ``languages`` for ``text``, with lingua's confidence (0 to 1).

    Returns (None, 0.0) for text with fewer than ``MIN_LETTERS`` letters, or when fewer than two languages are configured.
    """
    letters = re.sub(r"[\W\d_]+", " ", text).strip()
    if len(letters.replace(" ", "")) < MIN_LETTERS:
        return None, 0.0  # "ok", "hi": too little to tell one language from another
    detector = _detector(tuple(sorted(languages)))
    if detector is None:
        return (languages[0], 1.0) if languages else (None, 0.0)
    values = detector.compute_language_confidence_values(letters)
    if not values:
        return None, 0.0
    best = values[0]
    return best.language.iso_code_639_1.name.lower(), float(best.value)


def language_of_country(country: str | None, languages: list[str]) -> str | None:
    """The usual language of a country, if the bot speaks it."""
    language = COUNTRY_LANGUAGE.get(country or "")
    return language if language in languages else None
