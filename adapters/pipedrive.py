"""The Pipedrive adapter, on ``requests`` against Pipedrive's REST API (v2 where it exists, v1 for
leads, notes and lead labels, which only v1 has).

What it writes for one lead: the person (found by the contact key kept in a custom field, then by
phone or e-mail for persons made by people, else created), optionally an organization, a Lead
(default; its status is a lead label, since leads have no stage) or a Deal in a pipeline stage,
the tags as lead labels (or, for a deal, options of a multi-option custom field), a note on the
lead or deal, and an activity for the owner on handoff.

Calls, once the field keys and label ids are cached (they are, after ``crm setup`` or the first
lead): a new patient 5 (key search, phone search, person, lead, note); a returning patient 2
(lead, note: the person's id comes from Redis and is not written again when nothing changed); a
replayed job 0 (the lead, the note and the activity are known by Redis; nothing changed). A
handoff adds 1 (the activity). A retry after a failure resumes where the last attempt stopped
and, where an earlier attempt may have written without getting the answer, looks first
(lead search; the lead's notes; the lead's activities).

Custom fields are named in the mapping by their visible name; Pipedrive addresses them by
generated 40-character keys. The adapter reads the keys from the field endpoints and keeps them
in Redis (shared by every worker, refreshed once when a name is not found); a name that still
does not exist is a :class:`~connector.errors.FatalError` naming the field.

Every call goes through :meth:`PipedriveAdapter._call`: the Redis-shared limiters for Pipedrive's
2-second burst windows (per token, so shared by all workers; searches have their own), a pause when
``x-ratelimit-remaining`` runs out, the timeout, call counting and metrics, and the mapping of
answers into the error tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import requests

from adapters._ratelimit import SharedRateLimiter
from adapters.base import (
    CompanyWrite,
    ContactWrite,
    CredentialReport,
    CRMAdapter,
    CRMSchema,
    ErasureReport,
    FieldInfo,
    NoteWrite,
    ObjectInfo,
    RecordWrite,
    Ref,
    SyncPlan,
    SyncResult,
    TaskWrite,
    settle_after_timeout,
)
from connector import metrics
from connector.errors import AuthError, FatalError, RetryableError
from connector.runtime import rkey

log = logging.getLogger("chat2crm.pipedrive")

#: (connect, read) seconds; ``options.timeout_seconds`` overrides the read timeout
TIMEOUT = (3.05, 20.0)
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


class PipedriveAdapter(CRMAdapter):
    """Writes leads into Pipedrive (persons, leads or deals, notes, activities, labels).

    Options (the mapping's ``options:``): ``rate_limit`` (``{requests, per_seconds}``, default
    20 per 2 seconds, the smallest plan's burst limit), ``search_rate_limit`` (default 10 per 2
    seconds, Pipedrive's limit for search endpoints), ``timeout_seconds``, ``activity_type``
    (``task``), ``label_color`` (for tag labels) and ``status_label_color`` (for status labels),
    ``text_fields`` (visible names ``crm setup`` creates as long text instead of 255-character
    text), ``mapping_file`` (named in error messages).
    """

    name = "pipedrive"
    requires = ("requests",)

    def __init__(self, settings: Any, *, options: dict[str, Any] | None = None, redis: Any = None) -> None:
        super().__init__(settings, options=options, redis=redis)
        self.session = requests.Session()
        oauth = settings.pipedrive_oauth_token.get_secret_value() if settings.pipedrive_oauth_token else ""
        token = settings.pipedrive_api_token.get_secret_value() if settings.pipedrive_api_token else ""
        if oauth:
            self.session.headers["Authorization"] = f"Bearer {oauth}"
            self.credential_setting = "PIPEDRIVE_OAUTH_TOKEN"
        else:
            self.session.headers["x-api-token"] = token
            self.credential_setting = "PIPEDRIVE_API_TOKEN"
        self.session.headers["Accept"] = "application/json"
        self.base = settings.pipedrive_api_base.rstrip("/")
        limit = self.options.get("rate_limit") or {}
        self.rate_requests = int(limit.get("requests", 20))
        self.rate_seconds = float(limit.get("per_seconds", 2))
        search_limit = self.options.get("search_rate_limit") or {}
        self.search_requests = int(search_limit.get("requests", 10))
        self.search_seconds = float(search_limit.get("per_seconds", 2))
        if min(self.rate_requests, self.search_requests) < 1 or min(self.rate_seconds, self.search_seconds) <= 0:
            raise ValueError(f"rate_limit and search_rate_limit must have requests >= 1 and per_seconds > 0, got "
                             f"{limit!r} and {search_limit!r}")
        # per API token, so shared by every worker; the search endpoints have a lower limit of their own
        self.limiter = SharedRateLimiter(redis, "pipedrive", self.rate_requests, self.rate_seconds)
        self.search_limiter = SharedRateLimiter(redis, "pipedrive", self.search_requests, self.search_seconds,
                                                window="search")
        self.activity_type = str(self.options.get("activity_type", "task"))
        self.label_color = str(self.options.get("label_color", "gray"))
        self.status_label_color = str(self.options.get("status_label_color", "green"))
        self.text_fields = set(self.options.get("text_fields") or [])
        self.mapping_file = str(self.options.get("mapping_file", "the mapping file"))
        self._local: dict[str, Any] = {}  # caches when there is no Redis (one process, tests of the CLI)

    # -- the chokepoint ------------------------------------------------------------------------
    def _call(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: Any = None) -> dict[str, Any]:
        """One API call: ``path`` starts with ``/v1/`` or ``/api/v2/``. Returns the JSON envelope.

        Raises:
            RetryableError: 429, 5xx, timeouts, connection errors.
            AuthError: 401/403 (names the credential setting).
            FatalError: other 4xx (names the field when Pipedrive says which).
        """
        if path.endswith("/search"):
            self.search_limiter.acquire()
        self.limiter.acquire()
        self.calls += 1
        outcome = "ok"
        timeout = (TIMEOUT[0], float(self.options.get("timeout_seconds", TIMEOUT[1])))
        try:
            response = self.session.request(method, self.base + path, params=params, json=body, timeout=timeout)
        except requests.Timeout as exc:
            outcome = "timeout"
            # A request that timed out while Pipedrive was reading it may still be carried out: wait as long
            # again before retrying, so the retry's look-up (lead search, the lead's notes) sees what it wrote.
            settle = settle_after_timeout(float(timeout[1])) if isinstance(exc, requests.ReadTimeout) else None
            raise RetryableError("pipedrive: timed out", retry_after=settle, details={"operation": operation}) from None
        except requests.RequestException as exc:
            outcome = "network"
            raise RetryableError(f"pipedrive: {type(exc).__name__}", details={"operation": operation}) from None
        finally:
            if outcome != "ok" and self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter="pipedrive", operation=operation, outcome=outcome)
        self._note_budget(response)
        if self.redis is not None:
            metrics.incr(self.redis, "crm_calls", adapter="pipedrive", operation=operation,
                         outcome="ok" if response.ok else str(response.status_code))
        if response.ok:
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                raise RetryableError("pipedrive: answer was not JSON", details={"operation": operation}) from None
            return data
        raise self._map(response, operation)

    def _note_budget(self, response: requests.Response) -> None:
        """Slow every worker down when Pipedrive says the burst window is used up."""
        remaining = response.headers.get("x-ratelimit-remaining")
        if self.redis is None or remaining is None or response.status_code == 429:
            return
        try:
            if int(remaining) > 0:
                return
            reset = float(response.headers.get("x-ratelimit-reset") or self.rate_seconds)
        except ValueError:
            return
        self.limiter.pause(min(reset, 10.0))

    def _map(self, response: requests.Response, operation: str) -> Exception:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        message = str((body or {}).get("error") or response.reason or "")[:300]
        details = {"status": status, "operation": operation, "error_info": (body or {}).get("error_info")}
        if status == 429:
            retry_after = response.headers.get("Retry-After") or response.headers.get("x-ratelimit-reset")
            try:
                seconds = max(float(retry_after), 0.5) if retry_after else self.rate_seconds
            except ValueError:
                seconds = self.rate_seconds
            if self.redis is not None:
                pause = min(seconds, 10.0)  # a daily budget reset is far away: the job layer waits for that
                self.redis.set(rkey("ratelimit", "pipedrive", "pause"), str(time.time() + pause),
                               px=int(pause * 1000) + 100)
            return RetryableError("pipedrive: rate limited", retry_after=seconds, details=details)
        if status >= 500:
            return RetryableError(f"pipedrive: server error {status}", details=details)
        if status in (401, 403):
            what = "token refused" if status == 401 else "permission denied"
            return AuthError(f"pipedrive: {what} ({message[:120]}); check {self.credential_setting} and the "
                             "user's permissions", setting=self.credential_setting, details=details)
        field = None
        key = _KEY.search(message)
        if key:
            field = self._name_of(key.group(1)) or key.group(1)
            self._forget_fields()  # a deleted field: read the keys again next time
        return FatalError(f"pipedrive: request rejected ({status}: {message[:200]})", field=field, details=details)

    # -- caches --------------------------------------------------------------------------------
    def _cache_get(self, *parts: str) -> str | None:
        key = rkey("pipedrive", *parts)
        if self.redis is None:
            value = self._local.get(key)
            return value if isinstance(value, str) else None
        value = self.redis.get(key)
        return value.decode() if isinstance(value, bytes) else value

    def _cache_set(self, value: str, *parts: str, days: float = 90) -> None:
        key = rkey("pipedrive", *parts)
        if self.redis is None:
            self._local[key] = value
        else:
            self.redis.set(key, value, ex=int(days * 86400))

    def _cache_drop(self, *parts: str) -> None:
        key = rkey("pipedrive", *parts)
        self._local.pop(key, None)
        if self.redis is not None:
            self.redis.delete(key)

    # -- fields: visible names → Pipedrive's keys ----------------------------------------------
    def _fields(self, entity: Literal["person", "deal"], *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Visible name → ``{key, type, custom, options: {label: id}}`` (also by key), cached a day."""
        if not refresh:
            cached = self._cache_get("fields", entity)
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
        self._cache_set(json.dumps(found), "fields", entity, days=1)
        return found

    def _forget_fields(self) -> None:
        for entity in ("person", "deal"):
            self._cache_drop("fields", entity)

    def _name_of(self, key: str) -> str | None:
        for entity in ("person", "deal"):
            cached = self._cache_get("fields", entity)
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
            raise FatalError(f"pipedrive: {self.mapping_file} names the field {name!r}, which is not one of the "
                             f"account's {where}; run `chat2crm crm setup` or create it in Pipedrive", field=name)
        return spec

    def prepare(self, required: CRMSchema) -> None:
        """Resolve every custom field the mapping names to its key (cached in Redis for every worker)."""
        from connector.errors import ConfigurationError, Problem

        problems = []
        for obj, info in required.objects.items():
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            for name in info.fields:
                if name in STANDARD.get(obj, set()) or name in STANDARD[entity]:
                    continue
                try:
                    self._field(entity, name)
                except FatalError as exc:
                    problems.append(Problem(exc.message, file=self.mapping_file, path=f"{obj}.{name}",
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
            raise FatalError(f"pipedrive: {self.mapping_file} names fields that are not among the account's {where}: "
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
                kind = "text" if name in self.text_fields else _FIELD_TYPES.get(wanted.type, "varchar")
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
                            self._create_label(stage, self.status_label_color)
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
        cached = None if refresh else self._cache_get("labels")
        if cached:
            loaded: dict[str, str] = json.loads(cached)
            return loaded
        page = self._call("labels", "GET", "/v1/leadLabels")
        labels = {str(item["name"]): str(item["id"]) for item in page.get("data") or []}
        self._cache_set(json.dumps(labels), "labels", days=1)
        return labels

    def _create_label(self, name: str, color: str) -> str:
        created = self._call("label_create", "POST", "/v1/leadLabels", body={"name": name, "color": color})
        labels = {**self._labels(), name: str(created["data"]["id"])}
        self._cache_set(json.dumps(labels), "labels", days=1)
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
        lock = self.redis.lock(rkey("pipedrive", "lock", name), timeout=30, blocking_timeout=10)
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
                        labels[label] = self._create_label(label, self.status_label_color if label == status
                                                           else self.label_color)
        return [labels[label] for label in wanted]

    def _pipelines(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Pipeline name (and id) → ``{id, stages: {stage name (and id): stage id}}``, cached a day."""
        cached = None if refresh else self._cache_get("pipelines")
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
        self._cache_set(json.dumps(found), "pipelines", days=1)
        return found

    def _stage(self, pipeline: str | None, stage: str | None) -> tuple[int | None, int | None]:
        if not pipeline:
            return None, None
        pipelines = self._pipelines()
        if pipeline not in pipelines or (stage and stage not in pipelines[pipeline]["stages"]):
            pipelines = self._pipelines(refresh=True)
        if pipeline not in pipelines:
            raise FatalError(f"pipedrive: {self.mapping_file} names the pipeline {pipeline!r}, which does not exist",
                             field="record.pipeline")
        entry = pipelines[pipeline]
        if stage and stage not in entry["stages"]:
            raise FatalError(f"pipedrive: {self.mapping_file} names the stage {stage!r}, which is not in the "
                             f"pipeline {pipeline!r}", field="record.statuses")
        return int(entry["id"]), int(entry["stages"][stage]) if stage else None

    # -- persons -------------------------------------------------------------------------------
    def _search(self, operation: str, path: str, term: str, field: str, **extra: Any) -> list[dict[str, Any]]:
        page = self._call(operation, "GET", path, params={"term": term, "fields": field, "exact_match": "true",
                                                          "limit": 10, **extra})
        return [i["item"] for i in (page.get("data") or {}).get("items") or []]

    def _person_by_key(self, key_property: str, key_value: str) -> dict[str, Any] | None:
        spec = self._field("person", key_property)
        for item in self._search("person_search", "/api/v2/persons/search", key_value, "custom_fields"):
            if key_value in (item.get("custom_fields") or []):
                item["_key_field"] = spec["key"]
                return item
        return None

    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """Find a person by the contact key, then phone, then e-mail; ``properties`` (by the names the
        mapping uses) are read back, option ids as labels."""
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
                self._cache_drop("contact", key[1])  # deleted in Pipedrive since it was cached
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
        cached = self._cache_get("contact", key_value)
        if not cached:
            return None, None
        person_id, _, digest = cached.partition("|")
        return person_id, digest

    def upsert_contact(self, write: ContactWrite) -> Ref:
        """Person by key (Redis, then an exact search of the key field), then by phone / e-mail
        (adopted: the key is set on it), else created. Not written again when nothing changed."""
        standard, custom = self._split("person", write.properties)
        key_spec = self._field("person", write.key_property)
        custom[key_spec["key"]] = write.key_value
        body = {**standard, "custom_fields": custom}
        digest = _digest(body)
        person_id, last = self._cached_contact(write.key_value)
        if person_id is not None:
            if last == digest:
                return Ref(object=write.object, id=person_id)
            try:
                self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body=body)
                self._cache_set(f"{person_id}|{digest}", "contact", write.key_value)
                return Ref(object=write.object, id=person_id)
            except FatalError as exc:
                if exc.details.get("status") != 404:
                    raise
                self._cache_drop("contact", write.key_value)  # deleted in Pipedrive: find or create again
        # The key is always looked up: it is what keeps a patient with no e-mail from being duplicated.
        found = self._person_by_key(write.key_property, write.key_value)
        if found is not None:
            self._call("person_update", "PATCH", f"/api/v2/persons/{found['id']}", body=body)
            self._cache_set(f"{found['id']}|{digest}", "contact", write.key_value)
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
        created = self._call("person_create", "POST", "/api/v2/persons", body=created_body)
        person_id = str(created["data"]["id"])
        self._cache_set(f"{person_id}|{digest}", "contact", write.key_value)
        return Ref(object=write.object, id=person_id, created=True)

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
        self._cache_set(f"{person['id']}|adopted", "contact", write.key_value)
        log.info("adopted a person a clinic worker made", extra={"person_id": person["id"]})
        return Ref(object=write.object, id=str(person["id"]))

    def upsert_company(self, write: CompanyWrite) -> Ref:
        """The organization by name (Redis, then an exact name search), else created."""
        cached = self._cache_get("organization", write.name.lower())
        if cached:
            return Ref(object=write.object, id=cached)
        for item in self._search("organization_search", "/api/v2/organizations/search", write.name, "name"):
            self._cache_set(str(item["id"]), "organization", write.name.lower())
            return Ref(object=write.object, id=str(item["id"]))
        created = self._call("organization_create", "POST", "/api/v2/organizations", body={"name": write.name})
        org_id = str(created["data"]["id"])
        self._cache_set(org_id, "organization", write.name.lower())
        return Ref(object=write.object, id=org_id, created=True)

    # -- leads and deals -----------------------------------------------------------------------
    def upsert_record(self, write: RecordWrite, *, contact: Ref, company: Ref | None = None,
                      tags: list[str] | None = None, tags_property: str | None = None) -> Ref:
        """A Lead (``object: lead``) or a Deal (``object: deal``), found again by the reference:
        Redis, then (when an earlier attempt may have created it) an exact search of the
        reference field. The status (lead label or stage) is set only on create."""
        if write.object not in ("lead", "deal"):
            raise FatalError(f"pipedrive: record.object must be lead or deal, not {write.object!r}",
                             field="record.object")
        kind: Literal["lead", "deal"] = "lead" if write.object == "lead" else "deal"
        tags = list(tags or [])
        standard, custom = self._split(kind, write.properties)
        ref_spec = self._field("deal", write.reference_property)
        custom[ref_spec["key"]] = write.reference
        digest = _digest({"standard": standard, "custom": custom, "tags": tags, "person": contact.id,
                          "org": company.id if company else None})
        cached = self._cache_get("record", kind, write.reference)
        record_id, _, last = (cached or "").partition("|")
        if not record_id and not contact.created and self._cache_get("attempt", kind, write.reference):
            # An earlier attempt sent the create and may not have seen the answer: look before writing.
            record_id = self._find_record(kind, write.reference, ref_spec["key"], contact.id) or ""
        if record_id:
            if last != digest:
                self._update_record(kind, record_id, standard=standard, custom=custom, tags=tags,
                                    tags_property=tags_property)
                self._cache_set(f"{record_id}|{digest}", "record", kind, write.reference)
            return Ref(object=write.object, id=record_id)
        create_standard, create_custom = self._split(kind, write.create_only)
        self._cache_set("1", "attempt", kind, write.reference, days=30)
        if kind == "lead":
            body: dict[str, Any] = {**standard, **create_standard, **custom, **create_custom,
                                    "person_id": int(contact.id),
                                    "label_ids": self._label_ids(tags, status=write.stage)}
            body.setdefault("title", f"Lead {write.reference}")
            if company is not None:
                body["organization_id"] = int(company.id)
            if write.owner_id:
                body["owner_id"] = int(write.owner_id)
            created = self._call("lead_create", "POST", "/v1/leads", body=body)
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
            if write.owner_id:
                body["owner_id"] = int(write.owner_id)
            created = self._call("deal_create", "POST", "/api/v2/deals", body=body)
        record_id = str(created["data"]["id"])
        self._cache_set(f"{record_id}|{digest}", "record", kind, write.reference)
        return Ref(object=write.object, id=record_id, created=True)

    def _find_record(self, kind: Literal["lead", "deal"], reference: str, ref_key: str, person_id: str) -> str | None:
        path = "/api/v2/leads/search" if kind == "lead" else "/api/v2/deals/search"
        for item in self._search(f"{kind}_search", path, reference, "custom_fields", person_id=int(person_id)):
            if reference in (item.get("custom_fields") or []):
                found = str(item["id"])
                # the search matches any custom field holding the value: make sure it is the reference
                record = self._get_record(kind, found)
                value = record.get(ref_key) if kind == "lead" else (record.get("custom_fields") or {}).get(ref_key)
                if str(value) == reference:
                    return found
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

    def set_tags(self, tags: list[str], *, target: Ref, tags_property: str | None) -> None:
        """Add tags to a lead (labels) or a deal (options of ``tags_property``), keeping the ones there."""
        if target.object == "lead":
            current = self._get_record("lead", target.id)
            have = [str(i) for i in current.get("label_ids") or []]
            self._call("lead_update", "PATCH", f"/v1/leads/{target.id}",
                       body={"label_ids": list(dict.fromkeys(have + self._label_ids(tags)))})
        elif target.object == "deal" and tags_property:
            self._update_record("deal", target.id, standard={}, custom={}, tags=tags, tags_property=tags_property)
        else:
            raise FatalError("pipedrive: tags go on a lead (labels) or a deal (tags.property)", field="tags.property")

    # -- notes and activities ------------------------------------------------------------------
    def _target(self, record: Ref | None) -> dict[str, Any]:
        if record is None:
            return {}
        return {"lead_id": record.id} if record.object == "lead" else {"deal_id": int(record.id)}

    def attach_note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """A note on the lead or deal and the person; its marker makes it idempotent."""
        known = self._cache_get("note", note.marker)
        if known:
            return Ref(object="note", id=known)
        target = self._target(record) or {"person_id": int(contact.id)}
        if record is not None and not record.created:
            # The record existed before this run: an interrupted earlier run may have written the note.
            page = self._call("note_list", "GET", "/v1/notes", params={**target, "limit": 100})
            for existing in page.get("data") or []:
                if note.marker in (existing.get("content") or ""):
                    self._cache_set(str(existing["id"]), "note", note.marker)
                    return Ref(object="note", id=str(existing["id"]))
        body = {"content": f"{note.body}\n<p>{note.marker}</p>", **target, "person_id": int(contact.id)}
        created = self._call("note_create", "POST", "/v1/notes", body=body)
        note_id = str(created["data"]["id"])
        self._cache_set(note_id, "note", note.marker)
        return Ref(object="note", id=note_id, created=True)

    def create_task(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        """An activity for the owner (``activity_type``, due when the plan says), once per marker."""
        known = self._cache_get("activity", task.marker)
        if known:
            return Ref(object="activity", id=known)
        target = self._target(record)
        if record is not None and not record.created:
            page = self._call("activity_list", "GET", "/api/v2/activities", params={**target, "limit": 100})
            for existing in page.get("data") or []:
                if task.marker in (existing.get("note") or ""):
                    self._cache_set(str(existing["id"]), "activity", task.marker)
                    return Ref(object="activity", id=str(existing["id"]))
        due = (task.due_at or datetime.now(UTC)).astimezone(UTC)
        body: dict[str, Any] = {"subject": task.subject[:255], "type": self.activity_type,
                                "due_date": due.strftime("%Y-%m-%d"), "due_time": due.strftime("%H:%M"),
                                "note": f"<p>{task.body}</p><p>{task.marker}</p>", "done": False,
                                "person_id": int(contact.id), **target}
        if task.owner_id:
            body["owner_id"] = int(task.owner_id)
        created = self._call("activity_create", "POST", "/api/v2/activities", body=body)
        activity_id = str(created["data"]["id"])
        self._cache_set(activity_id, "activity", task.marker)
        return Ref(object="activity", id=activity_id, created=True)

    # -- erasure -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Delete the person with that key, or blank its name, phones, e-mails and key."""
        found = self._person_by_key(key[0], key[1])
        person_id = str(found["id"]) if found else self._cached_contact(key[1])[0]
        self._cache_drop("contact", key[1])
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

    # -- the whole lead ------------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Person, organization, lead or deal (with labels or tags), note, activity on handoff."""
        start = self.calls
        # A retry resumes where the last attempt stopped: steps already written are not written again.
        progress = rkey("pipedrive", "progress", plan.lead_reference)
        done = {_str(k): _str(v) for k, v in self.redis.hgetall(progress).items()} if self.redis else {}
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"])
        else:
            contact = self.upsert_contact(plan.contact)
            self._progress(progress, "contact", contact.id)
        company = self.upsert_company(plan.company) if plan.company else None
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"])
        elif plan.record is not None:
            record = self.upsert_record(plan.record, contact=contact, company=company, tags=plan.tags,
                                        tags_property=plan.tags_property)
            self._progress(progress, "record", record.id)
        note = self.attach_note(plan.note, contact=contact, record=record) if plan.note else None
        task = self.create_task(plan.task, contact=contact, record=record) if plan.task else None
        if self.redis is not None:
            self.redis.delete(progress)  # complete: a later replay writes everything again, idempotently
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)

    def _progress(self, key: str, step: str, value: str) -> None:
        if self.redis is not None:
            self.redis.hset(key, step, value)
            self.redis.expire(key, 7 * 86400)


def _digest(value: Any) -> str:
    """What was last written, to skip writing it again (not a secret: a cache key)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
