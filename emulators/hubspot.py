"""An emulator of the HubSpot CRM API (v3 objects, batch reads and upserts, search, properties,
pipelines, owners; v4 association reads).

It keeps objects, property definitions (types, options, unique values), associations, pipelines
and owners in memory and answers with HubSpot's response and error shapes: 409 ``CONFLICT`` with
``Existing ID`` on a duplicate unique value, 400 ``VALIDATION_ERROR`` for properties that do not
exist or options that are not allowed, 401 for a bad token, 404 for unknown objects, 429 with the
``X-HubSpot-RateLimit-*`` headers when a rate limit is set. Every request body is checked by
building the request model of ``hubspot-api-client`` (generated from HubSpot's own API
description) from it: unknown keys, missing required fields, wrong types and non-string property
values are rejected as HubSpot would. Latency and faults can be injected.

Search is eventually consistent, as HubSpot's is: with ``search_lag`` set, a write (create, update,
archive) shows in ``POST /crm/v3/objects/<type>/search`` only that many seconds later (the object as
it was then, or not at all); reads by id, batch reads and association reads are current at once.

Control endpoints (JSON, for tests and the demo page): ``GET /_emulator/objects/<type>``,
``GET /_emulator/calls``.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from emulators._faults import FaultInjection
from emulators._text import plain_text

ASSOCIATION_TYPES = {  # HUBSPOT_DEFINED (from type, to type) → type id
    ("deals", "contacts"): 3, ("contacts", "deals"): 4, ("tickets", "contacts"): 16, ("contacts", "tickets"): 15,
    ("notes", "contacts"): 202, ("notes", "deals"): 214, ("notes", "tickets"): 228, ("tasks", "contacts"): 204,
    ("tasks", "deals"): 216, ("tasks", "tickets"): 230, ("leads", "contacts"): 578, ("notes", "leads"): 854,
    ("tasks", "leads"): 646, ("deals", "companies"): 5, ("contacts", "companies"): 279, ("companies", "contacts"): 280,
    ("contacts", "notes"): 201, ("deals", "notes"): 213, ("tickets", "notes"): 227, ("leads", "notes"): 855,
    ("contacts", "tasks"): 203, ("deals", "tasks"): 215, ("tickets", "tasks"): 229, ("leads", "tasks"): 647,
}
OBJECT_TYPES = ("contacts", "companies", "deals", "tickets", "leads", "notes", "tasks")
_MODELS = "hubspot.crm.objects.models"
#: fields HubSpot's published API description requires that the generated client leaves optional
REQUIRED_BY_HUBSPOT = {
    "SimplePublicObjectInputForCreate": ("associations", "properties"),
    "PublicObjectSearchRequest": ("after", "filterGroups", "limit", "properties", "sorts"),
    "BatchReadInputSimplePublicObjectId": ("inputs", "properties", "propertiesWithHistory"),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestShapeError(ValueError):
    """The body would not deserialize into the client's request model."""


def check_model(class_name: str, data: Any, path: str = "", module: str = _MODELS) -> None:
    """Check ``data`` against a ``hubspot-api-client`` model (keys, required fields, types, enums).

    Raises:
        RequestShapeError: with the path of the first problem.
    """
    models = importlib.import_module(module)
    cls = getattr(models, class_name)
    if not isinstance(data, dict):
        raise RequestShapeError(f"{path or 'body'}: expected an object")
    json_to_attr = {v: k for k, v in cls.attribute_map.items()}
    missing = [k for k in REQUIRED_BY_HUBSPOT.get(class_name, ()) if k not in data]
    if missing:
        raise RequestShapeError(f"{path or 'body'}: {class_name} requires {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in json_to_attr:
            raise RequestShapeError(f"{path}{key}: unknown field of {class_name}")
        attr = json_to_attr[key]
        kwargs[attr] = _check_type(cls.openapi_types[attr], value, f"{path}{key}", module)
    try:
        cls(**kwargs)  # the generated constructor checks required fields and enums
    except (ValueError, TypeError) as exc:
        raise RequestShapeError(f"{path or 'body'}: {exc}") from None


def _check_type(kind: str, value: Any, path: str, module: str) -> Any:
    if value is None:
        return None
    if kind.startswith("list["):
        if not isinstance(value, list):
            raise RequestShapeError(f"{path}: expected a list")
        return [_check_type(kind[5:-1], v, f"{path}[{i}]", module) for i, v in enumerate(value)]
    if kind.startswith(("dict(", "dict[")):
        inner = kind[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            raise RequestShapeError(f"{path}: expected an object")
        return {k: _check_type(inner, v, f"{path}.{k}", module) for k, v in value.items()}
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "object": object}
    if kind in scalar:
        if not isinstance(value, scalar[kind]) or (kind == "int" and isinstance(value, bool)):  # type: ignore[arg-type]
            raise RequestShapeError(f"{path}: expected {kind}, got {type(value).__name__}")
        return value
    check_model(kind, value, f"{path}.", module)
    return value


@dataclass
class Property:
    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group: str = "contactinformation"
    unique: bool = False
    options: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "type": self.type, "fieldType": self.field_type,
                "groupName": self.group, "hasUniqueValue": self.unique, "hidden": False,
                "options": [{"label": o, "value": o, "displayOrder": i, "hidden": False}
                            for i, o in enumerate(self.options)],
                "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "calculated": False,
                "externalOptions": False, "formField": True}


def _standard_properties() -> dict[str, dict[str, Property]]:
    text = ["firstname", "lastname", "phone", "mobilephone", "company", "country", "city", "hs_language",
            "hubspot_owner_id", "lifecyclestage"]
    props = {
        "contacts": {n: Property(n, n) for n in text} | {"email": Property("email", "Email", unique=True)},
        "companies": {n: Property(n, n) for n in ("name", "domain", "country", "city", "phone")},
        "deals": {n: Property(n, n) for n in ("dealname", "amount", "closedate", "description", "hubspot_owner_id")}
        | {"pipeline": Property("pipeline", "Pipeline", "enumeration", "select", "dealinformation"),
           "dealstage": Property("dealstage", "Deal stage", "enumeration", "radio", "dealinformation")},
        "tickets": {n: Property(n, n) for n in ("subject", "content", "hs_pipeline", "hs_pipeline_stage",
                                                 "hs_ticket_priority", "hubspot_owner_id")},
        "leads": {n: Property(n, n) for n in ("hs_lead_name", "hs_pipeline", "hs_pipeline_stage", "hubspot_owner_id")},
        "notes": {n: Property(n, n) for n in ("hs_note_body", "hs_timestamp", "hubspot_owner_id")},
        "tasks": {n: Property(n, n) for n in ("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_priority",
                                              "hs_task_status", "hs_task_type", "hubspot_owner_id")},
    }
    return props


class HubSpotEmulator(FaultInjection):
    """State and behaviour of the emulated HubSpot account.

    Args:
        access_token: the private app token the relay must send.
        rate_limit: ``(requests, seconds)``: answer 429 past it (HubSpot's ten-second rolling limit).
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the call (then it is carried out, as HubSpot
            carries out a request whose client gave up).
        search_lag: seconds before a write shows in search (HubSpot: a few seconds).
    """

    def __init__(self, access_token: str = "pat-demo", *, rate_limit: tuple[int, float] | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0, search_lag: float = 0.0) -> None:
        self.access_token = access_token
        self._init_faults(latency=latency, timeout_seconds=timeout_seconds, rate_limit=rate_limit,
                          search_lag=search_lag)
        self.ids = itertools.count(50_001)
        self.properties = _standard_properties()
        self.groups: dict[str, set[str]] = {t: {"contactinformation", "dealinformation"} for t in OBJECT_TYPES}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
        self.pipelines: dict[str, list[dict[str, Any]]] = {
            "deals": [{"id": "default", "label": "Sales Pipeline", "stages": [
                {"id": s, "label": s.replace("scheduled", " scheduled").title()} for s in (
                    "appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
                    "contractsent", "closedwon", "closedlost")]}],
            "tickets": [{"id": "0", "label": "Support Pipeline", "stages": [
                {"id": s, "label": s} for s in ("1", "2", "3", "4")]}],
            "leads": [{"id": "lead-pipeline-id", "label": "Lead pipeline", "stages": [
                {"id": s, "label": s} for s in ("new-stage-id", "attempting-stage-id", "connected-stage-id")]}],
        }
        self.owners = [{"id": "75001", "email": "coordinator@clinic.example", "firstName": "Deniz",
                        "lastName": "Koordinatör", "userId": 9001, "archived": False}]
        self.properties["deals"]["pipeline"].options = ["default"]
        self.properties["deals"]["dealstage"].options = [s["id"] for s in self.pipelines["deals"][0]["stages"]]
        self.app = self._make_app()

    # -- helpers for tests and the demo --------------------------------------------------------
    def add_property(self, object_type: str, name: str, *, unique: bool = False, kind: str = "string",
                     options: list[str] | None = None) -> None:
        """Define a custom property, as an admin (or ``crm setup``) would."""
        field_type = {"enumeration": "checkbox", "bool": "booleancheckbox"}.get(kind, "text")
        self.properties[object_type][name] = Property(name, name, "enumeration" if kind == "bool" else kind,
                                                      field_type, "chat2crm", unique,
                                                      ["true", "false"] if kind == "bool" else list(options or []))

    def records(self, object_type: str) -> list[dict[str, Any]]:
        """Every live object of a type, with properties and associations."""
        with self.lock:
            return [dict(o) for o in self.objects[object_type].values() if not o["archived"]]

    def count(self, object_type: str) -> int:
        return len(self.records(object_type))

    def associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        with self.lock:
            return list(self.objects[object_type][object_id]["associations"].get(to_type, []))

    def agent_view(self) -> dict[str, Any]:
        """The account as an agent sees it (CRM-neutral shape, shown by the demo page)."""

        def fields(props: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
            return {n: props[n] for n in names if props.get(n) not in (None, "")}

        contacts = [{"id": c["id"], "object": "contact", "title": " ".join(
            v for v in (c["properties"].get("firstname"), c["properties"].get("lastname")) if v),
            "fields": fields(c["properties"], _VIEW_CONTACT)} for c in self.records("contacts")]
        records = [{"id": d["id"], "object": "deal", "title": d["properties"].get("dealname") or "",
                    "stage": d["properties"].get("dealstage"),
                    "tags": [t for t in (d["properties"].get("chat2crm_tags") or "").split(";") if t],
                    "fields": {k: v for k, v in d["properties"].items() if k.startswith("chat2crm_")
                               and k != "chat2crm_tags" and v not in (None, "")}} for d in self.records("deals")]
        notes = [{"id": n["id"], "body": plain_text(n["properties"].get("hs_note_body") or "")}
                 for n in self.records("notes")]
        tasks = [{"id": t["id"], "title": t["properties"].get("hs_task_subject") or "",
                  "fields": fields(t["properties"], ("hs_task_priority", "hs_task_status", "hubspot_owner_id"))}
                 for t in self.records("tasks")]
        return {"crm": "hubspot", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": []}

    # -- HTTP ----------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, category: str, **extra: Any) -> tuple[Response, int]:
        body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category,
                **extra}
        return jsonify(body), status

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        limit, seconds = self.rate_limit or (190, 10)
        return {"X-HubSpot-RateLimit-Max": str(limit), "X-HubSpot-RateLimit-Remaining": str(max(0, remaining)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(seconds * 1000)),
                "X-HubSpot-RateLimit-Daily": "500000", "X-HubSpot-RateLimit-Daily-Remaining": "499000"}

    def _before(self) -> tuple[Response, int] | None:
        self._record_call()
        fault = self._draw_fault()
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
        if fault in ("500", "502", "503"):
            return self._error(int(fault), "internal error", "INTERNAL_ERROR")
        if fault == "429":
            response, status = self._error(429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS",
                                           errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
            response.headers.update(self._rate_headers(0))
            return response, status
        if fault == "400":
            return self._error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
        if fault == "404":
            return self._error(404, "resource not found", "OBJECT_NOT_FOUND")
        if fault == "409":
            return self._error(409, "Object already has that value. Existing ID: 1", "CONFLICT")
        token = request.headers.get("Authorization", "")
        if fault == "401" or token != f"Bearer {self.access_token}":
            return self._error(401, "Authentication credentials not found. This API supports OAuth 2.0 "
                                    "authentication and you can find more details at https://developers.hubspot.com"
                                    "/docs/methods/auth/oauth-overview", "INVALID_AUTHENTICATION")
        with self.lock:
            if not self._fits(self.window, self.rate_limit):
                response, status = self._error(429, "You have reached your ten_secondly_rolling limit.",
                                               "RATE_LIMITS", errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
                response.headers.update(self._rate_headers(0))
                return response, status
        return None

    def _shape(self, model: str, module: str = _MODELS) -> tuple[Response, int] | None:
        body = request.get_json(silent=True)
        try:
            check_model(model, body, module=module)
        except RequestShapeError as exc:
            with self.lock:
                self.violations.append({"path": request.path, "problem": str(exc)})
            return self._error(400, f"Invalid input JSON: {exc}", "VALIDATION_ERROR")
        return None

    def _validate_properties(self, object_type: str, properties: dict[str, Any], exclude: str | None = None,
                             ) -> tuple[Response, int] | None:
        defs = self.properties[object_type]
        invalid = []
        for name, value in properties.items():
            prop = defs.get(name)
            if prop is None:
                invalid.append({"isValid": False, "message": f'Property "{name}" does not exist',
                                "error": "PROPERTY_DOESNT_EXIST", "name": name})
                continue
            if prop.type == "enumeration" and value != "":
                values = value.split(";") if prop.field_type == "checkbox" else [value]
                bad = [v for v in values if v not in prop.options]
                if bad:
                    invalid.append({"isValid": False, "message": f"{bad[0]} was not one of the allowed options",
                                    "error": "INVALID_OPTION", "name": name})
        if invalid:
            import json

            return self._error(400, f"Property values were not valid: {json.dumps(invalid)}", "VALIDATION_ERROR",
                               errors=[{"message": i["message"], "code": i["error"]} for i in invalid])
        for name, value in properties.items():
            if defs[name].unique and value:
                for oid, obj in self.objects[object_type].items():
                    if oid != exclude and not obj["archived"] and obj["properties"].get(name) == value:
                        return self._error(409, f"A {object_type[:-1]} with {name}={value} already exists. "
                                                f"Existing ID: {oid}", "CONFLICT")
        return None

    def _public(self, obj: dict[str, Any], wanted: list[str] | None = None) -> dict[str, Any]:
        props = obj["properties"]
        if wanted is not None:
            props = {k: props.get(k) for k in wanted} | {"hs_object_id": obj["id"]}
        return {"id": obj["id"], "properties": props, "createdAt": obj["createdAt"], "updatedAt": obj["updatedAt"],
                "archived": obj["archived"]}

    def _find(self, object_type: str, object_id: str, id_property: str | None) -> dict[str, Any] | None:
        objects = self.objects[object_type]
        if id_property and id_property != "hs_object_id":
            return next((o for o in objects.values() if not o["archived"]
                         and o["properties"].get(id_property) == object_id), None)
        obj = objects.get(object_id)
        return obj if obj and not obj["archived"] else None

    def _create(self, object_type: str, properties: dict[str, Any], associations: list[dict[str, Any]]) -> Any:
        error = self._validate_properties(object_type, properties)
        if error:
            return error
        targets = []
        for assoc in associations:
            to_id = str(assoc["to"]["id"])
            for spec in assoc["types"]:
                to_type = next((t for (f, t), i in ASSOCIATION_TYPES.items()
                                if f == object_type and i == spec["associationTypeId"]), None)
                if spec["associationCategory"] != "HUBSPOT_DEFINED" or to_type is None:
                    return self._error(400, f"association type {spec['associationTypeId']} is not valid for "
                                            f"{object_type}", "VALIDATION_ERROR")
                if self._find(to_type, to_id, None) is None:
                    return self._error(404, f"{to_type} {to_id} not found", "OBJECT_NOT_FOUND")
                targets.append((to_type, to_id))
        oid = str(next(self.ids))
        now = _now()
        obj = {"id": oid, "properties": {**properties, "hs_object_id": oid, "createdate": now}, "createdAt": now,
               "updatedAt": now, "archived": False, "associations": {}}
        self.objects[object_type][oid] = obj
        for to_type, to_id in targets:
            obj["associations"].setdefault(to_type, []).append(to_id)  # type: ignore[attr-defined]
            self.objects[to_type][to_id]["associations"].setdefault(object_type, []).append(oid)
        return obj

    def _make_app(self) -> Flask:
        app = Flask("hubspot-emulator")

        @app.after_request
        def record_status(response: Response) -> Response:
            if not request.path.startswith("/_emulator"):
                self._record_status(response.status_code)
                remaining = (self.rate_limit[0] - len(self.window)) if self.rate_limit else 189
                for key, value in self._rate_headers(remaining).items():
                    response.headers.setdefault(key, value)
            return response

        @app.post("/crm/v3/objects/<object_type>/batch/upsert")
        def batch_upsert(object_type: str) -> Any:
            if (early := self._before()) or (early := self._shape("BatchInputSimplePublicObjectBatchInputUpsert")):
                return early
            if object_type not in OBJECT_TYPES:
                return self._error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
            results = []
            with self.lock:
                for item in request.get_json()["inputs"]:
                    id_property = item.get("idProperty") or "hs_object_id"
                    if id_property != "hs_object_id" and not (
                            id_property in self.properties[object_type]
                            and self.properties[object_type][id_property].unique):
                        return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
                    existing = self._find(object_type, item["id"], id_property)
                    properties = dict(item["properties"])
                    if existing is None:
                        if id_property != "hs_object_id":
                            properties[id_property] = item["id"]
                        created = self._create(object_type, properties, [])
                        if isinstance(created, tuple):
                            return created
                        self.search_index.written(object_type, created["id"], created)
                        results.append({**self._public(created), "new": True})
                    else:
                        error = self._validate_properties(object_type, properties, exclude=existing["id"])
                        if error:
                            return error
                        before = copy.deepcopy(existing)
                        existing["properties"].update(properties)
                        existing["updatedAt"] = _now()
                        self.search_index.written(object_type, existing["id"], existing, before=before)
                        results.append({**self._public(existing), "new": False})
            return jsonify({"status": "COMPLETE", "results": results, "startedAt": _now(), "completedAt": _now()}), 200

        @app.post("/crm/v3/objects/<object_type>")
        def create(object_type: str) -> Any:
            if (early := self._before()) or (early := self._shape("SimplePublicObjectInputForCreate")):
                return early
            if object_type not in OBJECT_TYPES:
                return self._error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
            body = request.get_json()
            with self.lock:
                created = self._create(object_type, body["properties"], body.get("associations") or [])
                if isinstance(created, tuple):
                    return created
                self.search_index.written(object_type, created["id"], created)
            return jsonify(self._public(created)), 201

        @app.route("/crm/v3/objects/<object_type>/<object_id>", methods=["GET", "PATCH", "DELETE"])
        def one(object_type: str, object_id: str) -> Any:
            if early := self._before():
                return early
            if request.method == "PATCH" and (early := self._shape("SimplePublicObjectInput")):
                return early
            with self.lock:
                obj = self._find(object_type, object_id, request.args.get("idProperty"))
                if obj is None:
                    return self._error(404, "Object not found. objectId are usually numeric.", "OBJECT_NOT_FOUND")
                before = copy.deepcopy(obj)
                if request.method == "DELETE":
                    obj["archived"] = True
                    self.search_index.written(object_type, obj["id"], obj, before=before)
                    return "", 204
                if request.method == "PATCH":
                    properties = request.get_json()["properties"]
                    error = self._validate_properties(object_type, properties, exclude=obj["id"])
                    if error:
                        return error
                    obj["properties"].update(properties)
                    obj["updatedAt"] = _now()
                    self.search_index.written(object_type, obj["id"], obj, before=before)
                wanted = request.args.get("properties")
                return jsonify(self._public(obj, wanted.split(",") if wanted else None)), 200

        @app.post("/crm/v3/objects/contacts/gdpr-delete")
        def gdpr_delete() -> Any:
            if (early := self._before()) or (early := self._shape("PublicGdprDeleteInput", "hubspot.crm.contacts.models")):
                return early
            body = request.get_json()
            with self.lock:
                obj = self._find("contacts", body["objectId"], body.get("idProperty"))
                if obj is None:
                    return self._error(404, "Object not found", "OBJECT_NOT_FOUND")
                del self.objects["contacts"][obj["id"]]
                self.search_index.written("contacts", obj["id"], None, before=obj)
            return "", 204

        @app.post("/crm/v3/objects/<object_type>/search")
        def search(object_type: str) -> Any:
            if (early := self._before()) or (early := self._shape("PublicObjectSearchRequest")):
                return early
            body = request.get_json()
            with self.lock:
                found = []
                for obj in self.search_index.visible(object_type, self.objects.get(object_type, {})):
                    if obj["archived"]:
                        continue
                    for group in body.get("filterGroups") or [{"filters": []}]:
                        if all(_matches(_value(obj, f["propertyName"]), f) for f in group["filters"]):
                            found.append(obj)
                            break
                limit = body.get("limit") or 10
                results = [self._public(o, body.get("properties") or None) for o in found[:limit]]
            return jsonify({"total": len(found), "results": results}), 200

        @app.post("/crm/v3/objects/<object_type>/batch/read")
        def batch_read(object_type: str) -> Any:
            if (early := self._before()) or (early := self._shape("BatchReadInputSimplePublicObjectId")):
                return early
            if object_type not in OBJECT_TYPES:
                return self._error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
            body = request.get_json()
            wanted = body.get("properties") or None
            with self.lock:
                results, missing = [], []
                for item in body["inputs"]:
                    obj = self._find(object_type, str(item["id"]), body.get("idProperty"))
                    if obj is None:
                        missing.append(str(item["id"]))
                    else:
                        results.append(self._public(obj, wanted))
            answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": _now(),
                                      "completedAt": _now()}
            if missing:  # HubSpot answers 207 with the ids it could not find
                answer |= {"numErrors": 1, "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                                       "message": "Could not get some objects, they may be deleted "
                                                                  "or not exist.", "context": {"ids": missing}}]}
            return jsonify(answer), 207 if missing else 200

        @app.get("/crm/v4/objects/<object_type>/<object_id>/associations/<to_object_type>")
        def associations(object_type: str, object_id: str, to_object_type: str) -> Any:
            if early := self._before():
                return early
            if object_type not in OBJECT_TYPES or to_object_type not in OBJECT_TYPES:
                return self._error(400, f"Unable to infer object type from: {to_object_type}", "VALIDATION_ERROR")
            limit = int(request.args.get("limit") or 500)
            after = int(request.args.get("after") or 0)
            with self.lock:
                obj = self._find(object_type, object_id, None)
                if obj is None:
                    return self._error(404, f"{object_type} {object_id} not found", "OBJECT_NOT_FOUND")
                ids = [i for i in obj["associations"].get(to_object_type, [])
                       if self._find(to_object_type, i, None) is not None]
            type_id = ASSOCIATION_TYPES.get((object_type, to_object_type), 0)
            page = ids[after:after + limit]
            results = [{"toObjectId": int(i), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]} for i in page]
            paging = {"next": {"after": str(after + limit), "link": None}} if after + limit < len(ids) else None
            return jsonify({"results": results, **({"paging": paging} if paging else {})}), 200

        @app.route("/crm/v3/properties/<object_type>", methods=["GET", "POST"])
        def properties(object_type: str) -> Any:
            if early := self._before():
                return early
            if object_type not in self.properties:
                return self._error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
            if request.method == "GET":
                return jsonify({"results": [p.as_json() for p in self.properties[object_type].values()]}), 200
            if early := self._shape("PropertyCreate", "hubspot.crm.properties.models"):
                return early
            body = request.get_json()
            with self.lock:
                if body["name"] in self.properties[object_type]:
                    return self._error(409, f"Property named '{body['name']}' already exists.", "CONFLICT")
                if body["groupName"] not in self.groups[object_type]:
                    return self._error(400, f"group {body['groupName']} does not exist", "VALIDATION_ERROR")
                prop = Property(body["name"], body["label"], body["type"], body["fieldType"], body["groupName"],
                                bool(body.get("hasUniqueValue")), [o["value"] for o in body.get("options") or []])
                self.properties[object_type][prop.name] = prop
            return jsonify(prop.as_json()), 201

        @app.route("/crm/v3/properties/<object_type>/<name>", methods=["GET", "PATCH"])
        def property_one(object_type: str, name: str) -> Any:
            if early := self._before():
                return early
            prop = self.properties.get(object_type, {}).get(name)
            if prop is None:
                return self._error(404, f"Property {name} does not exist", "OBJECT_NOT_FOUND")
            if request.method == "PATCH":
                if early := self._shape("PropertyUpdate", "hubspot.crm.properties.models"):
                    return early
                body = request.get_json()
                with self.lock:
                    if "options" in body:
                        prop.options = [o["value"] for o in body["options"]]
            return jsonify(prop.as_json()), 200

        @app.post("/crm/v3/properties/<object_type>/groups")
        def groups(object_type: str) -> Any:
            if (early := self._before()) or (early := self._shape("PropertyGroupCreate", "hubspot.crm.properties.models")):
                return early
            name = request.get_json()["name"]
            with self.lock:
                if name in self.groups[object_type]:
                    return self._error(409, f"A property group named '{name}' already exists.", "CONFLICT")
                self.groups[object_type].add(name)
            return jsonify({"name": name, "label": request.get_json()["label"], "displayOrder": -1,
                            "archived": False}), 201

        @app.get("/crm/v3/pipelines/<object_type>")
        def pipelines(object_type: str) -> Any:
            if early := self._before():
                return early
            results = [{**p, "displayOrder": 0, "archived": False, "createdAt": "2026-01-01T00:00:00Z",
                        "updatedAt": "2026-01-01T00:00:00Z",
                        "stages": [{**s, "displayOrder": i, "metadata": {}, "archived": False,
                                    "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
                                    "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"}
                                   for i, s in enumerate(p["stages"])]}
                       for p in self.pipelines.get(object_type, [])]
            return jsonify({"results": results}), 200

        @app.get("/crm/v3/owners/")
        def owners() -> Any:
            if early := self._before():
                return early
            return jsonify({"results": [{**o, "createdAt": "2026-01-01T00:00:00Z", "updatedAt":
                                         "2026-01-01T00:00:00Z"} for o in self.owners]}), 200

        @app.get("/_emulator/objects/<object_type>")
        def list_objects(object_type: str) -> Any:
            return jsonify(self.records(object_type) if object_type in self.objects else []), 200

        @app.get("/_emulator/view")
        def view() -> Any:
            return jsonify(self.agent_view()), 200

        @app.get("/_emulator/calls")
        def list_calls() -> Any:
            with self.lock:
                return jsonify(list(self.calls)[-200:]), 200

        return app


_VIEW_CONTACT = ("phone", "email", "country", "chat2crm_contact_key", "chat2crm_language", "chat2crm_channel",
                 "chat2crm_last_campaign", "chat2crm_opted_out")


def _value(obj: dict[str, Any], name: str) -> Any:
    """A property, or an association (``associations.deal`` matches any associated deal id)."""
    if name.startswith("associations."):
        return obj["associations"].get(name.split(".", 1)[1] + "s", [])
    return obj["properties"].get(name)


def _matches(value: Any, flt: dict[str, Any]) -> bool:
    if isinstance(value, list):  # association ids
        return str(flt.get("value")) in value
    operator = flt.get("operator", "EQ")
    wanted = flt.get("value")
    if operator == "EQ":
        return value is not None and str(value).lower() == str(wanted).lower()
    if operator == "NEQ":
        return value is None or str(value).lower() != str(wanted).lower()
    if operator == "HAS_PROPERTY":
        return value not in (None, "")
    if operator == "CONTAINS_TOKEN":
        return value is not None and re.search(re.escape(str(wanted).strip("*")), str(value), re.I) is not None
    if operator == "IN":
        return value in (flt.get("values") or [])
    return False


def create_app(access_token: str = "pat-demo", **kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator; the emulator is ``app.config['EMULATOR']``."""
    emulator = HubSpotEmulator(access_token, **kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
