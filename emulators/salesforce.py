"""An emulator of a Salesforce org's REST API and OAuth 2.0 token endpoint, served over HTTPS.

It keeps sObjects (Lead, Contact, Account, Case, Opportunity, Task, Note, Campaign,
CampaignMember, User) in memory with their fields as ``describe`` reports them, and answers the
REST calls the relay makes, with Salesforce's response and error shapes
(``[{"message", "errorCode", "fields"}]``):

- ``POST /services/oauth2/token``: client credentials (the client's id and secret in the form or,
  as simple-salesforce sends them, in HTTP Basic authentication), JWT bearer (the assertion's RS256
  signature is verified against the public key the emulator is given) and username-password
  grants; errors as ``{"error", "error_description"}``;
- ``GET /services/data/`` (versions), ``/limits``, ``/sobjects/<X>/describe``;
- create (``POST /sobjects/<X>``), rows (``GET|PATCH|DELETE /sobjects/<X>/<id>``), rows by
  external ID (``PATCH`` upsert: 201 ``created: true``, 200 ``created: false`` from v46.0, 300
  on several matches), ``GET /query?q=`` (a SOQL subset with parent-child subqueries),
  ``POST /composite`` (subrequests with ``@{ref.field}`` references, ``allOrNone``),
  ``DELETE /composite/sobjects?ids=``, and ``POST /tooling/sobjects/CustomField``.

Every request is checked against :mod:`emulators.salesforce_contract` (written from Salesforce's
documentation and its Postman request skeletons); what Salesforce would refuse is answered as it
would and recorded in ``violations``. Every response carries ``Sforce-Limit-Info:
api-usage=N/M``; past the daily limit (``daily_limit``) or a rolling ``rate_limit`` the org
answers 403 ``REQUEST_LIMIT_EXCEEDED``. The ``Sforce-Auto-Assign`` header of every call is
recorded in ``calls``; a Lead or Case created (or updated) with assignment on gets the owner of the
active assignment rule. The standard duplicate rules run on Lead and Contact saves: with the
default "Allow, alert" action an API save of a match is refused (``DUPLICATES_DETECTED``) unless it
sends ``Sforce-Duplicate-Rule-Header: allowSave=true``.

Fault kinds for :meth:`SalesforceEmulator.fail_next`: ``400``, ``401`` (the credentials are
revoked: this call and the next token grant fail), ``404``, ``409``, ``429`` (Salesforce's
concurrent-request limit: 403 ``REQUEST_LIMIT_EXCEEDED``), ``500``, ``502``, ``503``,
``timeout`` (the call is held ``timeout_seconds``, past the client's timeout, and then carried out, as
Salesforce finishes a request whose client gave up), and ``expired`` (the session expires: 401
``INVALID_SESSION_ID``, a new token works),
``limit`` (the daily API request limit: 403 ``REQUEST_LIMIT_EXCEEDED``), ``duplicates`` (a
duplicate rule blocks the next create or upsert: ``DUPLICATES_DETECTED``, inside a composite
too).

Control endpoints (JSON): ``GET /_emulator/view`` (the org as an agent sees it),
``GET /_emulator/calls``, ``GET /_emulator/objects/<X>``.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flask import Flask, Response, jsonify, request

from emulators import salesforce_contract as contract
from emulators._faults import FaultInjection
from emulators.salesforce_contract import CASCADE, CHILD_RELATIONSHIPS, SalesforceProblem, SField, SoqlError

ORG_ID = "00D5g000004XyzAEAS"
API_USER_ID = "005000000000001AAA"
COORDINATOR_ID = "005000000000002AAA"
ASSIGNMENT_RULE_ID = "01Q000000000001AAA"
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: what the demo's agent view shows of a person, and of a request record (custom fields are shown too)
_PERSON_FIELDS = ("FirstName", "LastName", "Company", "Phone", "Email", "Country", "MailingCountry",
                  "Chat2CRM_Contact_Key__c", "Chat2CRM_Language__c", "Chat2CRM_Channel__c", "Chat2CRM_Opted_Out__c")
_RECORD_FIELDS = ("Subject", "Description", "Origin", "Priority", "LeadSource", "CloseDate")
_TAGS = re.compile(r"<[^>]+>")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id: 15 case-sensitive characters and the 3-character checksum."""
    base = f"{prefix}{number:012d}"[:15]
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(base[chunk * 5:chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _ID_SUFFIX[bits]
    return base + suffix


@dataclass
class SalesforceCredentials:
    """What the emulated org accepts at its token endpoint.

    Args:
        client_id: the connected app's consumer key.
        client_secret: its consumer secret (client credentials and password grants).
        username: the integration user (JWT bearer and password grants).
        password: the user's password; the password grant sends it with ``security_token`` appended.
        security_token: the user's security token.
        jwt_public_key: PEM of the certificate's public key uploaded to the connected app (JWT grant).
    """

    client_id: str = "3MVG9demo-client-id"
    client_secret: str = "demo-client-secret"
    username: str | None = "integration@clinic.example"
    password: str | None = None
    security_token: str | None = None
    jwt_public_key: str | bytes | None = None


@dataclass
class LocalTLS:
    """A local certificate authority's server context and the CA bundle that trusts it."""

    ssl_context: ssl.SSLContext
    ca_bundle: Path
    ca_pem: bytes = field(repr=False, default=b"")


def make_test_tls(directory: Path) -> LocalTLS:
    """Make a test CA with ``trustme``, a server certificate for 127.0.0.1 and localhost, and a CA bundle
    (the system CAs plus ours) at ``directory/ca-bundle.pem``.

    ``requests`` lets ``REQUESTS_CA_BUNDLE`` win over ``verify=``: point that variable at
    :attr:`LocalTLS.ca_bundle` for the process that calls the emulator.
    """
    import certifi
    import trustme

    ca = trustme.CA(organization_name="chat2crm test CA")
    server = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "ca-bundle.pem"
    system = Path(certifi.where()).read_bytes()
    bundle.write_bytes(system.rstrip(b"\n") + b"\n" + ca.cert_pem.bytes())
    return LocalTLS(ssl_context=context, ca_bundle=bundle, ca_pem=ca.cert_pem.bytes())


class _Failed(Exception):
    """A request Salesforce answers with an error list."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _fail(status: int, message: str, code: str, fields: list[str] | None = None, **extra: Any) -> _Failed:
    return _Failed(status, [{"message": message, "errorCode": code, "fields": list(fields or []), **extra}])


class SalesforceEmulator(FaultInjection):
    """State and behaviour of the emulated Salesforce org.

    Args:
        credentials: what the token endpoint accepts.
        rate_limit: ``(requests, seconds)``: a rolling request budget; past it the org answers 403
            ``REQUEST_LIMIT_EXCEEDED`` as it does past its daily limit.
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the call.
        daily_limit: the org's daily API request limit (reported by ``/limits`` and ``Sforce-Limit-Info``).
        used_today: API requests already used today (the org's other integrations).
        can_customize: the integration user may create custom fields (Tooling API).
        duplicate_rule: the org's standard Lead and Contact duplicate rules: ``"alert"`` (Salesforce's
            default, "Allow" with an alert: API saves of a match need ``allowSave=true``), ``"block"``,
            or None (deactivated).
        session_seconds: sessions expire after this many seconds (None: never).
        search_lag: kept for the emulators' common interface: SOSL search is not emulated (the relay uses
            SOQL, which reads the database and is strongly consistent, and no search).
    """

    FAULTS = FaultInjection.FAULTS | {"expired", "limit", "duplicates"}

    def __init__(self, credentials: SalesforceCredentials | None = None, *, rate_limit: tuple[int, float] | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0, daily_limit: int = 100_000,
                 used_today: int = 0, can_customize: bool = True, session_seconds: float | None = None,
                 duplicate_rule: str | None = "alert", search_lag: float = 0.0) -> None:
        if duplicate_rule not in ("alert", "block", None):
            raise ValueError(f"duplicate_rule must be 'alert', 'block' or None, got {duplicate_rule!r}")
        self.duplicate_rule = duplicate_rule
        self._allow_save = False
        self.credentials = credentials or SalesforceCredentials()
        self._init_faults(latency=latency, timeout_seconds=timeout_seconds, rate_limit=rate_limit,
                          search_lag=search_lag)
        self.daily_limit = daily_limit
        self.used = used_today
        self.can_customize = can_customize
        self.session_seconds = session_seconds
        self.counter = itertools.count(1)
        self.schema: dict[str, dict[str, SField]] = {}
        self.prefixes: dict[str, str] = {}
        for name, (prefix, fields) in contract.standard_objects().items():
            self.schema[name] = fields
            self.prefixes[name] = prefix
        self.objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self.custom_fields: dict[str, str] = {}  # FullName → CustomField id
        self.tokens: dict[str, float] = {}  # access token → issued at
        self.token_grants: list[str] = []
        self._refuse_next_grant = False
        self._duplicates_pending = 0
        self.assignment_rules = {ASSIGNMENT_RULE_ID: COORDINATOR_ID}
        self.objects["User"][API_USER_ID] = self._stamp("User", API_USER_ID, {
            "Name": "Integration User", "Username": self.credentials.username or "integration@clinic.example",
            "Email": "integration@clinic.example", "IsActive": True})
        self.objects["User"][COORDINATOR_ID] = self._stamp("User", COORDINATOR_ID, {
            "Name": "Deniz Koordinatör", "Username": "coordinator@clinic.example",
            "Email": "coordinator@clinic.example", "IsActive": True})
        self.app = self._make_app()

    # -- helpers for tests and the demo --------------------------------------------------------
    def expire_sessions(self) -> None:
        """Every access token issued so far stops working (as when an admin revokes sessions)."""
        with self.lock:
            self.tokens.clear()

    def add_field(self, sobject: str, name: str, *, kind: str = "string", length: int = 255,
                  external_id: bool = False, unique: bool = False, picklist: list[str] | None = None) -> None:
        """Define a custom field, as an admin (or ``crm setup``) would."""
        with self.lock:
            self.schema[sobject][name] = SField(name=name, type=kind, length=length, label=name, custom=True,
                                                external_id=external_id, unique=unique, picklist=list(picklist or []))

    def add_record(self, sobject: str, values: dict[str, Any]) -> str:
        """Create a record as a person in the org would (no checks, no API call counted); returns its id."""
        with self.lock:
            record_id = sf_id(self.prefixes[sobject], next(self.counter))
            self.objects[sobject][record_id] = self._stamp(sobject, record_id, dict(values))
            return record_id

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every live record of an sObject (fields by API name, with ``Id``)."""
        with self.lock:
            return [dict(r) for r in self.objects.get(sobject, {}).values()]

    def count(self, sobject: str) -> int:
        return len(self.records(sobject))

    def agent_view(self) -> dict[str, Any]:
        """The org as an agent sees it in Salesforce (CRM-neutral shape, for the demo page).

        A Lead is both the person and the request: it appears among the contacts with its person
        fields and among the records with its request fields, status and tags.
        """
        with self.lock:
            users = {u["Id"]: u.get("Name") for u in self.objects["User"].values()}

            def visible(record: dict[str, Any], names: tuple[str, ...] | None = None,
                        custom: bool = False) -> dict[str, Any]:
                out = {k: v for k, v in record.items() if v not in (None, "", False) and (
                    (names is not None and k in names) or (custom and k.endswith("__c") and k not in _PERSON_FIELDS
                                                           and k != "Chat2CRM_Tags__c"))}
                if record.get("OwnerId"):
                    out["Owner"] = users.get(record["OwnerId"], record["OwnerId"])
                return out

            contacts = [{"id": r["Id"], "object": obj, "title": _name(r), "fields": visible(r, _PERSON_FIELDS)}
                        for obj in ("Contact", "Lead") for r in self.objects[obj].values()]
            records = []
            for obj, stage_field in (("Lead", "Status"), ("Case", "Status"), ("Opportunity", "StageName")):
                for r in self.objects[obj].values():
                    title = r.get("Subject") or r.get("Name") or r.get("Chat2CRM_Topic__c") or _name(r)
                    tags = [t for t in str(r.get("Chat2CRM_Tags__c") or "").split(";") if t]
                    records.append({"id": r["Id"], "object": obj, "title": title, "stage": r.get(stage_field),
                                    "tags": tags, "fields": visible(r, _RECORD_FIELDS, custom=True)})
            notes = [{"id": n["Id"], "body": _plain(f"{n.get('Title', '')}\n{n.get('Body') or ''}")}
                     for n in self.objects["Note"].values()]
            tasks = [{"id": t["Id"], "title": t.get("Subject") or "",
                      "fields": visible(t, ("Status", "Priority", "ActivityDate", "Description"))}
                     for t in self.objects["Task"].values()]
            campaigns = {c["Id"]: c.get("Name") for c in self.objects["Campaign"].values()}
            extras = [{"kind": "campaign member", "title": str(campaigns.get(m.get("CampaignId"), m.get("CampaignId"))),
                       "fields": visible(m, ("Status", "LeadId", "ContactId"))}
                      for m in self.objects["CampaignMember"].values()]
        return {"crm": "salesforce", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": extras}

    # -- state ---------------------------------------------------------------------------------
    def _stamp(self, sobject: str, record_id: str, values: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        record = {"Id": record_id, "CreatedDate": now, "LastModifiedDate": now, "IsDeleted": False}
        for name, spec in self.schema[sobject].items():
            if spec.default is not None and name not in values:
                record[name] = API_USER_ID if spec.default == "005" else spec.default
        if sobject == "Lead":
            record["IsConverted"] = False
        record.update(values)
        return record

    def _object_of(self, record_id: str) -> str | None:
        for name, prefix in self.prefixes.items():
            if record_id.startswith(prefix) and record_id in self.objects[name]:
                return name
        return None

    def _check_references(self, sobject: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            spec = self.schema[sobject].get(name)
            if spec is None or spec.type != "reference" or not value:
                continue
            target = self._object_of(str(value)) or ("Group" if str(value).startswith("00G") else None)
            if target is None or (spec.reference_to and target not in spec.reference_to):
                raise _fail(400, f"{spec.name}: id value of incorrect type: {value}",
                            "FIELD_INTEGRITY_EXCEPTION" if target else "INVALID_CROSS_REFERENCE_KEY", [name])

    def _check_unique(self, sobject: str, values: dict[str, Any], exclude: str | None = None) -> None:
        for name, value in values.items():
            spec = self.schema[sobject].get(name)
            if spec is None or not spec.unique or value in (None, ""):
                continue
            for record in self.objects[sobject].values():
                if record["Id"] != exclude and _same(record.get(name), value, spec.case_sensitive):
                    raise _fail(400, f"duplicate value found: {name} duplicates value on record with id: "
                                     f"{record['Id']}", "DUPLICATE_VALUE", [])
        if sobject == "CampaignMember":
            who = values.get("LeadId") or values.get("ContactId")
            for record in self.objects[sobject].values():
                if record["Id"] != exclude and record.get("CampaignId") == values.get("CampaignId") and who in (
                        record.get("LeadId"), record.get("ContactId")):
                    raise _fail(400, "Already a campaign member.", "DUPLICATE_VALUE", [])

    def _duplicate_rule(self, sobject: str, values: dict[str, Any], exclude: str | None = None) -> None:
        """The org's standard duplicate rules for Leads and Contacts (or a ``duplicates`` fault).

        A record matches another with the same e-mail, the same phone, or the same first name, last
        name (and company, for Leads). With ``duplicate_rule="alert"`` (Salesforce's default: "Allow,
        alert") an API save of a match is refused unless the request says
        ``Sforce-Duplicate-Rule-Header: allowSave=true``; with ``"block"`` it is always refused.
        """
        if sobject not in ("Lead", "Contact", "Account"):
            return
        matches: list[dict[str, Any]] = []
        forced = self._duplicates_pending > 0
        if forced:
            self._duplicates_pending -= 1
            matches = list(self.objects[sobject].values())[:1]
        elif self.duplicate_rule and sobject in ("Lead", "Contact") and not (
                self.duplicate_rule == "alert" and self._allow_save):
            for other in self.objects[sobject].values():
                if other["Id"] == exclude:
                    continue
                merged = {**(self.objects[sobject].get(exclude or "", {})), **values}
                same = [f for f in ("Email", "Phone") if merged.get(f) and _same(other.get(f), merged[f], False)]
                names = ("FirstName", "LastName", "Company") if sobject == "Lead" else ("FirstName", "LastName")
                if same or all(merged.get(f) and _same(other.get(f), merged[f], False) for f in names):
                    matches.append(other)
            if not matches:
                return
        if not forced and not matches:
            return
        records = [{"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 100.0,
                    "record": {"attributes": {"type": sobject, "url": f"/services/data/v62.0/sobjects/{sobject}/"
                                                                      f"{m['Id']}"}, "Id": m["Id"]}} for m in matches]
        raise _fail(400, "Use one of these records?", "DUPLICATES_DETECTED", [], duplicateResult={
            "allowSave": self.duplicate_rule == "alert", "duplicateRule": f"Standard_{sobject}_Duplicate_Rule",
            "duplicateRuleEntityType": sobject,
            "errorMessage": "You're creating a duplicate record. We recommend you use an existing record instead.",
            "matchResults": [{"entityType": sobject, "errors": [], "matchEngine": "FuzzyMatchEngine",
                              "matchRecords": records, "rule": f"Standard_{sobject}_Match_Rule_v1_0",
                              "size": len(records), "success": True}]})

    def _create(self, sobject: str, values: dict[str, Any], auto_assign: str | None) -> dict[str, Any]:
        self._duplicate_rule(sobject, values)
        self._check_references(sobject, values)
        self._check_unique(sobject, values)
        if sobject == "CampaignMember" and not (values.get("LeadId") or values.get("ContactId")):
            raise _fail(400, "Required fields are missing: [LeadId or ContactId]", "REQUIRED_FIELD_MISSING",
                        ["LeadId", "ContactId"])
        record_id = sf_id(self.prefixes[sobject], next(self.counter))
        record = self._stamp(sobject, record_id, values)
        self._assign(sobject, record, auto_assign)
        self.objects[sobject][record_id] = record
        return record

    def _assign(self, sobject: str, record: dict[str, Any], auto_assign: str | None) -> None:
        """Assignment rules run on create and on update of a Lead or Case unless the header says FALSE."""
        if sobject in ("Lead", "Case") and auto_assign and auto_assign.upper() != "FALSE":
            rule = ASSIGNMENT_RULE_ID if auto_assign.upper() == "TRUE" else auto_assign
            if rule in self.assignment_rules:
                record["OwnerId"] = self.assignment_rules[rule]

    def _update(self, sobject: str, record: dict[str, Any], values: dict[str, Any], auto_assign: str | None) -> None:
        self._check_references(sobject, values)
        self._check_unique(sobject, values, exclude=record["Id"])
        self._duplicate_rule(sobject, values, exclude=record["Id"])
        if sobject == "Lead" and record.get("IsConverted"):
            raise _fail(400, "cannot reference converted lead", "CANNOT_UPDATE_CONVERTED_LEAD", [])
        record.update(values)
        record["LastModifiedDate"] = _now()
        self._assign(sobject, record, auto_assign)

    def _delete(self, sobject: str, record_id: str) -> None:
        record = self.objects[sobject].pop(record_id)
        for relationship in CASCADE.get(sobject, ()):
            child, lookup = CHILD_RELATIONSHIPS[sobject][relationship]
            for child_id in [c["Id"] for c in self.objects[child].values() if c.get(lookup) == record["Id"]]:
                self._delete(child, child_id)

    # -- the request pipeline ------------------------------------------------------------------
    def _violation(self, problem: SalesforceProblem | str) -> None:
        text = problem.message if isinstance(problem, SalesforceProblem) else problem
        with self.lock:
            self.violations.append({"method": request.method, "path": request.path, "problem": text})

    def _limit_headers(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.used}/{self.daily_limit}"}

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        response = jsonify(body) if body is not None else Response(status=status)
        response.status_code = status
        response.headers.update(self._limit_headers())
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def _fault(self) -> tuple[str | None, Response | None]:
        fault = self._draw_fault()
        if fault == "timeout":
            # held past the client's timeout, then carried out: Salesforce finishes a request whose client gave up
            time.sleep(self.timeout_seconds)
            return fault, None
        answers = {
            "500": (500, "An unexpected error occurred. Please include this ErrorId if you contact support: "
                         "1907455961-61224 (-1531347497)", "UNKNOWN_EXCEPTION"),
            "502": (502, "Bad gateway", "SERVER_UNAVAILABLE"),
            "503": (503, "Server temporarily unavailable; try again later", "SERVER_UNAVAILABLE"),
            "400": (400, "Unexpected character ('x' (code 120)): was expecting double-quote to start field name at "
                         "[line:1, column:3]", "JSON_PARSER_ERROR"),
            "404": (404, "The requested resource does not exist", "NOT_FOUND"),
            "409": (409, "A conflict occurred: the record is locked for approval", "ENTITY_IS_LOCKED"),
            "429": (403, "ConcurrentPerOrgLongTxn Limit exceeded.", "REQUEST_LIMIT_EXCEEDED"),
            "limit": (403, "TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED"),
        }
        if fault in answers:
            status, message, code = answers[fault]
            return fault, self._reply(status, [{"message": message, "errorCode": code}])
        return fault, None

    def _authenticate(self, fault: str | None) -> Response | None:
        header = request.headers.get("Authorization")
        problem = contract.auth_problem(header)
        if problem:
            self._violation(problem)
            return self._reply(401, [problem.as_json()])
        token = (header or "")[7:].strip()
        with self.lock:
            issued = self.tokens.get(token)
            expired = issued is None or (self.session_seconds is not None
                                         and time.time() - issued > self.session_seconds)
            if fault in ("expired", "401"):
                self.tokens.pop(token, None)
                expired = True
                if fault == "401":
                    self._refuse_next_grant = True
        if expired:
            return self._reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        return None

    def _limits(self) -> Response | None:
        with self.lock:
            if self.used >= self.daily_limit:
                return self._reply(403, [{"message": "TotalRequests Limit exceeded.",
                                          "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            if not self._fits(self.window, self.rate_limit):
                return self._reply(403, [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                                          "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            self.used += 1
        return None

    def _api(self, rest: str) -> Response:
        self._record_call(auto_assign=request.headers.get("Sforce-Auto-Assign"))
        fault, early = self._fault()
        if early is not None:
            return early
        if early := self._authenticate(fault):
            return early
        if early := self._limits():
            return early
        if fault == "duplicates":
            with self.lock:
                self._duplicates_pending += 1
        auto_assign = request.headers.get("Sforce-Auto-Assign")
        if auto_assign is not None and not contract.AUTO_ASSIGN.match(auto_assign):
            self._violation(f"Sforce-Auto-Assign {auto_assign!r} is not TRUE, FALSE or an AssignmentRule id")
        body: Any = None
        if request.method in ("POST", "PATCH", "PUT") and request.content_length:
            if not (request.mimetype or "").endswith("json"):
                self._violation(f"Content-Type {request.mimetype!r} on a JSON body")
                return self._reply(415, [{"message": "Content type not supported", "errorCode":
                                          "UNSUPPORTED_MEDIA_TYPE"}])
            body = request.get_json(silent=True)
            if body is None:
                return self._reply(400, [{"message": "The request body is not valid JSON", "errorCode":
                                          "JSON_PARSER_ERROR"}])
        args = {k: v for k, v in request.args.items()}
        rule_header = request.headers.get("Sforce-Duplicate-Rule-Header", "")
        with self.lock:
            self._allow_save = bool(re.search(r"allowSave\s*=\s*true", rule_header, re.I))
            status, payload, headers = self._dispatch(request.method, "/services/data/" + rest, args, body,
                                                      auto_assign=auto_assign, top=True)
        return self._reply(status, payload, headers)

    def _dispatch(self, method: str, path: str, args: dict[str, str], body: Any, *, auto_assign: str | None,
                  top: bool = False) -> tuple[int, Any, dict[str, str]]:
        """Run one REST request against the org's state (the HTTP route and composite subrequests)."""
        try:
            return self._route(method, path, args, body, auto_assign=auto_assign, top=top)
        except _Failed as failed:
            return failed.status, failed.errors, failed.headers

    def _route(self, method: str, path: str, args: dict[str, str], body: Any, *, auto_assign: str | None,
               top: bool) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/", 4)  # '', services, data, vXX.X, rest
        version = parts[3] if len(parts) > 3 else ""
        if problem := contract.version_problem(version):
            self._violation(problem)
            raise _Failed(problem.status, [problem.as_json()])
        numeric = float(version[1:])
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        matched = contract.match_route(rest, set(self.schema))
        if matched is None:
            self._violation(f"no such resource: {method} {path}")
            raise _fail(404, "The requested resource does not exist", "NOT_FOUND")
        route, variables = matched
        if method not in contract.allowed_methods(route):
            self._violation(f"{method} is not allowed on {route}")
            raise _fail(405, f"HTTP Method '{method}' not allowed. Allowed are "
                             f"{','.join(contract.allowed_methods(route))}", "METHOD_NOT_ALLOWED")
        sobject = variables.get("sobject")
        if sobject is not None and route != "tooling_create" and sobject not in self.schema:
            self._violation(f"unknown sObject {sobject}")
            raise _fail(404, f"The requested resource does not exist: sObject type '{sobject}' is not supported.",
                        "NOT_FOUND")
        if route == "limits":
            return 200, {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": self.daily_limit - self.used}}, {}
        if route == "sobjects":
            return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                self._basic(name, version) for name in self.schema]}, {}
        if route == "describe":
            return 200, self._describe(str(sobject), version), {}
        if route in ("query", "queryall", "tooling_query"):
            return 200, self._query(args.get("q", ""), version, tooling=route == "tooling_query"), {}
        if route == "composite":
            if not top:
                raise _fail(400, "A composite request cannot contain a composite request", "INVALID_FIELD")
            return self._composite(body, version, auto_assign)
        if route == "collections":
            return self._collections_delete(args)
        if route == "tooling_create":
            return self._tooling_create(str(sobject), body)
        if route == "basic":
            if method == "GET":
                return 200, {"objectDescribe": self._basic(str(sobject), version), "recentItems": []}, {}
            values = self._checked(str(sobject), body, creating=True)
            record = self._create(str(sobject), values, auto_assign)
            return 201, {"id": record["Id"], "success": True, "errors": []}, {
                "Location": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}
        if route == "row":
            row = self.objects[str(sobject)].get(variables["id"])
            if row is None:
                raise _fail(404, "The requested resource does not exist", "NOT_FOUND")
            return self._row(method, str(sobject), row, args, body, version=version, auto_assign=auto_assign)
        return self._by_external_id(method, str(sobject), variables["field"], unquote(variables["value"]), body,
                                    version=version, numeric=numeric, auto_assign=auto_assign)

    def _checked(self, sobject: str, body: Any, *, creating: bool, external: str | None = None) -> dict[str, Any]:
        problems = contract.body_problems(sobject, self.schema[sobject], body, creating=creating,
                                          external_field=external)
        if problems:
            for problem in problems:
                self._violation(problem)
            raise _Failed(problems[0].status, [p.as_json() for p in problems])
        return {k: v for k, v in body.items() if k != "attributes"}

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
            raise _fail(400, f"No such column '{unknown[0]}' on entity '{sobject}'", "INVALID_FIELD", unknown)
        return 200, self._public(sobject, record, wanted, version), {}

    def _by_external_id(self, method: str, sobject: str, field_name: str, value: str, body: Any, *, version: str,
                        numeric: float, auto_assign: str | None) -> tuple[int, Any, dict[str, str]]:
        spec = self.schema[sobject].get(field_name)
        if spec is None or not (spec.external_id or field_name == "Id"):
            self._violation(f"{sobject}.{field_name} is not an External ID field")
            raise _fail(404, f"Provided external ID field does not exist or is not accessible: {field_name}",
                        "NOT_FOUND")
        matches = [r for r in self.objects[sobject].values() if _same(r.get(field_name), value, spec.case_sensitive)]
        if len(matches) > 1:
            return 300, [f"/services/data/{version}/sobjects/{sobject}/{r['Id']}" for r in matches], {}
        if method in ("GET", "HEAD"):
            if not matches:
                raise _fail(404, "The requested resource does not exist", "NOT_FOUND")
            return 200, self._public(sobject, matches[0], list(self.schema[sobject]), version), {}
        if method == "DELETE":
            if not matches:
                raise _fail(404, "The requested resource does not exist", "NOT_FOUND")
            self._delete(sobject, matches[0]["Id"])
            return 204, None, {}
        if method == "POST":
            self._violation("POST to a row by external ID is not an upsert since v37.0: use PATCH")
            raise _fail(405, "HTTP Method 'POST' not allowed. Allowed are HEAD,GET,PATCH,DELETE", "METHOD_NOT_ALLOWED")
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

    def _public(self, sobject: str, record: dict[str, Any], wanted: list[str], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": sobject,
                                              "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}}
        for name in wanted:
            out[name] = record.get(name)
        return out

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

    # -- SOQL ------------------------------------------------------------------------------------
    def _query(self, text: str, version: str, *, tooling: bool = False) -> dict[str, Any]:
        try:
            query = contract.parse_soql(text)
        except SoqlError as exc:
            self._violation(f"MALFORMED_QUERY: {exc}")
            raise _fail(400, f"{text[:120]}\n^\nERROR at Row:1:Column:1\n{exc}", exc.code) from None
        if tooling:
            if query.sobject != "CustomField":
                raise _fail(400, f"sObject type '{query.sobject}' is not supported.", "INVALID_TYPE")
            rows = [{"attributes": {"type": "CustomField"}, "Id": cid, "FullName": name}
                    for name, cid in self.custom_fields.items()]
            return {"size": len(rows), "totalSize": len(rows), "done": True, "records": rows,
                    "entityTypeName": "CustomField"}
        if query.sobject not in self.schema:
            self._violation(f"INVALID_TYPE: {query.sobject}")
            raise _fail(400, f"sObject type '{query.sobject}' is not supported.", "INVALID_TYPE")
        records = self._run(query, list(self.objects[query.sobject].values()), version, depth=0)
        return {"totalSize": len(records), "done": True, "records": records}

    def _run(self, query: Query, rows: list[dict[str, Any]], version: str, depth: int) -> list[dict[str, Any]]:
        sobject = query.sobject
        fields = self.schema[sobject]
        for name in query.fields + _where_fields(query.where):
            if name not in fields:
                self._violation(f"INVALID_FIELD: {sobject}.{name}")
                raise _fail(400, f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                                 "custom field, be sure to append the '__c' after the custom field name.",
                            "INVALID_FIELD")
        for name in query.fields + _where_fields(query.where):
            if fields[name].type == "textarea" and name in _where_fields(query.where):
                raise _fail(400, f"field '{name}' can not be filtered in a query call", "INVALID_FIELD")
        out = []
        for row in rows:
            if query.where is not None and not _test(query.where, row, fields):
                continue
            item = self._public(sobject, row, query.fields, version)
            for sub in query.subqueries:
                relation = CHILD_RELATIONSHIPS.get(sobject, {}).get(sub.sobject)
                if relation is None or depth >= 4:
                    self._violation(f"INVALID_TYPE: relationship {sub.sobject} of {sobject}")
                    raise _fail(400, f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. "
                                     "If you are attempting to use a custom relationship, be sure to append the '__r' "
                                     "after the custom relationship name.", "INVALID_TYPE")
                child, lookup = relation
                children = [c for c in self.objects[child].values() if c.get(lookup) == row["Id"]]
                nested = self._run(contract.Query(sub.fields, sub.subqueries, child, sub.where, sub.limit),
                                   children, version, depth + 1)
                item[sub.sobject] = {"totalSize": len(nested), "done": True, "records": nested} if nested else None
            out.append(item)
            if query.limit is not None and len(out) >= query.limit:
                break
        return out

    # -- composite -----------------------------------------------------------------------------
    def _composite(self, body: Any, version: str, auto_assign: str | None) -> tuple[int, Any, dict[str, str]]:
        problems = contract.composite_problems(body)
        if problems:
            for problem in problems:
                self._violation(problem)
            raise _Failed(400, [p.as_json() for p in problems])
        all_or_none = bool(body.get("allOrNone", False))
        snapshot = copy.deepcopy(self.objects) if all_or_none else None
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        failed = False
        for sub in body["compositeRequest"]:
            ref = sub["referenceId"]
            if failed and all_or_none:
                responses.append(_halted(ref, "The transaction was rolled back since another operation in the same "
                                              "transaction failed."))
                continue
            try:
                url = _resolve(sub["url"], results)
                sub_body = _resolve(sub.get("body"), results) if "body" in sub else None
            except KeyError as exc:
                responses.append(_halted(ref, f"Invalid reference specified. No value for {exc.args[0]} found in "
                                              f"{exc.args[0].split('.')[0]}. Provided referenceId ('"
                                              f"{exc.args[0].split('.')[0]}') must reference a valid subrequest or "
                                              "query result."))
                failed = True
                continue
            split = urlsplit(url)
            args = {k: v[0] for k, v in parse_qs(split.query).items()}
            status, payload, headers = self._dispatch(sub["method"], split.path, args, sub_body,
                                                      auto_assign=auto_assign)
            responses.append({"body": payload, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref})
            if status >= 400:
                failed = True
            else:
                results[ref] = payload
        if failed and snapshot is not None:
            self.objects = snapshot
            for response in responses:
                if response["httpStatusCode"] < 400:
                    response.update(_halted(response["referenceId"], "The transaction was rolled back since another "
                                                                     "operation in the same transaction failed."))
        return 200, {"compositeResponse": responses}, {}

    def _collections_delete(self, args: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        ids = [i for i in args.get("ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            self._violation("collections delete needs 1-200 ids")
            raise _fail(400, "ids: between 1 and 200 ids", "INVALID_FIELD")
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
            raise _fail(404, f"sObject type '{sobject}' is not supported.", "NOT_FOUND")
        if not isinstance(body, dict) or set(body) - {"FullName", "Metadata"} or not isinstance(
                body.get("FullName"), str) or not isinstance(body.get("Metadata"), dict):
            self._violation("CustomField create needs FullName and Metadata")
            raise _fail(400, "CustomField: FullName and Metadata are required", "JSON_PARSER_ERROR")
        if not self.can_customize:
            raise _fail(403, "Insufficient access rights on cross-reference id", "INSUFFICIENT_ACCESS_OR_READONLY")
        full_name = body["FullName"]
        meta = body["Metadata"]
        owner, _, name = full_name.partition(".")
        if owner not in self.schema or not name.endswith("__c"):
            self._violation(f"CustomField FullName {full_name!r} is not <Object>.<Name>__c")
            raise _fail(400, f"Invalid FullName: {full_name}", "INVALID_FIELD")
        kinds = {"Text": "string", "LongTextArea": "textarea", "Checkbox": "boolean", "DateTime": "datetime",
                 "Date": "date", "Url": "url", "Email": "email", "Phone": "phone", "Number": "double",
                 "Picklist": "picklist"}
        kind = kinds.get(str(meta.get("type")))
        problems = []
        if kind is None:
            problems.append(f"type {meta.get('type')!r} is not one of {sorted(kinds)}")
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
        if problems:
            for problem in problems:
                self._violation(f"CustomField {full_name}: {problem}")
            raise _fail(400, f"{full_name}: {problems[0]}", "FIELD_INTEGRITY_EXCEPTION")
        if name in self.schema[owner]:
            raise _fail(400, f"There is already a field named {name[:-3]} on {owner}.", "DUPLICATE_DEVELOPER_NAME")
        self.schema[owner][name] = SField(
            name=name, type=kind or "string", length=int(meta.get("length") or (0 if kind == "boolean" else 255)),
            label=str(meta["label"]), custom=True, external_id=bool(meta.get("externalId")),
            unique=bool(meta.get("unique")), case_sensitive=bool(meta.get("caseSensitive")))
        field_id = sf_id("00N", next(self.counter))
        self.custom_fields[full_name] = field_id
        return 201, {"id": field_id, "success": True, "errors": [], "warnings": [], "infos": []}, {}

    # -- OAuth 2.0 -----------------------------------------------------------------------------
    def _token(self) -> Response:
        self._record_call(auto_assign=None)
        if not (request.mimetype or "").startswith("application/x-www-form-urlencoded"):
            self._violation("the token request must be application/x-www-form-urlencoded")
            return _oauth_error("invalid_request", "unsupported content type")
        form = request.form
        grant = form.get("grant_type", "")
        creds = self.credentials
        self.token_grants.append(grant)
        with self.lock:
            refused = self._refuse_next_grant
            self._refuse_next_grant = False
        if grant == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if request.authorization is not None and request.authorization.type == "basic":
                client_id, client_secret = request.authorization.username, request.authorization.password
            if client_id != creds.client_id:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if client_secret != creds.client_secret or refused:
                return _oauth_error("invalid_client", "invalid client credentials")
        elif grant == "password":
            if form.get("client_id") != creds.client_id:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if form.get("client_secret") != creds.client_secret:
                return _oauth_error("invalid_client", "invalid client credentials")
            expected = (creds.password or "") + (creds.security_token or "")
            if refused or creds.password is None or form.get("username") != creds.username or \
                    form.get("password") != expected:
                return _oauth_error("invalid_grant", "authentication failure")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            import jwt

            if creds.jwt_public_key is None:
                return _oauth_error("invalid_grant", "invalid assertion")
            try:
                claims = jwt.decode(form.get("assertion", ""), creds.jwt_public_key, algorithms=["RS256"],
                                    audience=[request.host_url.rstrip("/"), "https://login.salesforce.com",
                                              "https://test.salesforce.com"],
                                    options={"require": ["iss", "sub", "aud", "exp"]})
            except jwt.ExpiredSignatureError:
                return _oauth_error("invalid_grant", "expired authorization code")
            except jwt.InvalidTokenError:
                return _oauth_error("invalid_grant", "invalid assertion")
            if claims.get("iss") != creds.client_id:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if claims.get("sub") != creds.username or refused:
                return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        else:
            self._violation(f"unsupported grant_type {grant!r}")
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(40)}"
        with self.lock:
            self.tokens[token] = time.time()
        base = request.host_url.rstrip("/")
        return _json(200, {"access_token": token, "instance_url": base, "id": f"{base}/id/{ORG_ID}/{API_USER_ID}",
                           "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)), "scope": "api",
                           "signature": secrets.token_urlsafe(32)})

    def _make_app(self) -> Flask:
        app = Flask("salesforce-emulator")

        @app.after_request
        def record_status(response: Response) -> Response:
            if not request.path.startswith("/_emulator"):
                self._record_status(response.status_code)
                response.headers.setdefault("Sforce-Limit-Info", self._limit_headers()["Sforce-Limit-Info"])
            return response

        @app.post("/services/oauth2/token")
        def token() -> Response:
            return self._token()

        @app.get("/services/data/")
        @app.get("/services/data")
        def versions() -> Response:
            return _json(200, [{"label": f"v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                               for v in range(int(contract.OLDEST_VERSION), int(contract.NEWEST_VERSION) + 1)])

        @app.route("/services/data/<path:rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"])
        def api(rest: str) -> Response:
            return self._api(rest)

        @app.get("/_emulator/view")
        def view() -> Response:
            return _json(200, self.agent_view())

        @app.get("/_emulator/calls")
        def list_calls() -> Response:
            with self.lock:
                return _json(200, list(self.calls)[-200:])

        @app.get("/_emulator/objects/<sobject>")
        def list_objects(sobject: str) -> Response:
            return _json(200, self.records(sobject) if sobject in self.objects else [])

        return app


Query = contract.Query


def _json(status: int, body: Any) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _oauth_error(error: str, description: str) -> Response:
    return _json(400, {"error": error, "error_description": description})


def _halted(ref: str, message: str) -> dict[str, Any]:
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": message}], "httpHeaders": {},
            "httpStatusCode": 400, "referenceId": ref}


def _resolve(value: Any, results: dict[str, Any]) -> Any:
    """Replace ``@{ref.path}`` references with earlier subrequests' results.

    Raises:
        KeyError: a reference names nothing (its text is the argument).
    """
    if isinstance(value, str):
        def one(found: re.Match[str]) -> str:
            text = found.group(0)[2:-1]
            current: Any = results.get(found.group(1))
            if current is None:
                raise KeyError(text)
            for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", found.group(2)):
                try:
                    current = current[step[0]] if step[0] else current[int(step[1])]
                except (KeyError, IndexError, TypeError):
                    raise KeyError(text) from None
            if current is None:
                raise KeyError(text)
            return str(current)

        return contract.REFERENCE.sub(one, value)
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    return value


def _same(stored: Any, wanted: Any, case_sensitive: bool) -> bool:
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if isinstance(stored, str) and isinstance(wanted, str) and not case_sensitive:
        return stored.lower() == wanted.lower()
    return str(stored) == str(wanted)


def _where_fields(node: Any) -> list[str]:
    if node is None:
        return []
    if node[0] == "cmp":
        return [node[1]]
    return [name for term in node[1] for name in _where_fields(term)]


def _test(node: Any, row: dict[str, Any], fields: dict[str, SField]) -> bool:
    if node[0] == "or":
        return any(_test(t, row, fields) for t in node[1])
    if node[0] == "and":
        return all(_test(t, row, fields) for t in node[1])
    _, name, op, value = node
    stored = row.get(name)
    if isinstance(value, bool) or value is None:
        equal = (stored in (None, "")) if value is None else bool(stored) is value
    else:
        equal = _same(stored, value, fields[name].case_sensitive or fields[name].type in ("id", "reference"))
    return equal if op == "=" else not equal


def _name(record: dict[str, Any]) -> str:
    return " ".join(str(record[k]) for k in ("FirstName", "LastName") if record.get(k)) or str(record.get("Id"))


def _plain(text: str) -> str:
    return unescape(_TAGS.sub("", text)).strip()


def create_app(credentials: SalesforceCredentials | dict[str, Any] | None = None, **kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulated org; the emulator is ``app.config['EMULATOR']``.

    Args:
        credentials: what the token endpoint accepts (a :class:`SalesforceCredentials` or its fields as a dict).
        kwargs: passed to :class:`SalesforceEmulator` (``rate_limit``, ``latency``, ``timeout_seconds``…).
    """
    if isinstance(credentials, dict):
        credentials = SalesforceCredentials(**credentials)
    emulator = SalesforceEmulator(credentials, **kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app


__all__ = ["SalesforceCredentials", "SalesforceEmulator", "create_app", "make_test_tls", "sf_id"]
