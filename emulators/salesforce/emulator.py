"""The emulated Salesforce org as one object: :class:`SalesforceEmulator` puts the layers together
(state, SOQL, record resources, REST routing, authentication), runs every REST call through the
org's pipeline (faults, session, API limits, request checks) and serves it all as a Flask app with
the control endpoints the tests and the demo read.
"""

from __future__ import annotations

import itertools
import re
import time
from html import unescape
from typing import Any

from flask import Flask, Response, request

from emulators._faults import FaultInjection
from emulators.salesforce import contract
from emulators.salesforce.auth import OrgAuth
from emulators.salesforce.common import (
    API_USER_ID,
    ASSIGNMENT_RULE_ID,
    COORDINATOR_ID,
    SalesforceCredentials,
    json_response,
    sf_id,
)
from emulators.salesforce.metadata_api import OrgMetadata
from emulators.salesforce.rest import OrgRest
from emulators.salesforce.schema import SField, field_label

#: what the demo's agent view shows of a person, and of a request record (custom fields are shown too)
_PERSON_FIELDS = ("FirstName", "LastName", "Company", "Phone", "Email", "Country", "MailingCountry",
                  "Chat2CRM_Contact_Key__c", "Chat2CRM_Language__c", "Chat2CRM_Channel__c", "Chat2CRM_Opted_Out__c")
_RECORD_FIELDS = ("Subject", "Description", "Origin", "Priority", "LeadSource", "CloseDate")
_TAGS = re.compile(r"<[^>]+>")


class SalesforceEmulator(OrgRest, OrgAuth, OrgMetadata):
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
            or None (deactivated). Salesforce activates its standard rules in every org ("Allow" with an alert).
        duplicate_match: what those rules match on: ``"standard"`` (the standard matching rules' equation: first
            and last name, and e-mail, phone or a Lead's company) or ``"email"`` (a custom rule on the e-mail
            alone, as clinics that share no e-mail between patients add).
        session_seconds: sessions expire after this many seconds (None: never).
        search_lag: kept for the emulators' common interface: SOSL search is not emulated (the relay uses
            SOQL, which reads the database and is strongly consistent, and no search).
        package: the chat2crm package is deployed (:meth:`install_package`).
        retention_seconds: how long the event bus keeps change events (72 hours).
    """

    FAULTS = FaultInjection.FAULTS | {"expired", "limit", "duplicates"}

    def __init__(self, credentials: SalesforceCredentials | None = None, *, rate_limit: tuple[int, float] | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0, daily_limit: int = 100_000,
                 used_today: int = 0, can_customize: bool = True, session_seconds: float | None = None,
                 duplicate_rule: str | None = "alert", duplicate_match: str = "standard", search_lag: float = 0.0,
                 package: bool = False,
                 retention_seconds: float = 72 * 3600) -> None:
        if duplicate_rule not in ("alert", "block", None):
            raise ValueError(f"duplicate_rule must be 'alert', 'block' or None, got {duplicate_rule!r}")
        if duplicate_match not in ("standard", "email"):
            raise ValueError(f"duplicate_match must be 'standard' or 'email', got {duplicate_match!r}")
        self.duplicate_rule = duplicate_rule
        self.duplicate_match = duplicate_match
        self._allow_save = False
        #: the client id the request named in ``Sforce-Call-Options`` (it ends its changes' ``changeOrigin``)
        self.call_client = ""
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
        self.blobs: dict[str, bytes] = {}
        self._init_changes(retention_seconds)
        self._init_metadata()
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
        if package:
            self.install_package()
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
            self.schema[sobject][name] = SField(name=name, type=kind, length=length, label=field_label(name), custom=True,
                                                external_id=external_id, unique=unique, picklist=list(picklist or []))

    def add_picklist_values(self, sobject: str, name: str, values: list[str]) -> None:
        """Add values to a picklist (a standard value set such as Lead Status), as an admin does in Setup;
        ``describe`` reports them from then on."""
        with self.lock:
            spec = self.schema[sobject][name]
            spec.picklist.extend(v for v in values if v not in spec.picklist)

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
            # each card's fields under the labels Salesforce shows (``labels``: API name → label), as describe has them
            for sobject, items in (("Task", tasks), ("CampaignMember", extras), *(
                    (obj, [i for i in contacts + records if i["object"] == obj])
                    for obj in ("Lead", "Contact", "Case", "Opportunity"))):
                for item in items:
                    item["labels"] = {name: self.schema[sobject][name].label if name in self.schema[sobject] else name
                                      for name in item["fields"]}
        return {"crm": "salesforce", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": extras}

    # -- the request pipeline ------------------------------------------------------------------
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
            client = re.search(r"client\s*=\s*([^,;\s]+)", request.headers.get("Sforce-Call-Options", ""))
            self.call_client = client.group(1) if client else ""
            status, payload, headers = self._dispatch(request.method, "/services/data/" + rest, args, body,
                                                      auto_assign=auto_assign, top=True)
            # the request's saves form one transaction: its change events are published now
            self._commit_changes(API_USER_ID, origin=self.api_origin(rest.split('/', 1)[0][1:]))
        return self._reply(status, payload, headers)

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
            return json_response(200, [{"label": f"v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                                       for v in range(int(contract.OLDEST_VERSION), int(contract.NEWEST_VERSION) + 1)])

        @app.route("/services/data/<path:rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"])
        def api(rest: str) -> Response:
            return self._api(rest)

        @app.get("/_emulator/view")
        def view() -> Response:
            return json_response(200, self.agent_view())

        @app.get("/_emulator/calls")
        def list_calls() -> Response:
            with self.lock:
                return json_response(200, list(self.calls)[-200:])

        @app.get("/_emulator/objects/<sobject>")
        def list_objects(sobject: str) -> Response:
            return json_response(200, self.records(sobject) if sobject in self.objects else [])

        self._add_package_routes(app)
        self._add_change_routes(app)
        self._add_metadata_routes(app)
        return app


def _name(record: dict[str, Any]) -> str:
    """A person's name as Salesforce shows it (its id when it has none)."""
    return " ".join(str(record[k]) for k in ("FirstName", "LastName") if record.get(k)) or str(record.get("Id"))


def _plain(text: str) -> str:
    """A note's HTML as text."""
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
