"""The sync plan: what the relay asks an adapter to write, and what the adapter answers.

The mapping engine (:mod:`connector.mapping`) turns a :class:`~core.models.Lead` into a
:class:`SyncPlan`: plain CRM operations with the CRM's own field names already filled in. An adapter
(:class:`adapters.base.CRMAdapter`) executes it and returns a :class:`SyncResult`. The schema types
(:class:`CRMSchema` and its parts) describe what a CRM has, for ``chat2crm crm doctor`` and the
mapping's online check; the reports are what ``crm doctor`` and ``forget`` print.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_MATCH", "CRMSchema", "CompanyWrite", "ContactWrite", "CredentialReport", "ErasureReport",
           "FieldInfo", "IdentityMatch", "MatchBy", "NoteWrite", "ObjectInfo", "OptOutMark", "RateLimit",
           "RecordWrite", "Ref", "SyncPlan", "SyncResult", "TaskWrite", "opt_out_companions"]


MatchBy = Literal["key", "phone", "email"]
DEFAULT_MATCH: tuple[MatchBy, ...] = ("key", "phone", "email")


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


def opt_out_companions(flag: str) -> tuple[str, str]:
    """The CRM fields that record when and on which channel a patient opted out, named after the mapping's
    opt-out flag ``flag``: ``chat2crm_opted_out`` → ``chat2crm_opted_out_at``, ``chat2crm_opted_out_channel``."""
    return f"{flag}_at", f"{flag}_channel"


class OptOutMark(_Op):
    """A patient's opt-out, as the CRM records it: the flag the mapping names (``property`` set to
    ``value``), when (``<property>_at``) and on which channel (``<property>_channel``).

    A :class:`ContactWrite` that carries one is an opt-out, not a lead: the adapter marks the contact the
    relay's key finds and the contacts people made with the patient's phone number or e-mail (whatever
    ``match_by`` says: a STOP must reach every record the clinic could message), and creates a contact only
    when there is none.
    """

    property: str
    value: str = "true"
    #: when the patient opted out (not when the CRM was written: a retry writes the same time)
    at: datetime
    #: the channel the patient opted out on (``whatsapp``, ``telegram``)
    channel: str

    def properties(self) -> dict[str, str]:
        """The flag and its two companions (:func:`opt_out_companions`), as the CRM's field names and text."""
        at_field, channel_field = opt_out_companions(self.property)
        return {self.property: self.value, at_field: self.at.isoformat(), channel_field: self.channel}


class IdentityMatch(_Op):
    """Another channel identity of the person, held in a CRM field the mapping writes (a WhatsApp BSUID, a
    Telegram username): searched right after the contact key, before phone and e-mail."""

    #: the CRM field that holds it
    property: str
    value: str


class ContactWrite(_Op):
    """Upsert one contact (HubSpot contact, Salesforce Lead/Contact, Pipedrive person).

    Args:
        object: the CRM object that holds people (``contacts``, ``Lead``, ``Contact``, ``person``).
        key_property: the CRM field (unique / External ID / custom field) holding ``key_value``.
        key_value: the relay's contact key, e.g. ``whatsapp:905321234567``.
        match_by: how to find a record made by a person, in order, when the key finds none.
        properties: CRM field name → value, already transformed by the mapping.
    """

    object: str
    key_property: str
    key_value: str
    match_by: list[MatchBy] = Field(default_factory=lambda: list(DEFAULT_MATCH))
    phone: str | None = None
    email: str | None = None
    #: the person's other channel identities the mapping writes, matched after the key (when ``key`` is matched)
    identities: list[IdentityMatch] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    #: written only when the contact is created (first-touch attribution)
    create_only: dict[str, Any] = Field(default_factory=dict)
    #: set when this write records an opt-out (:class:`OptOutMark`) rather than a lead's contact
    opt_out: OptOutMark | None = None


class CompanyWrite(_Op):
    """Upsert the patient's organization (optional in every mapping)."""

    object: str
    name: str
    key_property: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class RecordWrite(_Op):
    """Create or update the request record (deal, ticket, lead, Case, Opportunity…).

    ``reference_property`` is a unique field holding the lead reference, so the write is an
    upsert. ``pipeline`` and ``stage`` (or status) are already mapped from the status scheme;
    the relay sets them only when it creates the record, never on update.
    """

    object: str
    reference_property: str
    reference: str
    properties: dict[str, Any] = Field(default_factory=dict)
    #: written only when the record is created
    create_only: dict[str, Any] = Field(default_factory=dict)
    pipeline: str | None = None
    stage: str | None = None
    stage_property: str | None = None
    owner_id: str | None = None


class NoteWrite(_Op):
    """A note attached to the contact and the request record. ``marker`` makes it idempotent."""

    body: str
    marker: str


class TaskWrite(_Op):
    """A task for the record's owner (handoff)."""

    subject: str
    body: str
    marker: str
    due_at: datetime | None = None
    priority: Literal["low", "medium", "high"] = "high"
    owner_id: str | None = None


class SyncPlan(_Op):
    """Everything to write for one lead, in CRM terms. Produced by the mapping engine."""

    crm: str
    lead_reference: str
    contact: ContactWrite
    company: CompanyWrite | None = None
    record: RecordWrite | None = None
    note: NoteWrite | None = None
    task: TaskWrite | None = None
    tags: list[str] = Field(default_factory=list)
    #: where tags live: a multi-select property (HubSpot), labels (Pipedrive), a field (Salesforce)
    tags_property: str | None = None
    #: CRM-specific extras the mapping asked for (Salesforce campaign membership, assignment rule…)
    extras: dict[str, Any] = Field(default_factory=dict)


class Ref(_Op):
    """A CRM record: its id, whether this call created it, and properties read back (if any)."""

    object: str
    id: str
    created: bool = False
    properties: dict[str, Any] = Field(default_factory=dict)


class SyncResult(_Op):
    """What a sync wrote, and how many API calls it took."""

    contact: Ref
    company: Ref | None = None
    record: Ref | None = None
    note: Ref | None = None
    task: Ref | None = None
    calls: int = 0


class FieldInfo(_Op):
    """One CRM field as the CRM describes it."""

    name: str
    label: str | None = None
    type: str = "string"
    options: list[str] = Field(default_factory=list)
    unique: bool = False


class ObjectInfo(_Op):
    """One CRM object: its fields and, where it has them, its pipelines and their stages."""

    name: str
    fields: dict[str, FieldInfo] = Field(default_factory=dict)
    pipelines: dict[str, list[str]] = Field(default_factory=dict)


class CRMSchema(_Op):
    """The CRM's objects and fields, for ``check --online``, ``crm doctor`` and ``crm setup``."""

    objects: dict[str, ObjectInfo] = Field(default_factory=dict)


class CredentialReport(_Op):
    """The outcome of a credentials check."""

    ok: bool
    account: str | None = None
    scopes: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class ErasureReport(_Op):
    """What an erasure did in the CRM, for the audit line."""

    mode: Literal["delete", "anonymise"]
    erased: list[str] = Field(default_factory=list)
    found: bool = True



# -- what an adapter declares -------------------------------------------------------------------------
class RateLimit(_Op):
    """A request budget: at most ``requests`` calls in any ``per_seconds`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=1, description="Calls allowed in one window.")
    per_seconds: float = Field(gt=0, description="The window's length in seconds.")
