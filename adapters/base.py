"""The adapter SDK: the one contract HubSpot, Salesforce and Pipedrive (and a CRM from another
package) implement, and the parts they share.

The mapping engine (:mod:`connector.mapping`) turns a :class:`~core.models.Lead` into a
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
limiter, counting and metrics, the vendor's error table). Errors come from :mod:`core.errors`:
:class:`RetryableError` for 429, 5xx, timeouts and connection errors (with ``retry_after`` when the
CRM said so), :class:`AuthError` for bad credentials (naming the setting), :class:`FatalError` for
other refusals (naming the field), :class:`SkippableError` when the work is moot.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from adapters.idcache import IdCache
from adapters.progress import ProgressLog
from adapters.session import Timeouts, VendorSession, settle_after_timeout
from core.keys import KeyFamily
from core.plan import (
    DEFAULT_MATCH,
    CompanyWrite,
    ContactWrite,
    CredentialReport,
    CRMSchema,
    ErasureReport,
    FieldInfo,
    MatchBy,
    NoteWrite,
    ObjectInfo,
    RateLimit,
    RecordWrite,
    Ref,
    SyncPlan,
    SyncResult,
    TaskWrite,
)

if TYPE_CHECKING:
    from redis import Redis

    from adapters.inbox import CRMInbox, OAuthInstall
    from core.settings import Settings

__all__ = ["DEFAULT_MATCH", "AdapterCredentials", "AdapterOptions", "CRMAdapter", "CRMSchema", "CompanyWrite",
           "ContactWrite", "CredentialReport", "Deployment", "ErasureReport", "FieldInfo", "MatchBy", "NoteWrite", "ObjectInfo",
           "RateLimit", "RecordWrite", "Ref", "SyncPlan", "SyncResult", "TaskWrite", "settle_after_timeout"]

A = TypeVar("A", bound="CRMAdapter")
C = TypeVar("C", bound="AdapterCredentials")


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


@dataclass(frozen=True)
class Deployment:
    """What an adapter may know of the deployment beyond its own credentials: where the relay is reached
    (webhook and install URLs it registers with the CRM), the key that encrypts tokens it keeps, and the key
    that signs the relay's links."""

    public_base_url: str = "http://localhost:8000"
    encryption_key: SecretStr | None = None
    #: the key that signs the relay's own links (``TRANSCRIPT_SECRET``): an inbox whose CRM files need
    #: credentials to read links the channel to the relay instead (:class:`adapters.inbox.FileLinks`)
    link_secret: SecretStr | None = None


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
        #: set by the runtime that builds the adapter (:class:`Deployment`)
        self.deployment = Deployment()

    @classmethod
    def preload_modules(cls) -> None:
        """Import now what the CRM's client would import on its first calls, making no connection and keeping
        no object: a worker calls it before forking its job processes, which then share those modules
        instead of each importing its own copy. The default: nothing (a client that imports all at once)."""
        return None

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

    # -- the conversation after the bot ----------------------------------------------------------
    def inbox(self) -> CRMInbox | None:
        """The CRM's inbox for the conversation after the bot (:mod:`adapters.inbox`), or None when this
        adapter (or its configuration) has none: then patient messages after the bot stay with the bot."""
        return None

    def installer(self) -> OAuthInstall | None:
        """How the CRM app is installed by OAuth, or None when the adapter needs no install."""
        return None

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
