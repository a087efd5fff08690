"""Read what a CRM emulator holds in the mapping's own terms, so one end-to-end test serves every CRM.

A probe answers "the contacts, the request records, the notes" with each record's values keyed by
the field names the mapping uses (``phone``, ``Phone``, ``chat2crm contact key``…), plus
``_id``, ``_stage`` (deal stage, Lead Status, lead label) and ``_tags``. Tests find the field
that holds a canonical value with :meth:`Probe.field` (``contact.phone`` → ``Phone``), so they
assert the same facts whichever CRM is underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.mapping import FieldSource, Mapping
from demo.stack import RunningCRM


@dataclass
class Probe:
    """The CRM of one end-to-end test."""

    running: RunningCRM
    mapping: Mapping

    @property
    def name(self) -> str:
        return self.running.name

    @property
    def emulator(self) -> Any:
        return self.running.emulator

    @property
    def record_per_request(self) -> bool:
        """False when the request is written on the patient's own record (a Salesforce Lead)."""
        return self.mapping.record is not None and self.mapping.record.object != self.mapping.contact.object

    def field(self, section: str, source: str) -> str:
        """The CRM field the mapping writes ``source`` (a canonical path) to, in ``contact`` or ``record``."""
        fields: dict[str, FieldSource] = getattr(self.mapping, section).fields
        for name, spec in fields.items():
            if spec.source == source:
                return name
        raise KeyError(f"the {self.name} mapping writes {source} nowhere in {section}")

    # -- what the CRM holds ----------------------------------------------------------------------
    def contacts(self) -> list[dict[str, Any]]:
        if self.name == "hubspot":
            return [{**c["properties"], "_id": c["id"]} for c in self.emulator.records("contacts")]
        if self.name == "salesforce":
            return [{**r, "_id": r["Id"]} for r in self.emulator.records(self.mapping.contact.object)]
        return [self._person(p) for p in self.emulator.records("persons")]

    def records(self) -> list[dict[str, Any]]:
        record = self.mapping.record
        assert record is not None
        if self.name == "hubspot":
            tags_property = self.mapping.tags.property or ""
            # a stage by its label, as the mapping names the clinic's stages (an id where there is no label)
            stages = {s["id"]: s["label"] for p in self.emulator.pipelines.get(record.object, []) for s in p["stages"]}
            return [{**d["properties"], "_id": d["id"], "_tags": [
                t for t in (d["properties"].get(tags_property) or "").split(";") if t],
                "_stage": stages.get(d["properties"].get(record.stage_property or ""),
                                     d["properties"].get(record.stage_property or ""))}
                    for d in self.emulator.records(record.object)]
        if self.name == "salesforce":
            tags_property = self.mapping.tags.property or ""
            return [{**r, "_id": r["Id"], "_stage": r.get(record.stage_property or ""),
                     "_tags": [t for t in (r.get(tags_property) or "").split(";") if t]}
                    for r in self.emulator.records(record.object)]
        statuses = set(record.statuses.values())
        rows = []
        for lead in self.emulator.records(record.object):
            labels = self.emulator.label_names(lead.get("label_ids"))
            stage = next((label for label in labels if label in statuses), None)
            readable = {**self.emulator._readable("deal", lead),
                        **self.emulator._readable("deal", lead.get("custom_fields") or {})}
            rows.append({**lead, **readable, "_id": lead["id"], "_stage": stage,
                         "_tags": [label for label in labels if label not in statuses]})
        return rows

    def notes(self) -> list[str]:
        if self.name == "hubspot":
            return [n["properties"].get("hs_note_body") or "" for n in self.emulator.records("notes")]
        if self.name == "salesforce":
            return [f"{n.get('Title') or ''}\n{n.get('Body') or ''}" for n in self.emulator.records("Note")]
        return [n.get("content") or "" for n in self.emulator.records("notes")]

    def counts(self) -> tuple[int, int, int]:
        """(contacts, request records, notes)."""
        return len(self.contacts()), len(self.records()), len(self.notes())

    def campaign_members(self) -> list[dict[str, Any]]:
        """Salesforce's CampaignMember rows (empty for the CRMs that keep attribution in fields only)."""
        if self.name != "salesforce":
            return []
        return list(self.emulator.records("CampaignMember"))

    def seed_contact(self, key: str, *, email: str, first_name: str) -> None:
        """A contact the CRM already holds, as an earlier conversation would have left it."""
        key_field = self.mapping.contact.key_property
        email_field = self.field("contact", "contact.email") if self._writes("contact.email") else "email"
        if self.name == "hubspot":
            with self.emulator.lock:
                self.emulator._create("contacts", {key_field: key, email_field: email, "firstname": first_name}, [])
        elif self.name == "salesforce":
            self.emulator.add_record(self.mapping.contact.object, {key_field: key, "Email": email,
                                                                   "FirstName": first_name, "LastName": "Known",
                                                                   "Company": "Known"})
        else:
            code = self.emulator.field_key("person", key_field)
            with self.emulator.lock:
                person_id = next(self.emulator.ids)
                self.emulator.objects["persons"][str(person_id)] = {
                    "id": person_id, "name": first_name, "first_name": first_name, "last_name": "", "owner_id": 1,
                    "org_id": None, "phones": [], "emails": [{"value": email, "primary": True, "label": "work"}],
                    "label_ids": [], "visible_to": 3, "add_time": "2026-01-01T00:00:00Z",
                    "update_time": "2026-01-01T00:00:00Z", "is_deleted": False, "custom_fields": {code: key}}

    # -- helpers ---------------------------------------------------------------------------------
    def _writes(self, source: str) -> bool:
        return any(spec.source == source for spec in self.mapping.contact.fields.values())

    def _person(self, person: dict[str, Any]) -> dict[str, Any]:
        row = {**person, **self.emulator._readable("person", person.get("custom_fields") or {}), "_id": person["id"]}
        for plural, single in (("phones", "phone"), ("emails", "email")):
            values = person.get(plural) or []
            primary = next((v for v in values if v.get("primary")), values[0] if values else None)
            row[single] = primary.get("value") if primary else None
        return row
