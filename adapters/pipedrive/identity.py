"""Who a Pipedrive person is: the contact matching rule (docs/mappings.md, "How contacts are matched") in
Pipedrive's terms, as pure functions over persons as ``GET /api/v2/persons`` returns them.

Pipedrive makes no identifier unique: two persons may share a phone number or an e-mail, so the relay
decides who is who itself. The identifiers rank: the relay's contact key (the channel identity), the other
channel identities the mapping writes, then the phone number, then the e-mail. A person found by a lower
identifier is the patient's only if no higher one says otherwise: a person that carries another contact key,
or only other phone numbers, is another person, and the relay never writes its identifiers over theirs.

The phone comparisons and the company-is-the-patient's-name test are the rule's, shared by every adapter
(:mod:`adapters.people`): one rule, one implementation of its pure parts.
"""

from __future__ import annotations

from typing import Any

from adapters.people import digits, is_persons_name, national_number, same_number

__all__ = ["CONFLICTING_EMAIL", "EMAIL_DIFFERS", "IDENTITY_CONFLICT", "OWN_FIELDS", "digits", "email_taken",
           "emails_of", "has_email", "has_number", "is_persons_name", "national_number", "phone_compatible",
           "phones_of", "same_number"]

#: the person field a conflict is described in, for a coordinator (a filter on it lists them all)
IDENTITY_CONFLICT = "chat2crm identity conflict"
#: the e-mail the patient gave that could not be written on their person
CONFLICTING_EMAIL = "chat2crm conflicting email"
#: the person fields the adapter itself writes (beside the mapping's), made by ``crm setup``: visible name → type
OWN_FIELDS = {IDENTITY_CONFLICT: "text", CONFLICTING_EMAIL: "varchar"}


def phones_of(person: dict[str, Any]) -> list[str]:
    """The phone numbers a person carries, as typed (a search item lists strings, a person objects)."""
    return [str(p["value"] if isinstance(p, dict) else p) for p in person.get("phones") or []
            if (p.get("value") if isinstance(p, dict) else p)]


def emails_of(person: dict[str, Any]) -> list[str]:
    """The e-mail addresses a person carries."""
    return [str(e["value"] if isinstance(e, dict) else e) for e in person.get("emails") or []
            if (e.get("value") if isinstance(e, dict) else e)]


def has_number(person: dict[str, Any], phone: str) -> bool:
    """Whether one of the person's numbers is ``phone`` (as people type it: ``0532 111 22 33`` included)."""
    return any(same_number(value, phone) for value in phones_of(person))


def has_email(person: dict[str, Any], email: str) -> bool:
    """Whether the person carries ``email`` (case aside)."""
    return any(value.casefold() == email.casefold() for value in emails_of(person))


def phone_compatible(person: dict[str, Any], phone: str | None) -> bool:
    """Whether a person could be the patient with ``phone`` as far as phone numbers tell: it has none, or it
    has theirs (a person with only other numbers is another person)."""
    numbers = phones_of(person)
    return not numbers or (phone is not None and any(same_number(value, phone) for value in numbers))


def email_taken(person_id: str) -> str:
    """The conflict sentence for an e-mail that belongs to another person."""
    return (f"The e-mail the patient gave ({CONFLICTING_EMAIL}) belongs to another person (ID {person_id}); "
            f"it was not written here. Merge the two persons if they are one person.")


EMAIL_DIFFERS = (f"The patient gave an e-mail ({CONFLICTING_EMAIL}) other than this person's; this person's was "
                 f"kept. Check which one is right.")
