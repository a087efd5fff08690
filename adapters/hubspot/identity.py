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

from typing import Any

from adapters.people import digits, is_persons_name, national_number, phone_variants, same_number

__all__ = ["CONFLICTING_EMAIL", "EMAIL_DIFFERS", "IDENTITY_CONFLICT", "MOVABLE_KEYS", "SEARCHABLE", "digits",
           "email_taken", "has_number", "identity_filter_groups", "identity_is_theirs", "is_persons_name",
           "national_number", "phone_compatible", "phone_filter_groups", "phone_variants", "phones_of",
           "same_number"]

#: the contact property a conflict is described in, for a coordinator (a view filtered on it lists them all)
IDENTITY_CONFLICT = "chat2crm_identity_conflict"
#: the e-mail the patient gave that could not be written on their contact
CONFLICTING_EMAIL = "chat2crm_conflicting_email"
#: what HubSpot calculates from ``phone`` and ``mobilephone`` for search
SEARCHABLE = {"phone": "hs_searchable_calculated_phone_number", "mobilephone": "hs_searchable_calculated_mobile_number"}


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


def email_taken(contact_id: str) -> str:
    """The conflict sentence for an e-mail that belongs to another contact."""
    return (f"The e-mail the patient gave ({CONFLICTING_EMAIL}) belongs to another contact (ID {contact_id}); "
            f"it was not written here. Merge the two contacts if they are one person.")


EMAIL_DIFFERS = (f"The patient gave an e-mail ({CONFLICTING_EMAIL}) other than this contact's; this contact's was "
                 f"kept. Check which one is right.")


#: channels whose contact key names something a person can change (a WhatsApp key is a phone number, which a
#: patient can replace while keeping their business-scoped user id); a Telegram key is the chat id, which never
#: changes, so another Telegram key is another person (a username passes on when its owner gives it up)
MOVABLE_KEYS = frozenset({"whatsapp"})


def identity_is_theirs(their_key: str | None, key: str) -> bool:
    """Whether a contact found by one of the patient's channel identities (a BSUID, a Telegram username) and
    carrying the contact key ``their_key`` is the patient whose key is ``key``: it has no key (a person typed
    the identity in), or its key is of the same channel and that channel's keys can change for one person
    (:data:`MOVABLE_KEYS`): the patient's WhatsApp number changed, their BSUID did not."""
    if not their_key:
        return True
    channel, _, _ = key.partition(":")
    their_channel, _, _ = their_key.partition(":")
    return their_key != key and channel == their_channel and channel in MOVABLE_KEYS


def identity_filter_groups(key: tuple[str, str], identities: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Search filter groups (ORed) finding the contact with the relay's key or any of the patient's channel
    identities (one group each: HubSpot allows five, the shipped mappings use at most three)."""
    wanted = [key, *identities][:5]
    return [{"filters": [{"propertyName": name, "operator": "EQ", "value": value}]} for name, value in wanted]
