"""An emulator of Meta's Lead Ads surface: the Graph API's lead read, and the Page's ``leadgen`` webhooks.

Meta publishes no licensed machine-readable description of this API (no OpenAPI or AsyncAPI document for the
Lead object or the ``leadgen`` webhook), so the contract here is written from Meta's documentation in words:
"Retrieving Leads" (the ``/{lead-id}`` read and its ``field_data``, the rate limit of 200 x 24 x leads of the
last 90 days per Page and day), "Webhooks for Lead Ads" (the ``leadgen`` change's ``leadgen_id``, ``form_id``,
``ad_id``, ``adgroup_id``, ``page_id``, ``created_time``), "Getting Started" with webhooks (the verify handshake,
``X-Hub-Signature-256``) and the Graph API's "Handling Errors" (the error body, codes 4, 17, 32, 100, 190).

API side: ``GET /{version}/{leadgen-id}?fields=…`` with the Page access token (bearer header or
``access_token``): the requested fields only (``id`` always; no ``fields``: ``id``, ``created_time``,
``field_data``), a field the Lead has not refused with ``(#100) Tried accessing nonexisting field``; a wrong token
gets ``OAuthException`` 190, an unknown id ``GraphMethodException`` 100/33. Faults (:meth:`MetaGraphEmulator.fail_next`):
the rate limit errors 4, 17 and 32, a transient 2, a 500 and 190. The Conversions API's ``POST
/{version}/{dataset_id}/events`` is :mod:`emulators.meta_conversions`'s (:attr:`MetaGraphEmulator.conversions`).

Platform side: :meth:`MetaGraphEmulator.submit` makes a lead of a form's answers (checked against the form's
questions: a choice answer must be one of its options' keys or values) and delivers its ``leadgen`` webhook,
signed with the app secret, from a background thread: several times (redelivery), late, or in another order than
the leads were made. ``POST /_emulator/leadgen`` does the same over HTTP. Organic and test leads have no ad.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from flask import Flask, Response, jsonify, request

from emulators._fault_queue import FaultQueue
from emulators._webhook_sender import WebhookSender
from emulators.meta_conversions import ConversionsAPI

#: the Lead object's fields a read may ask for (Meta's Lead reference)
LEAD_FIELDS = frozenset({"id", "created_time", "field_data", "ad_id", "ad_name", "adset_id", "adset_name",
                         "campaign_id", "campaign_name", "form_id", "is_organic", "platform",
                         "custom_disclaimer_responses", "partner_name", "post", "retailer_item_id", "home_listing",
                         "vehicle", "post_submission_check_result"})
DEFAULT_FIELDS = ("id", "created_time", "field_data")


def sign(raw: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the exact body under the app secret
    (from Meta's webhook docs, apart from the relay's check; known-answer vectors test both)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def graph_id() -> str:
    """A fresh Graph object id: digits, as Meta's are."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


@dataclass
class Question:
    """A form's question: its key, its label, and for a multiple-choice one its options (key → label)."""

    key: str
    label: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Form:
    """A lead form of the Page."""

    id: str
    name: str
    questions: list[Question]
    #: custom disclaimer checkboxes: key → text
    checkboxes: dict[str, str] = field(default_factory=dict)


@dataclass
class MetaGraphEmulator(FaultQueue):
    """State and behaviour of the emulated Lead Ads surface.

    Args:
        page_access_token: the token a lead read must carry.
        app_secret: signs the ``leadgen`` webhooks.
        relay_url: where the webhooks go (``…/webhooks/meta/leadgen``).
        page_id: the Page the forms belong to.
    """

    FAULTS: ClassVar[frozenset[str]] = frozenset({"4", "17", "32", "2", "500", "190"})
    DEFAULT_FAULT: ClassVar[str] = "4"

    page_access_token: str
    app_secret: str
    relay_url: str = ""
    page_id: str = "109876543210987"
    forms: dict[str, Form] = field(default_factory=dict)
    leads: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[tuple[str, int]] = field(default_factory=list)
    faults: list[list[Any]] = field(default_factory=list)
    #: the token the Conversions API takes (a system user's); the Page token when not given
    conversions_token: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        #: the Conversions API (``POST /{version}/{dataset_id}/events``): :mod:`emulators.meta_conversions`
        self.conversions = ConversionsAPI(self.conversions_token or self.page_access_token)
        self.sender = WebhookSender(self._post, name="meta-leadgen-webhooks")
        self.app = self._make_app()

    # -- state ---------------------------------------------------------------------------------
    def add_form(self, form_id: str, name: str, questions: list[Question], checkboxes: dict[str, str] | None = None,
                 ) -> Form:
        """Create a lead form of the Page."""
        form = Form(form_id, name, questions, dict(checkboxes or {}))
        with self.lock:
            self.forms[form_id] = form
        return form

    def create_lead(self, form_id: str, answers: dict[str, str | list[str]], *, ad: dict[str, str] | None = None,
                    platform: str = "fb", consent: dict[str, bool] | None = None, organic: bool = False) -> str:
        """A lead of form ``form_id`` with ``answers`` (question key → value, or values); returns its id.

        ``ad``: ``ad_id``, ``ad_name``, ``adset_id``, ``adset_name``, ``campaign_id``, ``campaign_name`` (none for
        an organic or test lead); ``consent``: the custom disclaimer checkboxes ticked or not.

        Raises:
            ValueError: an answer the form could not have given (unknown question, a choice not among its options).
        """
        form = self.forms.get(form_id)
        if form is None:
            raise ValueError(f"no form {form_id!r}")
        by_key = {q.key: q for q in form.questions}
        field_data = []
        for key, given in answers.items():
            question = by_key.get(key)
            values = [given] if isinstance(given, str) else list(given)
            if question is None:
                raise ValueError(f"form {form_id} has no question {key!r}")
            if question.options and not all(v in question.options or v in question.options.values() for v in values):
                raise ValueError(f"{values!r} is not among the options of {key!r}")
            field_data.append({"name": key, "values": values})
        unknown = set(consent or {}) - set(form.checkboxes)
        if unknown:
            raise ValueError(f"form {form_id} has no checkbox {sorted(unknown)}")
        leadgen_id = graph_id()
        now = time.time()
        lead: dict[str, Any] = {
            "id": leadgen_id, "created_time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "field_data": field_data, "form_id": form_id, "is_organic": organic or not ad, "platform": platform,
            "custom_disclaimer_responses": [{"checkbox_key": k, "is_checked": "1" if v else "0"}
                                            for k, v in (consent or {}).items()],
            "_created": int(now)}
        if ad and not organic:
            lead.update({k: v for k, v in ad.items() if k in LEAD_FIELDS})
        with self.lock:
            self.leads[leadgen_id] = lead
        return leadgen_id

    def webhook_body(self, leadgen_ids: list[str]) -> dict[str, Any]:
        """The Page webhook Meta sends for ``leadgen_ids`` (one change each)."""
        changes = []
        for leadgen_id in leadgen_ids:
            lead = self.leads[leadgen_id]
            value: dict[str, Any] = {"leadgen_id": leadgen_id, "form_id": lead["form_id"], "page_id": self.page_id,
                                     "created_time": lead["_created"]}
            if lead.get("ad_id"):
                value.update(ad_id=lead["ad_id"], adgroup_id=lead.get("adset_id", lead["ad_id"]))
            changes.append({"field": "leadgen", "value": value})
        return {"object": "page", "entry": [{"id": self.page_id, "time": int(time.time()), "changes": changes}]}

    def deliver(self, leadgen_id: str, *, times: int = 1, delay: float = 0.0, spacing: float = 0.0) -> None:
        """Deliver the lead's webhook ``times`` times (Meta delivers at least once), the first after ``delay``."""
        for n in range(times):
            self.sender.schedule(self.webhook_body([leadgen_id]), delay + n * spacing)

    def submit(self, form_id: str, answers: dict[str, str | list[str]], *, times: int = 1, delay: float = 0.0,
               **lead: Any) -> str:
        """:meth:`create_lead`, then :meth:`deliver`; returns the lead's id."""
        leadgen_id = self.create_lead(form_id, answers, **lead)
        self.deliver(leadgen_id, times=times, delay=delay)
        return leadgen_id

    def post_webhook(self, body: dict[str, Any] | bytes, *, signature: str | None = None) -> int:
        """POST a webhook to ``relay_url`` now, signed unless ``signature`` says otherwise; the relay's status."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        header = signature if signature is not None else sign(raw, self.app_secret)
        headers = {"Content-Type": "application/json", **({"X-Hub-Signature-256": header} if header else {})}
        return requests.post(self.relay_url, data=raw, headers=headers, timeout=10).status_code

    def _post(self, body: dict[str, Any]) -> None:
        status = self.post_webhook(body)
        with self.lock:
            for change in body["entry"][0]["changes"]:
                self.delivered.append((change["value"]["leadgen_id"], status))

    def wait_for_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every webhook scheduled has been posted.

        Raises:
            TimeoutError: some were still waiting after ``timeout`` seconds.
        """
        if not self.sender.wait(timeout):
            raise TimeoutError(f"{self.sender.pending} leadgen webhooks still waiting after {timeout} s")

    # -- the API -------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: int, message: str, **extra: Any) -> tuple[Response, int]:
        body = {"error": {"message": message, "type": extra.pop("type", "OAuthException"), "code": code,
                          "fbtrace_id": secrets.token_urlsafe(12), **extra}}
        return jsonify(body), status

    def _fault(self, kind: str) -> tuple[Response, int]:
        if kind == "500":
            return self._error(500, 1, "An unknown error occurred", is_transient=True)
        if kind == "2":
            return self._error(503, 2, "An unexpected error has occurred. Please retry your request later.",
                               is_transient=True)
        if kind == "190":
            return self._error(400, 190, "Error validating access token: Session has expired.", error_subcode=463)
        said = {"4": "Application request limit reached", "17": "User request limit reached",
                "32": "Page request limit reached"}[kind]
        response, status = self._error(400, int(kind), f"(#{kind}) {said}", is_transient=True)
        if kind == "32":
            response.headers["X-Business-Use-Case-Usage"] = json.dumps({self.page_id: [{
                "type": "pages", "call_count": 100, "total_cputime": 20, "total_time": 30,
                "estimated_time_to_regain_access": 2}]})
        return response, status

    def _token(self) -> str:
        header = request.headers.get("Authorization", "")
        return header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.args.get("access_token", "")

    def _make_app(self) -> Flask:
        app = Flask("meta-graph-emulator")
        self.conversions.register(app)

        @app.get("/<version>/<object_id>")
        def read(version: str, object_id: str) -> tuple[Response, int]:
            asked = [f for f in request.args.get("fields", "").split(",") if f] or list(DEFAULT_FIELDS)
            with self.lock:
                self.reads.append({"id": object_id, "fields": asked, "at": time.time()})
            if not (version.startswith("v") and version[1:].replace(".", "", 1).isdigit()):
                return self._error(400, 2500, f"Unknown path components: /{version}")
            if not hmac.compare_digest(self._token().encode(), self.page_access_token.encode()):
                return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
            fault = self._take_fault()
            if fault is not None:
                return self._fault(fault)
            lead = self.leads.get(object_id)
            if lead is None:
                return self._error(400, 100, f"Unsupported get request. Object with ID '{object_id}' does not exist, "
                                   "cannot be loaded due to missing permissions, or does not support this operation.",
                                   type="GraphMethodException", error_subcode=33)
            bad = [f for f in asked if f not in LEAD_FIELDS]
            if bad:
                with self.lock:
                    self.violations.append({"read": object_id, "problems": [f"unknown field {bad[0]!r}"]})
                return self._error(400, 100, f"(#100) Tried accessing nonexisting field ({bad[0]}) on node type "
                                   "(LeadgenLeadData)")
            return jsonify({name: lead[name] for name in ("id", *asked) if name in lead}), 200

        @app.post("/_emulator/leadgen")
        def control() -> tuple[Response, int]:
            data = request.get_json(silent=True) or {}
            try:
                leadgen_id = self.submit(str(data.get("form_id", "")), data.get("answers") or {},
                                         times=int(data.get("times", 1)), delay=float(data.get("delay", 0.0)),
                                         ad=data.get("ad"), platform=str(data.get("platform", "fb")),
                                         consent=data.get("consent"), organic=bool(data.get("organic", False)))
            except ValueError as exc:
                return jsonify({"error": str(exc)}), 400
            return jsonify({"leadgen_id": leadgen_id}), 200

        return app


__all__ = ["Form", "MetaGraphEmulator", "Question", "create_app", "sign"]


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = MetaGraphEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
