"""The emulated HubSpot account's state and what a write does to it: property definitions (types,
options, unique values), objects and their associations. :class:`HubSpotState` is the bottom layer
of :class:`~emulators.hubspot.HubSpotEmulator`: it declares the state (set up by the emulator's
constructor), and holds what every route shares: the call's faults, token and rate limit checks,
the request-body check, HubSpot's error shape, and creating and finding objects.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from flask import Response, jsonify, request

from emulators._faults import FaultInjection
from emulators.hubspot.models import MODELS, RequestShapeError, check_model

ASSOCIATION_TYPES = {  # HUBSPOT_DEFINED (from type, to type) → the default (unlabelled) type id
    ("deals", "contacts"): 3, ("contacts", "deals"): 4, ("tickets", "contacts"): 16, ("contacts", "tickets"): 15,
    ("notes", "contacts"): 202, ("notes", "deals"): 214, ("notes", "tickets"): 228, ("tasks", "contacts"): 204,
    ("tasks", "deals"): 216, ("tasks", "tickets"): 230, ("leads", "contacts"): 578, ("notes", "leads"): 854,
    ("tasks", "leads"): 646, ("deals", "companies"): 341, ("companies", "deals"): 342, ("contacts", "companies"): 279,
    ("companies", "contacts"): 280, ("tickets", "companies"): 339, ("companies", "tickets"): 340,
    ("contacts", "notes"): 201, ("deals", "notes"): 213, ("tickets", "notes"): 227, ("leads", "notes"): 855,
    ("contacts", "tasks"): 203, ("deals", "tasks"): 215, ("tickets", "tasks"): 229, ("leads", "tasks"): 647,
}
#: the "primary company" types HubSpot defines beside the unlabelled ones (accepted on create)
PRIMARY_ASSOCIATION_TYPES = {("contacts", "companies"): 1, ("companies", "contacts"): 2, ("deals", "companies"): 5,
                             ("companies", "deals"): 6, ("tickets", "companies"): 26, ("companies", "tickets"): 25}
#: contact properties HubSpot calculates from a phone property for search (read-only)
SEARCHABLE_PHONES = {"phone": "hs_searchable_calculated_phone_number",
                     "mobilephone": "hs_searchable_calculated_mobile_number"}
OBJECT_TYPES = ("contacts", "companies", "deals", "tickets", "leads", "notes", "tasks")


def searchable_number(typed: str) -> str:
    """What HubSpot keeps of a phone number for search (``hs_searchable_calculated_phone_number``): its digits
    without the country code when it has one (``+90 532 123 45 67`` → ``5321234567``), else without a trunk
    ``0`` (``0532 123 45 67`` → ``5321234567``). HubSpot also uses the contact's country for numbers typed without
    one; here they keep their national digits."""
    digits = re.sub(r"\D", "", typed)
    if typed.strip().startswith("+") or digits.startswith("00"):
        try:
            return str(phonenumbers.parse("+" + digits.removeprefix("00"), None).national_number)
        except phonenumbers.NumberParseException:
            pass
    return digits.lstrip("0")


def timestamp() -> str:
    """Now, as HubSpot writes a time (``2026-01-01T09:30:00.000Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Property:
    """A property definition, as ``/crm/v3/properties`` describes it."""

    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group: str = "contactinformation"
    unique: bool = False
    options: list[str] = field(default_factory=list)
    #: HubSpot calculates it; a write to it is refused
    calculated: bool = False

    def as_json(self) -> dict[str, Any]:
        """The property as HubSpot's API describes it."""
        return {"name": self.name, "label": self.label, "type": self.type, "fieldType": self.field_type,
                "groupName": self.group, "hasUniqueValue": self.unique, "hidden": False,
                "options": [{"label": o, "value": o, "displayOrder": i, "hidden": False}
                            for i, o in enumerate(self.options)],
                "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
                "calculated": self.calculated, "externalOptions": False, "formField": not self.calculated,
                "modificationMetadata": {"readOnlyValue": self.calculated, "readOnlyDefinition": self.calculated,
                                         "archivable": not self.calculated}}


#: the labels HubSpot shows for its standard properties (object type → name → label)
STANDARD_LABELS = {
    "contacts": {"firstname": "First Name", "lastname": "Last Name", "email": "Email", "phone": "Phone Number",
                 "mobilephone": "Mobile Phone Number", "company": "Company Name", "country": "Country/Region",
                 "city": "City", "hs_language": "Preferred language", "hubspot_owner_id": "Contact owner",
                 "lifecyclestage": "Lifecycle Stage"},
    "companies": {"name": "Company name", "domain": "Company Domain Name", "country": "Country/Region",
                  "city": "City", "phone": "Phone Number"},
    "deals": {"dealname": "Deal Name", "amount": "Amount", "closedate": "Close Date",
              "description": "Deal Description", "hubspot_owner_id": "Deal owner"},
    "tickets": {"subject": "Ticket name", "content": "Ticket description", "hs_pipeline": "Pipeline",
                "hs_pipeline_stage": "Ticket status", "hs_ticket_priority": "Priority",
                "hubspot_owner_id": "Ticket owner"},
    "leads": {"hs_lead_name": "Lead name", "hs_pipeline": "Pipeline", "hs_pipeline_stage": "Lead stage",
              "hubspot_owner_id": "Lead owner"},
    "notes": {"hs_note_body": "Note body", "hs_timestamp": "Activity date", "hubspot_owner_id": "Activity assigned to",
              "hs_attachment_ids": "Attached file IDs"},
    "tasks": {"hs_task_subject": "Task Title", "hs_task_body": "Notes", "hs_timestamp": "Due date",
              "hs_task_priority": "Priority", "hs_task_status": "Task Status", "hs_task_type": "Task Type",
              "hubspot_owner_id": "Assigned to"},
}


def standard_properties() -> dict[str, dict[str, Property]]:
    """The standard properties of each object type, with HubSpot's labels (custom ones are added by an admin or
    ``crm setup``)."""
    props: dict[str, dict[str, Property]] = {
        object_type: {name: Property(name, label) for name, label in labels.items()}
        for object_type, labels in STANDARD_LABELS.items()}
    props["contacts"]["email"].unique = True
    props["contacts"] |= {n: Property(n, n, calculated=True) for n in SEARCHABLE_PHONES.values()}
    props["deals"] |= {"pipeline": Property("pipeline", "Pipeline", "enumeration", "select", "dealinformation"),
                       "dealstage": Property("dealstage", "Deal Stage", "enumeration", "radio", "dealinformation")}
    return props


class HubSpotState(FaultInjection):
    """The account's state, and what every route of the emulated API shares."""

    access_token: str
    ids: itertools.count[int]
    #: object type → property name → definition
    properties: dict[str, dict[str, Property]]
    #: object type → property group names
    groups: dict[str, set[str]]
    #: object type → id → object (properties, timestamps, archived flag, associations by object type)
    objects: dict[str, dict[str, dict[str, Any]]]
    pipelines: dict[str, list[dict[str, Any]]]
    owners: list[dict[str, Any]]

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

    def _before(self, auth: str = "crm", scopes: tuple[str, ...] = ()) -> tuple[Response, int] | None:
        """Record the call, carry out its fault, check its credentials (``auth``: which kind the route takes,
        see :meth:`_authenticate`) and the rate limit; an error answer, or None to go on."""
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
        if fault == "401":
            return self._invalid_authentication()
        if auth != "none" and (refused := self._authenticate(auth, scopes)) is not None:
            return refused
        with self.lock:
            if not self._fits(self.window, self.rate_limit):
                response, status = self._error(429, "You have reached your ten_secondly_rolling limit.",
                                               "RATE_LIMITS", errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
                response.headers.update(self._rate_headers(0))
                return response, status
        return None

    def _invalid_authentication(self) -> tuple[Response, int]:
        return self._error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                                "oauth-overview", "INVALID_AUTHENTICATION")

    def _authenticate(self, auth: str, scopes: tuple[str, ...]) -> tuple[Response, int] | None:
        """Whether the call's credentials open this route (here: the private app token; the OAuth layer adds
        the app's tokens and its developer API key)."""
        if request.headers.get("Authorization", "") != f"Bearer {self.access_token}":
            return self._invalid_authentication()
        return None

    def _shape(self, model: str, module: str = MODELS) -> tuple[Response, int] | None:
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
            if prop.calculated:
                invalid.append({"isValid": False, "message": f'"{name}" is a read only property; its value cannot '
                                                             f"be set.", "error": "READ_ONLY_VALUE", "name": name})
                continue
            if prop.type == "enumeration" and value != "":
                values = value.split(";") if prop.field_type == "checkbox" else [value]
                bad = [v for v in values if v not in prop.options]
                if bad:
                    invalid.append({"isValid": False, "message": f"{bad[0]} was not one of the allowed options",
                                    "error": "INVALID_OPTION", "name": name})
        if not invalid:
            invalid = self._stage_problems(object_type, properties, exclude)
        if invalid:
            import json

            # HubSpot writes the list as compact JSON inside the message
            listed = json.dumps(invalid, separators=(",", ":"))
            return self._error(400, f"Property values were not valid: {listed}", "VALIDATION_ERROR",
                               errors=[{"message": i["message"], "code": i["error"]} for i in invalid])
        for name, value in properties.items():
            if defs[name].unique and value:
                owner = self._holder(object_type, name, value, exclude)
                if owner is None:
                    continue
                if object_type == "contacts" and name == "email":  # HubSpot's own words for a taken e-mail
                    return self._error(409, f"Contact already exists. Existing ID: {owner}", "CONFLICT")
                return self._error(409, f"A {object_type[:-1]} with {name}={value} already exists. "
                                        f"Existing ID: {owner}", "CONFLICT")
        return None

    def _stage_problems(self, object_type: str, properties: dict[str, Any], object_id: str | None,
                        ) -> list[dict[str, Any]]:
        """A record's stage that is not one of its pipeline's (:mod:`emulators.hubspot.pipelines` knows them)."""
        return []

    def _holder(self, object_type: str, name: str, value: Any, exclude: str | None) -> str | None:
        """The live object (other than ``exclude``) whose unique property ``name`` is ``value``: e-mail addresses
        compared without case, as HubSpot keeps them."""
        wanted = str(value).casefold() if name == "email" else value
        for oid, obj in self.objects[object_type].items():
            have = obj["properties"].get(name)
            if name == "email" and have is not None:
                have = str(have).casefold()
            if oid != exclude and not obj["archived"] and have == wanted:
                return oid
        return None

    @staticmethod
    def _calculate(object_type: str, obj: dict[str, Any]) -> None:
        """Recalculate what HubSpot derives from a contact's phone numbers for search."""
        if object_type != "contacts":
            return
        for source, target in SEARCHABLE_PHONES.items():
            value = searchable_number(str(obj["properties"].get(source) or ""))
            if value:
                obj["properties"][target] = value
            else:
                obj["properties"].pop(target, None)

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
                to_type = next((t for (f, t), i in [*ASSOCIATION_TYPES.items(), *PRIMARY_ASSOCIATION_TYPES.items()]
                                if f == object_type and i == spec["associationTypeId"]), None)
                if spec["associationCategory"] != "HUBSPOT_DEFINED" or to_type is None:
                    return self._error(400, f"association type {spec['associationTypeId']} is not valid for "
                                            f"{object_type}", "VALIDATION_ERROR")
                if self._find(to_type, to_id, None) is None:
                    return self._error(404, f"{to_type} {to_id} not found", "OBJECT_NOT_FOUND")
                targets.append((to_type, to_id))
        oid = str(next(self.ids))
        now = timestamp()
        obj = {"id": oid, "properties": {**properties, "hs_object_id": oid, "createdate": now}, "createdAt": now,
               "updatedAt": now, "archived": False, "associations": {}}
        self._calculate(object_type, obj)
        self.objects[object_type][oid] = obj
        for to_type, to_id in targets:
            obj["associations"].setdefault(to_type, []).append(to_id)  # type: ignore[attr-defined]
            self.objects[to_type][to_id]["associations"].setdefault(object_type, []).append(oid)
        return obj
