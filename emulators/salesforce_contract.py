"""What Salesforce's REST API accepts: the request contract the Salesforce emulator enforces.

Salesforce publishes no machine-readable description of its core REST API (only a per-org beta
OpenAPI generator). This contract is written from the REST API Developer Guide
(developer.salesforce.com/docs/atlas.en-us.api_rest.meta) and checked against the request
skeletons of Salesforce's own Postman collection (``salesforce/postman-forcedotcom-2021`` in the
vendor specs): the URL templates of versions, limits, sObject describe, create, rows, rows by
external ID, query, composite and sObject collections.

It has three parts, all pure (no I/O):

- :data:`ROUTES`: the resources (URL templates) and the methods each accepts, matched by
  :func:`match_route`;
- the standard sObjects the relay touches (:func:`standard_objects`) with their fields as
  ``describe`` reports them: type, length, required on create, picklist values, external ID;
- checks of one request: :func:`version_problem`, :func:`auth_problem`, :func:`body_problems`
  (fields exist and are writable, required fields present, picklist values allowed, lengths),
  :func:`composite_problems` (at most 25 subrequests, each with ``method``, ``url`` and a unique
  alphanumeric ``referenceId``, references to earlier subrequests only, ``allOrNone`` boolean).

Each problem is a :class:`SalesforceProblem` carrying the error code and fields Salesforce
answers with (``[{"message", "errorCode", "fields"}]``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from emulators.specs import vendor_specs_dir

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


@dataclass
class SField:
    """One field of an sObject, as ``describe`` reports it."""

    name: str
    type: str = "string"
    length: int = 255
    label: str = ""
    required: bool = False  # createable, not nillable, not defaulted on create
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    picklist: list[str] = field(default_factory=list)
    default: str | None = None
    restricted: bool = False
    reference_to: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label or self.name, "type": self.type, "length": self.length,
            "custom": self.custom, "externalId": self.external_id, "unique": self.unique,
            "caseSensitive": self.case_sensitive, "idLookup": self.external_id or self.name == "Id",
            "nillable": not self.required and self.name != "Id", "createable": self.createable,
            "updateable": self.updateable, "defaultedOnCreate": self.default is not None,
            "restrictedPicklist": self.restricted, "referenceTo": list(self.reference_to),
            "picklistValues": [{"active": True, "defaultValue": v == self.default, "label": v, "validFor": None,
                                "value": v} for v in self.picklist],
        }


def _f(name: str, kind: str = "string", length: int = 255, **kw: Any) -> SField:
    return SField(name=name, type=kind, length=length, **kw)


_SYSTEM = [_f("Id", "id", 18, createable=False, updateable=False),
           _f("CreatedDate", "datetime", 0, createable=False, updateable=False),
           _f("LastModifiedDate", "datetime", 0, createable=False, updateable=False),
           _f("IsDeleted", "boolean", 0, createable=False, updateable=False)]
LEAD_STATUS = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"]
CASE_STATUS = ["New", "Working", "Escalated", "Closed"]
OPPORTUNITY_STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                      "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
#: object → (key prefix, fields)
_OBJECTS: dict[str, tuple[str, list[SField]]] = {
    "Lead": ("00Q", [
        _f("FirstName", length=40), _f("LastName", length=80, required=True), _f("Company", required=True),
        _f("Email", "email", 80), _f("Phone", "phone", 40), _f("MobilePhone", "phone", 40), _f("Title", length=128),
        _f("Country", length=80), _f("City", length=40), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=LEAD_STATUS, default=LEAD_STATUS[0]),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("OwnerId", "reference", 18, reference_to=["Group", "User"], default="005"),
        _f("IsConverted", "boolean", 0, createable=False, updateable=False)]),
    "Contact": ("003", [
        _f("FirstName", length=40), _f("LastName", length=80, required=True), _f("Email", "email", 80),
        _f("Phone", "phone", 40), _f("MobilePhone", "phone", 40), _f("MailingCountry", length=80),
        _f("MailingCity", length=40), _f("Description", "textarea", 32000), _f("Title", length=128),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Account": ("001", [_f("Name", required=True), _f("Phone", "phone", 40), _f("BillingCountry", length=80),
                        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Case": ("500", [
        _f("Subject"), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=CASE_STATUS, default="New"),
        _f("Origin", "picklist", 255, picklist=["Phone", "Email", "Web"]),
        _f("Priority", "picklist", 255, picklist=["High", "Medium", "Low"], default="Medium"),
        _f("Type", "picklist", 255, picklist=["Question", "Problem", "Feature Request"]),
        _f("ContactId", "reference", 18, reference_to=["Contact"]),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("SuppliedName", length=80), _f("SuppliedEmail", "email", 80), _f("SuppliedPhone", length=40),
        _f("OwnerId", "reference", 18, reference_to=["Group", "User"], default="005")]),
    "Opportunity": ("006", [
        _f("Name", length=120, required=True), _f("StageName", "picklist", 255, picklist=OPPORTUNITY_STAGES,
                                                    required=True),
        _f("CloseDate", "date", 0, required=True), _f("Amount", "currency", 0), _f("Description", "textarea", 32000),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("CampaignId", "reference", 18, reference_to=["Campaign"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "OpportunityContactRole": ("00K", [
        _f("OpportunityId", "reference", 18, required=True, updateable=False, reference_to=["Opportunity"]),
        _f("ContactId", "reference", 18, reference_to=["Contact"]), _f("IsPrimary", "boolean", 0),
        _f("Role", "picklist", 255, picklist=["Business User", "Decision Maker", "Economic Buyer",
                                              "Economic Decision Maker", "Evaluator", "Executive Sponsor",
                                              "Influencer", "Technical Buyer", "Other"])]),
    "Task": ("00T", [
        _f("Subject", "combobox"), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=["Not Started", "In Progress", "Completed", "Waiting on someone else",
                                                "Deferred"], default="Not Started"),
        _f("Priority", "picklist", 255, picklist=["High", "Normal", "Low"], default="Normal"),
        _f("ActivityDate", "date", 0),
        _f("WhoId", "reference", 18, reference_to=["Contact", "Lead"]),
        _f("WhatId", "reference", 18, reference_to=["Account", "Case", "Opportunity", "Campaign"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Note": ("002", [
        _f("ParentId", "reference", 18, required=True, updateable=False,
           reference_to=["Account", "Case", "Contact", "Lead", "Opportunity"]),
        _f("Title", length=80, required=True), _f("Body", "textarea", 32000), _f("IsPrivate", "boolean", 0),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Campaign": ("701", [_f("Name", length=80, required=True), _f("IsActive", "boolean", 0),
                         _f("Status", "picklist", 255, picklist=["Planned", "In Progress", "Completed", "Aborted"]),
                         _f("Type", "picklist", 255, picklist=["Advertisement", "Email", "Social Media", "Other"])]),
    "CampaignMember": ("00v", [
        _f("CampaignId", "reference", 18, required=True, updateable=False, reference_to=["Campaign"]),
        _f("LeadId", "reference", 18, updateable=False, reference_to=["Lead"]),
        _f("ContactId", "reference", 18, updateable=False, reference_to=["Contact"]),
        _f("Status", "picklist", 255, picklist=["Sent", "Responded"], default="Sent")]),
    "User": ("005", [_f("Name", length=121, createable=False), _f("Username", length=80, createable=False),
                     _f("Email", "email", 128, createable=False), _f("IsActive", "boolean", 0, createable=False)]),
}
#: parent object → child relationship name → (child object, the child's lookup field)
CHILD_RELATIONSHIPS: dict[str, dict[str, tuple[str, str]]] = {
    "Lead": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhoId"), "CampaignMembers": ("CampaignMember", "LeadId")},
    "Contact": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhoId"),
                "CampaignMembers": ("CampaignMember", "ContactId"), "Cases": ("Case", "ContactId"),
                "OpportunityContactRoles": ("OpportunityContactRole", "ContactId")},
    "Account": {"Notes": ("Note", "ParentId"), "Contacts": ("Contact", "AccountId"), "Cases": ("Case", "AccountId")},
    "Case": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhatId")},
    "Opportunity": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhatId"),
                    "OpportunityContactRoles": ("OpportunityContactRole", "OpportunityId")},
    "Campaign": {"CampaignMembers": ("CampaignMember", "CampaignId")},
}
#: what a deletion takes with it (Salesforce deletes a record's notes, activities and memberships)
CASCADE = {"Lead": ("Notes", "Tasks", "CampaignMembers"),
           "Contact": ("Notes", "Tasks", "CampaignMembers", "OpportunityContactRoles"),
           "Case": ("Notes", "Tasks"), "Opportunity": ("Notes", "Tasks", "OpportunityContactRoles"),
           "Campaign": ("CampaignMembers",)}


def standard_objects() -> dict[str, tuple[str, dict[str, SField]]]:
    """A fresh copy of the standard sObjects: name → (key prefix, fields by name)."""
    out: dict[str, tuple[str, dict[str, SField]]] = {}
    for name, (prefix, fields) in _OBJECTS.items():
        out[name] = (prefix, {f.name: SField(**{**f.__dict__, "picklist": list(f.picklist),
                                               "reference_to": list(f.reference_to)})
                              for f in [*_SYSTEM, *fields]})
    return out


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
    if kind == "date" and not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        return [SalesforceProblem(f"{spec.name}: value not of required type: {value}",
                                  "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])]
    if kind == "datetime" and not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$",
                                           value):
        return [SalesforceProblem(f"{spec.name}: value not of required type: {value}",
                                  "INVALID_TYPE_ON_FIELD_IN_RECORD", [spec.name])]
    if kind == "email" and value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        return [SalesforceProblem(f"{spec.name}: invalid email address: {value}", "INVALID_EMAIL_ADDRESS",
                                  [spec.name])]
    if kind == "reference" and value and not re.match(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$", value):
        return [SalesforceProblem(f"{spec.name}: id value of incorrect type: {value}", "MALFORMED_ID", [spec.name])]
    if kind == "picklist" and value and spec.picklist and value not in spec.picklist:
        code = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        return [SalesforceProblem(f"{spec.label or spec.name}: bad value for restricted picklist field: {value}", code,
                                  [spec.name])]
    limit = spec.length
    if kind in ("string", "email", "phone", "textarea", "url", "combobox", "picklist") and limit and len(value) > limit:
        return [SalesforceProblem(f"{spec.label or spec.name}: data value too large: {value[:40]}... "
                                  f"(max length={limit})", "STRING_TOO_LONG", [spec.name])]
    return []


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
        if "/query" in url:
            queries += 1
        text = json.dumps(sub.get("body")) + url
        for name, _ in REFERENCE.findall(text):
            if name not in seen:
                problems.append(SalesforceProblem(
                    f"{where}: the reference @{{{name}}} does not name an earlier subrequest", "INVALID_FIELD"))
        if "body" in sub and sub.get("method") in ("GET", "DELETE", "HEAD"):
            problems.append(SalesforceProblem(f"{where}: a {sub['method']} subrequest has no body", "INVALID_FIELD"))
        if isinstance(ref, str):
            seen.add(ref)
    if queries > COMPOSITE_MAX_QUERIES:
        problems.append(SalesforceProblem(f"A composite request has at most {COMPOSITE_MAX_QUERIES} queries",
                                          "INVALID_FIELD"))
    return problems


# -- SOQL (the subset the relay uses) -------------------------------------------------------------
class SoqlError(ValueError):
    """A query outside the subset, or wrong: carries Salesforce's error code."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Query:
    """A parsed ``SELECT … FROM … [WHERE …] [LIMIT n]`` (subqueries are Query too)."""

    fields: list[str]
    subqueries: list[Query]
    sobject: str
    where: Any = None
    limit: int | None = None


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|=|\(|\)|,)"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))")
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "LIMIT", "NULL", "TRUE", "FALSE", "ORDER", "BY", "GROUP",
             "HAVING", "LIKE", "IN", "NOT", "OFFSET", "WITH", "FOR", "TYPEOF", "USING", "ASC", "DESC", "NULLS"}
_UNSUPPORTED = {"ORDER", "GROUP", "HAVING", "LIKE", "IN", "NOT", "OFFSET", "WITH", "FOR", "TYPEOF", "USING"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if not found or found.end() == pos:
            raise SoqlError(f"unexpected token: '{text[pos:pos + 20].strip()}'")
        kind = found.lastgroup or ""
        value = found.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = found.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (value is not None and got[1] != value):
            raise SoqlError(f"unexpected token: '{got[1] or 'end of query'}' (expected {value or kind})")
        self.i += 1
        return got[1]

    def query(self, sub: bool = False) -> Query:
        self.take("kw", "SELECT")
        fields: list[str] = []
        subs: list[Query] = []
        while True:
            if self.peek() == ("op", "("):
                self.take("op", "(")
                subs.append(self.query(sub=True))
                self.take("op", ")")
            else:
                fields.append(self.take("word"))
            if self.peek() == ("op", ","):
                self.take("op", ",")
                continue
            break
        self.take("kw", "FROM")
        sobject = self.take("word")
        where = None
        limit = None
        if self.peek() == ("kw", "WHERE"):
            self.take("kw", "WHERE")
            where = self.disjunction()
        if self.peek() == ("kw", "LIMIT"):
            self.take("kw", "LIMIT")
            limit = int(self.take("num"))
        if self.peek()[0] == "kw" and self.peek()[1] in _UNSUPPORTED:
            raise SoqlError(f"{self.peek()[1]} is not supported by this org's emulator")
        if not sub and self.peek()[0] != "end":
            raise SoqlError(f"unexpected token: '{self.peek()[1]}'")
        return Query(fields, subs, sobject, where, limit)

    def disjunction(self) -> Any:
        terms = [self.conjunction()]
        while self.peek() == ("kw", "OR"):
            self.take("kw", "OR")
            terms.append(self.conjunction())
        return ("or", terms) if len(terms) > 1 else terms[0]

    def conjunction(self) -> Any:
        terms = [self.factor()]
        while self.peek() == ("kw", "AND"):
            self.take("kw", "AND")
            terms.append(self.factor())
        return ("and", terms) if len(terms) > 1 else terms[0]

    def factor(self) -> Any:
        if self.peek() == ("op", "("):
            self.take("op", "(")
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        name = self.take("word")
        kind, op = self.peek()
        if kind == "kw" and op in _UNSUPPORTED:
            raise SoqlError(f"{op} is not supported by this org's emulator")
        op = self.take("op")
        if op not in ("=", "!="):
            raise SoqlError(f"unexpected token: '{op}'")
        kind, raw = self.peek()
        self.i += 1
        value: Any
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "num":
            value = raw
        elif kind == "kw" and raw in ("NULL", "TRUE", "FALSE"):
            value = {"NULL": None, "TRUE": True, "FALSE": False}[raw]
        else:
            raise SoqlError(f"unexpected token: '{raw}'")
        return ("cmp", name, op, value)


def parse_soql(text: str) -> Query:
    """Parse the SOQL subset: SELECT fields and parent-child subqueries, FROM, WHERE (=, !=, AND, OR,
    parentheses), LIMIT.

    Raises:
        SoqlError: ``MALFORMED_QUERY`` for anything else.
    """
    if not text or not text.strip():
        raise SoqlError("empty query")
    return _Parser(text).query()


def soql_quote(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
