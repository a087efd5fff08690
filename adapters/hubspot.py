"""The HubSpot adapter, on the official ``hubspot-api-client``.

Calls for a new lead with a note: 3 (contact batch-upsert on the unique contact-key property;
the deal created with its association to the contact; the note created with associations to
both). A returning patient costs the same 3. A replayed job: the deal's id comes from the Redis
cache (or HubSpot's 409 on the unique reference), so it is updated, and the note is not written
twice (its marker is remembered in Redis after it is created).

Every call goes through :meth:`HubSpotAdapter._call`, the one chokepoint: the shared Redis rate
limiter (HubSpot's ten-second budget is per account, shared by all workers), the timeout, call
counting and metrics, and the mapping of ``ApiException`` to the error tree.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal

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

log = logging.getLogger("chat2crm.hubspot")

TIMEOUT = (3.05, 20)
#: (from object, to object) → HUBSPOT_DEFINED association type id
ASSOCIATIONS = {("deals", "contacts"): 3, ("tickets", "contacts"): 16, ("leads", "contacts"): 578,
                ("notes", "contacts"): 202, ("notes", "deals"): 214, ("notes", "tickets"): 228, ("notes", "leads"): 854,
                ("tasks", "contacts"): 204, ("tasks", "deals"): 216, ("tasks", "tickets"): 230, ("tasks", "leads"): 646}
_EXISTING_ID = re.compile(r"Existing ID: (\d+)")


class ConflictError(FatalError):
    """A unique value already belongs to another object (HubSpot's 409); ``existing_id`` names it."""

    def __init__(self, message: str, existing_id: str | None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class HubSpotAdapter(CRMAdapter):
    """Writes leads into HubSpot (contacts, deals/tickets/leads, notes, tasks)."""

    name = "hubspot"
    requires = ("hubspot",)

    def __init__(self, settings: Any, *, options: dict[str, Any] | None = None, redis: Any = None) -> None:
        super().__init__(settings, options=options, redis=redis)
        from hubspot import HubSpot
        from urllib3.util.retry import Retry

        token = settings.hubspot_access_token.get_secret_value() if settings.hubspot_access_token else ""
        # Retries belong to the job layer, not the HTTP client.
        self.client = HubSpot(access_token=token, host=settings.hubspot_api_base.rstrip("/"),
                              retry=Retry(total=0, raise_on_status=False))
        limit = self.options.get("rate_limit") or {}
        # HubSpot's ten-second budget is per account: shared by every worker
        self.limiter = SharedRateLimiter(redis, "hubspot", int(limit.get("requests", 100)),
                                         float(limit.get("per_seconds", 10)))
        self.property_group = str(self.options.get("property_group", "chat2crm"))
        self.timeout = (3.05, float(self.options.get("timeout_seconds", TIMEOUT[1])))

    # -- the chokepoint ------------------------------------------------------------------------
    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from hubspot.crm.objects.exceptions import ApiException
        from urllib3.exceptions import HTTPError, ReadTimeoutError

        self.limiter.acquire()
        self.calls += 1
        outcome = "ok"
        timeout = self.timeout if TIMEOUT[1] == 20 else TIMEOUT  # tests shorten the module default
        try:
            return fn(*args, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            outcome = str(exc.status)
            raise self._map(exc) from None
        except HTTPError as exc:
            outcome = "network"
            # A request that timed out while HubSpot was reading it may still be carried out: wait as long
            # again before retrying, so the retry's look-up (of a note's marker) sees what it wrote.
            # (with retries off, urllib3 wraps the time-out in a MaxRetryError)
            timed_out = isinstance(exc, ReadTimeoutError) or isinstance(getattr(exc, "reason", None), ReadTimeoutError)
            settle = settle_after_timeout(float(timeout[1])) if timed_out else None
            raise RetryableError(f"hubspot: {type(exc).__name__}", retry_after=settle,
                                 details={"operation": operation}) from None
        except Exception as exc:
            # Each sub-package of the client has its own ApiException, and newer ones raise subclasses of it
            # (ServiceException for 5xx, NotFoundException, UnauthorizedException…).
            if hasattr(exc, "status") and any(c.__name__ == "ApiException" for c in type(exc).__mro__):
                outcome = str(exc.status)
                raise self._map(exc) from None
            raise
        finally:
            if self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter="hubspot", operation=operation, outcome=outcome)

    def _map(self, exc: Any) -> Exception:
        status = int(getattr(exc, "status", 0) or 0)
        try:
            body = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            body = {}
        message = str(body.get("message", exc.reason or ""))[:300]
        details = {"status": status, "category": body.get("category"), "correlationId": body.get("correlationId")}
        headers = exc.headers or {}
        if status == 429:
            retry_after = headers.get("Retry-After")
            interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            seconds = float(retry_after) if retry_after else (float(interval) / 1000 if interval else 10.0)
            return RetryableError("hubspot: rate limited", retry_after=seconds, details=details)
        if status >= 500 or status == 0:
            return RetryableError(f"hubspot: server error {status}", details=details)
        if status in (401, 403):
            return AuthError(f"hubspot: {'token refused' if status == 401 else 'missing scope'} ({message[:120]}); "
                             "check HUBSPOT_ACCESS_TOKEN and the private app's scopes",
                             setting="HUBSPOT_ACCESS_TOKEN", details=details)
        if status == 409:
            found = _EXISTING_ID.search(message)
            return ConflictError(f"hubspot: conflict ({message[:160]})", found.group(1) if found else None)
        field = None
        names = re.findall(r'\\?"name\\?":\\?"([^"\\]+)', message)
        if names:
            field = names[0]
        return FatalError(f"hubspot: request rejected ({status}: {message[:200]})", field=field, details=details)

    # -- caches (ids the relay already knows) --------------------------------------------------
    def _cache_get(self, *parts: str) -> str | None:
        if self.redis is None:
            return None
        value = self.redis.get(rkey("hubspot", *parts))
        return value.decode() if isinstance(value, bytes) else value

    def _cache_set(self, value: str, *parts: str, days: int = 90) -> None:
        if self.redis is not None:
            self.redis.set(rkey("hubspot", *parts), value, ex=days * 86400)

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            self._call("owners", self.client.crm.owners.owners_api.get_page, limit=1)
            self._call("properties", self.client.crm.properties.core_api.get_all, "contacts")
        except AuthError as exc:
            return CredentialReport(ok=False, problems=[exc.message])
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
        live = self.describe(list(required.objects))
        for obj, info in required.objects.items():
            missing = [f for name, f in info.fields.items() if name not in live.objects[obj].fields]
            if missing and apply:
                try:
                    self._call("groups", self.client.crm.properties.groups_api.create, obj,
                               PropertyGroupCreate(name=self.property_group, label="chat2crm"))
                    lines.append(f"created property group {obj}.{self.property_group}")
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
                    group_name=self.property_group, has_unique_value=wanted.unique, options=options))
                lines.append(f"created {obj}.{wanted.name} ({kind}{', unique' if wanted.unique else ''})")
            for name in info.fields:
                if name in live.objects[obj].fields:
                    lines.append(f"ok {obj}.{name}")
            for pipeline, stages in info.pipelines.items():
                have = live.objects[obj].pipelines.get(pipeline)
                state = "ok" if have is not None and all(s in have for s in stages) else "MISSING (create it in HubSpot)"
                lines.append(f"{state} {obj} pipeline {pipeline} stage {', '.join(stages)}")
        return lines

    # -- the writes ----------------------------------------------------------------------------
    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        from hubspot.crm.objects import PublicObjectSearchRequest

        groups = []
        if key:
            groups.append({"filters": [{"propertyName": key[0], "operator": "EQ", "value": key[1]}]})
        if phone:
            groups.append({"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]})
        if email:
            groups.append({"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]})
        if not groups:
            return None
        wanted = properties or ["firstname", "lastname", "email", "phone"]
        result = self._call("search", self.client.crm.objects.search_api.do_search, object or "contacts",
                            PublicObjectSearchRequest(filter_groups=groups, properties=wanted, limit=1, after="0",
                                                      sorts=["hs_object_id"]))
        if not result.results:
            return None
        found = result.results[0]
        return Ref(object=object or "contacts", id=str(found.id), properties=dict(found.properties or {}))

    def upsert_contact(self, write: ContactWrite) -> Ref:
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInput

        properties = {k: _text(v) for k, v in write.properties.items()}
        if "phone" in write.match_by and write.phone and not self._cache_get("contact", write.key_value):
            person_made = self.find_contact(phone=write.phone, object=write.object)
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
        self._cache_set(str(row.id), "contact", write.key_value)
        return Ref(object=write.object, id=str(row.id), created=created)

    def _adopt(self, write: ContactWrite, contact_id: str, properties: dict[str, str]) -> Ref:
        from hubspot.crm.objects import SimplePublicObjectInput

        merged = {**properties, write.key_property: write.key_value}
        merged.pop("email", None)  # it is already theirs
        self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, contact_id,
                   SimplePublicObjectInput(properties=merged))
        self._cache_set(contact_id, "contact", write.key_value)
        log.info("adopted a contact a person created", extra={"contact_id": contact_id})
        return Ref(object=write.object, id=contact_id, created=False)

    def upsert_company(self, write: CompanyWrite) -> Ref:
        from hubspot.crm.objects import SimplePublicObjectInputForCreate

        cached = self._cache_get("company", write.name.lower())
        if cached:
            return Ref(object=write.object, id=cached)
        created = self._call("company_create", self.client.crm.objects.basic_api.create, write.object,
                             SimplePublicObjectInputForCreate(properties={"name": write.name, **{
                                 k: _text(v) for k, v in write.properties.items()}}, associations=[]))
        self._cache_set(str(created.id), "company", write.name.lower())
        return Ref(object=write.object, id=str(created.id), created=True)

    def _assoc(self, from_type: str, to: Ref) -> dict[str, Any]:
        type_id = ASSOCIATIONS.get((from_type, to.object))
        if type_id is None:
            raise FatalError(f"hubspot: no association from {from_type} to {to.object}", field="record.object")
        return {"to": {"id": to.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}

    def upsert_record(self, write: RecordWrite, *, contact: Ref, company: Ref | None = None,
                      tags: list[str] | None = None, tags_property: str | None = None) -> Ref:
        from hubspot.crm.objects import SimplePublicObjectInput, SimplePublicObjectInputForCreate

        properties = {k: _text(v) for k, v in write.properties.items()}
        known = self._cache_get("record", write.object, write.reference)
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
                self._cache_set(str(created.id), "record", write.object, write.reference)
                return Ref(object=write.object, id=str(created.id), created=True)
            except ConflictError as exc:
                if not exc.existing_id:
                    raise
                known = exc.existing_id  # a replay whose first run created it: update instead
                self._cache_set(known, "record", write.object, write.reference)
        if tags and tags_property:
            current = self._call("record_get", self.client.crm.objects.basic_api.get_by_id, write.object, known,
                                 properties=[tags_property])
            existing = [t for t in (current.properties.get(tags_property) or "").split(";") if t]
            merged = list(dict.fromkeys(existing + tags))
            self._ensure_options(write.object, tags_property, merged)
            properties[tags_property] = ";".join(merged)
        self._call("record_update", self.client.crm.objects.basic_api.update, write.object, known,
                   SimplePublicObjectInput(properties=properties))
        return Ref(object=write.object, id=known, created=False)

    def _ensure_options(self, obj: str, prop: str, values: list[str]) -> None:
        """Multi-select values must be options of the property: add missing ones (cached in Redis)."""
        from hubspot.crm.properties import PropertyUpdate

        key = rkey("hubspot", "options", obj, prop)
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
            self.redis.sadd(key, *(have + missing))
            self.redis.expire(key, 86400)

    def _engagement(self, kind: Literal["notes", "tasks"], marker: str, properties: dict[str, str],
                    targets: list[Ref]) -> Ref:
        from hubspot.crm.objects import PublicObjectSearchRequest, SimplePublicObjectInputForCreate

        known = self._cache_get(kind, marker)
        if known:
            return Ref(object=kind, id=known, created=False)
        record = targets[-1] if len(targets) > 1 else None
        body_property = "hs_note_body" if kind == "notes" else "hs_task_body"
        if record is not None and not record.created:
            # The record existed before this run: an earlier, interrupted run (a time-out after HubSpot
            # had written) may have created this note. Look among the record's own notes for the marker.
            found = self._call(f"{kind[:-1]}_search", self.client.crm.objects.search_api.do_search, kind,
                               PublicObjectSearchRequest(
                                   filter_groups=[{"filters": [{"propertyName": f"associations.{record.object[:-1]}",
                                                                "operator": "EQ", "value": record.id}]}],
                                   properties=[body_property], limit=100, after="0", sorts=["hs_object_id"]))
            for existing in found.results:
                if marker in (existing.properties or {}).get(body_property, ""):
                    self._cache_set(str(existing.id), kind, marker)
                    return Ref(object=kind, id=str(existing.id), created=False)
        properties = {**properties, body_property: f"{properties.get(body_property, '')}\n<p>{marker}</p>"}
        created = self._call(f"{kind[:-1]}_create", self.client.crm.objects.basic_api.create, kind,
                             SimplePublicObjectInputForCreate(properties=properties,
                                                              associations=[self._assoc(kind, t) for t in targets]))
        self._cache_set(str(created.id), kind, marker)
        return Ref(object=kind, id=str(created.id), created=True)

    def attach_note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        properties = {"hs_note_body": note.body, "hs_timestamp": _millis()}
        return self._engagement("notes", note.marker, properties, [contact] + ([record] if record else []))

    def create_task(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        properties = {"hs_task_subject": task.subject, "hs_task_body": task.body, "hs_task_status": "NOT_STARTED",
                      "hs_task_priority": task.priority.upper(), "hs_task_type": "TODO",
                      "hs_timestamp": str(int(task.due_at.timestamp() * 1000)) if task.due_at else _millis()}
        if task.owner_id:
            properties["hubspot_owner_id"] = task.owner_id
        return self._engagement("tasks", task.marker, properties, [contact] + ([record] if record else []))

    def set_tags(self, tags: list[str], *, target: Ref, tags_property: str | None) -> None:
        from hubspot.crm.objects import SimplePublicObjectInput

        if not tags_property:
            raise FatalError("hubspot: the mapping names no tags property", field="tags.property")
        current = self._call("record_get", self.client.crm.objects.basic_api.get_by_id, target.object, target.id,
                             properties=[tags_property])
        existing = [t for t in (current.properties.get(tags_property) or "").split(";") if t]
        merged = list(dict.fromkeys(existing + tags))
        self._ensure_options(target.object, tags_property, merged)
        self._call("record_update", self.client.crm.objects.basic_api.update, target.object, target.id,
                   SimplePublicObjectInput(properties={tags_property: ";".join(merged)}))

    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        from hubspot.crm.objects import SimplePublicObjectInput

        found = self.find_contact(key=key)
        if found is None:
            return ErasureReport(mode=mode, found=False)
        if mode == "delete":
            self._call("contact_delete", self.client.crm.objects.basic_api.archive, "contacts", found.id)
        else:
            blank = {"firstname": "Erased", "lastname": "", "email": "", "phone": "", key[0]: f"erased:{found.id}"}
            self._call("contact_update", self.client.crm.objects.basic_api.update, "contacts", found.id,
                       SimplePublicObjectInput(properties=blank))
        if self.redis is not None:
            self.redis.delete(rkey("hubspot", "contact", key[1]))
        return ErasureReport(mode=mode, erased=[f"contacts/{found.id}"])

    def sync(self, plan: SyncPlan) -> SyncResult:
        """Contact, record (with association and tags), note (associated with both), task on handoff."""
        start = self.calls
        # A retry resumes where the last attempt stopped: steps already written are not written again
        # (under a CRM failing often, redoing every step on each retry compounds the failures).
        progress = rkey("hubspot", "progress", plan.lead_reference)
        done = {_str(k): _str(v) for k, v in self.redis.hgetall(progress).items()} if self.redis else {}
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"], created=False)
        else:
            contact = self.upsert_contact(plan.contact)
            self._progress(progress, "contact", contact.id)
        company = self.upsert_company(plan.company) if plan.company else None
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"], created=False)
        elif plan.record is not None:
            record = self.upsert_record(plan.record, contact=contact, company=company, tags=plan.tags,
                                        tags_property=plan.tags_property)
            self._progress(progress, "record", record.id)
        elif plan.tags and plan.tags_property:
            self.set_tags(plan.tags, target=contact, tags_property=plan.tags_property)
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


def _text(value: Any) -> str:
    """HubSpot property values are strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _millis() -> str:
    return str(int(time.time() * 1000))


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
