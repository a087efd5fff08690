"""What Salesforce's REST API accepts: the request contract the Salesforce emulator enforces.

Salesforce publishes no machine-readable description of its core REST API (only a per-org beta
OpenAPI generator). This contract is written from the REST API Developer Guide
(developer.salesforce.com/docs/atlas.en-us.api_rest.meta) and checked against the request
skeletons of Salesforce's own Postman collection (``salesforce/postman-forcedotcom-2021`` in the
vendor specs): the URL templates of versions, limits, sObject describe, create, rows, rows by
external ID, query, composite and sObject collections.

It has four parts, all pure (no I/O):

- :data:`ROUTES`: the resources (URL templates) and the methods each accepts, matched by
  :func:`match_route`;
- the standard sObjects the relay touches (:func:`standard_objects`, kept in
  :mod:`emulators.salesforce.schema`) with their fields as ``describe`` reports them: type, length,
  required on create, picklist values, external ID;
- checks of one request: :func:`version_problem`, :func:`auth_problem`, :func:`body_problems`
  (fields exist and are writable, required fields present, picklist values allowed, lengths),
  :func:`composite_problems` (at most 25 subrequests, each with ``method``, ``url`` and a unique
  alphanumeric ``referenceId``, references to earlier subrequests only, ``allOrNone`` boolean);
- the SOQL subset (:func:`parse_soql`, kept in :mod:`emulators.salesforce.soql`).

Each problem is a :class:`SalesforceProblem` carrying the error code and fields Salesforce
answers with (``[{"message", "errorCode", "fields"}]``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from emulators.salesforce.schema import CASCADE, CHILD_RELATIONSHIPS, SField, standard_objects
from emulators.salesforce.soql import Query, SoqlError, parse_soql, soql_quote
from emulators.specs import vendor_specs_dir

__all__ = [
    "AUTO_ASSIGN", "CASCADE", "CHILD_RELATIONSHIPS", "COMPOSITE_MAX", "COMPOSITE_MAX_QUERIES", "NEWEST_VERSION",
    "OLDEST_VERSION", "REFERENCE", "REFERENCE_ID", "ROUTES", "SKELETONS", "VERSION", "Query", "SField",
    "SalesforceProblem", "SoqlError", "allowed_methods", "auth_problem", "body_problems", "composite_problems",
    "match_route", "parse_soql", "skeleton_urls", "soql_quote", "standard_objects", "version_problem",
]

#: API versions this emulated org serves (Salesforce keeps about 20 years of versions online)
OLDEST_VERSION = 31.0
NEWEST_VERSION = 65.0
VERSION = re.compile(r"^v(\d{2})\.0$")
#: the largest composite request (subrequests) Salesforce accepts
COMPOSITE_MAX = 25
COMPOSITE_MAX_QUERIES = 5
REFERENCE_ID = re.compile(r"^[A-Za-z0-9_]+$")
REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
AUTO_ASSIGN = re.compile(r"^(TRUE|FALSE|true|false|[a-zA-Z0-9]{15}|[a-zA-Z0-9]{18})$")

#: (name, URL template under /services/data/vXX.X, methods), as in the Postman collection
ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("limits", "/limits", ("GET",)),
    ("query", "/query", ("GET",)),
    ("queryall", "/queryAll", ("GET",)),
    ("composite", "/composite", ("POST",)),
    # sObject collections: only DELETE is emulated (the relay erases with it); the Postman skeleton names
    # the sObject in the path, the REST API guide does not: both are accepted
    ("collections", "/composite/sobjects", ("DELETE",)),
    ("sobjects", "/sobjects", ("GET",)),
    ("describe", "/sobjects/<SOBJECT>/describe", ("GET",)),
    ("basic", "/sobjects/<SOBJECT>", ("GET", "POST")),
    ("row", "/sobjects/<SOBJECT>/<ID>", ("GET", "PATCH", "DELETE", "HEAD")),
    ("by_external_id", "/sobjects/<SOBJECT>/<FIELD>/<VALUE>", ("GET", "PATCH", "DELETE", "HEAD", "POST")),
    ("tooling_create", "/tooling/sobjects/<SOBJECT>", ("POST",)),
    ("tooling_query", "/tooling/query", ("GET",)),
]
#: the Postman skeleton each route was checked against (file under salesforce/postman-forcedotcom-2021)
SKELETONS = {
    "limits": "rest/limit.json", "query": "rest/query.json", "queryall": "rest/queryall.json",
    "composite": "composite/composite.json", "describe": "rest/sobject_describe.json",
    "basic": "rest/sobject_basic_information.json", "row": "rest/sobject_rows.json",
    "by_external_id": "rest/sobject_rows_by_external_id.json", "collections": "composite/sobject_collections_delete.json",
}



@dataclass
class SalesforceProblem:
    """One thing Salesforce would reject, with the answer it gives."""

    message: str
    error_code: str
    fields: list[str] = field(default_factory=list)
    status: int = 400

    def as_json(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.error_code, "fields": list(self.fields)}


def skeleton_urls() -> dict[str, str]:
    """The Postman collection's URL template of each route (for the contract's own test)."""
    base = vendor_specs_dir() / "salesforce" / "postman-forcedotcom-2021"
    return {route: str(json.loads((base / relative).read_text(encoding="utf-8"))["url"])
            for route, relative in SKELETONS.items()}


# -- routes ---------------------------------------------------------------------------------------
def match_route(path: str, objects: set[str]) -> tuple[str, dict[str, str]] | None:
    """The route a path (after ``/services/data/vXX.X``) names, and its variables; None if none does."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["tooling"]:
        if parts[1:2] == ["query"] and len(parts) == 2:
            return "tooling_query", {}
        if parts[1:2] == ["sobjects"] and len(parts) == 3:
            return "tooling_create", {"sobject": parts[2]}
        return None
    if parts in (["limits"], ["query"], ["queryAll"], ["composite"], ["sobjects"]):
        return {"limits": "limits", "query": "query", "queryAll": "queryall", "composite": "composite",
                "sobjects": "sobjects"}[parts[0]], {}
    if parts[:2] == ["composite", "sobjects"] and len(parts) <= 3:
        return "collections", {}
    if parts[:1] != ["sobjects"] or len(parts) < 2:
        return None
    variables = {"sobject": parts[1]}
    if len(parts) == 2:
        return "basic", variables
    if len(parts) == 3 and parts[2] == "describe":
        return "describe", variables
    if len(parts) == 3:
        return "row", {**variables, "id": parts[2]}
    if len(parts) == 4:
        return "by_external_id", {**variables, "field": parts[2], "value": parts[3]}
    return None


def allowed_methods(route: str) -> tuple[str, ...]:
    return next(methods for name, _, methods in ROUTES if name == route)


# -- checks ---------------------------------------------------------------------------------------
def version_problem(version: str) -> SalesforceProblem | None:
    """``vNN.0`` and served by the org."""
    found = VERSION.match(version)
    if not found:
        return SalesforceProblem(f"The requested resource does not exist: version {version!r} is not vNN.0",
                                 "NOT_FOUND", status=404)
    number = float(found.group(1))
    if not OLDEST_VERSION <= number <= NEWEST_VERSION:
        return SalesforceProblem(f"The requested resource does not exist: API version {number} is not served",
                                 "NOT_FOUND", status=404)
    return None


def auth_problem(header: str | None) -> SalesforceProblem | None:
    """An ``Authorization: Bearer <token>`` header is present (whether the token is valid is the org's)."""
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        return SalesforceProblem("Session expired or invalid", "INVALID_SESSION_ID", status=401)
    return None


def body_problems(sobject: str, fields: dict[str, SField], body: Any, *, creating: bool,
                  external_field: str | None = None) -> list[SalesforceProblem]:
    """Why Salesforce would refuse this create/update body of ``sobject``.

    Args:
        sobject: the sObject's API name.
        fields: its fields (describe).
        body: the decoded JSON body.
        creating: a create (required fields apply) rather than an update.
        external_field: for an upsert, the external ID field in the URL (it must not be in the body).
    """
    if not isinstance(body, dict):
        return [SalesforceProblem("The request body must be a JSON object of field values", "JSON_PARSER_ERROR")]
    problems: list[SalesforceProblem] = []
    for name, value in body.items():
        if name == "attributes":
            continue
        spec = fields.get(name)
        lookup = fields.get(name[:-3] + "__c") if name.endswith("__r") else None
        if spec is None and lookup is not None and lookup.type == "reference":
            # a lookup set through the parent's External ID: {"Case__r": {"Ref__c": "1042"}}
            if not (isinstance(value, dict) and len([k for k in value if k != "attributes"]) == 1):
                problems.append(SalesforceProblem(f"{name}: a relationship is set with one External ID field of "
                                                  "the parent", "INVALID_FIELD", [name]))
            continue
        if spec is None:
            problems.append(SalesforceProblem(f"No such column '{name}' on sobject of type {sobject}",
                                              "INVALID_FIELD", [name]))
            continue
        if external_field and name == external_field:
            problems.append(SalesforceProblem(
                f"The external ID field {name} is in the URL; it must not be in the request body", "INVALID_FIELD",
                [name]))
            continue
        if not (spec.createable if creating else spec.updateable):
            problems.append(SalesforceProblem(
                f"Unable to create/update fields: {name}. Please check the security settings of this field and verify "
                "that it is read/write for your profile or permission set.", "INVALID_FIELD_FOR_INSERT_UPDATE",
                [name]))
            continue
        problems.extend(_value_problems(spec, value))
    if creating:
        missing = [f.name for f in fields.values() if f.required and f.name != external_field
                   and body.get(f.name) in (None, "")]
        if missing:
            problems.append(SalesforceProblem(f"Required fields are missing: [{', '.join(missing)}]",
                                              "REQUIRED_FIELD_MISSING", missing))
    return problems


def _value_problems(spec: SField, value: Any) -> list[SalesforceProblem]:
    if value is None:
        if spec.required:
            return [SalesforceProblem(f"Required fields are missing: [{spec.name}]", "REQUIRED_FIELD_MISSING",
                                      [spec.name])]
        return []
    kind = spec.type
    if kind == "boolean":
        # Salesforce's JSON reader takes true/false and the strings "true"/"false"
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            return [SalesforceProblem(f"Cannot deserialize instance of boolean from {type(value).__name__} value "
                                      f"for field {spec.name}", "JSON_PARSER_ERROR", [spec.name])]
        return []
    if kind in ("currency", "double", "int", "percent"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [SalesforceProblem(f"{spec.name}: value not of required type: {value}",
                                      "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])]
        return []
    if not isinstance(value, str):
        return [SalesforceProblem(f"Cannot deserialize instance of string from {type(value).__name__} value for "
                                  f"field {spec.name}", "JSON_PARSER_ERROR", [spec.name])]
    problem = _text_problem(spec, value)
    return [problem] if problem else []


def _text_problem(spec: SField, value: str) -> SalesforceProblem | None:
    """What is wrong with a text value of a field: its format (dates, e-mail, ids), its picklist, its length."""
    kind = spec.type
    if kind == "base64":
        return _base64_problem(spec, value)
    if kind == "date" and not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        return SalesforceProblem(f"{spec.name}: value not of required type: {value}",
                                 "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])
    if kind == "datetime" and not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$",
                                           value):
        return SalesforceProblem(f"{spec.name}: value not of required type: {value}",
                                 "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])
    if kind == "email" and value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        return SalesforceProblem(f"{spec.name}: invalid email address: {value}", "INVALID_EMAIL_ADDRESS",
                                 [spec.name])
    if kind == "reference" and value and not re.match(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$", value):
        return SalesforceProblem(f"{spec.name}: id value of incorrect type: {value}", "MALFORMED_ID", [spec.name])
    if kind == "picklist" and value and spec.picklist and value not in spec.picklist:
        code = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        return SalesforceProblem(f"{spec.label or spec.name}: bad value for restricted picklist field: {value}", code,
                                 [spec.name])
    limit = spec.length
    if kind in ("string", "email", "phone", "textarea", "url", "combobox", "picklist") and limit and len(value) > limit:
        return SalesforceProblem(f"{spec.label or spec.name}: data value too large: {value[:40]}... "
                                 f"(max length={limit})", "STRING_TOO_LONG", [spec.name])
    return None


#: the largest request body Salesforce takes: a base64 file in JSON is at most this (about 37.5 MB of file)
MAX_REQUEST_BYTES = 52_428_800


def _base64_problem(spec: SField, value: str) -> SalesforceProblem | None:
    """A base64 field's value (a file's bytes in a JSON body): valid base64, within the request size."""
    import base64
    import binascii

    if len(value) > MAX_REQUEST_BYTES:
        return SalesforceProblem(f"Maximum size of request reached. Maximum size of request is {MAX_REQUEST_BYTES} "
                                 "bytes.", "JSON_PARSER_ERROR", [spec.name])
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return SalesforceProblem(f"{spec.name}: value not of required type: not base64",
                                 "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])
    return None


def composite_problems(body: Any) -> list[SalesforceProblem]:
    """The shape of a ``POST /composite`` body (not the subrequests' own bodies, checked when they run)."""
    if not isinstance(body, dict):
        return [SalesforceProblem("The composite request body must be a JSON object", "JSON_PARSER_ERROR")]
    problems: list[SalesforceProblem] = []
    unknown = set(body) - {"allOrNone", "collateSubrequests", "compositeRequest"}
    if unknown:
        problems.append(SalesforceProblem(f"Unrecognized field(s) {sorted(unknown)} in the composite request",
                                          "JSON_PARSER_ERROR"))
    for flag in ("allOrNone", "collateSubrequests"):
        if flag in body and not isinstance(body[flag], bool):
            problems.append(SalesforceProblem(f"{flag} must be a boolean", "JSON_PARSER_ERROR"))
    requests_ = body.get("compositeRequest")
    if not isinstance(requests_, list) or not requests_:
        problems.append(SalesforceProblem("compositeRequest must be a non-empty array", "JSON_PARSER_ERROR"))
        return problems
    if len(requests_) > COMPOSITE_MAX:
        problems.append(SalesforceProblem(f"A composite request has at most {COMPOSITE_MAX} subrequests",
                                          "INVALID_FIELD"))
    seen: set[str] = set()
    queries = 0
    for i, sub in enumerate(requests_):
        where = f"compositeRequest[{i}]"
        if not isinstance(sub, dict):
            problems.append(SalesforceProblem(f"{where} must be an object", "JSON_PARSER_ERROR"))
            continue
        problems.extend(_subrequest_problems(where, sub, seen))
        url = str(sub["url"]) if isinstance(sub.get("url"), str) else ""
        if "/query" in url:
            queries += 1
        ref = sub.get("referenceId")
        if isinstance(ref, str):
            seen.add(ref)
    if queries > COMPOSITE_MAX_QUERIES:
        problems.append(SalesforceProblem(f"A composite request has at most {COMPOSITE_MAX_QUERIES} queries",
                                          "INVALID_FIELD"))
    return problems


def _subrequest_problems(where: str, sub: dict[str, Any], seen: set[str]) -> list[SalesforceProblem]:
    """The shape of one composite subrequest; ``seen`` holds the reference ids of the earlier ones."""
    problems: list[SalesforceProblem] = []
    extra = set(sub) - {"method", "url", "referenceId", "body", "httpHeaders"}
    if extra:
        problems.append(SalesforceProblem(f"{where}: unrecognized field(s) {sorted(extra)}", "JSON_PARSER_ERROR"))
    for key in ("method", "url", "referenceId"):
        if not isinstance(sub.get(key), str) or not sub.get(key):
            problems.append(SalesforceProblem(f"{where}: {key} is required", "INVALID_FIELD"))
    ref = sub.get("referenceId")
    if isinstance(ref, str):
        if not REFERENCE_ID.match(ref):
            problems.append(SalesforceProblem(f"{where}: referenceId {ref!r} must be alphanumeric",
                                              "INVALID_FIELD"))
        if ref in seen:
            problems.append(SalesforceProblem(f"{where}: duplicate referenceId {ref!r}", "INVALID_FIELD"))
    if sub.get("method") not in ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"):
        problems.append(SalesforceProblem(f"{where}: method {sub.get('method')!r} is not supported",
                                          "INVALID_FIELD"))
    url = str(sub["url"]) if isinstance(sub.get("url"), str) else ""
    if url and not re.match(r"^/services/data/v\d{2}\.0/", url):
        problems.append(SalesforceProblem(f"{where}: url must start with /services/data/vNN.0/", "INVALID_FIELD"))
    text = json.dumps(sub.get("body")) + url
    for name, _ in REFERENCE.findall(text):
        if name not in seen:
            problems.append(SalesforceProblem(
                f"{where}: the reference @{{{name}}} does not name an earlier subrequest", "INVALID_FIELD"))
    if "body" in sub and sub.get("method") in ("GET", "DELETE", "HEAD"):
        problems.append(SalesforceProblem(f"{where}: a {sub['method']} subrequest has no body", "INVALID_FIELD"))
    return problems
