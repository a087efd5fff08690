"""The adapter SDK: the one contract HubSpot, Salesforce and Pipedrive (and a CRM from another
package) implement, and the parts they share.

The mapping engine (:mod:`connector.mapping`) turns a :class:`~connector.models.Lead` into a
:class:`SyncPlan`: plain CRM operations with the CRM's own field names already filled in. An
adapter's :meth:`CRMAdapter.sync` executes a plan against its CRM with the fewest calls the API
allows and returns a :class:`SyncResult`; it is the one write of the contract. Every write is
idempotent, and every "did this write already happen?" decision rests on a strongly consistent read
(get by id, an upsert on a unique property, an associations read, a list by parent, the adapter's
own id cache and progress log), never on a search index, which lags behind writes. So a retried or
replayed job never duplicates anything.

What an adapter declares (as a Singer tap declares its config and streams):

- ``name`` and ``requires`` (modules it needs; a missing one is a configuration error);
- ``Options``: a pydantic model of its mapping's ``options:`` block, validated by ``chat2crm check``
  with file and line and published in the mapping JSON Schema;
- ``Credentials``: the settings it may read, and only those (:meth:`CRMAdapter.from_settings`);
- ``cache_families`` and ``progress_family``: the Redis key families of its
  :class:`~adapters.idcache.IdCache` and :class:`~adapters.progress.ProgressLog`.

Its calls go through one :class:`~adapters.session.VendorSession` (timeouts, the shared rate
limiter, counting and metrics, the vendor's error table). Errors come from :mod:`connector.errors`:
:class:`RetryableError` for 429, 5xx, timeouts and connection errors (with ``retry_after`` when the
CRM said so), :class:`AuthError` for bad credentials (naming the setting), :class:`FatalError` for
other refusals (naming the field), :class:`SkippableError` when the work is moot.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.idcache import IdCache
from adapters.progress import ProgressLog
from adapters.session import Timeouts, VendorSession, settle_after_timeout
from connector.keys import KeyFamily

if TYPE_CHECKING:
    from redis import Redis

    from connector.settings import Settings

__all__ = ["DEFAULT_MATCH", "AdapterCredentials", "AdapterOptions", "CRMAdapter", "CRMSchema", "CompanyWrite",
           "ContactWrite", "CredentialReport", "ErasureReport", "FieldInfo", "MatchBy", "NoteWrite", "ObjectInfo",
           "RateLimit", "RecordWrite", "Ref", "SyncPlan", "SyncResult", "TaskWrite", "settle_after_timeout"]

A = TypeVar("A", bound="CRMAdapter")
C = TypeVar("C", bound="AdapterCredentials")


MatchBy = Literal["key", "phone", "email"]
DEFAULT_MATCH: tuple[MatchBy, ...] = ("key", "phone", "email")


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



# -- what an adapter declares -------------------------------------------------------------------------
class RateLimit(_Op):
    """A request budget: at most ``requests`` calls in any ``per_seconds`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=1, description="Calls allowed in one window.")
    per_seconds: float = Field(gt=0, description="The window's length in seconds.")


class AdapterOptions(BaseModel):
    """The options every adapter takes in its mapping's ``options:`` block; an adapter's ``Options``
    extends it with its own. Unknown keys are refused (``chat2crm check`` names them with file and line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_seconds: float = Field(default=20.0, gt=0, le=300,
                                   description="How long a CRM call may take to answer before it is given up "
                                               "(and retried later, after waiting for a late write to land).")
    connect_timeout_seconds: float = Field(default=3.05, gt=0, le=60,
                                           description="How long connecting to the CRM may take.")

    def timeouts(self) -> Timeouts:
        """The session's timeouts."""
        return Timeouts(connect=self.connect_timeout_seconds, read=self.timeout_seconds)


class AdapterCredentials(BaseModel):
    """The settings one adapter may read: its own credentials and endpoints, and nothing else.

    Field ``x`` comes from the setting ``<settings_prefix>x`` (environment variable
    ``HUBSPOT_ACCESS_TOKEN`` for HubSpot's ``access_token``); secrets stay ``SecretStr``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the prefix of this adapter's settings (``hubspot_``)
    settings_prefix: ClassVar[str] = ""

    @classmethod
    def from_settings(cls: type[C], settings: Settings) -> C:
        """This adapter's own settings, copied out of the process's settings.

        Raises:
            ValueError: a field names no setting (a mistake in the adapter).
        """
        values = {}
        for name in cls.model_fields:
            setting = cls.settings_prefix + name
            if setting not in type(settings).model_fields:
                raise ValueError(f"{cls.__name__}.{name} names no setting ({setting.upper()})")
            values[name] = getattr(settings, setting)
        return cls.model_validate(values)

    @classmethod
    def setting(cls, name: str) -> str:
        """The environment variable field ``name`` comes from (named in errors).

        Raises:
            ValueError: no such field.
        """
        if name not in cls.model_fields:
            raise ValueError(f"name must be one of {sorted(cls.model_fields)}, got {name!r}")
        return (cls.settings_prefix + name).upper()


class CRMAdapter(abc.ABC):
    """Base class of every CRM adapter. Subclasses are found by the entry-point group
    ``chat2crm.adapters``; see :func:`adapters.load_adapter`.

    Args:
        credentials: the adapter's own credentials (an instance of its ``Credentials``;
            :meth:`from_settings` takes them out of the process's settings).
        options: the mapping's ``options:`` block (a mapping, validated into ``Options``), or ``Options``.
        redis: the shared Redis connection, for limiters, caches and progress logs shared by every worker.

    Raises:
        ValueError: ``credentials`` are not this adapter's, or ``options`` are not valid (naming them).
    """

    #: the name integrators write in ``chat2crm.yaml`` (``crm: hubspot``)
    name: ClassVar[str]
    #: modules the adapter needs; a missing one is a configuration error when it is selected
    requires: ClassVar[tuple[str, ...]] = ()
    #: the mapping's ``options:`` block
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    #: the settings the adapter may read
    Credentials: ClassVar[type[AdapterCredentials]] = AdapterCredentials
    #: kind → key family of the ids the adapter keeps (:class:`~adapters.idcache.IdCache`)
    cache_families: ClassVar[Mapping[str, KeyFamily]] = {}
    #: the key family of its progress logs (None: it keeps none)
    progress_family: ClassVar[KeyFamily | None] = None

    #: the one way its calls reach the CRM (set by the subclass)
    session: VendorSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | Mapping[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        if not isinstance(credentials, self.Credentials):
            raise ValueError(f"credentials must be {self.Credentials.__name__} (the {self.name} adapter's own; "
                             f"{type(self).__name__}.from_settings takes them from the settings), "
                             f"got {type(credentials).__name__}")
        self.credentials = credentials
        self.options = self.parse_options(options)
        self.redis = redis
        self.cache = IdCache(self.cache_families, redis)

    @classmethod
    def from_settings(cls: type[A], settings: Settings, *, options: AdapterOptions | Mapping[str, Any] | None = None,
                      redis: Redis | None = None) -> A:
        """The adapter, given only its own credentials out of ``settings``.

        Raises:
            ValueError: ``options`` are not valid (naming them).
        """
        return cls(cls.Credentials.from_settings(settings), options=options, redis=redis)

    @classmethod
    def parse_options(cls, options: AdapterOptions | Mapping[str, Any] | None) -> AdapterOptions:
        """``options`` as this adapter's ``Options``.

        Raises:
            ValueError: they are not valid: every problem, as ``options.<path>: message``.
        """
        if options is None:
            return cls.Options()
        if isinstance(options, cls.Options):
            return options
        if isinstance(options, BaseModel) or not isinstance(options, Mapping):
            raise ValueError(f"options must be a mapping or {cls.__name__}.Options, got {type(options).__name__}")
        try:
            return cls.Options.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(f"options.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
                                 f"(got {err.get('input')!r})" for err in exc.errors())
            raise ValueError(f"the {cls.name} adapter's {problems}") from None

    @property
    def calls(self) -> int:
        """API calls made through this adapter (measured by tests and benchmarks)."""
        return self.session.calls

    def progress(self, reference: str) -> ProgressLog:
        """The progress log of one lead's sync.

        Raises:
            ValueError: the adapter declares no ``progress_family``.
        """
        if self.progress_family is None:
            raise ValueError(f"the {self.name} adapter keeps no progress log")
        return ProgressLog(self.progress_family, self.redis, reference)

    # -- the write -----------------------------------------------------------------------------
    @abc.abstractmethod
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Write everything in ``plan`` (contact, organization, record, tags, note, task), with the
        fewest calls the CRM allows, idempotently: a retry resumes, a replay duplicates nothing.

        Raises:
            RetryableError: the CRM is busy, failing or did not answer in time (the job retries).
            AuthError: the credentials were refused.
            FatalError: the CRM refused what the mapping writes (naming the field).
            SkippableError: nothing can be written (e.g. an opt-out for a contact that does not exist).
        """

    def upsert_contact(self, write: ContactWrite) -> Ref:
        """Write one contact on its own (an opt-out): :meth:`sync` of a plan holding only that contact.

        Raises:
            As :meth:`sync`.
        """
        digest = hashlib.sha256(write.key_value.encode()).hexdigest()[:20]
        return self.sync(SyncPlan(crm=self.name, lead_reference=f"contact-{digest}", contact=write)).contact

    # -- reading -------------------------------------------------------------------------------
    @abc.abstractmethod
    def find_contact(
        self, *, key: tuple[str, str] | None = None, phone: str | None = None, email: str | None = None,
        object: str | None = None, properties: list[str] | None = None,
    ) -> Ref | None:
        """Find a contact by the contact key ``(property, value)``, then phone, then e-mail, with the
        ``properties`` asked for (the bot's pre-fill reads a returning patient's name and e-mail).

        Raises:
            RetryableError, AuthError, FatalError: as :meth:`sync`.
        """

    # -- diagnosis and set-up ------------------------------------------------------------------
    @abc.abstractmethod
    def check_credentials(self) -> CredentialReport:
        """Check the credentials against the CRM. Never raises for bad credentials: reports them."""

    @abc.abstractmethod
    def describe(self, objects: list[str]) -> CRMSchema:
        """Describe the named CRM objects: fields, options, pipelines and stages.

        Raises:
            RetryableError, AuthError, FatalError: as :meth:`sync`.
        """

    def prepare(self, required: CRMSchema) -> None:
        """Resolve, once at worker start, what the adapter must look up before it can write (field keys…),
        so a mapping that names a field the CRM lacks stops the worker with a clear message instead of
        failing lead after lead. The default does nothing.

        Raises:
            ConfigurationError: the mapping names fields the CRM does not have (every one is listed).
            RetryableError: the CRM could not be reached (the caller carries on; writes look up later).
        """
        return None

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create what ``required`` names and the CRM lacks (fields, groups, labels).

        Returns one line per action (done, or to do when ``apply`` is false). Adapters whose
        CRM cannot be set up through the API return the instructions for an admin.
        """
        return [f"{self.name}: nothing to set up automatically; see docs/mappings.md"]

    # -- privacy -------------------------------------------------------------------------------
    @abc.abstractmethod
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Delete or anonymise the contact with that key in the CRM (right to erasure).

        Raises:
            RetryableError, AuthError, FatalError: as :meth:`sync`.
        """

    def forget(self, identities: Iterable[str]) -> int:
        """Delete the adapter's cached Redis keys that can hold these identities (contact keys such as
        ``whatsapp:905321112233``, phone numbers, e-mail addresses); returns how many were deleted.
        The CRM is not touched (:meth:`erase_contact` does that)."""
        return self.cache.forget(list(identities))
