"""Who a Salesforce Lead or Contact is: the contact matching rule (docs/mappings.md, "How contacts are
matched") as pure functions over the rows of the adapter's lookup query.

The identifiers rank: the relay's contact key (an External ID), then the person's other channel identities
the mapping writes (a WhatsApp BSUID, a Telegram username), then the phone number, then the e-mail. A record
found by a lower identifier is the patient's only when no higher one says otherwise: a record that carries
another key, or only other phone numbers, is another person, and the relay never writes its identifiers
over theirs. Salesforce keeps Phone and Email as typed and enforces no uniqueness on them, so the rule is
applied here, on what one query returned: the patient's record is written without an e-mail another person
has; the e-mail is kept in :data:`CONFLICTING_EMAIL` and :data:`IDENTITY_CONFLICT` says why, for a
coordinator (a list view filtered on it shows them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.base import ContactWrite
from adapters.people import same_number

#: the field a conflict is described in, for a coordinator (created by ``crm setup`` beside the mapping's)
IDENTITY_CONFLICT = "Chat2CRM_Identity_Conflict__c"
#: the e-mail the patient gave that could not be written on their record
CONFLICTING_EMAIL = "Chat2CRM_Conflicting_Email__c"
#: the phone fields of a Lead and a Contact
PHONES = ("Phone", "MobilePhone")
#: what a Lead's Company holds when the patient named no company (Salesforce requires one)
NO_COMPANY = "[not provided]"


def opt_out_fields(flag: str) -> tuple[str, str]:
    """When and on which channel a patient opted out, named after the mapping's opt-out flag as Salesforce
    names custom fields (``Chat2CRM_Opted_Out__c`` → ``Chat2CRM_Opted_Out_At__c``,
    ``Chat2CRM_Opted_Out_Channel__c``; the CRM-neutral ``<flag>_at`` is no valid API name here)."""
    stem = flag.removesuffix("__c")
    return f"{stem}_At__c", f"{stem}_Channel__c"


def own_fields(flag: str | None) -> dict[str, str]:
    """The fields the adapter writes beyond the mapping's, with the Tooling API type of each."""
    out = {IDENTITY_CONFLICT: "Text", CONFLICTING_EMAIL: "Email"}
    if flag:
        at_field, channel_field = opt_out_fields(flag)
        out |= {at_field: "DateTime", channel_field: "Text"}
    return out


# -- phone numbers as people type them (adapters.people) ------------------------------------------
def has_number(row: dict[str, Any], phone: str | None) -> bool:
    """Whether the record's Phone or MobilePhone is ``phone``."""
    return bool(phone) and any(same_number(row.get(name), phone or "") for name in PHONES)


def phone_compatible(row: dict[str, Any], phone: str | None) -> bool:
    """Whether a record could be the patient's as far as phone numbers tell: it has none, or it has theirs."""
    numbers = [row.get(name) for name in PHONES if row.get(name)]
    return not numbers or has_number(row, phone)


def same_email(row: dict[str, Any], email: str | None) -> bool:
    """Whether the record's Email is ``email`` (Salesforce compares e-mails without case)."""
    return bool(email) and str(row.get("Email") or "").casefold() == (email or "").casefold()


# -- the rule --------------------------------------------------------------------------------------
def email_taken(record_id: str) -> str:
    """The conflict sentence for an e-mail another person's record has."""
    return (f"The e-mail the patient gave ({CONFLICTING_EMAIL}) belongs to another record (ID {record_id}); it was "
            f"not written here. Merge the two records if they are one person.")


EMAIL_DIFFERS = (f"The patient gave an e-mail ({CONFLICTING_EMAIL}) other than this record's; this record's was "
                 f"kept. Check which one is right.")


@dataclass(frozen=True)
class Match:
    """Who the patient is among the lookup's rows, and what their write must leave out.

    Attributes:
        person: the row that is the patient's record, if any.
        adopt: ``person`` does not hold the relay's key (a person made it, or it was found by another channel
            identity): it is updated by its id and given the key.
        keep: fields of the write that must not be sent (a number or an e-mail already on an adopted record,
            an e-mail another person has).
        extra: fields the write adds (the conflicting e-mail and the conflict's sentence).
    """

    person: dict[str, Any] | None = None
    adopt: bool = False
    keep: frozenset[str] = frozenset()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def conflict(self) -> str | None:
        """The conflict's sentence, when there is one."""
        return self.extra.get(IDENTITY_CONFLICT)


def match(c: ContactWrite, rows: list[dict[str, Any]]) -> Match:
    """Apply the contact matching rule to the lookup's rows (each with its key, identity, phone and e-mail
    fields).

    The key's record is the patient's; else a record holding one of their channel identities; else, as
    ``match_by`` allows, a record a person made (no key) with their phone number, or with their e-mail and no
    other phone number. An e-mail that another person's record holds is left out and flagged.
    """
    key = c.key_property
    phone = c.phone if "phone" in c.match_by else None
    email = c.email if "email" in c.match_by else None
    person = next((r for r in rows if str(r.get(key) or "").casefold() == c.key_value.casefold()), None)
    if person is None and "key" in c.match_by:
        person = next((r for r in rows for i in c.identities
                       if str(r.get(i.property) or "").casefold() == i.value.casefold()), None)
    if person is None and phone:
        person = next((r for r in rows if not r.get(key) and has_number(r, phone)), None)
    if person is None and email:
        person = next((r for r in rows if not r.get(key) and same_email(r, email)
                       and phone_compatible(r, c.phone)), None)
    adopt = person is not None and str(person.get(key) or "").casefold() != c.key_value.casefold()
    keep: set[str] = set()
    extra: dict[str, str] = {}
    ours = str(c.properties.get("Email") or "")
    if adopt and person is not None:
        keep |= {name for name in PHONES if person.get(name)}  # never replace a number a person typed
        if ours and person.get("Email"):
            keep.add("Email")
            if not same_email(person, ours):
                extra = {CONFLICTING_EMAIL: ours, IDENTITY_CONFLICT: EMAIL_DIFFERS}
    if ours and "Email" not in keep and not (person is not None and same_email(person, ours)):
        other = next((r for r in rows if r is not person and same_email(r, ours)), None)
        if other is not None:
            keep.add("Email")
            extra = {CONFLICTING_EMAIL: ours, IDENTITY_CONFLICT: email_taken(str(other["Id"]))}
    return Match(person=person, adopt=adopt, keep=frozenset(keep), extra=extra)
