"""An emulator of the WhatsApp Cloud API (Graph API) and of the patients who write to it.

Outbound side (what the relay calls): ``POST /{version}/{phone-number-id}/messages`` with a
bearer token. Every body is checked against Meta's own OpenAPI description; a body Meta would
reject gets Meta's ``(#100) Invalid parameter`` error, and is recorded as a violation. Answers,
errors (190 bad token, 130429 throughput, 131047 re-engagement, 500) and message ids have the
real shapes. Faults are injected with :meth:`WhatsAppEmulator.fail_next`.

Patient side: :meth:`WhatsAppEmulator.patient` builds webhooks exactly as Meta sends them (a reply
to buttons or a list names the message that carried them in ``context``), checks each against the
webhook payload Meta's description documents (a webhook Meta would never send is recorded as a
violation), signs it with the app secret (``X-Hub-Signature-256``) and posts it to the relay.

Control endpoints (JSON, for the demo page): ``GET /_emulator/messages?to=<wa_id>``,
``POST /_emulator/patients/<wa_id>/send``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

from emulators._checks import whatsapp_message_errors, whatsapp_webhook_errors


def sign(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header Meta sends with a webhook: ``sha256=`` and the hex HMAC-SHA256
    of the exact body under the app secret (written here from Meta's docs, apart from the relay's own
    check, which the known-answer vectors test both against)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()

_counter = itertools.count(1)


def _wamid() -> str:
    return "wamid.HBgM" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")


@dataclass
class Sent:
    """One message the relay sent, as the emulator recorded it."""

    id: str
    to: str
    payload: dict[str, Any]
    at: float


@dataclass
class Fault:
    kind: str  # "429" | "500" | "timeout" | "190" | "131047"
    remaining: int


@dataclass
class WhatsAppEmulator:
    """State and behaviour of the emulated Cloud API.

    Args:
        access_token: the token the relay must send.
        phone_number_id: the business phone number id the relay sends from.
        app_secret: signs the webhooks the emulated patients send.
        relay_url: where patients' webhooks go (``…/webhooks/whatsapp``).
    """

    access_token: str
    phone_number_id: str
    app_secret: str
    relay_url: str = ""
    waba_id: str = "102290129340398"
    display_phone_number: str = "905320000000"
    timeout_seconds: float = 20.0
    sent: list[Sent] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    inbound: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    faults: list[Fault] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.app = self._make_app()

    # -- faults --------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, kind: str = "500") -> None:
        """Make the next ``count`` calls fail with ``kind`` (429, 500, timeout, 190, 131047)."""
        with self.lock:
            self.faults.append(Fault(kind, count))

    def _take_fault(self) -> str | None:
        with self.lock:
            while self.faults and self.faults[0].remaining <= 0:
                self.faults.pop(0)
            if not self.faults:
                return None
            self.faults[0].remaining -= 1
            return self.faults[0].kind

    def messages_to(self, wa_id: str) -> list[Sent]:
        """What the relay sent to one patient, in order."""
        with self.lock:
            return [m for m in self.sent if m.to == wa_id]

    # -- the API -------------------------------------------------------------------------------
    def _error(self, status: int, code: int, message: str, **extra: Any) -> tuple[Response, int]:
        body = {"error": {"message": message, "type": "OAuthException", "code": code,
                          "fbtrace_id": secrets.token_urlsafe(12), **extra}}
        return jsonify(body), status

    def _make_app(self) -> Flask:
        app = Flask("whatsapp-emulator")

        @app.post("/<version>/<phone_number_id>/messages")
        def messages(version: str, phone_number_id: str) -> tuple[Response, int]:
            self.calls += 1
            fault = self._take_fault()
            if fault == "timeout":
                time.sleep(self.timeout_seconds)
            if fault == "500":
                return self._error(500, 2, "An unexpected error has occurred. Please retry your request later.",
                                   is_transient=True)
            if fault == "429":
                return self._error(429, 130429, "(#130429) Rate limit hit",
                                   error_data={"messaging_product": "whatsapp",
                                               "details": "Cloud API message throughput has been reached."})
            auth = request.headers.get("Authorization", "")
            if fault == "190" or auth != f"Bearer {self.access_token}":
                return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
            if not version.startswith("v") or phone_number_id != self.phone_number_id:
                return self._error(400, 100, "(#100) Invalid parameter",
                                   error_data={"details": "Unknown phone number id or version"})
            body: dict[str, Any] = request.get_json(silent=True) or {}
            problems = whatsapp_message_errors(body)
            if problems:
                with self.lock:
                    self.violations.append({"body": body, "problems": problems})
                return self._error(400, 100, "(#100) Invalid parameter",
                                   error_data={"messaging_product": "whatsapp", "details": problems[0]})
            if "status" in body:
                with self.lock:
                    self.read.append(body["message_id"])
                return jsonify({"success": True}), 200
            if fault == "131047":
                return self._error(400, 131047, "(#131047) Re-engagement message",
                                   error_data={"details": "More than 24 hours have passed since the customer last "
                                                          "replied to this number."})
            message = Sent(_wamid(), body["to"], body, time.time())
            with self.lock:
                self.sent.append(message)
            return jsonify({"messaging_product": "whatsapp",
                            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                            "messages": [{"id": message.id}]}), 200

        @app.get("/_emulator/messages")
        def list_messages() -> Response:
            to = request.args.get("to", "")
            return jsonify([{"id": m.id, "to": m.to, "at": m.at, "payload": m.payload} for m in self.messages_to(to)])

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

        @app.get("/_emulator/state")
        def state() -> Response:
            return jsonify({"sent": len(self.sent), "read": len(self.read), "violations": self.violations[-20:]})

        return app

    # -- patients ------------------------------------------------------------------------------
    def patient(self, wa_id: str | None = None, name: str = "Patient", *, user_id: str | None = None) -> Patient:
        """A patient who writes from ``wa_id`` (phone digits) or, with no phone, a business-scoped ``user_id``."""
        return Patient(self, wa_id, name, user_id)


class Patient:
    """Sends webhooks to the relay as Meta would for one WhatsApp user."""

    def __init__(self, emulator: WhatsAppEmulator, wa_id: str | None, name: str, user_id: str | None) -> None:
        if not wa_id and not user_id:
            raise ValueError("a patient needs wa_id or user_id")
        self.emulator, self.wa_id, self.name, self.user_id = emulator, wa_id, name, user_id
        self.last_body: bytes | None = None

    def message(self, kind: str, content: dict[str, Any], *, referral: dict[str, Any] | None = None,
                context: dict[str, Any] | None = None) -> dict[str, Any]:
        """One message object as Meta puts it in ``value.messages``."""
        msg: dict[str, Any] = {"id": _wamid(), "timestamp": str(int(time.time())), "type": kind, kind: content}
        if self.wa_id:
            msg["from"] = self.wa_id
        if self.user_id:
            msg["from_user_id"] = self.user_id
        if referral:
            msg["referral"] = referral
        if context:
            msg["context"] = context
        return msg

    def payload(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """A complete webhook body carrying ``messages``."""
        contact: dict[str, Any] = {"profile": {"name": self.name}}
        if self.wa_id:
            contact["wa_id"] = self.wa_id
        if self.user_id:
            contact["user_id"] = self.user_id
        return {"object": "whatsapp_business_account", "entry": [{"id": self.emulator.waba_id, "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.emulator.display_phone_number,
                             "phone_number_id": self.emulator.phone_number_id},
                "contacts": [contact], "messages": messages}}]}]}

    def post(self, body: dict[str, Any] | bytes, *, signature: str | None = None) -> int:
        """POST a body to the relay, signed unless ``signature`` says otherwise; returns the HTTP status.

        A body built here (a dict) is first checked against Meta's webhook description: one Meta would
        never send is recorded in ``violations`` (and still posted: the relay must cope). Raw bytes are
        posted as given.
        """
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.last_body = raw
        if isinstance(body, dict):
            problems = whatsapp_webhook_errors(body)
            if problems:
                with self.emulator.lock:
                    self.emulator.violations.append({"webhook": body, "problems": problems})
        header = signature if signature is not None else sign(raw, self.emulator.app_secret)
        headers = {"Content-Type": "application/json"}
        if header:
            headers["X-Hub-Signature-256"] = header
        if isinstance(body, dict):
            with self.emulator.lock:
                # the arrival time, finer than the payload's whole seconds, orders the demo's chat
                self.emulator.inbound[self.wa_id or self.user_id or ""].append({**body, "_received_at": time.time()})
        return requests.post(self.emulator.relay_url, data=raw, headers=headers, timeout=10).status_code

    def redeliver(self) -> int:
        """Send the last webhook again, byte for byte (as Meta does when unsure it was received)."""
        if self.last_body is None:
            raise ValueError("nothing was sent yet")
        return self.post(self.last_body)

    def send_text(self, text: str, *, referral: dict[str, Any] | None = None) -> int:
        return self.post(self.payload([self.message("text", {"body": text}, referral=referral)]))

    def _carrier(self, kind: str) -> Sent | None:
        """The last message the relay sent this patient with reply buttons or a list (``kind``)."""
        for sent in reversed(self.emulator.messages_to(self.wa_id or self.user_id or "")):
            if sent.payload.get("type") == "interactive" and sent.payload["interactive"].get("type") == kind:
                return sent
        return None

    def _context(self, carrier: Sent | None) -> dict[str, Any]:
        """``context`` of a reply: the business number and the message that carried what was tapped."""
        return {"from": self.emulator.display_phone_number, "id": carrier.id if carrier else _wamid()}

    def press_button(self, button_id: str, title: str, *, referral: dict[str, Any] | None = None) -> int:
        return self.post(self.payload([self.message(
            "interactive", {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
            referral=referral, context=self._context(self._carrier("button")))]))

    def choose_from_list(self, row_id: str, title: str, description: str | None = None) -> int:
        """Tap a row of the last list sent; its description comes along when the row had one."""
        carrier = self._carrier("list")
        if description is None and carrier is not None:
            rows = [row for section in carrier.payload["interactive"]["action"].get("sections", [])
                    for row in section.get("rows", [])]
            description = next((row.get("description") for row in rows if row.get("id") == row_id), None)
        reply = {"id": row_id, "title": title, **({"description": description} if description else {})}
        return self.post(self.payload([self.message("interactive", {"type": "list_reply", "list_reply": reply},
                                                     context=self._context(carrier))]))

    def share_location(self, latitude: float, longitude: float, name: str | None = None,
                       address: str | None = None) -> int:
        content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if name:
            content["name"] = name
        if address:
            content["address"] = address
        return self.post(self.payload([self.message("location", content)]))

    def stop_marketing_messages(self) -> int:
        """Turn off the business's marketing messages in WhatsApp's settings (a ``user_preferences`` webhook)."""
        contact: dict[str, Any] = {"profile": {"name": self.name}}
        preference: dict[str, Any] = {"detail": "User requested to stop marketing messages",
                                      "category": "marketing_messages", "value": "stop", "timestamp": int(time.time())}
        for key, value in (("wa_id", self.wa_id), ("user_id", self.user_id)):
            if value:
                contact[key] = preference[key] = value
        return self.post({"object": "whatsapp_business_account", "entry": [{"id": self.emulator.waba_id, "changes": [{
            "field": "user_preferences", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.emulator.display_phone_number,
                             "phone_number_id": self.emulator.phone_number_id},
                "contacts": [contact], "user_preferences": [preference]}}]}]})

    def send_image(self, caption: str | None = None) -> int:
        content = {"id": str(next(_counter) + 1_000_000), "mime_type": "image/jpeg",
                   "sha256": secrets.token_hex(32)}
        if caption:
            content["caption"] = caption
        return self.post(self.payload([self.message("image", content)]))


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = WhatsAppEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
