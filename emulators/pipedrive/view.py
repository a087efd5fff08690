"""The emulated Pipedrive account as an agent sees it in Pipedrive's web app (``GET /_emulator/view``, the demo
page's CRM view): in the CRM-neutral shape every emulator's view has (contacts, records with their stage and tags,
notes, tasks, extras), with what Pipedrive shows people rather than what its API carries: fields by their labels
(custom fields' 40-character keys by the names an admin gave them, ``phones`` as *Phone*, ``org_id`` as
*Organization*), linked persons, organizations, owners and pipelines by name, option ids as option labels.
"""

from __future__ import annotations

import re
from typing import Any

from emulators._text import plain_text
from emulators.pipedrive.state import PipedriveState

_CUSTOM_KEY = re.compile(r"[0-9a-f]{40}")


class AgentView(PipedriveState):
    """``agent_view()``: the account, readable."""

    def _label(self, entity: str, code: str) -> str:
        """The label Pipedrive shows for a standard field (``org_id`` → ``Organization``)."""
        return next((f["field_name"] for f in self.fields[entity] if f["field_code"] == code), code)

    def _name_of(self, kind: str, object_id: Any) -> str | None:
        """A linked object as Pipedrive shows it: a person's or organization's name, a lead's or deal's title."""
        if object_id in (None, ""):
            return None
        found = self.objects[kind].get(str(object_id))
        if found is None:
            return str(object_id)
        return str(found.get("name") or found.get("title") or object_id)

    def _owner(self, owner_id: Any) -> str | None:
        return next((u["name"] for u in self.users if u["id"] == owner_id), None)

    def _shown(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """Standard values (by field code) under their labels, empty ones left out."""
        return {self._label(entity, code): value for code, value in values.items() if value not in (None, "", [])}

    def agent_view(self) -> dict[str, Any]:
        """The account as an agent sees it in Pipedrive (CRM-neutral shape; see the demo page)."""
        with self.lock:
            stages = {s["id"]: s["name"] for s in self.stages}
            pipelines = {p["id"]: p["name"] for p in self.pipelines}
            contacts = [{"id": str(p["id"]), "object": "person", "title": p.get("name") or "(no name)", "fields": {
                **self._shown("person", {
                    "phone": ", ".join(x["value"] for x in p.get("phones") or []),
                    "email": ", ".join(x["value"] for x in p.get("emails") or []),
                    "org_id": self._name_of("organizations", p.get("org_id"))}),
                **self._readable("person", p.get("custom_fields") or {})}} for p in self.records("persons")]
            records = []
            for lead in self.records("leads"):
                custom = {k: v for k, v in lead.items() if _CUSTOM_KEY.fullmatch(k)}
                names = self.label_names(lead.get("label_ids"))
                records.append({"id": lead["id"], "object": "lead", "title": lead["title"],
                                "stage": names[0] if names else None, "tags": names[1:], "fields": {
                                    **self._shown("deal", {
                                        "person_id": self._name_of("persons", lead.get("person_id")),
                                        "org_id": self._name_of("organizations", lead.get("organization_id")),
                                        "owner_id": self._owner(lead.get("owner_id"))}),
                                    **self._readable("deal", custom)}})
            for deal in self.records("deals"):
                readable = self._readable("deal", deal.get("custom_fields") or {})
                tags = next((v for v in readable.values() if isinstance(v, list)), [])
                records.append({"id": str(deal["id"]), "object": "deal", "title": deal["title"],
                                "stage": stages.get(deal.get("stage_id")), "tags": tags, "fields": {
                                    **self._shown("deal", {
                                        "pipeline_id": pipelines.get(deal.get("pipeline_id")),
                                        "person_id": self._name_of("persons", deal.get("person_id")),
                                        "org_id": self._name_of("organizations", deal.get("org_id")),
                                        "owner_id": self._owner(deal.get("owner_id"))}),
                                    **{k: v for k, v in readable.items() if v is not tags}}})
            notes = [{"id": str(n["id"]), "body": plain_text(n["content"])} for n in self.records("notes")]
            tasks = [{"id": str(a["id"]), "title": a.get("subject") or "", "fields": {k: v for k, v in {
                "Type": a.get("type"), "Due date": " ".join(x for x in (a.get("due_date"), a.get("due_time")) if x),
                "Owner": self._owner(a.get("owner_id")), "Lead": self._name_of("leads", a.get("lead_id")),
                "Deal": self._name_of("deals", a.get("deal_id")),
                "Contact person": self._name_of("persons", a.get("person_id")),
                "Note": plain_text(a.get("note") or "")}.items() if v}} for a in self.records("activities")]
            extras = [{"kind": "lead label", "title": label["name"], "fields": {"Color": label["color"]}}
                      for label in self.objects["leadLabels"].values()]
            extras += [{"kind": "organization", "title": o["name"], "fields": self._shown("deal", {
                "owner_id": self._owner(o.get("owner_id"))})} for o in self.records("organizations")]
        return {"crm": "pipedrive", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": extras}
