"""The emulated HubSpot pipelines API (``/crm/v3/pipelines/{objectType}``): reading an object's pipelines,
creating one with its stages, reading one, and listing and adding stages; and what a record's pipeline and
stage properties must be.

As HubSpot does, it generates the ids of new pipelines and stages, requires a deal stage's
``metadata.probability`` (0.0 to 1.0), takes a ticket stage's ``metadata.ticketState`` only as ``OPEN`` or
``CLOSED``, refuses a stage label already in the pipeline and a pipeline label already used by the object, and
refuses a record whose stage is not one of its pipeline's (``pipeline`` defaults to the object's first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from flask import jsonify, request

from emulators.hubspot.state import HubSpotState, timestamp

#: the module of the pipelines API's request models
PIPELINE_MODELS = "hubspot.crm.pipelines.models"
#: object type → (its pipeline property, its stage property)
STAGE_PROPERTIES = {"deals": ("pipeline", "dealstage"), "tickets": ("hs_pipeline", "hs_pipeline_stage"),
                    "leads": ("hs_pipeline", "hs_pipeline_stage")}
_CREATED = "2026-01-01T00:00:00.000Z"


def _stage(stage_id: str, label: str, order: int, metadata: dict[str, str]) -> dict[str, Any]:
    return {"id": stage_id, "label": label, "displayOrder": order, "metadata": metadata, "archived": False,
            "createdAt": _CREATED, "updatedAt": _CREATED, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"}


def _pipeline(pipeline_id: str, label: str, stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": pipeline_id, "label": label, "displayOrder": 0, "archived": False, "createdAt": _CREATED,
            "updatedAt": _CREATED, "stages": stages}


def default_pipelines() -> dict[str, list[dict[str, Any]]]:
    """The pipelines a new HubSpot account has: the sales pipeline, the support pipeline, the lead pipeline."""
    deal_stages = [("appointmentscheduled", "Appointment Scheduled", "0.2"), ("qualifiedtobuy", "Qualified To Buy", "0.4"),
                   ("presentationscheduled", "Presentation Scheduled", "0.6"),
                   ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"), ("contractsent", "Contract Sent", "0.9"),
                   ("closedwon", "Closed Won", "1.0"), ("closedlost", "Closed Lost", "0.0")]
    ticket_stages = [("1", "New", "OPEN"), ("2", "Waiting on contact", "OPEN"), ("3", "Waiting on us", "OPEN"),
                     ("4", "Closed", "CLOSED")]
    lead_stages = [("new-stage-id", "New"), ("attempting-stage-id", "Attempting"), ("connected-stage-id", "Connected")]
    return {
        "deals": [_pipeline("default", "Sales Pipeline", [
            _stage(i, label, n, {"isClosed": str(p in ("1.0", "0.0")).lower(), "probability": p})
            for n, (i, label, p) in enumerate(deal_stages)])],
        "tickets": [_pipeline("0", "Support Pipeline", [_stage(i, label, n, {"ticketState": state})
                                                        for n, (i, label, state) in enumerate(ticket_stages)])],
        "leads": [_pipeline("lead-pipeline-id", "Lead pipeline", [_stage(i, label, n, {})
                                                                  for n, (i, label) in enumerate(lead_stages)])],
    }


class HubSpotPipelineRoutes(HubSpotState):
    """The pipelines API's handlers, and the check of a record's pipeline and stage."""

    def _pipeline_routes(self) -> list[tuple[tuple[str, ...], str, Callable[..., Any]]]:
        return [
            (("GET", "POST"), "/crm/v3/pipelines/<object_type>", self._serve_pipelines),
            (("GET",), "/crm/v3/pipelines/<object_type>/<pipeline_id>", self._serve_pipeline),
            (("GET", "POST"), "/crm/v3/pipelines/<object_type>/<pipeline_id>/stages", self._serve_stages),
        ]

    def _serve_pipelines(self, object_type: str) -> Any:
        """The pipelines of an object type and their stages; or a new pipeline, with its stages."""
        if early := self._before():
            return early
        if object_type not in STAGE_PROPERTIES:
            return self._error(400, f"Object type {object_type} does not support pipelines", "VALIDATION_ERROR")
        if request.method == "GET":
            with self.lock:
                return jsonify({"results": copy.deepcopy(self.pipelines.get(object_type, []))}), 200
        if early := self._shape("PipelineInput", PIPELINE_MODELS):
            return early
        body = request.get_json()
        with self.lock:
            existing = self.pipelines.setdefault(object_type, [])
            if any(p["label"].casefold() == body["label"].casefold() for p in existing):
                return self._error(409, f"A pipeline with label {body['label']} already exists for {object_type}",
                                   "CONFLICT")
            if not body["stages"]:
                return self._error(400, "A pipeline must have at least one stage", "VALIDATION_ERROR")
            stages: list[dict[str, Any]] = []
            for given in body["stages"]:
                if refused := self._stage_refused(object_type, given, stages):
                    return refused
                stages.append(self._new_stage(given))
            now = timestamp()
            created = {**_pipeline(str(next(self.ids)), body["label"], stages), "displayOrder": body["displayOrder"],
                       "createdAt": now, "updatedAt": now}
            existing.append(created)
            self._stages_changed(object_type)
            return jsonify(copy.deepcopy(created)), 201

    def _serve_pipeline(self, object_type: str, pipeline_id: str) -> Any:
        """One pipeline and its stages."""
        if early := self._before():
            return early
        with self.lock:
            found = self._pipeline_of(object_type, pipeline_id)
            if found is None:
                return self._error(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
            return jsonify(copy.deepcopy(found)), 200

    def _serve_stages(self, object_type: str, pipeline_id: str) -> Any:
        """A pipeline's stages; or a new stage added to it."""
        if early := self._before():
            return early
        if request.method == "POST" and (early := self._shape("PipelineStageInput", PIPELINE_MODELS)):
            return early
        with self.lock:
            found = self._pipeline_of(object_type, pipeline_id)
            if found is None:
                return self._error(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
            if request.method == "GET":
                return jsonify({"results": copy.deepcopy(found["stages"])}), 200
            given = request.get_json()
            if refused := self._stage_refused(object_type, given, found["stages"]):
                return refused
            stage = self._new_stage(given)
            found["stages"].append(stage)
            found["stages"].sort(key=lambda s: s["displayOrder"])
            found["updatedAt"] = stage["createdAt"]
            self._stages_changed(object_type)
            return jsonify(copy.deepcopy(stage)), 201

    # -- what HubSpot refuses ------------------------------------------------------------------
    def _stage_refused(self, object_type: str, given: dict[str, Any], siblings: list[dict[str, Any]]) -> Any:
        """HubSpot's answer to a stage it refuses (a label already in the pipeline, metadata a deal or ticket
        stage needs), or None."""
        label = str(given.get("label") or "")
        if not label.strip():
            return self._error(400, "Stage label is required", "VALIDATION_ERROR")
        if any(s["label"].casefold() == label.casefold() for s in siblings):
            return self._error(400, f"A stage with label {label} already exists in this pipeline", "VALIDATION_ERROR")
        metadata = given.get("metadata") or {}
        if object_type == "deals":
            try:
                probability = float(metadata["probability"])
            except (KeyError, TypeError, ValueError):
                return self._error(400, f"Deal stage {label} requires metadata.probability, a number between 0.0 "
                                        f"and 1.0", "VALIDATION_ERROR")
            if not 0.0 <= probability <= 1.0:
                return self._error(400, f"Deal stage probability must be between 0.0 and 1.0, got {probability}",
                                   "VALIDATION_ERROR")
        if object_type == "tickets" and metadata.get("ticketState", "OPEN") not in ("OPEN", "CLOSED"):
            return self._error(400, f"ticketState must be OPEN or CLOSED, got {metadata['ticketState']}",
                               "VALIDATION_ERROR")
        return None

    def _new_stage(self, given: dict[str, Any]) -> dict[str, Any]:
        now = timestamp()
        metadata = {k: str(v) for k, v in (given.get("metadata") or {}).items()}
        if "probability" in metadata:
            metadata.setdefault("isClosed", str(float(metadata["probability"]) in (0.0, 1.0)).lower())
        return {**_stage(str(next(self.ids)), given["label"], int(given.get("displayOrder") or 0), metadata),
                "createdAt": now, "updatedAt": now}

    def _pipeline_of(self, object_type: str, pipeline_id: str) -> dict[str, Any] | None:
        return next((p for p in self.pipelines.get(object_type, []) if p["id"] == pipeline_id), None)

    def _stages_changed(self, object_type: str) -> None:
        """A deal's ``pipeline`` and ``dealstage`` are enumerations of every pipeline's and stage's id."""
        if object_type == "deals":
            self.properties["deals"]["pipeline"].options = [p["id"] for p in self.pipelines["deals"]]
            self.properties["deals"]["dealstage"].options = [s["id"] for p in self.pipelines["deals"]
                                                             for s in p["stages"]]

    def _stage_problems(self, object_type: str, properties: dict[str, Any], object_id: str | None,
                        ) -> list[dict[str, Any]]:
        """A record's stage that is not one of its pipeline's (the pipeline written, else the record's, else the
        object's first), as HubSpot lists invalid property values."""
        names = STAGE_PROPERTIES.get(object_type)
        if names is None or not properties.get(names[1]):
            return []
        current = self.objects[object_type].get(object_id or "", {}).get("properties", {})
        pipelines = self.pipelines.get(object_type, [])
        pipeline_id = properties.get(names[0]) or current.get(names[0]) or (pipelines[0]["id"] if pipelines else "")
        pipeline = self._pipeline_of(object_type, str(pipeline_id))
        if pipeline is None:
            return [{"isValid": False, "message": f"{pipeline_id} is not a valid pipeline", "error": "INVALID_OPTION",
                     "name": names[0]}]
        stage = str(properties[names[1]])
        if any(s["id"] == stage for s in pipeline["stages"]):
            return []
        return [{"isValid": False, "message": f"{stage} is not a valid stage of pipeline {pipeline['id']}",
                 "error": "INVALID_OPTION", "name": names[1]}]
