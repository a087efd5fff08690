"""The adapter interface: one small surface that HubSpot, Salesforce and Pipedrive implement.

The mapping engine (:mod:`connector.mapping`) turns a :class:`~connector.models.Lead` into a
:class:`SyncPlan`: plain CRM operations with the CRM's own field names already filled in. An
adapter executes a plan against its CRM with the fewest calls the API allows and returns a
:class:`SyncResult`. Every write is idempotent: contacts are upserted on the contact key (a
unique field holding the channel identity), request records on the lead reference, notes and
tasks are looked up by a marker before being created. So a retried or replayed job never
duplicates anything.

Errors raised by adapters come from :mod:`connector.errors`: :class:`RetryableError` for 429,
5xx, timeouts and connection errors (with ``retry_after`` when the CRM said so),
:class:`AuthError` for bad credentials (naming the setting), :class:`FatalError` for other 4xx
(naming the field), :class:`SkippableError` when the work is moot.
"""

from __future__ import annotations

import abc
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from redis import Redis

    from connector.settings import Settings


MatchBy = Literal["key", "phone", "email"]
DEFAULT_MATCH: tuple[MatchBy, ...] = ("key", "phone", "email")


def settle_after_timeout(read_timeout: float) -> float:
    """How long to wait before retrying a request the CRM may still carry out after we gave up on it.

    A read time-out means the CRM had the request and may write it later: a note or task made by
    it would be missed by the retry's look-up and written twice. Twice the read timeout, and at
    least two seconds, covers a CRM that finishes late (timeouts are rare; a lead lands a little later).
    """
    return max(2.0 * read_timeout, 2.0)


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    properties: dict[str, Any] = Field(default_factory=dict)
    #: written only when the contact is created (first-touch attribution)
    create_only: dict[str, Any] = Field(default_factory=dict)


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


class CRMAdapter(abc.ABC):
    """Base class of every CRM adapter. Subclasses are found by the entry-point group
    ``chat2crm.adapters``; see :func:`adapters.load_adapter`.

    Args:
        settings: the process settings (credentials and base URLs come from the environment).
        options: the mapping's ``crm:`` options (API version, assignment rule…).
        redis: the shared Redis connection, for limiters and caches shared by every worker.
    """

    #: the name integrators write in ``chat2crm.yaml`` (``crm: hubspot``)
    name: ClassVar[str]
    #: modules the adapter needs; a missing one is a configuration error when it is selected
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, settings: Settings, *, options: dict[str, Any] | None = None, redis: Redis | None = None
    ) -> None:
        self.settings = settings
        self.options: dict[str, Any] = dict(options or {})
        self.redis = redis
        #: API calls made through this adapter (measured by tests and benchmarks)
        self.calls = 0

    # -- diagnosis -----------------------------------------------------------------------------
    @abc.abstractmethod
    def check_credentials(self) -> CredentialReport:
        """Check the credentials against the CRM. Never raises for bad credentials: reports them."""

    @abc.abstractmethod
    def describe(self, objects: list[str]) -> CRMSchema:
        """Describe the named CRM objects: fields, options, pipelines and stages."""

    # -- the writes ----------------------------------------------------------------------------
    @abc.abstractmethod
    def find_contact(
        self, *, key: tuple[str, str] | None = None, phone: str | None = None, email: str | None = None,
        object: str | None = None, properties: list[str] | None = None,
    ) -> Ref | None:
        """Find a contact by the contact key ``(property, value)``, then phone, then e-mail."""

    @abc.abstractmethod
    def upsert_contact(self, write: ContactWrite) -> Ref:
        """Create or update the contact; never duplicates on the key."""

    @abc.abstractmethod
    def upsert_record(self, write: RecordWrite, *, contact: Ref, company: Ref | None = None) -> Ref:
        """Create (with its association to the contact) or update the request record."""

    @abc.abstractmethod
    def attach_note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """Attach a note to the contact and record, unless one with the same marker exists."""

    @abc.abstractmethod
    def create_task(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """Create a task for the owner, unless one with the same marker exists."""

    @abc.abstractmethod
    def set_tags(self, tags: list[str], *, target: Ref, tags_property: str | None) -> None:
        """Add tags to the record (keeping the ones already there)."""

    @abc.abstractmethod
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Delete or anonymise the contact with that key (right to erasure)."""

    def upsert_company(self, write: CompanyWrite) -> Ref:
        """Create or update the organization. Adapters whose mappings allow one override this."""
        from connector.errors import FatalError

        raise FatalError(f"the {self.name} adapter does not write organizations", field="company")

    def sync(self, plan: SyncPlan) -> SyncResult:
        """Write everything in ``plan``. The default uses the fine-grained calls in order;
        adapters override it to use fewer calls (batch, composite) where the CRM allows."""
        start = self.calls
        contact = self.upsert_contact(plan.contact)
        company = self.upsert_company(plan.company) if plan.company else None
        record = self.upsert_record(plan.record, contact=contact, company=company) if plan.record else None
        if plan.tags:
            self.set_tags(plan.tags, target=record or contact, tags_property=plan.tags_property)
        note = self.attach_note(plan.note, contact=contact, record=record) if plan.note else None
        task = self.create_task(plan.task, contact=contact, record=record) if plan.task else None
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)

    def prepare(self, required: CRMSchema) -> None:
        """Resolve, once at worker start, what the adapter must look up before it can write (field keys…),
        so a mapping that names a field the CRM lacks stops the worker with a clear message instead of
        failing lead after lead. The default does nothing.

        Raises:
            ConfigurationError: the mapping names fields the CRM does not have (every one is listed).
            RetryableError: the CRM could not be reached (the caller carries on; writes look up later).
        """
        return None  # HubSpot and Salesforce address fields by their API names: nothing to resolve

    # -- set-up --------------------------------------------------------------------------------
    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create what ``required`` names and the CRM lacks (fields, groups, labels).

        Returns one line per action (done, or to do when ``apply`` is false). Adapters whose
        CRM cannot be set up through the API return the instructions for an admin.
        """
        return [f"{self.name}: nothing to set up automatically; see docs/mappings.md"]
