"""An emulator of the WhatsApp Cloud API (Graph API) and of the patients who write to it.

Outbound side (what the relay calls): ``POST /{version}/{phone-number-id}/messages`` with a
bearer token. Every body is checked against Meta's own OpenAPI description, and against what its
reference says in words (:mod:`emulators._whatsapp_media`: captions, file names, links,
``biz_opaque_callback_data``, template parameters); a body Meta would reject gets Meta's error
(``(#100) Invalid parameter``, 132018, 132005) and is recorded as a violation. Media messages sent by
``link`` are recorded with their link and caption (nothing is fetched). Answers, errors (190 bad token,
130429 throughput, 131047 re-engagement, 500) and message ids have the real shapes. Faults are injected
with :meth:`WhatsAppEmulator.fail_next`.

Media: ``GET /{version}/{media-id}`` answers a patient's file's URL, type, SHA-256 and size (unknown id:
Graph's ``GraphMethodException`` 100/33; wrong token: 401/190), and the URL serves the bytes to a
request with the bearer token, for 5 minutes, as Meta's lookaside URLs do.

Status webhooks (with ``status_webhooks=True``; off by default, so tests that count webhooks are not
disturbed): after each accepted message, ``sent`` then ``delivered``, ``read`` when the patient reads
(:meth:`Patient.read_all`), or ``failed`` (fault ``131026``, or a link to a type Meta does not take: 131053),
each echoing ``biz_opaque_callback_data``, signed like the message webhooks and posted to ``relay_url``
from a background thread; :meth:`WhatsAppEmulator.wait_for_webhooks` waits until they are all posted.

Patient side: :meth:`WhatsAppEmulator.patient` (:mod:`emulators._whatsapp_patient`) builds webhooks
exactly as Meta sends them, with real bytes behind every photo, document and voice note.
:meth:`WhatsAppEmulator.post_webhook` checks each against the webhook payload Meta's description documents
(a webhook Meta would never send is recorded as a violation), signs it with the app secret
(``X-Hub-Signature-256``) and posts it to the relay.

WhatsApp Flows (:mod:`emulators._whatsapp_flows`, Flow JSON checks in :mod:`emulators._whatsapp_flow_json`): the
Flows API on Meta's paths (create, list, details, metadata, delete, upload the Flow JSON with Meta's
``validation_errors``, publish, deprecate) on the account's :attr:`WhatsAppEmulator.flows`; a ``flow`` message is
refused as Meta refuses it (unknown or deprecated flow, draft without ``mode: "draft"``, a screen the flow does not
have, empty ``data``); a patient fills the form (:meth:`Patient.fill_flow`) and the relay gets the ``nfm_reply``
webhook Meta sends, with the ``complete`` payload and the ``flow_token`` in ``response_json``.

Control endpoints (JSON, for the demo page): ``GET /_emulator/messages?to=<wa_id>``,
``POST /_emulator/patients/<wa_id>/send``, ``POST /_emulator/patients/<wa_id>/read``,
``POST /_emulator/patients/<wa_id>/flow`` (``{"values": {...}}``; 400 with the reason WhatsApp would not let them
through), ``GET /_emulator/flows`` (every flow with its Flow JSON).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
from flask import Flask, Response, jsonify, request

from emulators._checks import whatsapp_message_errors, whatsapp_webhook_errors
from emulators._whatsapp_flows import FlowsApiError, FlowStore, describe, wanted_fields
from emulators._whatsapp_flows import register as register_flows
from emulators._whatsapp_media import (
    LINK_SECONDS,
    MediaStore,
    link_failure,
    message_errors,
    query_errors,
    template_error,
)
from emulators._whatsapp_patient import Patient, wamid
from emulators._whatsapp_statuses import UNDELIVERABLE, StatusWebhooks


def sign(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header Meta sends with a webhook: ``sha256=`` and the hex HMAC-SHA256
    of the exact body under the app secret (written here from Meta's docs, apart from the relay's own
    check, which the known-answer vectors test both against)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class Sent:
    """One message the relay sent, as the emulator recorded it."""

    id: str
    to: str
    payload: dict[str, Any]
    at: float
    #: the business number (phone number id) it was sent from
    sender: str = ""

    @property
    def tracking(self) -> str | None:
        """The ``biz_opaque_callback_data`` it was sent with."""
        value = self.payload.get("biz_opaque_callback_data")
        return value if isinstance(value, str) else None


@dataclass
class Fault:
    kind: str  # one of WhatsAppEmulator.FAULTS
    remaining: int


@dataclass
class WhatsAppEmulator:
    """State and behaviour of the emulated Cloud API.

    Args:
        access_token: the token the relay must send.
        phone_number_id: the business phone number id the relay sends from.
        other_numbers: the account's other business numbers (phone number id → display number): the relay may
            send from them too, and patients may write to them.
        app_secret: signs the webhooks the emulated patients send.
        relay_url: where patients' webhooks go (``…/webhooks/whatsapp``).
        status_webhooks: send the status webhooks Meta sends after each accepted message.
        status_delay_seconds: how late the statuses of a message come with the ``status_delay`` fault.
        media_link_seconds: how long a media download link lasts.
    """

    #: what :meth:`fail_next` accepts: the call fails (429, 500, timeout, 190, 131047), or is accepted and
    #: then fails (131026: a ``failed`` status) or has its statuses come late (``status_delay``)
    FAULTS: ClassVar[frozenset[str]] = frozenset({"429", "500", "timeout", "190", "131047", "131026",
                                                  "status_delay"})

    access_token: str
    phone_number_id: str
    app_secret: str
    other_numbers: dict[str, str] = field(default_factory=dict)
    relay_url: str = ""
    waba_id: str = "102290129340398"
    display_phone_number: str = "905320000000"
    timeout_seconds: float = 20.0
    status_webhooks: bool = False
    status_delay_seconds: float = 1.0
    media_link_seconds: float = LINK_SECONDS
    sent: list[Sent] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    inbound: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    faults: list[Fault] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.media = MediaStore(self.media_link_seconds)
        self.statuses = StatusWebhooks(lambda body: self.post_webhook(body)[0], self._status_envelope)
        #: the WhatsApp Flows of the business account (:mod:`emulators._whatsapp_flows`)
        self.flows = FlowStore()
        self.app = self._make_app()
        register_flows(self, self.app)

    # -- faults --------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, kind: str = "500") -> None:
        """Make the next ``count`` calls fail with ``kind`` (one of :attr:`FAULTS`).

        Raises:
            ValueError: ``kind`` is not one of them.
        """
        if kind not in self.FAULTS:
            raise ValueError(f"kind must be one of {sorted(self.FAULTS)}, got {kind!r}")
        with self.lock:
            self.faults.append(Fault(kind, count))

    def _take_fault(self, only: frozenset[str] | None = None) -> str | None:
        """The fault this call meets, if any; with ``only``, a fault of another kind is left for a later call."""
        with self.lock:
            while self.faults and self.faults[0].remaining <= 0:
                self.faults.pop(0)
            if not self.faults or (only is not None and self.faults[0].kind not in only):
                return None
            self.faults[0].remaining -= 1
            return self.faults[0].kind

    def messages_to(self, wa_id: str, *more: str) -> list[Sent]:
        """What the relay sent to one patient (under any of the ids given), in order."""
        ids = {wa_id, *more}
        with self.lock:
            return [m for m in self.sent if m.to in ids]

    @property
    def numbers(self) -> dict[str, str]:
        """Every business number of the account: phone number id → display number."""
        return {self.phone_number_id: self.display_phone_number, **self.other_numbers}

    # -- webhooks ------------------------------------------------------------------------------
    def _status_envelope(self, statuses: list[dict[str, Any]]) -> dict[str, Any]:
        """Statuses come in the webhook of the business number their message was sent from."""
        ids = {status.get("id") for status in statuses}
        with self.lock:
            sender = next((m.sender for m in self.sent if m.id in ids and m.sender), None)
        return self.envelope({"statuses": statuses}, phone_number_id=sender)

    def envelope(self, value: dict[str, Any], *, phone_number_id: str | None = None) -> dict[str, Any]:
        """A complete ``messages`` webhook body around ``value``'s lists (messages, contacts, statuses), for the
        business number ``phone_number_id`` (the main one by default)."""
        number = phone_number_id or self.phone_number_id
        return {"object": "whatsapp_business_account", "entry": [{"id": self.waba_id, "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.numbers.get(number, self.display_phone_number),
                             "phone_number_id": number}, **value}}]}]}

    def post_webhook(self, body: dict[str, Any] | bytes, *, signature: str | None = None) -> tuple[int, bytes]:
        """POST a webhook to ``relay_url``, signed unless ``signature`` says otherwise.

        A body given as a dict is first checked against Meta's webhook description: one Meta would never
        send is recorded in ``violations`` (and still posted: the relay must cope). Bytes are posted as given.

        Returns:
            The relay's HTTP status, and the exact bytes posted.
        """
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        if isinstance(body, dict):
            problems = whatsapp_webhook_errors(body)
            if problems:
                with self.lock:
                    self.violations.append({"webhook": body, "problems": problems})
        headers = {"Content-Type": "application/json", **self._proof(raw, signature)}
        return requests.post(self.webhook_url(), data=raw, headers=headers, timeout=10).status_code, raw

    def _proof(self, raw: bytes, signature: str | None) -> dict[str, str]:
        """The headers that prove a webhook is the vendor's: Meta's signature (``signature`` overrides it;
        empty: none). A provider in front of the Cloud API proves it its own way (:mod:`emulators.dialog360`)."""
        header = signature if signature is not None else sign(raw, self.app_secret)
        return {"X-Hub-Signature-256": header} if header else {}

    def webhook_url(self) -> str:
        """Where patients' webhooks go."""
        return self.relay_url

    def wait_for_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every status webhook scheduled so far has been posted.

        Raises:
            TimeoutError: some were still waiting after ``timeout`` seconds.
        """
        if not self.statuses.sender.wait(timeout):
            raise TimeoutError(f"{self.statuses.sender.pending} status webhooks still waiting after {timeout} s")

    # -- the API -------------------------------------------------------------------------------
    def _error(self, status: int, code: int, message: str, **extra: Any) -> tuple[Response, int]:
        body = {"error": {"message": message, "type": extra.pop("type", "OAuthException"), "code": code,
                          "fbtrace_id": secrets.token_urlsafe(12), **extra}}
        return jsonify(body), status

    def _refused(self, fault: str | None) -> tuple[Response, int] | None:
        """The answer to a call that fails before its body is read: an injected fault or a wrong token."""
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
        if fault == "500":
            return self._error(500, 2, "An unexpected error has occurred. Please retry your request later.",
                               is_transient=True)
        if fault == "429":
            return self._error(429, 130429, "(#130429) Rate limit hit",
                               error_data={"messaging_product": "whatsapp",
                                           "details": "Cloud API message throughput has been reached."})
        if fault == "190" or not self._authorized():
            return self._unauthorized()
        return None

    def _authorized(self) -> bool:
        """Whether the call carries the credential (Meta: the bearer token)."""
        return request.headers.get("Authorization", "") == f"Bearer {self.access_token}"

    def _unauthorized(self) -> tuple[Response, int]:
        return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")

    def media_root(self) -> str:
        """The root of the media URLs the media answer names (Meta: its lookaside host; here, this server)."""
        return request.url_root

    def _invalid(self, record: dict[str, Any], problems: list[str]) -> tuple[Response, int]:
        with self.lock:
            self.violations.append({**record, "problems": problems})
        return self._error(400, 100, "(#100) Invalid parameter",
                           error_data={"messaging_product": "whatsapp", "details": problems[0]})

    def _accept(self, body: dict[str, Any], fault: str | None, sender: str) -> tuple[Response, int]:
        message = Sent(wamid(), body["to"], body, time.time(), sender)
        with self.lock:
            self.sent.append(message)
        if self.status_webhooks:
            self.statuses.accepted(
                message.id, message.to, message.tracking,
                delay=self.status_delay_seconds if fault == "status_delay" else 0.0,
                error=UNDELIVERABLE if fault == "131026" else link_failure(body))
        return jsonify({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                        "messages": [{"id": message.id}]}), 200

    def _flow_problems(self, body: dict[str, Any]) -> list[str]:
        """Why Meta refuses a ``flow`` message for the flow it names (:meth:`FlowStore.message_error`)."""
        refusal = self.flows.message_error(body)
        return [refusal] if refusal is not None else []

    def _flow_details(self, flow_id: str, args: dict[str, str]) -> tuple[Response, int]:
        """``GET /{Version}/{Flow-ID}``: the flow's details, the ``fields`` asked for."""
        flow = self.flows.get(flow_id)
        problems = query_errors("/{Version}/{Flow-ID}", "get", args)
        if flow is None or problems:
            return self._invalid({"query": args}, problems or [f"{flow_id}: no such flow"])
        try:
            return jsonify(describe(flow, wanted_fields(args), self)), 200
        except FlowsApiError as error:
            return self._invalid({"query": args}, [error.message])

    def _make_app(self) -> Flask:
        app = Flask("whatsapp-emulator")

        @app.post("/<version>/<phone_number_id>/messages")
        def messages(version: str, phone_number_id: str) -> tuple[Response, int]:
            self.calls += 1
            fault = self._take_fault()
            refused = self._refused(fault)
            if refused is not None:
                return refused
            if not version.startswith("v") or phone_number_id not in self.numbers:
                return self._error(400, 100, "(#100) Invalid parameter",
                                   error_data={"details": "Unknown phone number id or version"})
            body: dict[str, Any] = request.get_json(silent=True) or {}
            problems = whatsapp_message_errors(body) or message_errors(body) or self._flow_problems(body)
            if problems:
                return self._invalid({"body": body}, problems)
            if "status" in body:
                with self.lock:
                    self.read.append(body["message_id"])
                return jsonify({"success": True}), 200
            refusal = template_error(body)
            if refusal is not None:
                with self.lock:
                    self.violations.append({"body": body, "problems": [refusal[2]]})
                return self._error(400, refusal[0], f"(#{refusal[0]}) {refusal[1]}",
                                   error_data={"messaging_product": "whatsapp", "details": refusal[2]})
            if fault == "131047":
                return self._error(400, 131047, "(#131047) Re-engagement message",
                                   error_data={"details": "More than 24 hours have passed since the customer last "
                                                          "replied to this number."})
            return self._accept(body, fault, phone_number_id)

        @app.get("/<version>/<media_id>")
        def media_url(version: str, media_id: str) -> tuple[Response, int]:
            self.calls += 1
            refused = self._refused(self._take_fault())
            if refused is not None:
                return refused
            args = request.args.to_dict()
            if version.startswith("v") and self.flows.get(media_id) is not None:
                return self._flow_details(media_id, args)  # a flow shares the path: /{Version}/{Flow-ID}
            problems = query_errors("/{Version}/{Media-ID}", "get", args)
            if problems:
                return self._invalid({"query": args}, problems)
            media = self.media.get(media_id)
            if not version.startswith("v") or media is None or args.get(
                    "phone_number_id", self.phone_number_id) not in self.numbers:
                return self._error(400, 100, f"Unsupported get request. Object with ID '{media_id}' does not exist, "
                                   "cannot be loaded due to missing permissions, or does not support this operation. "
                                   "Please read the Graph API documentation at "
                                   "https://developers.facebook.com/docs/graph-api",
                                   type="GraphMethodException", error_subcode=33)
            return jsonify({"messaging_product": "whatsapp", "url": self.media.link(media, self.media_root()),
                            "mime_type": media.mime_type, "sha256": media.sha256_hex,
                            "file_size": str(len(media.content)), "id": media.id}), 200

        @app.get("/whatsapp_business/attachments/")
        def media_download() -> Response | tuple[Response, int]:
            self.calls += 1
            if not self._authorized():
                # the link alone gives nothing: Meta serves the file only with the access token
                return self._unauthorized()
            media, why = self.media.resolve(request.args.to_dict())
            if media is None:
                return self._error(404, 100, f"Media link {why}", type="GraphMethodException")
            return Response(media.content, mimetype=media.mime_type)

        @app.get("/_emulator/messages")
        def list_messages() -> Response:
            to = request.args.get("to", "")
            return jsonify([{"id": m.id, "to": m.to, "at": m.at, "payload": m.payload,
                             "status": self.statuses.state(m.id)} for m in self.messages_to(to)])

        @app.get("/_emulator/inbound")
        def list_inbound() -> Response:
            return jsonify(self.inbound.get(request.args.get("from", ""), []))

        @app.post("/_emulator/patients/<wa_id>/send")
        def patient_send(wa_id: str) -> tuple[Response, int]:
            data = request.get_json(silent=True) or {}
            patient = self.patient(wa_id, data.get("name") or "Demo Patient")
            if data.get("button"):
                status = patient.press_button(data["button"]["id"], data["button"]["title"], referral=data.get("ad"))
            elif data.get("list"):
                status = patient.choose_from_list(data["list"]["id"], data["list"]["title"])
            elif data.get("location"):
                loc = data["location"]
                status = patient.share_location(loc["latitude"], loc["longitude"], loc.get("name"))
            else:
                status = patient.send_text(str(data.get("text", "")), referral=data.get("ad"))
            return jsonify({"relay_status": status}), 200

        @app.post("/_emulator/patients/<wa_id>/read")
        def patient_read(wa_id: str) -> tuple[Response, int]:
            return jsonify({"read": self.patient(wa_id).read_all()}), 200

        @app.get("/_emulator/state")
        def state() -> Response:
            return jsonify({"sent": len(self.sent), "read": len(self.read), "violations": self.violations[-20:]})
        return app

    # -- patients ------------------------------------------------------------------------------
    def patient(self, wa_id: str | None = None, name: str = "Patient", *, user_id: str | None = None,
                username: str | None = None, phone_hidden: bool = False, to: str | None = None) -> Patient:
        """A patient who writes from ``wa_id`` (phone digits) and/or a business-scoped ``user_id``.

        ``username``: the username they adopted; ``phone_hidden``: Meta withholds their number (they are known
        by ``user_id`` alone); ``to``: the business number (phone number id) they write to.
        """
        return Patient(self, wa_id, name, user_id, username=username, phone_hidden=phone_hidden, to=to)


__all__ = ["Fault", "Patient", "Sent", "WhatsAppEmulator", "create_app", "sign"]


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = WhatsAppEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
