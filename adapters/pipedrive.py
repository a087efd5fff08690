"""The Pipedrive adapter, on ``requests`` against Pipedrive's REST API (v2 where it exists, v1 for
leads, notes and lead labels, which only v1 has).

What it writes for one lead: the person (found by the contact key kept in a custom field, then by
phone or e-mail for persons made by people, else created), optionally an organization, a Lead
(default; its status is a lead label, since leads have no stage) or a Deal in a pipeline stage,
the tags as lead labels (or, for a deal, options of a multi-option custom field), a note on the
lead or deal, and an activity for the owner on handoff.

Calls, once the field keys and label ids are cached (they are, after ``crm setup`` or the first
lead): a new patient 5 (key search, phone search, person, lead, note); a returning patient 2
(lead, note: the person's id comes from the id cache and is not written again when nothing
changed); a replayed job 0 (the lead, the note and the activity are known; nothing changed). A
handoff adds 1 (the activity). A retry after a failure resumes where the last attempt stopped.

Pipedrive has no unique constraint and no upsert, and its search lags behind writes (a person
appears in ``/persons/search`` some seconds after it is made). So search never decides whether the
relay's own write happened: the id cache knows what the relay made; a create whose answer was lost
is marked pending in it before it is sent, and the next attempt looks on a list endpoint, which is
current (persons and organizations updated since the mark, the person's leads or deals, the
record's notes and activities), before writing again; one worker at a time finds or makes a given
person. Search serves what only it can: persons and organizations people made by hand, and persons
the relay made so long ago that their ids left the cache.

Custom fields are named in the mapping by their visible name; Pipedrive addresses them by
generated 40-character keys. The adapter reads the keys from the field endpoints and keeps them
in Redis (shared by every worker, refreshed once when a name is not found); a name that still
does not exist is a :class:`~core.errors.FatalError` naming the field.

Every call goes through :class:`PipedriveSession`: the Redis-shared limiters for Pipedrive's
2-second burst windows (per token, so shared by all workers; searches have their own), a pause when
``x-ratelimit-remaining`` runs out, the timeouts, call counting and metrics, and Pipedrive's error
table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import requests
from pydantic import ConfigDict, Field, SecretStr

from adapters._ratelimit import SharedRateLimiter
from adapters.base import (
    AdapterCredentials,
    AdapterOptions,
    CompanyWrite,
    ContactWrite,
    CredentialReport,
    CRMAdapter,
    CRMSchema,
    ErasureReport,
    FieldInfo,
    NoteWrite,
    ObjectInfo,
    RateLimit,
    RecordWrite,
    Ref,
    SyncPlan,
    SyncResult,
    TaskWrite,
)
from adapters.session import Answer, ErrorTable, RequestsSession, rule
from core.errors import FatalError, RetryableError, SyncError
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("chat2crm.pipedrive")

DAY = 86400
#: a contact key's person: ``<id>|<digest of what was last written>``
CONTACTS = family("pipedrive", "contact:{contact_key}", ttl=90 * DAY, holds_pii=True, owner=__name__)
ORGANIZATIONS = family("pipedrive", "organization:{name}", ttl=90 * DAY, holds_pii=True, owner=__name__)
#: a lead reference's lead or deal: ``<id>|<digest of what was last written>``
RECORDS = family("pipedrive", "record:{kind}:{reference}", ttl=90 * DAY, holds_pii=False, owner=__name__)
NOTES = family("pipedrive", "note:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
ACTIVITIES = family("pipedrive", "activity:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
#: the account's field keys, lead labels and pipelines (JSON), read again daily
FIELDS = family("pipedrive", "fields:{entity}", ttl=DAY, holds_pii=False, owner=__name__)
LABELS = family("pipedrive", "labels", ttl=DAY, holds_pii=False, owner=__name__)
PIPELINES = family("pipedrive", "pipelines", ttl=DAY, holds_pii=False, owner=__name__)
#: one worker at a time makes a label, an option, a person, an organization (names are digests)
LOCKS = family("pipedrive", "lock:{name}", ttl=30, holds_pii=False, owner=__name__)
PROGRESS = family("pipedrive", "progress:{reference}", ttl=7 * DAY, holds_pii=False, owner=__name__)

#: the pseudo-pipeline of lead mode: leads have no pipeline, their status is a lead label
LEAD_LABELS = "lead labels"
#: fields every account has, written under their own names (not custom fields)
STANDARD = {
    "person": {"name", "phone", "phones", "email", "emails", "owner_id", "org_id", "job_title", "birthday",
               "visible_to", "label_ids", "marketing_status"},
    "lead": {"title", "owner_id", "value", "expected_close_date", "visible_to", "was_seen", "channel",
             "channel_id", "origin_id"},
    "deal": {"title", "owner_id", "value", "currency", "expected_close_date", "probability", "visible_to",
             "status"},
}
_INTEGER_FIELDS = {"owner_id", "org_id", "visible_to", "channel"}
_KEY = re.compile(r"\b([0-9a-f]{40})\b")
_FIELD_TYPES = {"string": "varchar", "text": "text", "date": "date", "enumeration": "set", "bool": "enum",
                "number": "double"}
#: how far before a pending mark a list of recent writes looks (the CRM's clock is not ours)
_CLOCK_SKEW = timedelta(seconds=120)
LabelColor = Literal["green", "blue", "red", "yellow", "purple", "gray", "brown", "orange", "pink", "dark-gray"]
#: Pipedrive's answers → the error tree
ERRORS = ErrorTable("pipedrive", [
    rule("retryable", 429, what="rate limited"),
    rule("retryable", (500, 599), what="server error"),
    rule("auth", 401, what="token refused"),
    rule("auth", 403, what="permission denied"),
    rule("fatal", (400, 499), what="request rejected"),
])


class PipedriveOptions(AdapterOptions):
    """The Pipedrive mapping's ``options:``."""

    model_config = ConfigDict(title="pipedrive options")

    rate_limit: RateLimit = Field(default=RateLimit(requests=20, per_seconds=2),
                                  description="The burst limit per API token, shared by every worker "
                                              "(the smallest plan's: 20 per 2 seconds).")
    search_rate_limit: RateLimit = Field(default=RateLimit(requests=10, per_seconds=2),
                                         description="Pipedrive's own, lower limit for the search endpoints.")
    activity_type: str = Field(default="task", min_length=1,
                               description="The activity type of the handoff task (task, call…).")
    label_color: LabelColor = Field(default="gray", description="The colour of the lead labels made for tags.")
    status_label_color: LabelColor = Field(default="green",
                                           description="The colour of the lead labels made for statuses.")
    text_fields: list[str] = Field(default_factory=list,
                                   description="Visible names `crm setup` creates as long text (over 255 "
                                               "characters) instead of 255-character text.")
    mapping_file: str = Field(default="the mapping file", description="The mapping's name in error messages.")


class PipedriveCredentials(AdapterCredentials):
    """What the Pipedrive adapter may read of the settings (an OAuth token wins over an API token)."""

    settings_prefix = "pipedrive_"

    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    api_base: str = "https://api.pipedrive.com"


class _Answered(Exception):
    """Pipedrive answered with an error status."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PipedriveSession(RequestsSession):
    """Pipedrive's chokepoint: a ``requests`` session with the token, the limiters, the timeouts and the
    error table.

    Args:
        credentials: the token (OAuth or API) and the API base URL.
        options: the adapter's options (timeouts, the burst and search limits).
        redis: the shared connection (limiters, metrics).
    """

    def __init__(self, credentials: PipedriveCredentials, options: PipedriveOptions, redis: Redis | None) -> None:
        limit, search = options.rate_limit, options.search_rate_limit
        # per API token, so shared by every worker; the search endpoints have a lower limit of their own
        super().__init__("pipedrive", redis=redis, timeouts=options.timeouts(), errors=ERRORS,
                         limiter=SharedRateLimiter(redis, "pipedrive", limit.requests, limit.per_seconds))
        self.search_limiter = SharedRateLimiter(redis, "pipedrive", search.requests, search.per_seconds,
                                                window="search")
        self.rate_seconds = limit.per_seconds
        self.http = requests.Session()
        if credentials.oauth_token is not None and credentials.oauth_token.get_secret_value():
            self.http.headers["Authorization"] = f"Bearer {credentials.oauth_token.get_secret_value()}"
            self.credential_setting = PipedriveCredentials.setting("oauth_token")
        else:
            token = credentials.api_token.get_secret_value() if credentials.api_token else ""
            self.http.headers["x-api-token"] = token
            self.credential_setting = PipedriveCredentials.setting("api_token")
        self.http.headers["Accept"] = "application/json"
        self.base = credentials.api_base.rstrip("/")

    def request(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None) -> dict[str, Any]:
        """One API call: ``path`` starts with ``/v1/`` or ``/api/v2/``. Returns the JSON envelope.

        Raises:
            As :meth:`VendorSession.call`; a refusal naming a field's key carries it in ``details["field_key"]``.
        """
        def send() -> dict[str, Any]:
            response = self.http.request(method, self.base + path, params=params, json=body,
                                         timeout=self.timeouts.pair())
            self._note_budget(response)
            if not response.ok:
                raise _Answered(response)
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                raise RetryableError("pipedrive: answer was not JSON", details={"operation": operation}) from None
            return data

        return self.call(operation, send, limiters=[self.search_limiter] if path.endswith("/search") else [])

    def _note_budget(self, response: requests.Response) -> None:
        """Slow every worker down when Pipedrive says the burst window is used up."""
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is None or response.status_code == 429 or self.limiter is None:
            return
        try:
            if int(remaining) > 0:
                return
            reset = float(response.headers.get("x-ratelimit-reset") or self.rate_seconds)
        except ValueError:
            return
        self.limiter.pause(min(reset, 10.0))

    def answer_of(self, exc: Exception) -> Answer | None:
        if not isinstance(exc, _Answered):
            return None
        response = exc.response
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        return Answer(status=response.status_code, message=str(body.get("error") or response.reason or ""),
                      headers=dict(response.headers), body=body)

    def refused(self, answer: Answer, operation: str) -> SyncError:
        details = {"error_info": (answer.body or {}).get("error_info")}
        if answer.status == 429:
            retry_after = answer.headers.get("Retry-After") or answer.headers.get("x-ratelimit-reset")
            try:
                seconds = max(float(retry_after), 0.5) if retry_after else self.rate_seconds
            except ValueError:
                seconds = self.rate_seconds
            if self.limiter is not None:
                self.limiter.pause(min(seconds, 10.0))  # a daily budget's reset is far away: the job layer waits
            return self.errors.error(answer, operation=operation, retry_after=seconds, details=details)
        if answer.status in (401, 403):
            return self.errors.error(answer, operation=operation, setting=self.credential_setting, details=details,
                                     hint=f"; check {self.credential_setting} and the user's permissions")
        key = _KEY.search(answer.message)
        if key:
            details["field_key"] = key.group(1)
        return self.errors.error(answer, operation=operation, field=key.group(1) if key else None, details=details)


class PipedriveAdapter(CRMAdapter):
    """Writes leads into Pipedrive (persons, leads or deals, notes, activities, labels)."""

    name = "pipedrive"
    requires = ("requests",)
    Options = PipedriveOptions
    Credentials = PipedriveCredentials
    cache_families = MappingProxyType({"contact": CONTACTS, "organization": ORGANIZATIONS, "record": RECORDS,
                                       "note": NOTES, "activity": ACTIVITIES, "fields": FIELDS, "labels": LABELS,
                                       "pipelines": PIPELINES})
    progress_family = PROGRESS

    options: PipedriveOptions
    session: PipedriveSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = PipedriveSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.base = self.session.base

    def _call(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: Any = None) -> dict[str, Any]:
        """One API call through the session; a refusal naming a custom field's key names the field instead
        (and the keys are read again next time: the field may have been deleted)."""
        try:
            return self.session.request(operation, method, path, params=params, body=body)
        except FatalError as exc:
            key = exc.details.get("field_key")
            if key and exc.setting is None:
                exc.field = self._name_of(key) or key
                self._forget_fields()
            raise

    # -- fields: visible names → Pipedrive's keys ----------------------------------------------
    def _fields(self, entity: Literal["person", "deal"], *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Visible name → ``{key, type, custom, options: {label: id}}`` (also by key), cached a day."""
        if not refresh:
            cached = self.cache.get("fields", entity)
            if cached:
                loaded: dict[str, dict[str, Any]] = json.loads(cached)
                return loaded
        found: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self._call(f"{entity}_fields", "GET", f"/api/v2/{entity}Fields", params=params)
            for item in page.get("data") or []:
                spec = {"key": item["field_code"], "name": item["field_name"], "type": item["field_type"],
                        "custom": bool(item.get("is_custom_field")),
                        "options": {str(o["label"]): o["id"] for o in item.get("options") or []}}
                found.setdefault(item["field_name"], spec)
                found.setdefault(item["field_code"], spec)
            cursor = (page.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
        self.cache.set("fields", json.dumps(found), entity)
        return found

    def _forget_fields(self) -> None:
        for entity in ("person", "deal"):
            self.cache.drop("fields", entity)

    def _name_of(self, key: str) -> str | None:
        for entity in ("person", "deal"):
            cached = self.cache.get("fields", entity)
            if cached and key in (specs := json.loads(cached)):
                return str(specs[key]["name"])
        return None

    def _field(self, entity: Literal["person", "deal"], name: str) -> dict[str, Any]:
        """The custom field called ``name``; the keys are read again once when it is not known.

        Raises:
            FatalError: no such field in the account (names the field and the mapping file).
        """
        spec = self._fields(entity).get(name)
        if spec is None:
            spec = self._fields(entity, refresh=True).get(name)
        if spec is None:
            where = "deal fields (leads share them)" if entity == "deal" else "person fields"
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the field {name!r}, which is not one of the "
                             f"account's {where}; run `chat2crm crm setup` or create it in Pipedrive", field=name)
        return spec

    def prepare(self, required: CRMSchema) -> None:
        """Resolve every custom field the mapping names to its key (cached in Redis for every worker)."""
        from core.errors import ConfigurationError, Problem

        problems = []
        for obj, info in required.objects.items():
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            for name in info.fields:
                if name in STANDARD.get(obj, set()) or name in STANDARD[entity]:
                    continue
                try:
                    self._field(entity, name)
                except FatalError as exc:
                    problems.append(Problem(exc.message, file=self.options.mapping_file, path=f"{obj}.{name}",
                                            hint="run `chat2crm crm setup`"))
        if problems:
            raise ConfigurationError(problems)

    def _value(self, spec: dict[str, Any], value: Any) -> Any:
        """A mapped value in the shape the field takes (option ids for enum and set fields)."""
        kind = spec["type"]
        if kind in ("enum", "set"):
            labels = [v for v in (value if isinstance(value, list) else str(value).split(";")) if v != ""]
            by_label = {k.lower(): v for k, v in spec["options"].items()}
            ids = []
            for label in labels:
                if str(label).lower() not in by_label:
                    raise FatalError(f"pipedrive: {label!r} is not an option of the field {spec['name']!r}",
                                     field=spec["name"])
                ids.append(by_label[str(label).lower()])
            return ids if kind == "set" else (ids[0] if ids else None)
        if kind in ("double", "monetary"):
            return float(value)
        if kind == "date":
            return str(value)[:10]
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)
        return text if kind != "varchar" or len(text) <= 255 else text[:254] + "…"

    def _split(self, entity: Literal["person", "lead", "deal"], properties: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Mapped properties → (standard fields, custom fields by key)."""
        standard: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        fields_of: Literal["person", "deal"] = "person" if entity == "person" else "deal"
        named = [n for n in properties if n not in STANDARD[entity]]
        fields = self._fields(fields_of) if named else {}
        if any(n not in fields for n in named):
            fields = self._fields(fields_of, refresh=True)  # made since the keys were cached?
        missing = [n for n in named if n not in fields]
        if missing:
            where = "person fields" if entity == "person" else "deal fields (leads share them)"
            raise FatalError(f"pipedrive: {self.options.mapping_file} names fields that are not among the account's {where}: "
                             f"{', '.join(map(repr, missing))}; run `chat2crm crm setup` or create them in Pipedrive",
                             field=missing[0])
        for name, value in properties.items():
            if name not in STANDARD[entity]:
                spec = fields[name]
                custom[spec["key"]] = self._value(spec, value)
            elif name in ("phone", "phones"):
                standard["phones"] = [{"value": str(value), "primary": True, "label": "mobile"}]
            elif name in ("email", "emails"):
                standard["emails"] = [{"value": str(value), "primary": True, "label": "work"}]
            elif name == "visible_to" and entity == "lead":
                standard[name] = str(value)  # v1 leads take it as a string
            elif name in _INTEGER_FIELDS:
                standard[name] = int(value)
            else:
                standard[name] = value
        return standard, custom

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            me = self._call("me", "GET", "/v1/users/me")
            self._fields("person", refresh=True)
        except (RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        data = me.get("data") or {}
        # An API token has its user's permissions, not scopes; an OAuth app's scopes are not listed here.
        return CredentialReport(ok=True, account=str(data.get("company_domain") or data.get("company_name")
                                                     or "pipedrive"))

    def describe(self, objects: list[str]) -> CRMSchema:
        """Fields by visible name (``label`` holds Pipedrive's key), pipelines → stage names, and for
        leads the lead labels as the pseudo-pipeline ``lead labels``.

        Pipedrive has no unique constraint on custom fields; the relay keeps key and reference
        values unique itself (an exact search before every create), so the searchable text fields
        that can serve as such keys are reported ``unique``.
        """
        schema = CRMSchema()
        for obj in objects:
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            info = ObjectInfo(name=obj)
            for name in sorted(STANDARD.get(obj, set())):
                info.fields[name] = FieldInfo(name=name, label=name, type="standard")
            for name, spec in self._fields(entity, refresh=True).items():
                if name != spec["name"]:
                    continue  # the entry by key
                info.fields[name] = FieldInfo(name=name, label=spec["key"], type=spec["type"],
                                              options=list(spec["options"]),
                                              unique=spec["custom"] and spec["type"] in ("varchar", "text"))
            if obj == "lead":
                info.pipelines[LEAD_LABELS] = list(self._labels(refresh=True))
            elif obj == "deal":
                info.pipelines = {name: list(p["stages"]) for name, p in self._pipelines(refresh=True).items()}
            schema.objects[obj] = info
        return schema

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create the custom fields and lead labels the mapping needs (idempotent)."""
        lines: list[str] = []
        live = self.describe(list(required.objects))
        touched: set[Literal["person", "deal"]] = set()
        for obj, info in required.objects.items():
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            have = live.objects[obj].fields
            for name, wanted in info.fields.items():
                if name in have:
                    lines.append(f"ok {obj}.{name}" + (f" ({have[name].label})" if have[name].label != name else ""))
                    continue
                kind = "text" if name in set(self.options.text_fields) else _FIELD_TYPES.get(wanted.type, "varchar")
                options = ["true", "false"] if wanted.type == "bool" else ["chat2crm"] if kind == "set" else []
                if not apply:
                    lines.append(f"would create {entity} field {name!r} ({kind})")
                    continue
                body: dict[str, Any] = {"field_name": name, "field_type": kind}
                if options:
                    body["options"] = [{"label": o} for o in options]
                created = self._call(f"{entity}_field_create", "POST", f"/api/v2/{entity}Fields", body=body)
                lines.append(f"created {entity} field {name!r} ({kind}, key {created['data']['field_code']})")
                touched.add(entity)
            for pipeline, stages in info.pipelines.items():
                if obj == "lead" and pipeline == LEAD_LABELS:
                    labels = live.objects[obj].pipelines.get(LEAD_LABELS, [])
                    for stage in stages:
                        if stage in labels:
                            lines.append(f"ok lead label {stage!r}")
                        elif apply:
                            self._create_label(stage, self.options.status_label_color)
                            lines.append(f"created lead label {stage!r}")
                        else:
                            lines.append(f"would create lead label {stage!r}")
                    continue
                have_stages = live.objects[obj].pipelines.get(pipeline)
                state = "ok" if have_stages is not None and all(s in have_stages for s in stages) else \
                    "MISSING (create it in Pipedrive)"
                lines.append(f"{state} {obj} pipeline {pipeline} stage {', '.join(stages)}")
        for made in sorted(touched):
            self._fields(made, refresh=True)  # the new keys, cached for every worker
        return lines

    # -- labels, pipelines ---------------------------------------------------------------------
    def _labels(self, *, refresh: bool = False) -> dict[str, str]:
        """Lead label name → id, cached a day."""
        cached = None if refresh else self.cache.get("labels")
        if cached:
            loaded: dict[str, str] = json.loads(cached)
            return loaded
        page = self._call("labels", "GET", "/v1/leadLabels")
        labels = {str(item["name"]): str(item["id"]) for item in page.get("data") or []}
        self.cache.set("labels", json.dumps(labels))
        return labels

    def _create_label(self, name: str, color: str) -> str:
        created = self._call("label_create", "POST", "/v1/leadLabels", body={"name": name, "color": color})
        labels = {**self._labels(), name: str(created["data"]["id"])}
        self.cache.set("labels", json.dumps(labels))
        return labels[name]

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        """One worker at a time creates labels or options: Pipedrive would accept two of one name.

        Raises:
            RetryableError: another worker held the lock too long.
        """
        if self.redis is None:
            yield
            return
        lock = self.redis.lock(LOCKS.key(name), timeout=30, blocking_timeout=10)
        if not lock.acquire():
            raise RetryableError(f"pipedrive: another worker is creating {name}", retry_after=5)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # expired meanwhile: nothing to release
                lock.release()

    def _label_ids(self, names: list[str], *, status: str | None = None) -> list[str]:
        """The ids of these lead labels, creating the missing ones (once: their ids are cached)."""
        wanted = list(dict.fromkeys(([status] if status else []) + names))
        labels = self._labels()
        if any(n not in labels for n in wanted):
            with self._exclusive("labels"):
                labels = self._labels(refresh=True)  # another worker may have made them meanwhile
                for label in wanted:
                    if label not in labels:
                        labels[label] = self._create_label(label, self.options.status_label_color if label == status
                                                           else self.options.label_color)
        return [labels[label] for label in wanted]

    def _pipelines(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Pipeline name (and id) → ``{id, stages: {stage name (and id): stage id}}``, cached a day."""
        cached = None if refresh else self.cache.get("pipelines")
        if cached:
            loaded: dict[str, dict[str, Any]] = json.loads(cached)
            return loaded
        pipelines = self._call("pipelines", "GET", "/api/v2/pipelines", params={"limit": 500}).get("data") or []
        stages = self._call("stages", "GET", "/api/v2/stages", params={"limit": 500}).get("data") or []
        found: dict[str, dict[str, Any]] = {}
        for pipeline in pipelines:
            entry = {"id": pipeline["id"], "stages": {}}
            for stage in stages:
                if stage["pipeline_id"] == pipeline["id"]:
                    entry["stages"][str(stage["name"])] = stage["id"]
                    entry["stages"][str(stage["id"])] = stage["id"]
            found[str(pipeline["name"])] = entry
            found[str(pipeline["id"])] = entry
        self.cache.set("pipelines", json.dumps(found))
        return found

    def _stage(self, pipeline: str | None, stage: str | None) -> tuple[int | None, int | None]:
        if not pipeline:
            return None, None
        pipelines = self._pipelines()
        if pipeline not in pipelines or (stage and stage not in pipelines[pipeline]["stages"]):
            pipelines = self._pipelines(refresh=True)
        if pipeline not in pipelines:
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the pipeline {pipeline!r}, which does not exist",
                             field="record.pipeline")
        entry = pipelines[pipeline]
        if stage and stage not in entry["stages"]:
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the stage {stage!r}, which is not in the "
                             f"pipeline {pipeline!r}", field="record.statuses")
        return int(entry["id"]), int(entry["stages"][stage]) if stage else None


    # -- persons -------------------------------------------------------------------------------
    def _search(self, operation: str, path: str, term: str, field: str, **extra: Any) -> list[dict[str, Any]]:
        """An exact search (it lags behind writes: never the proof that the relay's own write did not happen)."""
        page = self._call(operation, "GET", path, params={"term": term, "fields": field, "exact_match": "true",
                                                          "limit": 10, **extra})
        return [i["item"] for i in (page.get("data") or {}).get("items") or []]

    def _person_by_key(self, key_property: str, key_value: str) -> dict[str, Any] | None:
        self._field("person", key_property)  # a mapping naming no such field fails here, by name
        for item in self._search("person_search", "/api/v2/persons/search", key_value, "custom_fields"):
            if key_value in (item.get("custom_fields") or []):
                return item
        return None

    def _recent(self, kind: Literal["persons", "organizations"], since: float,
                wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The ``kind`` object updated since ``since`` (a pending mark) that is ``wanted``: a list, which is
        current, unlike search."""
        moment = (datetime.fromtimestamp(since, UTC) - _CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
        params: dict[str, Any] = {"updated_since": moment, "sort_by": "update_time", "sort_direction": "desc",
                                  "limit": 500}
        for _ in range(20):  # 10,000 changed in minutes would be a different account
            page = self._call(f"{kind[:-1]}_list", "GET", f"/api/v2/{kind}", params=params)
            for item in page.get("data") or []:
                if wanted(item):
                    return item
            cursor = (page.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
            params["cursor"] = cursor
        return None

    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """Find a person by the contact key (the id cache, then a search), then phone, then e-mail;
        ``properties`` (by the names the mapping uses) are read back, option ids as labels."""
        found: dict[str, Any] | None = None
        person_id = self._cached_contact(key[1])[0] if key else None
        if key and person_id is None:
            found = self._person_by_key(key[0], key[1])
        if person_id is None and found is None and phone:
            hits = self._search("person_search", "/api/v2/persons/search", phone, "phone")
            found = hits[0] if hits else None
        if person_id is None and found is None and email:
            hits = self._search("person_search", "/api/v2/persons/search", email, "email")
            found = hits[0] if hits else None
        if person_id is None and found is None:
            return None
        person_id = person_id or str(found["id"])  # type: ignore[index]
        if not properties:
            return Ref(object=object or "person", id=person_id)
        try:
            person = self._call("person_get", "GET", f"/api/v2/persons/{person_id}")["data"]
        except FatalError as exc:
            if exc.details.get("status") != 404:
                raise
            if key:
                self.cache.drop("contact", key[1])  # deleted in Pipedrive since it was cached
            return None
        return Ref(object=object or "person", id=person_id, properties=self._read_back(person, properties))

    def _read_back(self, person: dict[str, Any], names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        custom = person.get("custom_fields") or {}
        for name in names:
            if name in ("phone", "phones"):
                value: Any = next((p["value"] for p in person.get("phones") or [] if p.get("value")), None)
            elif name in ("email", "emails"):
                value = next((e["value"] for e in person.get("emails") or [] if e.get("value")), None)
            elif name in STANDARD["person"]:
                value = person.get(name)
            else:
                spec = self._fields("person").get(name)
                value = custom.get(spec["key"]) if spec else None
                if spec and spec["options"] and value is not None:
                    labels = {v: k for k, v in spec["options"].items()}
                    value = ";".join(labels.get(v, str(v)) for v in value) if isinstance(value, list) \
                        else labels.get(value, value)
            if value not in (None, "", []):
                out[name] = value
        return out


    def _cached_contact(self, key_value: str) -> tuple[str | None, str | None]:
        cached = self.cache.get("contact", key_value)
        if not cached:
            return None, None
        person_id, _, digest = cached.partition("|")
        return person_id, digest

    def _contact(self, write: ContactWrite) -> Ref:
        """Person by key (the id cache; a create whose answer was lost: the persons updated since; else an
        exact search of the key field), then by phone / e-mail (adopted: the key is set on it), else
        created. Not written again when nothing changed. One worker at a time finds or makes a person."""
        standard, custom = self._split("person", write.properties)
        key_spec = self._field("person", write.key_property)
        custom[key_spec["key"]] = write.key_value
        body = {**standard, "custom_fields": custom}
        digest = _digest(body)
        known = self._known_person(write, body, digest)
        if known is not None:
            return known
        with self._exclusive("person:" + _digest(write.key_value)):
            known = self._known_person(write, body, digest)  # another worker may have made it meanwhile
            if known is not None:
                return known
            pending = self.cache.pending("contact", write.key_value)
            found = None
            if pending is not None:
                found = self._recent("persons", pending, lambda p: (p.get("custom_fields") or {}).get(
                    key_spec["key"]) == write.key_value)
            # The key is always looked up: it is what keeps a patient with no e-mail from being duplicated when the
            # id cache has lost (or never had) the person: one the relay made long ago, or before Redis was lost.
            found = found or self._person_by_key(write.key_property, write.key_value)
            if found is not None:
                self._call("person_update", "PATCH", f"/api/v2/persons/{found['id']}", body=body)
                self.cache.set("contact", f"{found['id']}|{digest}", write.key_value)
                return Ref(object=write.object, id=str(found["id"]))
            for how, value in (("phone", write.phone), ("email", write.email)):
                if how not in write.match_by or not value:
                    continue
                for item in self._search("person_search", "/api/v2/persons/search", value, how):
                    adopted = self._adopt(write, item, body, key_spec["key"])
                    if adopted is not None:
                        return adopted
            create_standard, create_custom = self._split("person", write.create_only)
            created_body = {**standard, **create_standard, "custom_fields": {**custom, **create_custom}}
            if "name" not in created_body:
                created_body["name"] = write.phone or write.key_value.split(":", 1)[-1]  # Pipedrive requires a name
            person_id = self._create_once("contact", (write.key_value,), "person_create", "/api/v2/persons",
                                          created_body, kept=lambda new: f"{new}|{digest}")
            return Ref(object=write.object, id=person_id, created=True)

    def _known_person(self, write: ContactWrite, body: dict[str, Any], digest: str) -> Ref | None:
        """The person the id cache knows for the key (updated when what is written changed), or None."""
        person_id, last = self._cached_contact(write.key_value)
        if person_id is None:
            return None
        if last == digest:
            return Ref(object=write.object, id=person_id)
        try:
            self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body=body)
        except FatalError as exc:
            if exc.details.get("status") != 404:
                raise
            self.cache.drop("contact", write.key_value)  # deleted in Pipedrive: find or create again
            return None
        self.cache.set("contact", f"{person_id}|{digest}", write.key_value)
        return Ref(object=write.object, id=person_id)

    def _create_once(self, kind: str, values: tuple[str, ...], operation: str, path: str, body: dict[str, Any], *,
                     kept: Callable[[str], str] = str) -> str:
        """POST one object, marked pending in the id cache until its id (``kept(id)``) is there: a create
        Pipedrive refused is unmarked (nothing was written); one with no answer stays pending for the retry."""
        self.cache.mark_pending(kind, *values)
        try:
            created = self._call(operation, "POST", path, body=body)
        except (FatalError, RetryableError) as exc:
            if isinstance(exc, FatalError) or exc.details.get("status") == 429:
                self.cache.drop(kind, *values)
            raise
        new_id = str(created["data"]["id"])
        self.cache.set(kind, kept(new_id), *values)
        return new_id

    def _adopt(self, write: ContactWrite, item: dict[str, Any], body: dict[str, Any], key_field: str) -> Ref | None:
        """Take over a person a clinic worker made (found by phone or e-mail): set our key on it,
        keep their phones and e-mails. A person holding another contact key is left alone."""
        person = self._call("person_get", "GET", f"/api/v2/persons/{item['id']}")["data"]
        if (person.get("custom_fields") or {}).get(key_field) not in (None, ""):
            return None
        merged = dict(body)
        for kind in ("phones", "emails"):
            have = [x for x in person.get(kind) or [] if x.get("value")]
            values = {_digits(x["value"]) if kind == "phones" else x["value"].lower() for x in have}
            extra = [x for x in body.get(kind, []) if (_digits(x["value"]) if kind == "phones"
                                                       else x["value"].lower()) not in values]
            if have or extra:
                merged[kind] = [{**x, "primary": bool(x.get("primary"))} for x in have] + \
                    [{**x, "primary": not have} for x in extra]
        merged.pop("name", None)  # the name a person typed stays
        self._call("person_update", "PATCH", f"/api/v2/persons/{person['id']}", body=merged)
        self.cache.set("contact", f"{person['id']}|adopted", write.key_value)
        log.info("adopted a person a clinic worker made", extra={"person_id": person["id"]})
        return Ref(object=write.object, id=str(person["id"]))


    def _company(self, write: CompanyWrite) -> Ref:
        """The organization by name: the id cache; a create whose answer was lost: the organizations updated
        since; one a person made: an exact name search; else created (one worker at a time)."""
        name = write.name.strip().lower()
        cached = self.cache.get("organization", name)
        if cached:
            return Ref(object=write.object, id=cached)
        with self._exclusive("organization:" + _digest(name)):
            cached = self.cache.get("organization", name)
            if cached:
                return Ref(object=write.object, id=cached)
            pending = self.cache.pending("organization", name)
            found = self._recent("organizations", pending, lambda o: str(o.get("name") or "").strip().lower() == name) \
                if pending is not None else None
            if found is None:
                found = next(iter(self._search("organization_search", "/api/v2/organizations/search", write.name,
                                               "name")), None)
            if found is not None:
                self.cache.set("organization", str(found["id"]), name)
                return Ref(object=write.object, id=str(found["id"]))
            org_id = self._create_once("organization", (name,), "organization_create", "/api/v2/organizations",
                                       {"name": write.name})
            return Ref(object=write.object, id=org_id, created=True)

    # -- leads and deals -----------------------------------------------------------------------
    def _record(self, write: RecordWrite, *, contact: Ref, company: Ref | None, tags: list[str],
                tags_property: str | None) -> Ref:
        """A Lead (``object: lead``) or a Deal (``object: deal``), found again by the reference: the id
        cache, then (when a create's answer was lost) the person's leads or deals, a list. The status (lead
        label or stage) is set only on create."""
        if write.object not in ("lead", "deal"):
            raise FatalError(f"pipedrive: record.object must be lead or deal, not {write.object!r}",
                             field="record.object")
        kind: Literal["lead", "deal"] = "lead" if write.object == "lead" else "deal"
        standard, custom = self._split(kind, write.properties)
        ref_spec = self._field("deal", write.reference_property)
        custom[ref_spec["key"]] = write.reference
        digest = _digest({"standard": standard, "custom": custom, "tags": tags, "person": contact.id,
                          "org": company.id if company else None})
        record_id, _, last = (self.cache.get("record", kind, write.reference) or "").partition("|")
        if not record_id and not contact.created and self.cache.pending("record", kind, write.reference) is not None:
            # An earlier attempt sent the create and did not see the answer: look before writing.
            record_id = self._record_of(kind, write.reference, ref_spec["key"], contact.id) or ""
        if record_id:
            if last != digest:
                self._update_record(kind, record_id, standard=standard, custom=custom, tags=tags,
                                    tags_property=tags_property)
                self.cache.set("record", f"{record_id}|{digest}", kind, write.reference)
            return Ref(object=write.object, id=record_id)
        create_standard, create_custom = self._split(kind, write.create_only)
        if kind == "lead":
            body: dict[str, Any] = {**standard, **create_standard, **custom, **create_custom,
                                    "person_id": int(contact.id),
                                    "label_ids": self._label_ids(tags, status=write.stage)}
            body.setdefault("title", f"Lead {write.reference}")
            if company is not None:
                body["organization_id"] = int(company.id)
            path = "/v1/leads"
        else:
            pipeline_id, stage_id = self._stage(write.pipeline, write.stage)
            deal_custom = {**custom, **create_custom}
            if tags and tags_property:
                tag_spec = self._ensure_options(tags_property, tags)
                deal_custom[tag_spec["key"]] = [tag_spec["options"][t] for t in tags]
            body = {**standard, **create_standard, "person_id": int(contact.id), "custom_fields": deal_custom}
            body.setdefault("title", f"Enquiry {write.reference}")
            if pipeline_id is not None:
                body["pipeline_id"] = pipeline_id
            if stage_id is not None:
                body["stage_id"] = stage_id
            if company is not None:
                body["org_id"] = int(company.id)
            path = "/api/v2/deals"
        if write.owner_id:
            body["owner_id"] = int(write.owner_id)
        record_id = self._create_once("record", (kind, write.reference), f"{kind}_create", path, body,
                                      kept=lambda new: f"{new}|{digest}")
        return Ref(object=write.object, id=record_id, created=True)

    def _record_of(self, kind: Literal["lead", "deal"], reference: str, ref_key: str, person_id: str) -> str | None:
        """The person's lead or deal holding ``reference``: a list by parent (current, unlike search)."""
        start: int | str | None = 0
        while start is not None:
            if kind == "lead":
                page = self._call("lead_list", "GET", "/v1/leads", params={"person_id": int(person_id), "limit": 500,
                                                                           "start": start})
                rows = page.get("data") or []
                more = ((page.get("additional_data") or {}).get("pagination") or {}).get("more_items_in_collection")
                start = int(start) + len(rows) if more and rows else None
            else:
                params: dict[str, Any] = {"person_id": int(person_id), "limit": 500}
                if start:
                    params["cursor"] = start
                page = self._call("deal_list", "GET", "/api/v2/deals", params=params)
                rows = page.get("data") or []
                start = (page.get("additional_data") or {}).get("next_cursor") or None
            for row in rows:
                value = row.get(ref_key) if kind == "lead" else (row.get("custom_fields") or {}).get(ref_key)
                if str(value) == reference:
                    return str(row["id"])
        return None

    def _get_record(self, kind: Literal["lead", "deal"], record_id: str) -> dict[str, Any]:
        path = f"/v1/leads/{record_id}" if kind == "lead" else f"/api/v2/deals/{record_id}"
        data: dict[str, Any] = self._call(f"{kind}_get", "GET", path)["data"]
        return data

    def _update_record(self, kind: Literal["lead", "deal"], record_id: str, *, standard: dict[str, Any],
                       custom: dict[str, Any], tags: list[str], tags_property: str | None) -> None:
        current = self._get_record(kind, record_id) if tags else {}
        if kind == "lead":
            body: dict[str, Any] = {**standard, **custom}
            if tags:
                have = [str(i) for i in current.get("label_ids") or []]
                body["label_ids"] = list(dict.fromkeys(have + self._label_ids(tags)))
            self._call("lead_update", "PATCH", f"/v1/leads/{record_id}", body=body)
            return
        deal_custom = dict(custom)
        if tags and tags_property:
            spec = self._ensure_options(tags_property, tags)
            have_ids = (current.get("custom_fields") or {}).get(spec["key"]) or []
            deal_custom[spec["key"]] = list(dict.fromkeys([*have_ids, *(spec["options"][t] for t in tags)]))
        self._call("deal_update", "PATCH", f"/api/v2/deals/{record_id}", body={**standard, "custom_fields": deal_custom})

    def _ensure_options(self, name: str, values: list[str]) -> dict[str, Any]:
        """The multi-option deal field ``name``, with an option for every value (missing ones added)."""
        spec = self._field("deal", name)
        if any(v not in spec["options"] for v in values):
            if spec["type"] not in ("set", "enum"):
                raise FatalError(f"pipedrive: the tags field {name!r} must be a multiple-options field", field=name)
            with self._exclusive(f"options:{spec['key']}"):
                spec = self._fields("deal", refresh=True).get(name, spec)
                missing = [v for v in dict.fromkeys(values) if v not in spec["options"]]
                if missing:
                    self._call("field_options", "POST", f"/api/v2/dealFields/{spec['key']}/options",
                               body=[{"label": v} for v in missing])
                    spec = self._fields("deal", refresh=True)[name]
        return spec


    # -- notes and activities ------------------------------------------------------------------
    def _target(self, record: Ref | None) -> dict[str, Any]:
        if record is None:
            return {}
        return {"lead_id": record.id} if record.object == "lead" else {"deal_id": int(record.id)}


    def _on_record(self, kind: Literal["note", "activity"], marker: str, record: Ref | None, contact: Ref,
                   text_of: Callable[[dict[str, Any]], str]) -> str | None:
        """The note or activity holding ``marker`` among the record's (or the person's): a list by parent."""
        target = self._target(record) or {"person_id": int(contact.id)}
        if kind == "note":
            page = self._call("note_list", "GET", "/v1/notes", params={**target, "limit": 500})
        else:
            page = self._call("activity_list", "GET", "/api/v2/activities", params={**target, "limit": 500})
        for existing in page.get("data") or []:
            if marker in text_of(existing):
                return str(existing["id"])
        return None

    def _note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """A note on the lead or deal and the person, once per marker."""
        known = self.cache.get("note", note.marker)
        if known:
            return Ref(object="note", id=known)
        if self.cache.pending("note", note.marker) is not None:
            found = self._on_record("note", note.marker, record, contact, lambda n: str(n.get("content") or ""))
            if found:
                self.cache.set("note", found, note.marker)
                return Ref(object="note", id=found)
        target = self._target(record) or {"person_id": int(contact.id)}
        content = note.body if note.marker in note.body else f"{note.body}\n<p>{note.marker}</p>"
        body = {"content": content, **target, "person_id": int(contact.id)}
        note_id = self._create_once("note", (note.marker,), "note_create", "/v1/notes", body)
        return Ref(object="note", id=note_id, created=True)

    def _activity(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """An activity for the owner (``activity_type``, due when the plan says), once per marker."""
        known = self.cache.get("activity", task.marker)
        if known:
            return Ref(object="activity", id=known)
        if self.cache.pending("activity", task.marker) is not None:
            found = self._on_record("activity", task.marker, record, contact, lambda a: str(a.get("note") or ""))
            if found:
                self.cache.set("activity", found, task.marker)
                return Ref(object="activity", id=found)
        due = (task.due_at or datetime.now(UTC)).astimezone(UTC)
        body: dict[str, Any] = {"subject": task.subject[:255], "type": self.options.activity_type,
                                "due_date": due.strftime("%Y-%m-%d"), "due_time": due.strftime("%H:%M"),
                                "note": f"<p>{task.body}</p>" + ("" if task.marker in task.body
                                                                 else f"<p>{task.marker}</p>"), "done": False,
                                "person_id": int(contact.id), **self._target(record)}
        if task.owner_id:
            body["owner_id"] = int(task.owner_id)
        activity_id = self._create_once("activity", (task.marker,), "activity_create", "/api/v2/activities", body)
        return Ref(object="activity", id=activity_id, created=True)

    # -- erasure -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Delete the person with that key, or blank its name, phones, e-mails and key."""
        person_id = self._cached_contact(key[1])[0]
        if person_id is None:
            found = self._person_by_key(key[0], key[1])
            person_id = str(found["id"]) if found else None
        self.cache.drop("contact", key[1])
        if person_id is None:
            return ErasureReport(mode=mode, found=False)
        try:
            if mode == "delete":
                self._call("person_delete", "DELETE", f"/api/v2/persons/{person_id}")
            else:
                key_field = self._field("person", key[0])["key"]
                self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body={
                    "name": "Erased", "phones": [], "emails": [], "custom_fields": {key_field: f"erased:{person_id}"}})
        except FatalError as exc:
            if exc.details.get("status") == 404:
                return ErasureReport(mode=mode, found=False)
            raise
        return ErasureReport(mode=mode, erased=[f"persons/{person_id}"])

    # -- the write -----------------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Person, organization, lead or deal (with labels or tags), note, activity on handoff.

        A retry resumes where the last attempt stopped (the progress log): steps already written are not
        written again.
        """
        start = self.calls
        progress = self.progress(plan.lead_reference)
        done = progress.steps()
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"])
        else:
            contact = self._contact(plan.contact)
            progress.record("contact", contact.id)
        company = self._company(plan.company) if plan.company else None
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"])
        elif plan.record is not None:
            record = self._record(plan.record, contact=contact, company=company, tags=list(plan.tags),
                                  tags_property=plan.tags_property)
            progress.record("record", record.id)
        note = self._note(plan.note, contact=contact, record=record) if plan.note else None
        task = self._activity(plan.task, contact=contact, record=record) if plan.task else None
        progress.finish()
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)


def _digest(value: Any) -> str:
    """What was last written, to skip writing it again (not a secret: a cache key)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


__all__ = ["PipedriveAdapter", "PipedriveCredentials", "PipedriveOptions", "PipedriveSession"]
