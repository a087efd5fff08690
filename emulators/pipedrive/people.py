"""The emulated Pipedrive operations on people: persons (v2) and their search, organizations (v2), and
the person and deal field definitions (v2)."""

from __future__ import annotations

import copy
from typing import Any

from flask import Response, request

from emulators.pipedrive.state import PipedriveState, timestamp


class PeopleOperations(PipedriveState):
    """Persons, organizations and field definitions (each ``_op_<operationId>`` answers one operation)."""

    # -- persons (v2) --------------------------------------------------------------------------
    def _person_values(self, body: dict[str, Any], person: dict[str, Any] | None) -> Response | dict[str, Any]:
        if "custom_fields" in body and (problem := self._check_custom("person", body["custom_fields"] or {})):
            return self._error(400, problem, error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        if body.get("org_id") is not None and self._live("organizations", body["org_id"]) is None:
            return self._error(400, "org_id: organization not found", error_info="Validation failed.")
        values = {k: v for k, v in body.items() if k != "custom_fields"}
        custom = {**((person or {}).get("custom_fields") or {}), **(body.get("custom_fields") or {})}
        return {**values, "custom_fields": custom}

    def _op_addPerson(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if not body.get("name"):
            return self._error(400, "Name must be given.", error_info="Validation failed.")
        values = self._person_values(body, None)
        if isinstance(values, Response):
            return values
        pid = next(self.ids)
        now = timestamp()
        first, _, last = str(body["name"]).partition(" ")
        person = {"id": pid, "name": body["name"], "first_name": first, "last_name": last, "owner_id": 1,
                  "org_id": None, "phones": [], "emails": [], "label_ids": [], "visible_to": 3, "add_time": now,
                  "update_time": now, "is_deleted": False, **values}
        self.objects["persons"][str(pid)] = person
        self.search_index.written("persons", pid, person)
        return self._ok(self._person_out(person))

    def _op_updatePerson(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        person = self._live("persons", params["id"])
        if person is None:
            return self._error(404, "Person not found", error_info="Object was not found.")
        values = self._person_values(body, person)
        if isinstance(values, Response):
            return values
        before = copy.deepcopy(person)
        person.update(values)
        person["update_time"] = timestamp()
        self.search_index.written("persons", person["id"], person, before=before)
        return self._ok(self._person_out(person))

    def _op_getPerson(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        person = self._live("persons", params["id"])
        if person is None:
            return self._error(404, "Person not found", error_info="Object was not found.")
        return self._ok(self._person_out(person))

    def _op_deletePerson(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        person = self._live("persons", params["id"])
        if person is None:
            return self._error(404, "Person not found", error_info="Object was not found.")
        before = copy.deepcopy(person)
        person["is_deleted"] = True
        self.search_index.written("persons", person["id"], person, before=before)
        return self._ok({"id": person["id"]})

    def _op_searchPersons(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        term = args["term"]
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        fields = (args.get("fields") or "custom_fields,email,notes,phone,name").split(",")
        items = []
        for person in self.search_index.visible("persons", self.objects["persons"]):
            if person.get("is_deleted"):
                continue
            custom = self._searchable_custom("person", person.get("custom_fields") or {})
            phones = [p["value"] for p in person.get("phones") or []]
            emails = [e["value"] for e in person.get("emails") or []]
            hit = (("name" in fields and self._matches(term, [person.get("name") or ""], exact))
                   or ("email" in fields and self._matches(term, emails, exact))
                   or ("phone" in fields and self._matches(term, phones, exact, phone=True))
                   or ("custom_fields" in fields and self._matches(term, custom, exact)))
            if hit:
                items.append({"result_score": 1.0, "item": {
                    "id": person["id"], "type": "person", "name": person.get("name"), "phones": phones,
                    "emails": emails, "visible_to": person.get("visible_to", 3), "owner": {"id": person.get("owner_id")},
                    "organization": None, "custom_fields": custom, "notes": []}})
        limit = int(args.get("limit") or 100)
        return self._ok({"items": items[:limit]}, additional={"next_cursor": None})

    def _op_getPersonFields(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.fields["person"], additional={"next_cursor": None})

    def _op_getDealFields(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.fields["deal"], additional={"next_cursor": None})

    def _add_field(self, entity: str, body: dict[str, Any]) -> Response:
        if body["field_type"] in ("enum", "set") and not body.get("options"):
            return self._error(400, "Options are required for enum and set fields", error_info="Validation failed.")
        if any(f["field_name"] == body["field_name"] for f in self.fields[entity]):
            # Pipedrive allows two fields with one name; the relay must not make them, so say so loudly
            with self.lock:
                self.violations.append({"method": request.method, "path": request.path,
                                        "problems": [f"a second {entity} field named {body['field_name']!r}"]})
        code = self.add_field(entity, body["field_name"], body["field_type"],
                              [o["label"] for o in body.get("options") or []])
        return self._ok(next(f for f in self.fields[entity] if f["field_code"] == code))

    def _op_addPersonField(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        return self._add_field("person", body)

    def _op_addDealField(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        return self._add_field("deal", body)

    def _add_options(self, entity: str, code: str, body: list[dict[str, Any]]) -> Response:
        spec = self._names(entity).get(code)
        if spec is None:
            return self._error(404, "Field not found", error_info="Object was not found.")
        if spec["field_type"] not in ("enum", "set"):
            return self._error(400, "Field does not support options", error_info="Validation failed.")
        if not body:
            return self._error(400, "At least one option is required", error_info="Validation failed.")
        added = [{"id": next(self.ids), "label": o["label"]} for o in body]
        spec["options"].extend(added)
        return self._ok(added)

    def _op_addDealFieldOptions(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._add_options("deal", params["field_code"], body)

    def _op_addPersonFieldOptions(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._add_options("person", params["field_code"], body)

    # -- organizations (v2) --------------------------------------------------------------------
    def _op_addOrganization(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if body.get("custom_fields"):
            return self._error(400, f"Custom field with key '{next(iter(body['custom_fields']))}' does not exist",
                               error_info="Validation failed.")
        oid = next(self.ids)
        org = {"id": oid, "name": body["name"], "owner_id": body.get("owner_id", 1), "add_time": timestamp(),
               "update_time": timestamp(), "is_deleted": False, "custom_fields": {}}
        self.objects["organizations"][str(oid)] = org
        self.search_index.written("organizations", oid, org)
        return self._ok(org)

    def _op_searchOrganization(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        items = [{"result_score": 1.0, "item": {"id": o["id"], "type": "organization", "name": o["name"],
                                                "address": None, "visible_to": 3, "owner": {"id": o["owner_id"]},
                                                "custom_fields": [], "notes": []}}
                 for o in self.search_index.visible("organizations", self.objects["organizations"])
                 if not o.get("is_deleted") and self._matches(args["term"], [o["name"]], exact)]
        return self._ok({"items": items}, additional={"next_cursor": None})

    def _op_getPersons(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("persons", args, ("org_id", "owner_id"), out=self._person_out)

    def _op_getOrganizations(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("organizations", args, ("owner_id",))

