"""The routes of the emulated HubSpot CRM API (v3 objects, batch reads, updates and upserts, search, GDPR
delete, properties and property groups, owners; v4 association reads and default associations; the pipelines'
from :mod:`emulators.hubspot.pipelines`), as a table of (methods, URL rule, handler) that
:class:`~emulators.hubspot.HubSpotEmulator` gives to Flask.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from flask import jsonify, request

from emulators.hubspot.pipelines import HubSpotPipelineRoutes
from emulators.hubspot.state import ASSOCIATION_TYPES, OBJECT_TYPES, Property, timestamp


class HubSpotRoutes(HubSpotPipelineRoutes):
    """The handlers of the emulated API's routes."""

    def _routes(self) -> list[tuple[tuple[str, ...], str, Callable[..., Any]]]:
        """The API's routes: (methods, URL rule, handler), in the order they are given to Flask."""
        return [
            (("POST",), "/crm/v3/objects/<object_type>/batch/upsert", self._serve_batch_upsert),
            (("POST",), "/crm/v3/objects/<object_type>/batch/update", self._serve_batch_update),
            (("POST",), "/crm/v3/objects/<object_type>", self._serve_create),
            (("GET", "PATCH", "DELETE"), "/crm/v3/objects/<object_type>/<object_id>", self._serve_object),
            (("POST",), "/crm/v3/objects/contacts/gdpr-delete", self._serve_gdpr_delete),
            (("POST",), "/crm/v3/objects/<object_type>/search", self._serve_search),
            (("POST",), "/crm/v3/objects/<object_type>/batch/read", self._serve_batch_read),
            (("GET",), "/crm/v4/objects/<object_type>/<object_id>/associations/<to_object_type>",
             self._serve_associations),
            (("PUT",), "/crm/v4/objects/<object_type>/<object_id>/associations/default/<to_object_type>/<to_object_id>",
             self._serve_default_association),
            (("GET", "POST"), "/crm/v3/properties/<object_type>", self._serve_properties),
            (("GET", "PATCH"), "/crm/v3/properties/<object_type>/<name>", self._serve_property),
            (("POST",), "/crm/v3/properties/<object_type>/groups", self._serve_groups),
            (("GET",), "/crm/v3/owners/", self._serve_owners),
            *self._pipeline_routes(),
        ]

    def _serve_batch_upsert(self, object_type: str) -> Any:
        """Create or update objects by id or by a unique property."""
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
                    self._calculate(object_type, existing)
                    existing["updatedAt"] = timestamp()
                    self.search_index.written(object_type, existing["id"], existing, before=before)
                    results.append({**self._public(existing), "new": False})
        return jsonify({"status": "COMPLETE", "results": results, "startedAt": timestamp(), "completedAt": timestamp()}), 200

    def _serve_batch_update(self, object_type: str) -> Any:
        """Update objects by id (or ``idProperty``), all or none of the valid ones; 207 with the ids not found."""
        if (early := self._before()) or (early := self._shape("BatchInputSimplePublicObjectBatchInput")):
            return early
        if object_type not in OBJECT_TYPES:
            return self._error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
        with self.lock:
            found, missing = [], []
            for item in request.get_json()["inputs"]:
                obj = self._find(object_type, str(item["id"]), item.get("idProperty"))
                if obj is None:
                    missing.append(str(item["id"]))
                    continue
                if error := self._validate_properties(object_type, item["properties"], exclude=obj["id"]):
                    return error
                found.append((obj, item["properties"]))
            for obj, properties in found:
                before = copy.deepcopy(obj)
                obj["properties"].update(properties)
                self._calculate(object_type, obj)
                obj["updatedAt"] = timestamp()
                self.search_index.written(object_type, obj["id"], obj, before=before)
            results = [self._public(obj) for obj, _ in found]
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": timestamp(),
                                  "completedAt": timestamp()}
        if missing:
            answer |= {"numErrors": 1, "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                                   "message": "Could not get some objects, they may be deleted "
                                                              "or not exist.", "context": {"ids": missing}}]}
        return jsonify(answer), 207 if missing else 200

    def _serve_create(self, object_type: str) -> Any:
        """Create one object, with its associations."""
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

    def _serve_object(self, object_type: str, object_id: str) -> Any:
        """Read, update or archive one object (by id or ``idProperty``)."""
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
                self._calculate(object_type, obj)
                obj["updatedAt"] = timestamp()
                self.search_index.written(object_type, obj["id"], obj, before=before)
            wanted = request.args.get("properties")
            return jsonify(self._public(obj, wanted.split(",") if wanted else None)), 200

    def _serve_gdpr_delete(self) -> Any:
        """Delete a contact for good (GDPR)."""
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

    def _serve_search(self, object_type: str) -> Any:
        """Search objects as the (lagging) search index sees them."""
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

    def _serve_batch_read(self, object_type: str) -> Any:
        """Read objects by id or ``idProperty``; 207 with the ids not found."""
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
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": timestamp(),
                                  "completedAt": timestamp()}
        if missing:  # HubSpot answers 207 with the ids it could not find
            answer |= {"numErrors": 1, "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                                   "message": "Could not get some objects, they may be deleted "
                                                              "or not exist.", "context": {"ids": missing}}]}
        return jsonify(answer), 207 if missing else 200

    def _serve_associations(self, object_type: str, object_id: str, to_object_type: str) -> Any:
        """The ids an object is associated with (v4), paged."""
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

    def _serve_default_association(self, object_type: str, object_id: str, to_object_type: str,
                                   to_object_id: str) -> Any:
        """Associate two records by the default (unlabelled) type, both ways; associated already: unchanged."""
        if early := self._before():
            return early
        forward = ASSOCIATION_TYPES.get((object_type, to_object_type))
        backward = ASSOCIATION_TYPES.get((to_object_type, object_type))
        if forward is None or backward is None:
            return self._error(400, f"No default association type from {object_type} to {to_object_type}",
                               "VALIDATION_ERROR")
        with self.lock:
            source, target = self._find(object_type, object_id, None), self._find(to_object_type, to_object_id, None)
            if source is None or target is None:
                missing = object_id if source is None else to_object_id
                return self._error(404, f"No object with id {missing}", "OBJECT_NOT_FOUND")
            for holder, kind, other in ((source, to_object_type, to_object_id), (target, object_type, object_id)):
                ids = holder["associations"].setdefault(kind, [])
                if other not in ids:
                    ids.append(other)
        results = [{"from": {"id": a}, "to": {"id": b}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                                                          "associationTypeId": type_id}}
                   for a, b, type_id in ((object_id, to_object_id, forward), (to_object_id, object_id, backward))]
        return jsonify({"status": "COMPLETE", "results": results, "startedAt": timestamp(),
                        "completedAt": timestamp()}), 200

    def _serve_properties(self, object_type: str) -> Any:
        """List the properties of an object type, or create one."""
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

    def _serve_property(self, object_type: str, name: str) -> Any:
        """Read one property, or update its options."""
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

    def _serve_groups(self, object_type: str) -> Any:
        """Create a property group."""
        if (early := self._before()) or (early := self._shape("PropertyGroupCreate", "hubspot.crm.properties.models")):
            return early
        name = request.get_json()["name"]
        with self.lock:
            if name in self.groups[object_type]:
                return self._error(409, f"A property group named '{name}' already exists.", "CONFLICT")
            self.groups[object_type].add(name)
        return jsonify({"name": name, "label": request.get_json()["label"], "displayOrder": -1,
                        "archived": False}), 201

    def _serve_owners(self) -> Any:
        """The account's owners."""
        if early := self._before():
            return early
        return jsonify({"results": [{**o, "createdAt": "2026-01-01T00:00:00Z", "updatedAt":
                                     "2026-01-01T00:00:00Z"} for o in self.owners]}), 200


def _value(obj: dict[str, Any], name: str) -> Any:
    """A property, or an association (``associations.deal`` matches any associated deal id)."""
    if name.startswith("associations."):
        return obj["associations"].get(name.split(".", 1)[1] + "s", [])
    return obj["properties"].get(name)


def _matches(value: Any, flt: dict[str, Any]) -> bool:
    """Whether a property's value passes one search filter."""
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
