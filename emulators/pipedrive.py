"""An emulator of the Pipedrive REST API (v2 persons, organizations, deals, activities, fields,
pipelines, stages, search; v1 leads, lead labels, notes, users).

State is kept in memory like the real company account: persons, organizations, leads, deals,
notes, activities, lead labels, person and deal fields (custom fields get Pipedrive's generated
40-character keys), pipelines and stages, users. Answers use Pipedrive's envelopes
(``{"success": true, "data": ..., "additional_data": ...}``) and its error shape
(``{"success": false, "error": ..., "error_info": ..., "data": null, "additional_data": null}``);
401 for a bad token (``x-api-token`` header or ``Authorization: Bearer``), 404 for unknown ids,
400 for invalid values (unknown custom field keys, option ids that are not options), 429 with
``x-ratelimit-limit``, ``x-ratelimit-remaining``, ``x-ratelimit-reset`` and ``Retry-After``.

Every request is checked against Pipedrive's own OpenAPI files (:mod:`emulators.pipedrive_spec`):
a request they reject is recorded in :attr:`PipedriveEmulator.violations` and answered 400 the
way Pipedrive does. Limits, when asked: ``rate_limit=(requests, seconds)`` is the burst limit per
token (Pipedrive's 2-second window), ``daily_tokens=N`` the company's daily token budget, each
call costing the operation's ``x-token-cost`` from the description.

Search lags behind writes, as Pipedrive's does: with ``search_lag`` set, a person, organization, lead
or deal created, changed or deleted shows so in the ``/search`` endpoints only that many seconds
later. Reads by id and the list endpoints (``GET /api/v2/persons?updated_since=``,
``/v1/leads?person_id=``, ``/v1/notes?lead_id=``…) are current at once.

Faults (``fail_next(count, kind)`` or at random with ``fault_rate``): ``400``, ``401``, ``403``,
``404``, ``409``, ``429``, ``500``, ``502``, ``503``, ``timeout`` (the answer comes after
``timeout_seconds``), and ``daily`` (429 for an exhausted daily budget).

Control endpoints (JSON): ``GET /_emulator/view`` (the account as an agent sees it),
``GET /_emulator/calls`` (the last 200 calls), ``GET /_emulator/objects/<kind>``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import re
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request

from emulators import pipedrive_spec
from emulators._faults import FaultInjection
from emulators._text import plain_text

log = logging.getLogger("chat2crm.emulators.pipedrive")
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
KINDS = ("persons", "organizations", "leads", "deals", "notes", "activities", "leadLabels")
LABEL_COLORS = ("blue", "brown", "dark-gray", "gray", "green", "orange", "pink", "purple", "red", "yellow")
#: standard fields as Pipedrive's field endpoints list them: (code, name, type)
PERSON_FIELDS = [("name", "Name", "varchar"), ("first_name", "First name", "varchar"),
                 ("last_name", "Last name", "varchar"), ("phone", "Phone", "phone"), ("email", "Email", "varchar"),
                 ("owner_id", "Owner", "user"), ("org_id", "Organization", "org"), ("label_ids", "Labels", "set"),
                 ("job_title", "Job title", "varchar"), ("add_time", "Person created", "date")]
DEAL_FIELDS = [("title", "Title", "varchar"), ("value", "Value", "monetary"), ("owner_id", "Owner", "user"),
               ("person_id", "Contact person", "people"), ("org_id", "Organization", "org"),
               ("pipeline_id", "Pipeline", "double"), ("stage_id", "Stage", "stage"), ("status", "Status", "status"),
               ("expected_close_date", "Expected close date", "date"), ("label_ids", "Label", "set")]


#: the operations emulated: (method, path as the documents' servers and paths give it, operationId,
#: x-token-cost). Used to route every request, and on their own when the OpenAPI files are absent.
ROUTES = [
    ("GET", "/v1/leadLabels", "getLeadLabels", 10),
    ("POST", "/v1/leadLabels", "addLeadLabel", 10),
    ("GET", "/v1/leads", "getLeads", 20),
    ("POST", "/v1/leads", "addLead", 10),
    ("GET", "/v1/leads/{id}", "getLead", 2),
    ("PATCH", "/v1/leads/{id}", "updateLead", 10),
    ("DELETE", "/v1/leads/{id}", "deleteLead", 6),
    ("GET", "/v1/notes", "getNotes", 20),
    ("POST", "/v1/notes", "addNote", 10),
    ("GET", "/v1/users", "getUsers", 20),
    ("GET", "/v1/users/me", "getCurrentUser", 2),
    ("GET", "/api/v2/activities", "getActivities", 10),
    ("POST", "/api/v2/activities", "addActivity", 5),
    ("GET", "/api/v2/dealFields", "getDealFields", 10),
    ("POST", "/api/v2/dealFields", "addDealField", 5),
    ("POST", "/api/v2/dealFields/{field_code}/options", "addDealFieldOptions", 5),
    ("GET", "/api/v2/deals", "getDeals", 10),
    ("POST", "/api/v2/deals", "addDeal", 5),
    ("GET", "/api/v2/deals/search", "searchDeals", 20),
    ("GET", "/api/v2/deals/{id}", "getDeal", 1),
    ("PATCH", "/api/v2/deals/{id}", "updateDeal", 5),
    ("GET", "/api/v2/leads/search", "searchLeads", 20),
    ("GET", "/api/v2/organizations", "getOrganizations", 10),
    ("POST", "/api/v2/organizations", "addOrganization", 5),
    ("GET", "/api/v2/organizations/search", "searchOrganization", 20),
    ("GET", "/api/v2/personFields", "getPersonFields", 10),
    ("POST", "/api/v2/personFields", "addPersonField", 5),
    ("POST", "/api/v2/personFields/{field_code}/options", "addPersonFieldOptions", 5),
    ("GET", "/api/v2/persons", "getPersons", 10),
    ("POST", "/api/v2/persons", "addPerson", 5),
    ("GET", "/api/v2/persons/search", "searchPersons", 20),
    ("GET", "/api/v2/persons/{id}", "getPerson", 1),
    ("PATCH", "/api/v2/persons/{id}", "updatePerson", 5),
    ("DELETE", "/api/v2/persons/{id}", "deletePerson", 3),
    ("GET", "/api/v2/pipelines", "getPipelines", 5),
    ("GET", "/api/v2/stages", "getStages", 5),
]
_ROUTE_PATTERNS = [(method, re.compile("^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"),
                    operation_id, cost) for method, path, operation_id, cost in ROUTES]


def route(method: str, path: str) -> tuple[str, dict[str, str], int] | None:
    """The emulated operation a request names: (operationId, path parameters, token cost)."""
    for wanted, pattern, operation_id, cost in _ROUTE_PATTERNS:
        if wanted == method.upper() and (match := pattern.match(path)):
            return operation_id, match.groupdict(), cost
    return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(text: str) -> datetime:
    """An RFC 3339 time (``2026-11-23T09:30:00Z``, or Pipedrive's ``2026-11-23 09:30:00``), in UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


class PipedriveEmulator(FaultInjection):
    """State and behaviour of one emulated Pipedrive company account.

    Args:
        api_token: the API token the relay must send (``x-api-token``; ``Bearer`` is accepted too).
        rate_limit: ``(requests, seconds)``: the burst limit per token; past it, 429.
        search_rate_limit: the same for the search endpoints (Pipedrive: 10 per 2 seconds).
        daily_tokens: the company's daily token budget (each call costs its ``x-token-cost``).
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the answer back.
        check_requests: check requests against the OpenAPI files.
        search_lag: seconds before a write shows in the search endpoints.
    """

    FAULTS = FaultInjection.FAULTS | {"403", "daily"}

    def __init__(self, api_token: str = "pd-demo", *, rate_limit: tuple[int, float] | None = None,
                 search_rate_limit: tuple[int, float] | None = None, daily_tokens: int | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0,
                 check_requests: bool = True, search_lag: float = 0.0) -> None:
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError(f"rate_limit must be (requests >= 1, seconds > 0), got {rate_limit!r}")
        self.api_token = api_token
        self._init_faults(latency=latency, timeout_seconds=timeout_seconds, rate_limit=rate_limit,
                          search_lag=search_lag)
        self.search_rate_limit = search_rate_limit
        self.daily_tokens = daily_tokens
        self.tokens_used = 0
        #: requests are checked against Pipedrive's OpenAPI files (shipped in ``vendor_specs``) unless asked not to
        self.check_requests = check_requests
        self.ids = itertools.count(1001)
        self.search_window: deque[float] = deque()
        self.users = [{"id": 1, "name": "Deniz Koordinatör", "email": "coordinator@clinic.example",
                       "active_flag": True, "is_admin": 1, "lang": 1, "locale": "en_US", "timezone_name": "UTC",
                       "company_id": 7001, "company_name": "Clinic", "company_domain": "clinic"}]
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.fields: dict[str, list[dict[str, Any]]] = {
            "person": [self._field(c, n, t, custom=False) for c, n, t in PERSON_FIELDS],
            "deal": [self._field(c, n, t, custom=False) for c, n, t in DEAL_FIELDS],
        }
        self.pipelines = [{"id": 1, "name": "Patients", "order_nr": 1, "is_deleted": False, "is_deal_probability_enabled":
                           False, "add_time": _now(), "update_time": _now(), "is_selected": True}]
        self.stages = [{"id": i + 1, "name": name, "pipeline_id": 1, "order_nr": i + 1, "deal_probability": 100,
                        "is_deal_rot_enabled": False, "days_to_rotten": None, "is_deleted": False,
                        "add_time": _now(), "update_time": _now()}
                       for i, name in enumerate(("New enquiry", "Reviewing", "Planned", "Done", "On hold"))]
        self.app = self._make_app()

    # -- helpers for tests and the demo --------------------------------------------------------
    def _field(self, code: str, name: str, kind: str, *, custom: bool = True,
               options: list[str] | None = None) -> dict[str, Any]:
        return {"id": next(self.ids), "field_code": code, "field_name": name, "field_type": kind,
                "options": [{"id": next(self.ids), "label": o} for o in options or []] if kind in ("enum", "set")
                else None, "subfields": None, "is_custom_field": custom, "is_optional_response_field": False}

    def add_field(self, entity: str, name: str, kind: str = "varchar", options: list[str] | None = None) -> str:
        """Create a custom field as an admin would; returns its generated 40-character key."""
        with self.lock:
            code = hashlib.sha1(f"{entity}:{name}:{next(self.ids)}".encode()).hexdigest()  # noqa: S324 - a key, not security
            self.fields[entity].append(self._field(code, name, kind, options=options))
            return code

    def field_key(self, entity: str, name: str) -> str | None:
        """The key of the field called ``name`` (None when there is none)."""
        with self.lock:
            return next((f["field_code"] for f in self.fields[entity] if f["field_name"] == name), None)

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Every live object of a kind (``persons``, ``leads``, ``deals``, ``notes``, ``activities``…)."""
        kind = {"person": "persons", "lead": "leads", "deal": "deals", "note": "notes", "activity": "activities",
                "organization": "organizations", "labels": "leadLabels"}.get(object_name, object_name)
        with self.lock:
            return [json.loads(json.dumps(o)) for o in self.objects[kind].values()
                    if not o.get("is_deleted") and not o.get("is_archived")]

    def count(self, object_name: str) -> int:
        """How many live objects of a kind the account holds."""
        return len(self.records(object_name))

    def label_names(self, ids: list[str] | None) -> list[str]:
        """Lead label ids → names."""
        with self.lock:
            return [self.objects["leadLabels"][i]["name"] for i in ids or [] if i in self.objects["leadLabels"]]

    def _names(self, entity: str) -> dict[str, dict[str, Any]]:
        return {f["field_code"]: f for f in self.fields[entity]}

    def _readable(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """Custom field values by visible name, option ids as labels (for the agent view)."""
        fields = self._names(entity)
        out: dict[str, Any] = {}
        for code, value in values.items():
            spec = fields.get(code)
            if spec is None or value in (None, "", []):
                continue
            if spec["options"]:
                labels = {o["id"]: o["label"] for o in spec["options"]}
                value = [labels.get(v, v) for v in value] if isinstance(value, list) else labels.get(value, value)
            out[spec["field_name"]] = value
        return out

    def agent_view(self) -> dict[str, Any]:
        """The account as an agent sees it in Pipedrive (CRM-neutral shape; see the demo page)."""
        with self.lock:
            stages = {s["id"]: s["name"] for s in self.stages}
            contacts = [{"id": str(p["id"]), "object": "person", "title": p.get("name") or "(no name)",
                         "fields": {k: v for k, v in {
                             "phone": ", ".join(x["value"] for x in p.get("phones") or []),
                             "email": ", ".join(x["value"] for x in p.get("emails") or []),
                             **self._readable("person", p.get("custom_fields") or {})}.items() if v}}
                        for p in self.records("persons")]
            records = []
            for lead in self.records("leads"):
                custom = {k: v for k, v in lead.items() if re.fullmatch(r"[0-9a-f]{40}", k)}
                names = self.label_names(lead.get("label_ids"))
                records.append({"id": lead["id"], "object": "lead", "title": lead["title"],
                                "stage": names[0] if names else None, "tags": names[1:],
                                "fields": {k: v for k, v in {"person_id": lead.get("person_id"),
                                                             **self._readable("deal", custom)}.items() if v}})
            for deal in self.records("deals"):
                readable = self._readable("deal", deal.get("custom_fields") or {})
                tags = next((v for v in readable.values() if isinstance(v, list)), [])
                records.append({"id": str(deal["id"]), "object": "deal", "title": deal["title"],
                                "stage": stages.get(deal.get("stage_id")), "tags": tags,
                                "fields": {k: v for k, v in {"person_id": deal.get("person_id"), **readable}.items()
                                           if v}})
            notes = [{"id": str(n["id"]), "body": plain_text(n["content"])} for n in self.records("notes")]
            tasks = [{"id": str(a["id"]), "title": a.get("subject") or "", "fields": {k: v for k, v in {
                "type": a.get("type"), "due_date": a.get("due_date"), "owner_id": a.get("owner_id"),
                "lead_id": a.get("lead_id"), "deal_id": a.get("deal_id"), "person_id": a.get("person_id"),
                "note": plain_text(a.get("note") or "")}.items() if v}} for a in self.records("activities")]
            extras = [{"kind": "lead label", "title": label["name"], "fields": {"color": label["color"]}}
                      for label in self.objects["leadLabels"].values()]
        return {"crm": "pipedrive", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": extras}

    # -- HTTP ----------------------------------------------------------------------------------
    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)

    def _ok(self, data: Any, status: int = 200, additional: Any = None) -> Response:
        return self._json({"success": True, "data": data, "additional_data": additional}, status)

    def _error(self, status: int, message: str, info: str = ERROR_INFO, **extra: Any) -> Response:
        return self._json({"success": False, "error": message, "error_info": info, "data": None,
                           "additional_data": None, **extra}, status)

    def _rate_headers(self) -> dict[str, str]:
        limit, seconds = self.rate_limit or (80, 2.0)
        remaining = max(0, limit - len(self.window)) if self.rate_limit else limit - 1
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(max(1, int(seconds)))}

    def _too_many(self, daily: bool = False) -> Response:
        if daily:
            reset = 86400 - int(time.time()) % 86400  # the budget resets at midnight UTC
            response = self._error(429, "Request over limit", errorCode=429,
                                   error_info="Your company's daily API token budget is used up. "
                                              + ERROR_INFO)
            response.headers.update({"x-ratelimit-limit": str(self.daily_tokens or 0), "x-ratelimit-remaining": "0",
                                     "x-ratelimit-reset": str(reset), "Retry-After": str(reset)})
            return response
        response = self._error(429, "Request over limit", errorCode=429)
        seconds = self.rate_limit[1] if self.rate_limit else 2.0
        response.headers.update({**self._rate_headers(), "x-ratelimit-remaining": "0",
                                 "Retry-After": str(max(1, round(seconds)))})
        return response

    def _before(self) -> Response | None:
        self._record_call()
        fault = self._draw_fault()
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
        if fault in ("500", "502", "503"):
            return self._error(int(fault), "Internal server error" if fault == "500" else "Service unavailable")
        if fault == "429":
            return self._too_many()
        if fault == "daily":
            return self._too_many(daily=True)
        if fault == "400":
            return self._error(400, "Bad request", error_info="Validation failed.")
        if fault == "403":
            return self._error(403, "You don't have permission to change this resource.")
        if fault == "404":
            return self._error(404, "Entity was not found", error_info="Object was not found.")
        if fault == "409":
            return self._error(409, "Conflict: the entity was changed by another request")
        token = request.headers.get("x-api-token") or request.args.get("api_token") or ""
        bearer = request.headers.get("Authorization", "")
        if fault == "401" or (token != self.api_token and bearer != f"Bearer {self.api_token}"):
            return self._error(401, "unauthorized access", errorCode=401)
        with self.lock:
            now = time.monotonic()
            limits = [(self.rate_limit, self.window)]
            if request.path.endswith("/search"):
                limits.append((self.search_rate_limit, self.search_window))
            for limit, window in limits:
                if limit is None:
                    continue
                while window and now - window[0] > limit[1]:
                    window.popleft()
                if len(window) >= limit[0]:
                    return self._too_many()
            for limit, window in limits:
                if limit is not None:
                    window.append(now)
        return None

    def _violation(self, problems: list[str]) -> Response:
        with self.lock:
            self.violations.append({"method": request.method, "path": request.path, "problems": problems})
        return self._error(400, "Validation failed: " + "; ".join(problems)[:500], error_info="Validation failed.")

    def _dispatch(self, rest: str) -> Response:
        if early := self._before():
            return early
        path = "/" + rest
        routed = route(request.method, path)
        op = None
        if self.check_requests:
            found = pipedrive_spec.find_operation(request.method, path)
            if found is None:
                with self.lock:
                    self.violations.append({"method": request.method, "path": path,
                                            "problems": ["no such operation in Pipedrive's API descriptions"]})
                return self._error(404, f"Unknown method {request.method} {path}")
            op, params = found
        if routed is None:
            return self._error(501 if op else 404, f"{op.operation_id if op else path} is not emulated")
        operation_id, params, cost = routed
        raw = request.get_data()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._violation(["body: not JSON"])
        query = {k: request.args.getlist(k) for k in request.args if k != "api_token"}
        if op is not None:
            problems = pipedrive_spec.request_errors(op, params, query, body, bool(raw))
            if problems:
                return self._violation(problems)
        with self.lock:
            if self.daily_tokens is not None:
                if self.tokens_used + cost > self.daily_tokens:
                    return self._too_many(daily=True)
                self.tokens_used += cost
            handler = getattr(self, "_op_" + operation_id)
            args = {k: request.args.get(k) for k in request.args}
            result: Response = handler(params, args, body)
            return result

    def _make_app(self) -> Flask:
        app = Flask("pipedrive-emulator")

        @app.after_request
        def record_status(response: Response) -> Response:
            if not request.path.startswith("/_emulator"):
                self._record_status(response.status_code)
                with self.lock:
                    for key, value in self._rate_headers().items():
                        response.headers.setdefault(key, value)
            return response

        @app.get("/_emulator/view")
        def view() -> Response:
            return self._json(self.agent_view())

        @app.get("/_emulator/calls")
        def list_calls() -> Response:
            with self.lock:
                return self._json(list(self.calls)[-200:])

        @app.get("/_emulator/objects/<kind>")
        def list_objects(kind: str) -> Response:
            return self._json(self.records(kind) if kind in self.objects else [])

        @app.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def api(rest: str) -> Response:
            return self._dispatch(rest)

        return app

    # -- values --------------------------------------------------------------------------------
    def _check_custom(self, entity: str, values: dict[str, Any]) -> str | None:
        """Why Pipedrive would refuse these custom field values (None: it would not)."""
        fields = self._names(entity)
        for code, value in values.items():
            spec = fields.get(code)
            if spec is None or not spec["is_custom_field"]:
                return f"Custom field with key '{code}' does not exist"
            if value is None:
                continue
            if spec["field_type"] in ("enum", "set"):
                allowed = {o["id"] for o in spec["options"] or []}
                chosen = value if isinstance(value, list) else [value]
                if spec["field_type"] == "enum" and isinstance(value, list):
                    return f"Field '{spec['field_name']}' takes one option id"
                if not all(isinstance(v, int) and v in allowed for v in chosen):
                    return f"Invalid option id for field '{spec['field_name']}'"
            elif spec["field_type"] in ("varchar", "text", "phone", "varchar_auto", "date"):
                if not isinstance(value, str):
                    return f"Field '{spec['field_name']}' takes a string"
                if spec["field_type"] == "varchar" and len(value) > 255:
                    return f"Field '{spec['field_name']}' is longer than 255 characters"
        return None

    def _user_ok(self, owner_id: Any) -> bool:
        return owner_id is None or any(u["id"] == owner_id for u in self.users)

    def _person_out(self, person: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(person))

    def _live(self, kind: str, key: Any) -> dict[str, Any] | None:
        obj = self.objects[kind].get(str(key))
        return obj if obj is not None and not obj.get("is_deleted") else None

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
        now = _now()
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
        person["update_time"] = _now()
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

    @staticmethod
    def _term_ok(args: dict[str, Any]) -> str | None:
        term = str(args.get("term") or "")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        if len(term) < (1 if exact else 2):
            return "Search term must be at least 2 characters long (1 with exact_match)"
        return None

    @staticmethod
    def _matches(term: str, values: list[str], exact: bool, phone: bool = False) -> bool:
        if phone:
            wanted = _digits(term)
            return bool(wanted) and any((_digits(v) == wanted) if exact else (wanted in _digits(v)) for v in values)
        lowered = term.lower()
        return any((v.lower() == lowered) if exact else (lowered in v.lower()) for v in values)

    def _searchable_custom(self, entity: str, values: dict[str, Any]) -> list[str]:
        fields = self._names(entity)
        kinds = ("address", "varchar", "text", "varchar_auto", "double", "monetary", "phone")
        return [str(v) for k, v in values.items() if k in fields and fields[k]["field_type"] in kinds and v]

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
        org = {"id": oid, "name": body["name"], "owner_id": body.get("owner_id", 1), "add_time": _now(),
               "update_time": _now(), "is_deleted": False, "custom_fields": {}}
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

    # -- leads, lead labels (v1) ---------------------------------------------------------------
    def _lead_values(self, body: dict[str, Any]) -> Response | None:
        custom = {k: v for k, v in body.items() if re.fullmatch(r"[0-9a-f]{40}", k)}
        unknown = [k for k in body if k not in custom and k not in (
            "title", "owner_id", "label_ids", "person_id", "organization_id", "value", "expected_close_date",
            "visible_to", "was_seen", "origin_id", "channel", "channel_id", "is_archived")]
        if unknown:
            return self._error(400, f"Unknown field '{unknown[0]}'", error_info="Validation failed.")
        if problem := self._check_custom("deal", custom):  # leads share the deal fields
            return self._error(400, problem, error_info="Validation failed.")
        for label in body.get("label_ids") or []:
            if label not in self.objects["leadLabels"]:
                return self._error(400, f"Lead label {label} does not exist", error_info="Validation failed.")
        if body.get("person_id") is not None and self._live("persons", body["person_id"]) is None:
            return self._error(400, "The person does not exist", error_info="Validation failed.")
        if body.get("organization_id") is not None and self._live("organizations", body["organization_id"]) is None:
            return self._error(400, "The organization does not exist", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        return None

    def _op_addLead(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if body.get("person_id") is None and body.get("organization_id") is None:
            return self._error(400, "A lead must be linked to a person or an organization.",
                               error_info="Validation failed.")
        if problem := self._lead_values(body):
            return problem
        now = _now()
        lead = {"id": str(uuid.uuid4()), "title": body["title"], "owner_id": 1, "creator_id": 1, "label_ids": [],
                "person_id": None, "organization_id": None, "source_name": "API", "origin": "API",
                "origin_id": None, "channel": None, "channel_id": None, "is_archived": False, "was_seen": False,
                "value": None, "expected_close_date": None, "next_activity_id": None, "add_time": now,
                "update_time": now, "visible_to": "3", "cc_email": "clinic+lead@pipedrivemail.com", **body}
        self.objects["leads"][lead["id"]] = lead
        self.search_index.written("leads", lead["id"], lead)
        return self._ok(lead, status=201)

    def _op_updateLead(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        lead = self.objects["leads"].get(params["id"])
        if lead is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        if problem := self._lead_values(body):
            return problem
        before = copy.deepcopy(lead)
        lead.update(body)
        lead["update_time"] = _now()
        self.search_index.written("leads", lead["id"], lead, before=before)
        return self._ok(lead)

    def _op_getLead(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        lead = self.objects["leads"].get(params["id"])
        if lead is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        return self._ok(lead)

    def _op_deleteLead(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        removed = self.objects["leads"].pop(params["id"], None)
        if removed is None:
            return self._error(404, "Lead not found", error_info="Object was not found.")
        self.search_index.written("leads", params["id"], None, before=removed)
        return self._ok({"id": params["id"]})

    def _op_getLeads(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        leads = [lead for lead in self.objects["leads"].values() if not lead["is_archived"]
                 and (args.get("person_id") is None or str(lead.get("person_id")) == args["person_id"])]
        start, limit = int(args.get("start") or 0), int(args.get("limit") or 100)
        return self._ok(leads[start:start + limit], additional={"pagination": {
            "start": start, "limit": limit, "more_items_in_collection": len(leads) > start + limit}})

    def _op_searchLeads(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        fields = (args.get("fields") or "custom_fields,notes,title").split(",")
        items = []
        for lead in self.search_index.visible("leads", self.objects["leads"]):
            if args.get("person_id") and str(lead.get("person_id")) != args["person_id"]:
                continue
            custom = self._searchable_custom("deal", {k: v for k, v in lead.items()
                                                      if re.fullmatch(r"[0-9a-f]{40}", k)})
            if (("title" in fields and self._matches(args["term"], [lead["title"]], exact))
                    or ("custom_fields" in fields and self._matches(args["term"], custom, exact))):
                items.append({"result_score": 1.0, "item": {
                    "id": lead["id"], "type": "lead", "title": lead["title"], "owner": {"id": lead["owner_id"]},
                    "person": {"id": lead["person_id"]} if lead["person_id"] else None, "organization": None,
                    "phones": [], "emails": [], "custom_fields": custom, "notes": [], "value": None,
                    "currency": None, "visible_to": 3, "is_archived": lead["is_archived"]}})
        return self._ok({"items": items}, additional={"next_cursor": None})

    def _op_getLeadLabels(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(list(self.objects["leadLabels"].values()))

    def _op_addLeadLabel(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        label = {"id": str(uuid.uuid4()), "name": body["name"], "color": body["color"], "add_time": _now(),
                 "update_time": _now()}
        self.objects["leadLabels"][label["id"]] = label
        return self._ok(label)

    # -- deals (v2) ----------------------------------------------------------------------------
    def _deal_values(self, body: dict[str, Any]) -> Response | None:
        if problem := self._check_custom("deal", body.get("custom_fields") or {}):
            return self._error(400, problem, error_info="Validation failed.")
        if body.get("person_id") is not None and self._live("persons", body["person_id"]) is None:
            return self._error(400, "The person does not exist", error_info="Validation failed.")
        stage = next((s for s in self.stages if s["id"] == body.get("stage_id")), None)
        if body.get("stage_id") is not None and stage is None:
            return self._error(400, "stage_id: stage not found", error_info="Validation failed.")
        if stage and body.get("pipeline_id") is not None and stage["pipeline_id"] != body["pipeline_id"]:
            return self._error(400, "The stage is not in that pipeline", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        return None

    def _op_addDeal(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if problem := self._deal_values(body):
            return problem
        did = next(self.ids)
        stage_id = body.get("stage_id") or self.stages[0]["id"]
        deal = {"id": did, "title": body["title"], "owner_id": 1, "person_id": None, "org_id": None,
                "pipeline_id": next(s["pipeline_id"] for s in self.stages if s["id"] == stage_id), "stage_id": stage_id,
                "value": 0, "currency": "EUR", "status": "open", "add_time": _now(), "update_time": _now(),
                "is_deleted": False, "label_ids": [], **body, "custom_fields": dict(body.get("custom_fields") or {})}
        self.objects["deals"][str(did)] = deal
        self.search_index.written("deals", did, deal)
        return self._ok(deal)

    def _op_updateDeal(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        deal = self._live("deals", params["id"])
        if deal is None:
            return self._error(404, "Deal not found", error_info="Object was not found.")
        if problem := self._deal_values(body):
            return problem
        custom = {**deal["custom_fields"], **(body.get("custom_fields") or {})}
        before = copy.deepcopy(deal)
        deal.update({**body, "custom_fields": custom, "update_time": _now()})
        self.search_index.written("deals", deal["id"], deal, before=before)
        return self._ok(deal)

    def _op_getDeal(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        deal = self._live("deals", params["id"])
        if deal is None:
            return self._error(404, "Deal not found", error_info="Object was not found.")
        return self._ok(deal)

    def _op_getDeals(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("deals", args, ("person_id", "org_id", "pipeline_id", "stage_id", "owner_id", "status"))

    def _op_getPersons(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("persons", args, ("org_id", "owner_id"), out=self._person_out)

    def _op_getOrganizations(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._listed("organizations", args, ("owner_id",))

    def _listed(self, kind: str, args: dict[str, Any], filters: tuple[str, ...], out: Any = None) -> Response:
        """A v2 list: filtered by ``filters``, ``ids`` and ``updated_since``/``updated_until`` (RFC 3339),
        sorted by ``sort_by``/``sort_direction``, paged by ``limit`` and an opaque ``cursor``."""
        rows = [o for o in self.objects[kind].values() if not o.get("is_deleted")]
        if args.get("ids"):
            wanted = {i.strip() for i in str(args["ids"]).split(",")}
            rows = [o for o in rows if str(o["id"]) in wanted]
        for name in filters:
            if args.get(name) is not None:
                rows = [o for o in rows if str(o.get(name)) == str(args[name])]
        for name, keep in (("updated_since", lambda t, b: t >= b), ("updated_until", lambda t, b: t < b)):
            if args.get(name):
                try:
                    bound = _moment(str(args[name]))
                except ValueError:
                    return self._error(400, f"{name} must be an RFC 3339 time", error_info="Validation failed.")
                rows = [o for o in rows if keep(_moment(str(o["update_time"])), bound)]
        order = args.get("sort_by") or "id"
        rows.sort(key=lambda o: (o[order] if order == "id" else _moment(str(o[order]))),
                  reverse=args.get("sort_direction") == "desc")
        start = int(args.get("cursor") or 0)
        limit = min(int(args.get("limit") or 100), 500)
        page = rows[start:start + limit]
        more = str(start + limit) if start + limit < len(rows) else None
        return self._ok([out(o) if out else o for o in page], additional={"next_cursor": more})

    def _op_searchDeals(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if problem := self._term_ok(args):
            return self._error(400, problem, error_info="Validation failed.")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        fields = (args.get("fields") or "custom_fields,notes,title").split(",")
        items = []
        for deal in self.search_index.visible("deals", self.objects["deals"]):
            if deal["is_deleted"] or (args.get("person_id") and str(deal.get("person_id")) != args["person_id"]):
                continue
            custom = self._searchable_custom("deal", deal["custom_fields"])
            if (("title" in fields and self._matches(args["term"], [deal["title"]], exact))
                    or ("custom_fields" in fields and self._matches(args["term"], custom, exact))):
                items.append({"result_score": 1.0, "item": {
                    "id": deal["id"], "type": "deal", "title": deal["title"], "value": deal["value"],
                    "currency": deal["currency"], "status": deal["status"], "visible_to": 3,
                    "owner": {"id": deal["owner_id"]}, "stage": {"id": deal["stage_id"]},
                    "person": {"id": deal["person_id"]} if deal["person_id"] else None, "organization": None,
                    "custom_fields": custom, "notes": []}})
        return self._ok({"items": items}, additional={"next_cursor": None})

    def _op_getPipelines(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.pipelines, additional={"next_cursor": None})

    def _op_getStages(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        stages = [s for s in self.stages if args.get("pipeline_id") in (None, str(s["pipeline_id"]))]
        return self._ok(stages, additional={"next_cursor": None})

    # -- notes (v1), activities (v2), users (v1) -----------------------------------------------
    def _op_addNote(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        targets = {k: body.get(k) for k in ("lead_id", "deal_id", "person_id", "org_id") if body.get(k) is not None}
        if not targets:
            return self._error(400, "Note must be attached to a lead, deal, person or organization.",
                               error_info="Validation failed.")
        if "lead_id" in targets and targets["lead_id"] not in self.objects["leads"]:
            return self._error(400, "The lead does not exist", error_info="Validation failed.")
        for key, kind in (("deal_id", "deals"), ("person_id", "persons"), ("org_id", "organizations")):
            if key in targets and self._live(kind, targets[key]) is None:
                return self._error(400, f"{key}: entity not found", error_info="Validation failed.")
        nid = next(self.ids)
        note = {"id": nid, "content": body["content"], "user_id": 1, "add_time": _now().replace("T", " ")[:19],
                "update_time": _now().replace("T", " ")[:19], "active_flag": True, "pinned_to_lead_flag": False,
                "pinned_to_deal_flag": False, "pinned_to_person_flag": False, "lead_id": None, "deal_id": None,
                "person_id": None, "org_id": None, **targets}
        self.objects["notes"][str(nid)] = note
        return self._ok(note)

    def _op_getNotes(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        notes = [n for n in self.objects["notes"].values() if all(
            str(n.get(k)) == args[k] for k in ("lead_id", "deal_id", "person_id", "org_id") if args.get(k))]
        start, limit = int(args.get("start") or 0), int(args.get("limit") or 100)
        return self._ok(notes[start:start + limit], additional={"pagination": {
            "start": start, "limit": limit, "more_items_in_collection": len(notes) > start + limit}})

    def _op_addActivity(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        if body.get("lead_id") is not None and body["lead_id"] not in self.objects["leads"]:
            return self._error(400, "The lead does not exist", error_info="Validation failed.")
        for key, kind in (("deal_id", "deals"), ("person_id", "persons")):
            if body.get(key) is not None and self._live(kind, body[key]) is None:
                return self._error(400, f"{key}: entity not found", error_info="Validation failed.")
        if not self._user_ok(body.get("owner_id")):
            return self._error(400, "owner_id: user not found", error_info="Validation failed.")
        if body.get("type") not in (None, "call", "meeting", "task", "deadline", "email", "lunch"):
            return self._error(400, f"Activity type '{body['type']}' does not exist", error_info="Validation failed.")
        aid = next(self.ids)
        activity = {"id": aid, "subject": body.get("subject") or "Call", "type": body.get("type") or "call",
                    "owner_id": 1, "done": False, "busy": False, "due_date": None, "due_time": None, "lead_id": None,
                    "deal_id": None, "person_id": None, "org_id": None, "add_time": _now(), "update_time": _now(),
                    "is_deleted": False, **body}
        self.objects["activities"][str(aid)] = activity
        return self._ok(activity)

    def _op_getActivities(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        found = [a for a in self.objects["activities"].values() if not a["is_deleted"] and all(
            str(a.get(k)) == args[k] for k in ("lead_id", "deal_id", "person_id", "owner_id") if args.get(k))]
        return self._ok(found[: int(args.get("limit") or 100)], additional={"next_cursor": None})

    def _op_getCurrentUser(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.users[0])

    def _op_getUsers(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok(self.users)


def create_app(api_token: str = "pd-demo", **kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator; the emulator is ``app.config['EMULATOR']``."""
    emulator = PipedriveEmulator(api_token, **kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
