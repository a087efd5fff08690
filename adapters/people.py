"""How people's identifiers compare, for every adapter's contact matching rule (docs/mappings.md, "How
contacts are matched"): phone numbers as people type them into a CRM, and a company answer that is only the
patient's own name. Pure functions: each adapter applies them to its CRM's records.

CRMs keep phone numbers as typed (``+90 532 123 45 67``, ``0532 1234567``, ``905321234567``);
:func:`same_number` tells whether such a number is the patient's, so a number that only shares its national
digits with the patient's in another country is not taken for theirs.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

__all__ = ["digits", "is_persons_name", "national_number", "phone_variants", "same_number"]


def digits(value: str) -> str:
    """The digits of a phone number as typed."""
    return re.sub(r"\D", "", value)


def national_number(phone: str) -> str | None:
    """The national significant number of an international number (``+905321234567`` → ``5321234567``)."""
    try:
        return str(phonenumbers.parse("+" + digits(phone), None).national_number)
    except phonenumbers.NumberParseException:
        return None


def phone_variants(phone: str) -> list[str]:
    """How a person may have typed this number into a CRM: E.164, digits only, with ``00``, and the
    international and national formats."""
    found = digits(phone)
    out = [f"+{found}", found, f"00{found}"]
    try:
        number = phonenumbers.parse(f"+{found}", None)
        out += [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)]
    except phonenumbers.NumberParseException:
        pass
    return list(dict.fromkeys(v for v in out if v.strip("+0")))


def same_number(typed: str | None, phone: str) -> bool:
    """Whether ``typed`` (a phone number as a person typed it, maybe without a country code) is ``phone``."""
    if not typed or not digits(typed):
        return False
    mine, theirs = digits(phone), digits(typed)
    if theirs in (mine, f"00{mine}"):
        return True
    if typed.strip().startswith("+") or theirs.startswith("00"):
        return False  # another country code
    national = national_number(phone)
    return national is not None and theirs.lstrip("0") == national


def _words(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return re.findall(r"\w+", plain.replace("ı", "i"))


def is_persons_name(company: str, *names: str | None) -> bool:
    """Whether ``company`` is only the patient's own name (``Ayşe Yılmaz``, ``yilmaz ayse``, ``Ayşe``): words of
    their name and nothing else, accents and case aside. A patient asked for their company who answers with
    their name has not named one."""
    words = _words(company)
    own = {w for name in names if name for w in _words(name)}
    return bool(words) and bool(own) and all(w in own for w in words)
