"""Writing a Pipedrive lead or deal, and the note and activity on it.

A lead or deal is found again by the lead reference (the id cache, then, when a create's answer was
lost, the person's leads or deals: a list, current unlike search); a note or activity by its marker
among the record's (or person's) notes or activities.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from adapters.base import NoteWrite, RecordWrite, Ref, TaskWrite
from adapters.pipedrive.keys import digest as _digest
from adapters.pipedrive.labels import PipedriveLabels
from core.errors import FatalError


class PipedriveRecords(PipedriveLabels):
    """Leads (status as a lead label) or deals (in a pipeline stage), notes and activities."""

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
