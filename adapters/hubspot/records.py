"""Writing a HubSpot record (deal, ticket or lead) with its tags, and the notes and tasks on it.

A new record is created in the pipeline and stage the mapping names, by id or label
(:mod:`adapters.hubspot.pipelines` resolves labels to HubSpot's ids).

The record's reference property is unique, so a create that had in fact landed answers 409 with the
existing id; a note or task whose create went unanswered is looked for among the record's (or the
contact's) associated notes or tasks before it is sent again.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from adapters.base import NoteWrite, RecordWrite, Ref, TaskWrite, settle_after_timeout
from adapters.hubspot.common import ASSOCIATIONS
from adapters.hubspot.common import text as _text
from adapters.hubspot.keys import PROPERTY_OPTIONS
from adapters.hubspot.pipelines import HubSpotPipelines
from adapters.hubspot.session import ConflictError
from core.errors import RetryableError

log = logging.getLogger("chat2crm.adapters.hubspot")


class HubSpotRecords(HubSpotPipelines):
    """Records (created with their association to the contact, or updated), tags, notes and tasks."""

    # -- records and tags ----------------------------------------------------------------------
    def _record(self, write: RecordWrite, *, contact: Ref, tags: list[str], tags_property: str | None,
                company: Ref | None = None) -> Ref:
        """Created with its associations to the contact and the company, or (a known reference) updated and
        associated with the company (HubSpot's default type: associating twice changes nothing). The reference
        property is unique: a create that had in fact landed answers 409 with the existing id."""
        from hubspot.crm.objects import SimplePublicObjectInput, SimplePublicObjectInputForCreate

        properties = {k: _text(v) for k, v in write.properties.items()}
        known = self.cache.get("record", write.object, write.reference)
        if known is None:
            create = {**properties, **{k: _text(v) for k, v in write.create_only.items()},
                      write.reference_property: write.reference}
            pipeline, stage = self._stage_ids(write)  # a label (the clinic's language) → HubSpot's id
            if pipeline:
                create["pipeline" if write.object == "deals" else "hs_pipeline"] = pipeline
            if stage and write.stage_property:
                create[write.stage_property] = stage
            if write.owner_id:
                create["hubspot_owner_id"] = write.owner_id
            if tags and tags_property:
                self._ensure_options(write.object, tags_property, tags)
                create[tags_property] = ";".join(tags)
            associations = [self._assoc(write.object, contact)]
            with_company = company is not None and (write.object, company.object) in ASSOCIATIONS
            if company is not None and with_company:
                associations.append(self._assoc(write.object, company))
            try:
                created = self._call("record_create", self.client.crm.objects.basic_api.create, write.object,
                                     SimplePublicObjectInputForCreate(properties=create, associations=associations))
            except ConflictError as exc:
                if not exc.existing_id:
                    raise
                known = exc.existing_id  # a replay whose first run created it: update instead
                self.cache.set("record", known, write.object, write.reference)
            else:
                self.cache.set("record", str(created.id), write.object, write.reference)
                record = Ref(object=write.object, id=str(created.id), created=True)
                if company is not None and not with_company:  # no create-time type known for this object
                    self._associate_default(record, company)
                return record
        if tags and tags_property:
            properties[tags_property] = self._merged_tags(write.object, known, tags, tags_property)
        self._call("record_update", self.client.crm.objects.basic_api.update, write.object, known,
                   SimplePublicObjectInput(properties=properties))
        record = Ref(object=write.object, id=known, created=False)
        if company is not None:
            self._associate_default(record, company)
        return record

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

    # -- notes and tasks -----------------------------------------------------------------------
    def _engagement(self, kind: Literal["notes", "tasks"], marker: str, properties: dict[str, str],
                    targets: list[Ref]) -> Ref:
        """A note or task, once per marker: its id is kept in the id cache; a create whose answer was lost
        is looked for among the record's (or contact's) associated notes or tasks before it is sent again."""
        from hubspot.crm.objects import SimplePublicObjectInputForCreate

        body_property = "hs_note_body" if kind == "notes" else "hs_task_body"
        known = self.cache.get(kind, marker)
        if known:
            marked = self.cache.pending(f"{kind}-copies", marker)
            if marked is not None:  # written again after a lost answer: its late copy is still to be looked for
                self._drop_late_copies(kind, marker, known, targets[-1], body_property=body_property, marked=marked)
            return Ref(object=kind, id=known, created=False)
        lost_answer = self.cache.pending(kind, marker) is not None
        if lost_answer:
            found = self._associated(kind, targets[-1], body_property, lambda body: marker in body)
            if found:
                self.cache.set(kind, found, marker)
                return Ref(object=kind, id=found, created=False)
        marked = 0.0
        if lost_answer:  # noted before the create: a retry after a crash still looks for late copies
            marked = self.cache.mark_pending(f"{kind}-copies", marker)
        body = properties.get(body_property, "")
        if marker not in body:  # the plan carries it where no agent reads it; an older plan does not
            properties = {**properties, body_property: f"{body}\n<p>{marker}</p>"}
        created = self._create_once(kind, marker, f"{kind[:-1]}_create", kind, SimplePublicObjectInputForCreate(
            properties=properties, associations=[self._assoc(kind, t) for t in targets]))
        if lost_answer:
            self._drop_late_copies(kind, marker, created, targets[-1], body_property=body_property,
                                   marked=marked)
        return Ref(object=kind, id=created, created=True)

    def _drop_late_copies(self, kind: str, marker: str, kept: str, holder: Ref, *, body_property: str,
                          marked: float) -> None:
        """After creating again what a lost answer may still have created: once a late write has had time to
        land (the settle time since ``marked``), archive any other copy, so the record keeps one. HubSpot takes
        no idempotency key, and a create it carries out after the client gave up can land after the retry
        looked for it.

        Raises:
            RetryableError: too soon to look; the job is retried when it is time (no process waits for it).
        """
        wait = marked + settle_after_timeout(self.options.timeout_seconds) - time.time()
        if wait > 0:
            raise RetryableError(f"hubspot: a {kind[:-1]} was written again after a lost answer; its late copy "
                                 f"is looked for in {wait:.1f} s", retry_after=wait)
        for copy in self._all_associated(kind, holder, body_property, lambda body: marker in body):
            if copy != kept:
                self._call(f"{kind[:-1]}_archive", self.client.crm.objects.basic_api.archive, kind, copy)
                log.warning("late copy archived", extra={"object": kind, "id": copy})
        self.cache.drop(f"{kind}-copies", marker)

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


def _millis() -> str:
    return str(int(time.time() * 1000))
