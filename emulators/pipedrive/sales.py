"""The emulated Pipedrive operations on the sales side: leads and lead labels (v1), deals, pipelines and
stages (v2), notes (v1), activities (v2) and users (v1)."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from flask import Response

from emulators.pipedrive.state import PipedriveState, timestamp


class SalesOperations(PipedriveState):
    """Leads, deals, notes, activities and users (each ``_op_<operationId>`` answers one operation)."""

    # -- leads, lead labels (v1) ---------------------------------------------------------------
    def _lead_values(self, body: dict[str, Any]) -> Response | None:
        custom = {k: v for k, v in body.items() if re.fullmatch(r"[0-9a-f]{40}", k)}
        unknown = [k for k in body if k not in custom and k not in (
            "title", "owner_id", "label_ids", "person_id", "organization_id", "value", "expected_close_date",
            "visible_to", "was_seen", "origin_id", "channel", "channel_id", "is_archived")]
        if unknown:
            return self._error(400, f"Unknown field '{unknown[0]}'", error_info="Validation failed.")
        if problem := self._check_custom("deal", custom):  # leads share the deal fields
            return self._error(400, problem, error_info="Validation failed.")
        for label in body.get("label_ids") or []:
            if label not in self.objects["leadLabels"]:
                return self._error(400, f"Lead label {label} does not exist", error_info="Validation failed.")
        if body.get("person_id") is not None and self._live("persons", body["person_id"]) is None:
            return self._error(400, "The person does not exist", error_info="Validation failed.")
        if body.get("organization_id") is not None and self._live("organizations", body["organization_id"]) is None:
            return self._error(400, "The organization does not exist", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        return None

    def _op_addLead(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if body.get("person_id") is None and body.get("organization_id") is None:
            return self._error(400, "A lead must be linked to a person or an organization.",
                               error_info="Validation failed.")
        if problem := self._lead_values(body):
            return problem
        now = timestamp()
        lead = {"id": str(uuid.uuid4()), "title": body["title"], "owner_id": 1, "creator_id": 1, "label_ids": [],
                "person_id": None, "organization_id": None, "source_name": "API", "origin": "API",
                "origin_id": None, "channel": None, "channel_id": None, "is_archived": False, "was_seen": False,
                "value": None, "expected_close_date": None, "next_activity_id": None, "add_time": now,
                "update_time": now, "visible_to": "3", "cc_email": "clinic+lead@pipedrivemail.com", **body}
        self.objects["leads"][lead["id"]] = lead
        self.search_index.written("leads", lead["id"], lead)
        return self._ok(lead, status=201)

    def _op_updateLead(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        lead = self.objects["leads"].get(params["id"])
        if lead is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        if problem := self._lead_values(body):
            return problem
        before = copy.deepcopy(lead)
        lead.update(body)
        lead["update_time"] = timestamp()
        self.search_index.written("leads", lead["id"], lead, before=before)
        return self._ok(lead)

    def _op_getLead(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        lead = self.objects["leads"].get(params["id"])
        if lead is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        return self._ok(lead)

    def _op_deleteLead(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        removed = self.objects["leads"].pop(params["id"], None)
        if removed is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        self.search_index.written("leads", params["id"], None, before=removed)
        return self._ok({"id": params["id"]})

    def _op_getLeads(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        leads = [lead for lead in self.objects["leads"].values() if not lead["is_archived"]
                 and (args.get("person_id") is None or str(lead.get("person_id")) == args["person_id"])]
        start, limit = int(args.get("start") or 0), int(args.get("limit") or 100)
        return self._ok(leads[start:start + limit], additional={"pagination": {
            "start": start, "limit": limit, "more_items_in_collection": len(leads) > start + limit}})

    def _op_searchLeads(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        fields = (args.get("fields") or "custom_fields,notes,title").split(",")
        items = []
        for lead in self.search_index.visible("leads", self.objects["leads"]):
            if args.get("person_id") and str(lead.get("person_id")) != args["person_id"]:
                continue
            custom = self._searchable_custom("deal", {k: v for k, v in lead.items()
                                                      if re.fullmatch(r"[0-9a-f]{40}", k)})
            if (("title" in fields and self._matches(args["term"], [lead["title"]], exact))
                    or ("custom_fields" in fields and self._matches(args["term"], custom, exact))):
                items.append({"result_score": 1.0, "item": {
                    "id": lead["id"], "type": "lead", "title": lead["title"], "owner": {"id": lead["owner_id"]},
                    "person": {"id": lead["person_id"]} if lead["person_id"] else None, "organization": None,
                    "phones": [], "emails": [], "custom_fields": custom, "notes": [], "value": None,
                    "currency": None, "visible_to": 3, "is_archived": lead["is_archived"]}})
        return self._ok({"items": items}, additional={"next_cursor": None})

    def _op_getLeadLabels(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(list(self.objects["leadLabels"].values()))

    def _op_addLeadLabel(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        label = {"id": str(uuid.uuid4()), "name": body["name"], "color": body["color"], "add_time": timestamp(),
                 "update_time": timestamp()}
        self.objects["leadLabels"][label["id"]] = label
        return self._ok(label)

    # -- deals (v2) ----------------------------------------------------------------------------
    def _deal_values(self, body: dict[str, Any]) -> Response | None:
        if problem := self._check_custom("deal", body.get("custom_fields") or {}):
            return self._error(400, problem, error_info="Validation failed.")
        if body.get("person_id") is not None and self._live("persons", body["person_id"]) is None:
            return self._error(400, "The person does not exist", error_info="Validation failed.")
        stage = next((s for s in self.stages if s["id"] == body.get("stage_id")), None)
        if body.get("stage_id") is not None and stage is None:
            return self._error(400, "stage_id: stage not found", error_info="Validation failed.")
        if stage and body.get("pipeline_id") is not None and stage["pipeline_id"] != body["pipeline_id"]:
            return self._error(400, "The stage is not in that pipeline", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        return None

    def _op_addDeal(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if problem := self._deal_values(body):
            return problem
        did = next(self.ids)
        stage_id = body.get("stage_id") or self.stages[0]["id"]
        deal = {"id": did, "title": body["title"], "owner_id": 1, "person_id": None, "org_id": None,
                "pipeline_id": next(s["pipeline_id"] for s in self.stages if s["id"] == stage_id), "stage_id": stage_id,
                "value": 0, "currency": "EUR", "status": "open", "add_time": timestamp(), "update_time": timestamp(),
                "is_deleted": False, "label_ids": [], **body, "custom_fields": dict(body.get("custom_fields") or {})}
        self.objects["deals"][str(did)] = deal
        self.search_index.written("deals", did, deal)
        return self._ok(deal)

    def _op_updateDeal(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        deal = self._live("deals", params["id"])
        if deal is None:
            return self._error(404, "Deal not found", error_info="Object was not found.")
        if problem := self._deal_values(body):
            return problem
        custom = {**deal["custom_fields"], **(body.get("custom_fields") or {})}
        before = copy.deepcopy(deal)
        deal.update({**body, "custom_fields": custom, "update_time": timestamp()})
        self.search_index.written("deals", deal["id"], deal, before=before)
        return self._ok(deal)

    def _op_getDeal(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        deal = self._live("deals", params["id"])
        if deal is None:
            return self._error(404, "Deal not found", error_info="Object was not found.")
        return self._ok(deal)

    def _op_getDeals(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("deals", args, ("person_id", "org_id", "pipeline_id", "stage_id", "owner_id", "status"))

    def _op_searchDeals(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        fields = (args.get("fields") or "custom_fields,notes,title").split(",")
        items = []
        for deal in self.search_index.visible("deals", self.objects["deals"]):
            if deal["is_deleted"] or (args.get("person_id") and str(deal.get("person_id")) != args["person_id"]):
                continue
            custom = self._searchable_custom("deal", deal["custom_fields"])
            if (("title" in fields and self._matches(args["term"], [deal["title"]], exact))
                    or ("custom_fields" in fields and self._matches(args["term"], custom, exact))):
                items.append({"result_score": 1.0, "item": {
                    "id": deal["id"], "type": "deal", "title": deal["title"], "value": deal["value"],
                    "currency": deal["currency"], "status": deal["status"], "visible_to": 3,
                    "owner": {"id": deal["owner_id"]}, "stage": {"id": deal["stage_id"]},
                    "person": {"id": deal["person_id"]} if deal["person_id"] else None, "organization": None,
                    "custom_fields": custom, "notes": []}})
        return self._ok({"items": items}, additional={"next_cursor": None})

    def _op_getPipelines(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.pipelines, additional={"next_cursor": None})

    def _op_getStages(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        stages = [s for s in self.stages if args.get("pipeline_id") in (None, str(s["pipeline_id"]))]
        return self._ok(stages, additional={"next_cursor": None})

    def _op_addPipeline(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if not str(body.get("name") or "").strip():
            return self._error(400, "Name must be given.", error_info="Validation failed.")
        now = timestamp()
        # Pipedrive's API makes a pipeline without stages: they are added with POST /stages
        pipeline = {"id": next(self.ids), "name": body["name"], "order_nr": len(self.pipelines) + 1, "is_deleted": False,
                    "is_deal_probability_enabled": bool(body.get("is_deal_probability_enabled")), "add_time": now,
                    "update_time": now, "is_selected": False}
        self.pipelines.append(pipeline)
        return self._ok(pipeline)

    def _op_addStage(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if not any(p["id"] == body["pipeline_id"] and not p["is_deleted"] for p in self.pipelines):
            return self._error(400, "pipeline_id: pipeline not found", error_info="Validation failed.")
        if not str(body.get("name") or "").strip():
            return self._error(400, "Name must be given.", error_info="Validation failed.")
        now = timestamp()
        order = 1 + max((s["order_nr"] for s in self.stages if s["pipeline_id"] == body["pipeline_id"]), default=0)
        stage = {"id": next(self.ids), "name": body["name"], "pipeline_id": body["pipeline_id"], "order_nr": order,
                 "deal_probability": body.get("deal_probability", 100),
                 "is_deal_rot_enabled": bool(body.get("is_deal_rot_enabled")),
                 "days_to_rotten": body.get("days_to_rotten"), "is_deleted": False, "add_time": now, "update_time": now}
        self.stages.append(stage)
        return self._ok(stage)

    # -- notes (v1), activities (v2), users (v1) -----------------------------------------------
    def _op_addNote(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        targets = {k: body.get(k) for k in ("lead_id", "deal_id", "person_id", "org_id") if body.get(k) is not None}
        if not targets:
            return self._error(400, "Note must be attached to a lead, deal, person or organization.",
                               error_info="Validation failed.")
        if "lead_id" in targets and targets["lead_id"] not in self.objects["leads"]:
            return self._error(400, "The lead does not exist", error_info="Validation failed.")
        for key, kind in (("deal_id", "deals"), ("person_id", "persons"), ("org_id", "organizations")):
            if key in targets and self._live(kind, targets[key]) is None:
                return self._error(400, f"{key}: entity not found", error_info="Validation failed.")
        nid = next(self.ids)
        note = {"id": nid, "content": body["content"], "user_id": 1, "add_time": timestamp().replace("T", " ")[:19],
                "update_time": timestamp().replace("T", " ")[:19], "active_flag": True, "pinned_to_lead_flag": False,
                "pinned_to_deal_flag": False, "pinned_to_person_flag": False, "lead_id": None, "deal_id": None,
                "person_id": None, "org_id": None, **targets}
        self.objects["notes"][str(nid)] = note
        return self._ok(note)

    def _op_getNotes(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        notes = [n for n in self.objects["notes"].values() if all(
            str(n.get(k)) == args[k] for k in ("lead_id", "deal_id", "person_id", "org_id") if args.get(k))]
        start, limit = int(args.get("start") or 0), int(args.get("limit") or 100)
        return self._ok(notes[start:start + limit], additional={"pagination": {
            "start": start, "limit": limit, "more_items_in_collection": len(notes) > start + limit}})

    def _op_addActivity(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if body.get("lead_id") is not None and body["lead_id"] not in self.objects["leads"]:
            return self._error(400, "The lead does not exist", error_info="Validation failed.")
        for key, kind in (("deal_id", "deals"), ("person_id", "persons")):
            if body.get(key) is not None and self._live(kind, body[key]) is None:
                return self._error(400, f"{key}: entity not found", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        if body.get("type") not in (None, "call", "meeting", "task", "deadline", "email", "lunch"):
            return self._error(400, f"Activity type '{body['type']}' does not exist", error_info="Validation failed.")
        aid = next(self.ids)
        activity = {"id": aid, "subject": body.get("subject") or "Call", "type": body.get("type") or "call",
                    "owner_id": 1, "done": False, "busy": False, "due_date": None, "due_time": None, "lead_id": None,
                    "deal_id": None, "person_id": None, "org_id": None, "add_time": timestamp(), "update_time": timestamp(),
                    "is_deleted": False, **body}
        self.objects["activities"][str(aid)] = activity
        return self._ok(activity)

    def _op_getActivities(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        found = [a for a in self.objects["activities"].values() if not a["is_deleted"] and all(
            str(a.get(k)) == args[k] for k in ("lead_id", "deal_id", "person_id", "owner_id") if args.get(k))]
        return self._ok(found[: int(args.get("limit") or 100)], additional={"next_cursor": None})

    def _op_getCurrentUser(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.users[0])

    def _op_getUsers(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.users)
