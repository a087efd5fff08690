"""Reading one answer of each type from a patient's message, and pulling typed values out of text.

Every reader returns ``(value, None)`` when the answer is good and ``(None, error_key)`` when it
is not; the engine turns the key into the flow's error text in the patient's language.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
PHONE_IN_TEXT = re.compile(r"\+?\d[\d\s().\-]{7,16}\d")

YES = {"evet", "e", "olur", "tamam", "kabul", "yes", "y", "yeah", "ok", "okay", "sure", "ja", "jawohl", "klar",
       "да", "ага", "конечно", "نعم", "أجل", "موافق", "yes please", "✅", "👍"}
NO = {"hayır", "hayir", "yok", "istemiyorum", "no", "n", "nope", "nein", "нет", "не", "لا", "❌", "👎"}


def read_email(text: str) -> tuple[str | None, str | None]:
    """An e-mail address, checked and normalised (domain lower-cased; no DNS look-up)."""
    match = EMAIL_IN_TEXT.search(text)
    if not match:
        return None, "email"
    try:
        checked = validate_email(match.group(0), check_deliverability=False)
    except EmailNotValidError:
        return None, "email"
    # The local part is the owner's (case may matter); the domain is not case-sensitive.
    local = match.group(0).rpartition("@")[0]
    return f"{local}@{checked.ascii_domain.lower() if checked.ascii_domain else checked.domain.lower()}", None


def read_phone(text: str, *, default_region: str | None = None) -> tuple[str | None, str | None]:
    """A phone number as E.164. Without a ``+`` a number is read only in ``default_region``;
    a WhatsApp id is never given a region it does not carry."""
    candidate = PHONE_IN_TEXT.search(text)
    if not candidate:
        return None, "phone"
    raw = candidate.group(0)
    try:
        number = phonenumbers.parse(raw, None if raw.strip().startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None, "phone"
    if not phonenumbers.is_valid_number(number):
        return None, "phone"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def whatsapp_id_to_e164(wa_id: str) -> str | None:
    """A WhatsApp id (country code and number, no ``+``) as E.164, if it is a valid number."""
    if not wa_id.isdigit():
        return None
    try:
        number = phonenumbers.parse("+" + wa_id, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(
        number) else None


def phone_region(e164: str | None) -> str | None:
    """The ISO country of an E.164 number (for the language hint and the lead's country)."""
    if not e164:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


_NAME_PARTICLES = {"van", "von", "der", "de", "da", "di", "la", "le", "bin", "ibn", "al", "el", "oğlu"}


def _lower(text: str, turkish: bool) -> str:
    return text.replace("I", "ı").replace("İ", "i").lower() if turkish else text.lower()


def _capitalise_word(word: str, first: bool, turkish: bool = False) -> str:
    if not word:
        return word
    if not first and word.lower() in _NAME_PARTICLES:
        return word.lower()
    if "-" in word:
        return "-".join(_capitalise_word(part, True, turkish) for part in word.split("-"))
    if "'" in word and len(word) > 2:  # O'Brien, D'Angelo
        head, tail = word.split("'", 1)
        return _capitalise_word(head, True, turkish) + "'" + _capitalise_word(tail, True, turkish)
    # Turkish dotted/dotless i: "ismail" → "İsmail", "YILMAZ" → "Yılmaz"
    lead = {"i": "İ", "ı": "I"}.get(word[0], word[0].upper()) if turkish else word[0].upper()
    return lead + _lower(word[1:], turkish)


def _looks_turkish(word: str) -> bool:
    return any(ch in word for ch in "ğüşıöçĞÜŞİÖÇ")


def read_name(text: str) -> tuple[str | None, str | None]:
    """A person's name, trimmed and capitalised sensibly for its script.

    Latin and Cyrillic names are capitalised word by word (keeping particles like "van der");
    scripts without case (Arabic) are only trimmed.
    """
    cleaned = " ".join(re.sub(r"[\d@#_*<>{}\[\]|\\/]+", " ", unicodedata.normalize("NFC", text)).split()).strip(
        " .,;:!?")
    letters = [ch for ch in cleaned if ch.isalpha()]
    if len(letters) < 2 or len(cleaned) > 80:
        return None, "name"
    if not any(ch.isupper() or ch.islower() for ch in letters):
        return cleaned, None  # a script without case
    words = cleaned.split(" ")
    if cleaned.isupper() or cleaned.islower():
        # "AYŞE YILMAZ", "ayşe yılmaz" → "Ayşe Yılmaz"
        turkish = _looks_turkish(cleaned)
        cleaned = " ".join(_capitalise_word(w, i == 0, turkish) for i, w in enumerate(words))
    else:
        # the patient's own capitalisation ("McDonald", "DeVito") is kept; only lone lower-case starts are fixed
        turkish = _looks_turkish(cleaned)
        cleaned = " ".join(w if not w[:1].islower() or (i and w in _NAME_PARTICLES)
                           else _capitalise_word(w, i == 0, turkish) for i, w in enumerate(words))
    return cleaned, None


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(first name, last name) for CRMs that keep them apart."""
    if not name:
        return None, None
    parts = name.split()
    return (parts[0], " ".join(parts[1:]) or None) if len(parts) > 1 else (parts[0], None)


def read_number(text: str, *, minimum: float | None = None, maximum: float | None = None) -> tuple[Any, str | None]:
    """A number (``3``, ``2,5``), within bounds."""
    match = re.search(r"-?\d+(?:[.,]\d+)?", text.translate(str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789")))
    if not match:
        return None, "number"
    value = float(match.group(0).replace(",", "."))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        return None, "range"
    return int(value) if value.is_integer() else value, None


def read_yes_no(text: str) -> tuple[bool | None, str | None]:
    """Yes or no, in any of the bot's languages."""
    words = re.sub(r"[.!,;]+", " ", text.strip().lower()).split()
    if not words:
        return None, "yes_no"
    whole = " ".join(words)
    if whole in YES or words[0] in YES:
        return True, None
    if whole in NO or words[0] in NO:
        return False, None
    return None, "yes_no"


def remove_spans(text: str, *spans: str) -> str:
    """``text`` without ``spans`` and the separators left dangling ("ABC, x@y.com" → "ABC")."""
    for span in spans:
        text = text.replace(span, " ")
    text = re.sub(r"\s*[,;/]\s*(?=[,;/]|$)", " ", text)
    return " ".join(text.split()).strip(" ,;/-–—.:")


#: fields whose free-text answer names what a request is about (besides the flow's ``topic_field``)
TOPIC_FIELDS = frozenset({"topic", "treatment", "procedure", "interest", "subject"})
_TRAILING = re.compile(r"[\s.,;:!?¡¿…。،؛؟·\-–—]+$")


def tidy_topic(value: Any) -> Any:
    """A topic as a CRM field shows it: without the punctuation a sentence ends with ("Hair transplant." →
    "Hair transplant", "ринопластика?" → "ринопластика"); punctuation inside is kept."""
    if not isinstance(value, str):
        return value
    tidied = _TRAILING.sub("", value.strip())
    return tidied or value.strip()
