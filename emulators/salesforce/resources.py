"""The REST resources of the emulated org that read and write records: sObject describe, rows by id
and by external ID (upsert), sObject collections delete, and custom fields created through the
Tooling API. Each request body is checked against the contract first
(:func:`emulators.salesforce.contract.body_problems`).
"""

from __future__ import annotations

from typing import Any

from emulators.salesforce import contract
from emulators.salesforce.common import Failed, fail, same_value, sf_id
from emulators.salesforce.queries import OrgQueries
from emulators.salesforce.schema import CASCADE, CHILD_RELATIONSHIPS, SField

#: the Tooling API's CustomField types, and the describe type of each
_CUSTOM_FIELD_KINDS = {"Text": "string", "LongTextArea": "textarea", "Checkbox": "boolean", "DateTime": "datetime",
                       "Date": "date", "Url": "url", "Email": "email", "Phone": "phone", "Number": "double",
                       "Picklist": "picklist"}


class OrgResources(OrgQueries):
    """The record resources of the emulated org (routed by :class:`~emulators.salesforce.rest.OrgRest`)."""

    def _checked(self, sobject: str, body: Any, *, creating: bool, external: str | None = None) -> dict[str, Any]:
        problems = contract.body_problems(sobject, self.schema[sobject], body, creating=creating,
                                          external_field=external)
        if problems:
            for problem in problems:
                self._violation(problem)
            raise Failed(problems[0].status, [p.as_json() for p in problems])
        values = {k: v for k, v in body.items() if k != "attributes"}
        for name in [k for k in values if k.endswith("__r")]:
            values[name[:-3] + "__c"] = self._parent_by_external_id(sobject, name, values.pop(name))
        return values

    def _parent_by_external_id(self, sobject: str, name: str, value: dict[str, Any]) -> str:
        """The id of the parent a relationship names by one of its External ID fields."""
        parent = self.schema[sobject][name[:-3] + "__c"].reference_to[0]
        field_name, wanted = next((k, v) for k, v in value.items() if k != "attributes")
        spec = self.schema[parent].get(field_name)
        if spec is None or not spec.external_id:
            self._violation(f"{parent}.{field_name} is not an External ID field")
            raise fail(400, f"Field {field_name} is not an External ID or indexed field for {parent}", "INVALID_FIELD",
                       [name])
        found = [r["Id"] for r in self.objects[parent].values() if same_value(r.get(field_name), wanted,
                                                                               spec.case_sensitive)]
        if len(found) != 1:
            raise fail(400, f"Foreign key external ID: {wanted} not found for field {field_name} in entity {parent}"
                       if not found else f"Foreign key external ID: {wanted} matches multiple {parent} records",
                       "INVALID_FIELD", [name])
        return str(found[0])

    def _row(self, method: str, sobject: str, record: dict[str, Any], args: dict[str, str], body: Any, *,
             version: str, auto_assign: str | None) -> tuple[int, Any, dict[str, str]]:
        if method == "DELETE":
            self._delete(sobject, record["Id"])
            return 204, None, {}
        if method == "PATCH":
            self._update(sobject, record, self._checked(sobject, body, creating=False), auto_assign)
            return 204, None, {}
        wanted = [f.strip() for f in args.get("fields", "").split(",") if f.strip()] or list(self.schema[sobject])
        unknown = [f for f in wanted if f not in self.schema[sobject]]
        if unknown:
            self._violation(f"unknown fields {unknown} on {sobject}")
            raise fail(400, f"No such column '{unknown[0]}' on entity '{sobject}'", "INVALID_FIELD", unknown)
        return 200, self._public(sobject, record, wanted, version), {}

    def _by_external_id(self, method: str, sobject: str, field_name: str, value: str, body: Any, *, version: str,
                        numeric: float, auto_assign: str | None) -> tuple[int, Any, dict[str, str]]:
        blob = self.schema[sobject].get(value)
        if blob is not None and blob.type == "base64" and method in ("GET", "HEAD"):
            # /sobjects/<X>/<id>/<blob field> has the shape of a row by external ID: the field decides
            return self._blob(sobject, field_name, value)
        spec = self.schema[sobject].get(field_name)
        if spec is None or not (spec.external_id or field_name == "Id"):
            self._violation(f"{sobject}.{field_name} is not an External ID field")
            raise fail(404, f"Provided external ID field does not exist or is not accessible: {field_name}",
                       "NOT_FOUND")
        matches = [r for r in self.objects[sobject].values() if same_value(r.get(field_name), value, spec.case_sensitive)]
        if len(matches) > 1:
            return 300, [f"/services/data/{version}/sobjects/{sobject}/{r['Id']}" for r in matches], {}
        if method in ("GET", "HEAD"):
            if not matches:
                raise fail(404, "The requested resource does not exist", "NOT_FOUND")
            return 200, self._public(sobject, matches[0], list(self.schema[sobject]), version), {}
        if method == "DELETE":
            if not matches:
                raise fail(404, "The requested resource does not exist", "NOT_FOUND")
            self._delete(sobject, matches[0]["Id"])
            return 204, None, {}
        if method == "POST":
            self._violation("POST to a row by external ID is not an upsert since v37.0: use PATCH")
            raise fail(405, "HTTP Method 'POST' not allowed. Allowed are HEAD,GET,PATCH,DELETE", "METHOD_NOT_ALLOWED")
        if not matches:
            values = self._checked(sobject, body, creating=True, external=field_name)
            record = self._create(sobject, {**values, field_name: value}, auto_assign)
            return 201, {"id": record["Id"], "success": True, "errors": [], "created": True}, {
                "Location": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}
        values = self._checked(sobject, body, creating=False, external=field_name)
        self._update(sobject, matches[0], values, auto_assign)
        if numeric < 46.0:
            return 204, None, {}
        return 200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}, {}


    def _blob(self, sobject: str, record_id: str, field_name: str) -> tuple[int, Any, dict[str, str]]:
        """A blob field's content (``GET /sobjects/ContentVersion/<id>/VersionData``): the raw bytes."""
        if record_id not in self.objects[sobject] or record_id not in self.blobs:
            raise fail(404, "The requested resource does not exist", "NOT_FOUND")
        return 200, self.blobs[record_id], {}

    def _basic(self, sobject: str, version: str) -> dict[str, Any]:
        custom = sobject.endswith("__c")
        return {"name": sobject, "label": sobject, "custom": custom, "keyPrefix": self.prefixes.get(sobject),
                "createable": sobject != "User", "updateable": True, "deletable": True, "queryable": True,
                "urls": {"sobject": f"/services/data/{version}/sobjects/{sobject}",
                         "describe": f"/services/data/{version}/sobjects/{sobject}/describe",
                         "rowTemplate": f"/services/data/{version}/sobjects/{sobject}/{{ID}}"}}

    def _describe(self, sobject: str, version: str) -> dict[str, Any]:
        children = [{"childSObject": child, "field": lookup, "relationshipName": name, "cascadeDelete":
                     name in CASCADE.get(sobject, ())}
                    for name, (child, lookup) in CHILD_RELATIONSHIPS.get(sobject, {}).items()]
        return {**self._basic(sobject, version), "fields": [f.as_json() for f in self.schema[sobject].values()],
                "childRelationships": children, "recordTypeInfos": []}


    def _collections_delete(self, args: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        ids = [i for i in args.get("ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            self._violation("collections delete needs 1-200 ids")
            raise fail(400, "ids: between 1 and 200 ids", "INVALID_FIELD")
        out = []
        for record_id in ids:
            sobject = self._object_of(record_id)
            if sobject is None:
                out.append({"id": record_id, "success": False, "errors": [{
                    "statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]})
                continue
            self._delete(sobject, record_id)
            out.append({"id": record_id, "success": True, "errors": []})
        return 200, out, {}


    def _tooling_create(self, sobject: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if sobject != "CustomField":
            self._violation(f"tooling sObject {sobject} is not emulated")
            raise fail(404, f"sObject type '{sobject}' is not supported.", "NOT_FOUND")
        if not isinstance(body, dict) or set(body) - {"FullName", "Metadata"} or not isinstance(
                body.get("FullName"), str) or not isinstance(body.get("Metadata"), dict):
            self._violation("CustomField create needs FullName and Metadata")
            raise fail(400, "CustomField: FullName and Metadata are required", "JSON_PARSER_ERROR")
        if not self.can_customize:
            raise fail(403, "Insufficient access rights on cross-reference id", "INSUFFICIENT_ACCESS_OR_READONLY")
        full_name = body["FullName"]
        meta = body["Metadata"]
        owner, _, name = full_name.partition(".")
        if owner not in self.schema or not name.endswith("__c"):
            self._violation(f"CustomField FullName {full_name!r} is not <Object>.<Name>__c")
            raise fail(400, f"Invalid FullName: {full_name}", "INVALID_FIELD")
        kind = _CUSTOM_FIELD_KINDS.get(str(meta.get("type")))
        problems = _custom_field_problems(meta)
        if problems:
            for problem in problems:
                self._violation(f"CustomField {full_name}: {problem}")
            raise fail(400, f"{full_name}: {problems[0]}", "FIELD_INTEGRITY_EXCEPTION")
        if name in self.schema[owner]:
            raise fail(400, f"There is already a field named {name[:-3]} on {owner}.", "DUPLICATE_DEVELOPER_NAME")
        self.schema[owner][name] = SField(
            name=name, type=kind or "string", length=int(meta.get("length") or (0 if kind == "boolean" else 255)),
            label=str(meta["label"]), custom=True, external_id=bool(meta.get("externalId")),
            unique=bool(meta.get("unique")), case_sensitive=bool(meta.get("caseSensitive")))
        field_id = sf_id("00N", next(self.counter))
        self.custom_fields[full_name] = field_id
        return 201, {"id": field_id, "success": True, "errors": [], "warnings": [], "infos": []}, {}


def _custom_field_problems(meta: dict[str, Any]) -> list[str]:
    """Why Salesforce would refuse a CustomField's ``Metadata`` (empty: it would not)."""
    problems = []
    if _CUSTOM_FIELD_KINDS.get(str(meta.get("type"))) is None:
        problems.append(f"type {meta.get('type')!r} is not one of {sorted(_CUSTOM_FIELD_KINDS)}")
    if not meta.get("label"):
        problems.append("label is required")
    if meta.get("type") in ("Text", "LongTextArea") and not isinstance(meta.get("length"), int):
        problems.append("length is required for Text and LongTextArea")
    if meta.get("type") == "Text" and isinstance(meta.get("length"), int) and not 1 <= meta["length"] <= 255:
        problems.append("Text length must be 1-255")
    if meta.get("type") == "LongTextArea" and not isinstance(meta.get("visibleLines"), int):
        problems.append("visibleLines is required for LongTextArea")
    if meta.get("type") == "Checkbox" and meta.get("defaultValue") not in ("true", "false", True, False):
        problems.append("defaultValue is required for Checkbox")
    if meta.get("externalId") and meta.get("type") not in ("Text", "Number", "Email"):
        problems.append("only Text, Number and Email fields can be External IDs")
    return problems
