"""Who a HubSpot contact is: the rule the adapter matches people by, as pure functions.

The identifiers rank: the relay's contact key (the channel identity) first, then the phone number, then the
e-mail. A contact found by a lower identifier is the patient's only if no higher one says otherwise: a contact
found by e-mail that carries another key, or another phone number, is another person, and the relay never
writes its identifiers over theirs. Such a patient is written on a contact of their own, without the e-mail,
which is kept in :data:`CONFLICTING_EMAIL` with a sentence in :data:`IDENTITY_CONFLICT` for a coordinator.

Phone numbers are compared the way people type them: HubSpot stores ``phone`` as typed (``+90 532 123 45
67``, ``0532 1234567``, ``905321234567``), and calculates ``hs_searchable_calculated_phone_number`` (the
number's digits without the country code or a trunk ``0``), which finds the typed forms no list of variants
covers. :func:`phone_filter_groups` asks for both; :func:`same_number` checks each hit, so a number that only
shares its national digits with the patient's in another country is not taken for theirs.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import phonenumbers

#: the contact property a conflict is described in, for a coordinator (a view filtered on it lists them all)
IDENTITY_CONFLICT = "chat2crm_identity_conflict"
#: the e-mail the patient gave that could not be written on their contact
CONFLICTING_EMAIL = "chat2crm_conflicting_email"
#: what HubSpot calculates from ``phone`` and ``mobilephone`` for search
SEARCHABLE = {"phone": "hs_searchable_calculated_phone_number", "mobilephone": "hs_searchable_calculated_mobile_number"}


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
    """How a person may have typed this number into HubSpot: E.164, digits only, with ``00``, and the
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


def phone_filter_groups(phone: str) -> list[dict[str, Any]]:
    """Search filter groups (ORed) finding a contact whose phone or mobile phone is this number as typed:
    the usual spellings, and the national digits HubSpot calculates (four groups: HubSpot allows five)."""
    variants = phone_variants(phone)
    groups: list[dict[str, Any]] = [{"filters": [{"propertyName": name, "operator": "IN", "values": variants}]}
                                    for name in SEARCHABLE]
    national = national_number(phone)
    if national:
        groups += [{"filters": [{"propertyName": name, "operator": "EQ", "value": national}]}
                   for name in SEARCHABLE.values()]
    return groups


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


def phones_of(properties: dict[str, Any]) -> list[str]:
    """The phone numbers a contact carries (phone, mobile phone)."""
    return [str(properties[name]) for name in SEARCHABLE if properties.get(name)]


def has_number(properties: dict[str, Any], phone: str) -> bool:
    """Whether the contact's phone or mobile phone is ``phone``."""
    return any(same_number(value, phone) for value in phones_of(properties))


def phone_compatible(properties: dict[str, Any], phone: str | None) -> bool:
    """Whether a contact could be the patient with ``phone`` as far as phone numbers tell: it has none, or it
    has theirs (a contact with only other numbers is another person)."""
    numbers = phones_of(properties)
    return not numbers or (phone is not None and any(same_number(value, phone) for value in numbers))


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


def email_taken(contact_id: str) -> str:
    """The conflict sentence for an e-mail that belongs to another contact."""
    return (f"The e-mail the patient gave ({CONFLICTING_EMAIL}) belongs to another contact (ID {contact_id}); "
            f"it was not written here. Merge the two contacts if they are one person.")


EMAIL_DIFFERS = (f"The patient gave an e-mail ({CONFLICTING_EMAIL}) other than this contact's; this contact's was "
                 f"kept. Check which one is right.")
