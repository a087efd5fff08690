"""The HubSpot adapter, on the official ``hubspot-api-client``.

Calls for a new lead with a note: 3 (the contact batch-upserted on the unique contact-key property;
the deal created with its association to the contact; the note created with associations to
both). A returning patient costs the same 3. A replayed job: the deal's id comes from the id cache
(or HubSpot's 409 on the unique reference), so it is updated, and the note is not written twice (its
id is in the cache).

Every "did this write already happen?" decision is a strongly consistent read. HubSpot's CRM search
is eventually consistent (a record appears in search seconds after it is written), so it decides
nothing of the kind: the contact and the deal are written on unique properties (an upsert, a 409
naming the existing id); a note or task whose create went unanswered (a time-out, a killed worker)
is looked for among the record's associated notes (the v4 associations read, then a batch read by
id) before it is written again. Search serves one purpose only: finding a contact a person made by
hand, by phone (``match_by: [phone]``).

Every call goes through :class:`HubSpotSession`: the official client built with the session's
settings, the shared Redis rate limiter (HubSpot's ten-second budget is per account), the
timeouts, call counting and metrics, and HubSpot's error table.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

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
from adapters.session import Answer, ErrorTable, VendorSession, rule
from core.errors import FatalError, RetryableError, SyncError
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("chat2crm.hubspot")

DAY = 86400
CONTACTS = family("hubspot", "contact:{contact_key}", ttl=90 * DAY, holds_pii=True, owner=__name__)
COMPANIES = family("hubspot", "company:{name}", ttl=90 * DAY, holds_pii=True, owner=__name__)
RECORDS = family("hubspot", "record:{object}:{reference}", ttl=90 * DAY, holds_pii=False, owner=__name__)
NOTES = family("hubspot", "notes:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
TASKS = family("hubspot", "tasks:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
#: the values a multi-select property allows (a set), so tags do not read the property every time
PROPERTY_OPTIONS = family("hubspot", "options:{object}:{property}", ttl=DAY, holds_pii=False, owner=__name__)
PROGRESS = family("hubspot", "progress:{reference}", ttl=7 * DAY, holds_pii=False, owner=__name__)

#: (from object, to object) → HUBSPOT_DEFINED association type id
ASSOCIATIONS = {("deals", "contacts"): 3, ("tickets", "contacts"): 16, ("leads", "contacts"): 578,
                ("companies", "contacts"): 280,
                ("notes", "contacts"): 202, ("notes", "deals"): 214, ("notes", "tickets"): 228, ("notes", "leads"): 854,
                ("tasks", "contacts"): 204, ("tasks", "deals"): 216, ("tasks", "tickets"): 230, ("tasks", "leads"): 646}
_EXISTING_ID = re.compile(r"Existing ID: (\d+)")
#: HubSpot's answers → the error tree
ERRORS = ErrorTable("hubspot", [
    rule("retryable", 429, what="rate limited"),
    rule("retryable", (500, 599), 0, what="server error"),
    rule("auth", 401, what="token refused"),
    rule("auth", 403, what="missing scope"),
    rule("fatal", (400, 499), what="request rejected"),
])


class HubSpotOptions(AdapterOptions):
    """The HubSpot mapping's ``options:``."""

    model_config = ConfigDict(title="hubspot options")

    property_group: str = Field(default="chat2crm", min_length=1,
                                description="The property group `crm setup` puts the custom properties in.")
    rate_limit: RateLimit = Field(default=RateLimit(requests=100, per_seconds=10),
                                  description="The account's request budget, shared by every worker "
                                              "(HubSpot's ten-second limit of the account's tier).")


class HubSpotCredentials(AdapterCredentials):
    """What the HubSpot adapter may read of the settings."""

    settings_prefix = "hubspot_"

    access_token: SecretStr | None = None
    api_base: str = "https://api.hubapi.com"


class ConflictError(FatalError):
    """A unique value already belongs to another object (HubSpot's 409); ``existing_id`` names it."""

    def __init__(self, message: str, existing_id: str | None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class HubSpotSession(VendorSession):
    """HubSpot's chokepoint: the official client, built with this session's settings (base URL, the
    token, no retries: they belong to the job layer); every call sends the session's timeouts.

    Args:
        credentials: the token and the API base URL.
        options: the adapter's options (timeouts, the account's rate limit).
        redis: the shared connection (the limiter and metrics).
    """

    def __init__(self, credentials: HubSpotCredentials, options: HubSpotOptions, redis: Redis | None) -> None:
        from hubspot import HubSpot
        from urllib3.util.retry import Retry

        limiter = SharedRateLimiter(redis, "hubspot", options.rate_limit.requests, options.rate_limit.per_seconds)
        super().__init__("hubspot", redis=redis, timeouts=options.timeouts(), errors=ERRORS, limiter=limiter)
        token = credentials.access_token.get_secret_value() if credentials.access_token else ""
        self.client = HubSpot(access_token=token, host=credentials.api_base.rstrip("/"),
                              retry=Retry(total=0, raise_on_status=False))

    def request(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call one method of the client, with the session's timeouts.

        Raises:
            As :meth:`VendorSession.call`; a 409 is a :class:`ConflictError`.
        """
        return self.call(operation, lambda: fn(*args, _request_timeout=self.timeouts.pair(), **kwargs))

    def translate(self, exc: Exception, operation: str) -> tuple[str, SyncError] | None:
        from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

        if isinstance(exc, HTTPError):
            # with retries off, urllib3 wraps the failure in a MaxRetryError (its ``reason``)
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, ReadTimeoutError) or isinstance(exc, ReadTimeoutError):
                return self.timed_out(operation, reading=True)
            if isinstance(reason, ConnectTimeoutError):
                return self.timed_out(operation, reading=False)
            return self.unreachable(operation, exc)
        return super().translate(exc, operation)

    def answer_of(self, exc: Exception) -> Answer | None:
        # Each sub-package of the client has its own ApiException, and newer ones raise subclasses of it
        # (ServiceException for 5xx, NotFoundException, UnauthorizedException…).
        if not (hasattr(exc, "status") and any(c.__name__ == "ApiException" for c in type(exc).__mro__)):
            return None
        try:
            body = json.loads(getattr(exc, "body", None) or "{}")
        except (TypeError, ValueError):
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("message", getattr(exc, "reason", "") or ""))
        return Answer(status=int(getattr(exc, "status", 0) or 0), code=str(body.get("category") or ""),
                      message=message, headers=dict(getattr(exc, "headers", None) or {}), body=body)

    def refused(self, answer: Answer, operation: str) -> SyncError:
        details = {"correlationId": (answer.body or {}).get("correlationId")}
        if answer.status == 409:
            found = _EXISTING_ID.search(answer.message)
            return ConflictError(f"hubspot: conflict ({answer.message[:160]})", found.group(1) if found else None)
        if answer.status == 429:
            retry_after = answer.headers.get("Retry-After")
            interval = answer.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            seconds = float(retry_after) if retry_after else (float(interval) / 1000 if interval else 10.0)
            return self.errors.error(answer, operation=operation, retry_after=seconds, details=details)
        if answer.status in (401, 403):
            return self.errors.error(answer, operation=operation, setting="HUBSPOT_ACCESS_TOKEN", details=details,
                                     hint="; check HUBSPOT_ACCESS_TOKEN and the private app's scopes")
        names = re.findall(r'\\?"name\\?":\\?"([^"\\]+)', answer.message)
        return self.errors.error(answer, operation=operation, field=names[0] if names else None, details=details)


class HubSpotAdapter(CRMAdapter):
    """Writes leads into HubSpot (contacts, deals/tickets/leads, notes, tasks)."""

    name = "hubspot"
    requires = ("hubspot",)
    Options = HubSpotOptions
    Credentials = HubSpotCredentials
    cache_families = MappingProxyType({"contact": CONTACTS, "company": COMPANIES, "record": RECORDS, "notes": NOTES,
                                       "tasks": TASKS})
    progress_family = PROGRESS

    options: HubSpotOptions
    session: HubSpotSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = HubSpotSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.client = self.session.client

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.session.request(operation, fn, *args, **kwargs)

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            self._call("owners", self.client.crm.owners.owners_api.get_page, limit=1)
            self._call("properties", self.client.crm.properties.core_api.get_all, "contacts")
        except (RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        return CredentialReport(ok=True, account="hubspot", scopes=["crm.objects.contacts", "crm.schemas"])

    def describe(self, objects: list[str]) -> CRMSchema:
        schema = CRMSchema()
        for obj in objects:
            page = self._call("properties", self.client.crm.properties.core_api.get_all, obj)
            info = ObjectInfo(name=obj)
            for prop in page.results:
                info.fields[prop.name] = FieldInfo(name=prop.name, label=prop.label, type=prop.type,
                                                   options=[o.value for o in prop.options or []],
                                                   unique=bool(prop.has_unique_value))
            if obj in ("deals", "tickets", "leads"):
                pipelines = self._call("pipelines", self.client.crm.pipelines.pipelines_api.get_all, obj)
                info.pipelines = {p.id: [s.id for s in p.stages] for p in pipelines.results}
            schema.objects[obj] = info
        return schema

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create the property group and every custom property the mapping needs (idempotent)."""
        from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

        lines: list[str] = []
        group = self.options.property_group
        live = self.describe(list(required.objects))
        for obj, info in required.objects.items():
            missing = [f for name, f in info.fields.items() if name not in live.objects[obj].fields]
            if missing and apply:
                try:
                    self._call("groups", self.client.crm.properties.groups_api.create, obj,
                               PropertyGroupCreate(name=group, label="chat2crm"))
                    lines.append(f"created property group {obj}.{group}")
                except ConflictError:
                    pass
            for wanted in missing:
                kind, field_type = {"enumeration": ("enumeration", "checkbox"),
                                    "bool": ("enumeration", "booleancheckbox")}.get(wanted.type, ("string", "text"))
                options = [{"label": v, "value": v, "displayOrder": i, "hidden": False}
                           for i, v in enumerate(["true", "false"] if wanted.type == "bool" else [])]
                if not apply:
                    lines.append(f"would create {obj}.{wanted.name} ({kind}{', unique' if wanted.unique else ''})")
                    continue
                self._call("properties", self.client.crm.properties.core_api.create, obj, PropertyCreate(
                    name=wanted.name, label=wanted.name.replace("_", " ").title(), type=kind, field_type=field_type,
                    group_name=group, has_unique_value=wanted.unique, options=options))
                lines.append(f"created {obj}.{wanted.name} ({kind}{', unique' if wanted.unique else ''})")
            for name in info.fields:
                if name in live.objects[obj].fields:
                    lines.append(f"ok {obj}.{name}")
            for pipeline, stages in info.pipelines.items():
                have = live.objects[obj].pipelines.get(pipeline)
                state = "ok" if have is not None and all(s in have for s in stages) else "MISSING (create it in HubSpot)"
                lines.append(f"{state} {obj} pipeline {pipeline} stage {', '.join(stages)}")
        return lines

    # -- reading -------------------------------------------------------------------------------
    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """By the contact key: a batch read by the unique property (strongly consistent: a contact written a
        moment ago is found; the key, which names a phone number, travels in the body, not in a URL that
        HTTP debug logs print). By phone or e-mail (contacts people made): a search."""
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, PublicObjectSearchRequest

        obj = object or "contacts"
        wanted = properties or ["firstname", "lastname", "email", "phone"]
        if key:
            read = self._call("contact_read", self.client.crm.objects.batch_api.read, obj,
                              BatchReadInputSimplePublicObjectId(inputs=[{"id": key[1]}], id_property=key[0],
                                                                 properties=wanted, properties_with_history=[]))
            if read.results:
                found = read.results[0]
                return Ref(object=obj, id=str(found.id), properties=dict(found.properties or {}))
        groups = [{"filters": [{"propertyName": name, "operator": "EQ", "value": value}]}
                  for name, value in (("phone", phone), ("email", email)) if value]
        if not groups:
            return None
        result = self._call("search", self.client.crm.objects.search_api.do_search, obj,
                            PublicObjectSearchRequest(filter_groups=groups, properties=wanted, limit=1, after="0",
                                                      sorts=["hs_object_id"]))
        if not result.results:
            return None
        hit = result.results[0]
        return Ref(object=obj, id=str(hit.id), properties=dict(hit.properties or {}))

    # -- the steps of a sync -------------------------------------------------------------------
    def _contact(self, write: ContactWrite) -> Ref:
        """Upsert on the unique contact key; a contact a person made (found by phone, or HubSpot's 409 on its
        e-mail) is adopted: the key is set on it."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInput

        properties = {k: _text(v) for k, v in write.properties.items()}
        if "phone" in write.match_by and write.phone and not self.cache.get("contact", write.key_value):
            # a person-made contact has no key yet; the search may lag behind writes, which costs at worst a
            # contact the relay makes beside one typed in seconds ago, never a duplicate of its own
            person_made = self.find_contact(phone=write.phone, object=write.object, properties=[write.key_property])
            if person_made is not None and person_made.properties.get(write.key_property) in (None, ""):
                return self._adopt(write, person_made.id, properties)
        item = {"id": write.key_value, "idProperty": write.key_property, "properties": properties}
        try:
            result = self._call("contact_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item]))
        except ConflictError as exc:
            # e-mail is unique in HubSpot: a contact a person created has it; adopt that contact
            if "email" in write.match_by and exc.existing_id:
                return self._adopt(write, exc.existing_id, properties)
            raise
        row = result.results[0]
        created = bool(getattr(row, "new", False))
        if created and write.create_only:
            self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, str(row.id),
                       SimplePublicObjectInput(properties={k: _text(v) for k, v in write.create_only.items()}))
        self.cache.set("contact", str(row.id), write.key_value)
        return Ref(object=write.object, id=str(row.id), created=created)

    def _adopt(self, write: ContactWrite, contact_id: str, properties: dict[str, str]) -> Ref:
        from hubspot.crm.objects import SimplePublicObjectInput

        merged = {**properties, write.key_property: write.key_value}
        merged.pop("email", None)  # it is already theirs
        self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, contact_id,
                   SimplePublicObjectInput(properties=merged))
        self.cache.set("contact", contact_id, write.key_value)
        log.info("adopted a contact a person created", extra={"contact_id": contact_id})
        return Ref(object=write.object, id=contact_id, created=False)

    def _company(self, write: CompanyWrite, contact: Ref) -> Ref:
        """Upserted on ``key_property`` when the mapping names one; otherwise created once, associated with
        the contact (a create whose answer was lost is looked for among the contact's companies)."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInputForCreate

        name = write.name.strip().lower()
        cached = self.cache.get("company", name)
        if cached:
            return Ref(object=write.object, id=cached)
        properties = {"name": write.name, **{k: _text(v) for k, v in write.properties.items()}}
        if write.key_property:
            item = {"id": properties.get(write.key_property) or write.name, "idProperty": write.key_property,
                    "properties": {k: v for k, v in properties.items() if k != write.key_property}}
            result = self._call("company_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item]))
            row = result.results[0]
            self.cache.set("company", str(row.id), name)
            return Ref(object=write.object, id=str(row.id), created=bool(getattr(row, "new", False)))
        if self.cache.pending("company", name) is not None:
            found = self._associated(write.object, contact, "name", lambda value: value.strip().lower() == name)
            if found:
                self.cache.set("company", found, name)
                return Ref(object=write.object, id=found)
        created = self._create_once("company", name, "company_create", write.object, SimplePublicObjectInputForCreate(
            properties=properties, associations=[self._assoc(write.object, contact)]))
        return Ref(object=write.object, id=created, created=True)

    def _create_once(self, kind: str, key: str, operation: str, obj: str, body: Any) -> str:
        """Create one object, its create marked pending in the id cache until its id is known there: a create
        HubSpot refused is unmarked (nothing was written); one with no answer stays pending for the retry."""
        self.cache.mark_pending(kind, key)
        try:
            created = self._call(operation, self.client.crm.objects.basic_api.create, obj, body)
        except (FatalError, RetryableError) as exc:
            if isinstance(exc, FatalError) or exc.details.get("status") == 429:
                self.cache.drop(kind, key)
            raise
        self.cache.set(kind, str(created.id), key)
        return str(created.id)

    def _associated(self, kind: str, holder: Ref, prop: str, wanted: Callable[[str], bool]) -> str | None:
        """The id of the ``kind`` object associated with ``holder`` whose ``prop`` is ``wanted``: the v4
        associations read, then a batch read of those objects by id (both strongly consistent)."""
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId

        ids: list[str] = []
        after: str | None = None
        while True:
            page = self._call(f"{kind}_associations", self.client.crm.associations.v4.basic_api.get_page,
                              holder.object, holder.id, kind, limit=500, **({"after": after} if after else {}))
            ids += [str(row.to_object_id) for row in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        for start in range(0, len(ids), 100):
            batch = self._call(f"{kind}_read", self.client.crm.objects.batch_api.read, kind,
                               BatchReadInputSimplePublicObjectId(inputs=[{"id": i} for i in ids[start:start + 100]],
                                                                  properties=[prop], properties_with_history=[]))
            for row in batch.results or []:
                if wanted(str((row.properties or {}).get(prop) or "")):
                    return str(row.id)
        return None

    def _assoc(self, from_type: str, to: Ref) -> dict[str, Any]:
        type_id = ASSOCIATIONS.get((from_type, to.object))
        if type_id is None:
            raise FatalError(f"hubspot: no association from {from_type} to {to.object}", field="record.object")
        return {"to": {"id": to.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}

    def _record(self, write: RecordWrite, *, contact: Ref, tags: list[str], tags_property: str | None) -> Ref:
        """Created with its association to the contact, or (a known reference) updated. The reference
        property is unique: a create that had in fact landed answers 409 with the existing id."""
        from hubspot.crm.objects import SimplePublicObjectInput, SimplePublicObjectInputForCreate

        properties = {k: _text(v) for k, v in write.properties.items()}
        known = self.cache.get("record", write.object, write.reference)
        if known is None:
            create = {**properties, **{k: _text(v) for k, v in write.create_only.items()},
                      write.reference_property: write.reference}
            if write.pipeline:
                create["pipeline" if write.object == "deals" else "hs_pipeline"] = write.pipeline
            if write.stage and write.stage_property:
                create[write.stage_property] = write.stage
            if write.owner_id:
                create["hubspot_owner_id"] = write.owner_id
            if tags and tags_property:
                self._ensure_options(write.object, tags_property, tags)
                create[tags_property] = ";".join(tags)
            try:
                created = self._call("record_create", self.client.crm.objects.basic_api.create, write.object,
                                     SimplePublicObjectInputForCreate(properties=create,
                                                                      associations=[self._assoc(write.object, contact)]))
                self.cache.set("record", str(created.id), write.object, write.reference)
                return Ref(object=write.object, id=str(created.id), created=True)
            except ConflictError as exc:
                if not exc.existing_id:
                    raise
                known = exc.existing_id  # a replay whose first run created it: update instead
                self.cache.set("record", known, write.object, write.reference)
        if tags and tags_property:
            properties[tags_property] = self._merged_tags(write.object, known, tags, tags_property)
        self._call("record_update", self.client.crm.objects.basic_api.update, write.object, known,
                   SimplePublicObjectInput(properties=properties))
        return Ref(object=write.object, id=known, created=False)

    def _merged_tags(self, obj: str, object_id: str, tags: list[str], tags_property: str) -> str:
        current = self._call("record_get", self.client.crm.objects.basic_api.get_by_id, obj, object_id,
                             properties=[tags_property])
        existing = [t for t in (current.properties.get(tags_property) or "").split(";") if t]
        merged = list(dict.fromkeys(existing + tags))
        self._ensure_options(obj, tags_property, merged)
        return ";".join(merged)

    def _ensure_options(self, obj: str, prop: str, values: list[str]) -> None:
        """Multi-select values must be options of the property: add missing ones (known ones kept in Redis)."""
        from hubspot.crm.properties import PropertyUpdate

        key = PROPERTY_OPTIONS.key(obj, prop)
        if self.redis is not None and all(self.redis.sismember(key, v) for v in values):
            return
        current = self._call("property_get", self.client.crm.properties.core_api.get_by_name, obj, prop)
        have = [o.value for o in current.options or []]
        missing = [v for v in values if v not in have]
        if missing:
            options = [{"label": v, "value": v, "displayOrder": i, "hidden": False}
                       for i, v in enumerate(have + missing)]
            self._call("property_update", self.client.crm.properties.core_api.update, obj, prop,
                       PropertyUpdate(options=options))
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.sadd(key, *(have + missing))
            pipe.expire(key, int(PROPERTY_OPTIONS.ttl))  # type: ignore[arg-type]
            pipe.execute()

    def _engagement(self, kind: Literal["notes", "tasks"], marker: str, properties: dict[str, str],
                    targets: list[Ref]) -> Ref:
        """A note or task, once per marker: its id is kept in the id cache; a create whose answer was lost
        is looked for among the record's (or contact's) associated notes or tasks before it is sent again."""
        from hubspot.crm.objects import SimplePublicObjectInputForCreate

        known = self.cache.get(kind, marker)
        if known:
            return Ref(object=kind, id=known, created=False)
        body_property = "hs_note_body" if kind == "notes" else "hs_task_body"
        if self.cache.pending(kind, marker) is not None:
            found = self._associated(kind, targets[-1], body_property, lambda body: marker in body)
            if found:
                self.cache.set(kind, found, marker)
                return Ref(object=kind, id=found, created=False)
        body = properties.get(body_property, "")
        if marker not in body:  # the plan carries it where no agent reads it; an older plan does not
            properties = {**properties, body_property: f"{body}\n<p>{marker}</p>"}
        created = self._create_once(kind, marker, f"{kind[:-1]}_create", kind, SimplePublicObjectInputForCreate(
            properties=properties, associations=[self._assoc(kind, t) for t in targets]))
        return Ref(object=kind, id=created, created=True)

    def _note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        properties = {"hs_note_body": note.body, "hs_timestamp": _millis()}
        return self._engagement("notes", note.marker, properties, [contact] + ([record] if record else []))

    def _task(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        properties = {"hs_task_subject": task.subject, "hs_task_body": task.body, "hs_task_status": "NOT_STARTED",
                      "hs_task_priority": task.priority.upper(), "hs_task_type": "TODO",
                      "hs_timestamp": str(int(task.due_at.timestamp() * 1000)) if task.due_at else _millis()}
        if task.owner_id:
            properties["hubspot_owner_id"] = task.owner_id
        return self._engagement("tasks", task.marker, properties, [contact] + ([record] if record else []))

    def _contact_tags(self, tags: list[str], contact: Ref, tags_property: str) -> None:
        from hubspot.crm.objects import SimplePublicObjectInput

        merged = self._merged_tags(contact.object, contact.id, tags, tags_property)
        self._call("record_update", self.client.crm.objects.basic_api.update, contact.object, contact.id,
                   SimplePublicObjectInput(properties={tags_property: merged}))

    # -- the write -----------------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Contact, company, record (with association and tags), note (associated with both), task on handoff.

        A retry resumes where the last attempt stopped (the progress log): steps already written are not
        written again, since under a CRM failing often redoing every step compounds the failures.
        """
        start = self.calls
        progress = self.progress(plan.lead_reference)
        done = progress.steps()
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"], created=False)
        else:
            contact = self._contact(plan.contact)
            progress.record("contact", contact.id)
        company = self._company(plan.company, contact) if plan.company else None
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"], created=False)
        elif plan.record is not None:
            record = self._record(plan.record, contact=contact, tags=plan.tags, tags_property=plan.tags_property)
            progress.record("record", record.id)
        elif plan.tags and plan.tags_property:
            self._contact_tags(plan.tags, contact, plan.tags_property)
        note = self._note(plan.note, contact=contact, record=record) if plan.note else None
        task = self._task(plan.task, contact=contact, record=record) if plan.task else None
        progress.finish()
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)

    # -- privacy -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        from hubspot.crm.objects import SimplePublicObjectInput

        found = self.find_contact(key=key, properties=["firstname"])
        self.cache.drop("contact", key[1])
        if found is None:
            return ErasureReport(mode=mode, found=False)
        if mode == "delete":
            self._call("contact_delete", self.client.crm.objects.basic_api.archive, "contacts", found.id)
        else:
            blank = {"firstname": "Erased", "lastname": "", "email": "", "phone": "", key[0]: f"erased:{found.id}"}
            self._call("contact_update", self.client.crm.objects.basic_api.update, "contacts", found.id,
                       SimplePublicObjectInput(properties=blank))
        return ErasureReport(mode=mode, erased=[f"contacts/{found.id}"])


def _text(value: Any) -> str:
    """HubSpot property values are strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _millis() -> str:
    return str(int(time.time() * 1000))


__all__ = ["ASSOCIATIONS", "ConflictError", "HubSpotAdapter", "HubSpotCredentials", "HubSpotOptions", "HubSpotSession"]
