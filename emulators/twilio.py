"""An emulator of Twilio's Messages API (WhatsApp and SMS) and of the patients who write through it.

Outbound side (what the relay calls): ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded,
with HTTP Basic auth (the account SID and auth token). Every form is checked against Twilio's own
description (``CreateMessageRequest`` in ``vendor_specs/twilio``, :mod:`emulators._twilio_checks`) and against
what Twilio's reference says in words, each refusal with Twilio's code and error body (``code``,
``message``, ``more_info``, ``status``): no sender (21603), no content (21619), a body over 1600 characters
(21617), an invalid ``To`` (21211), ``From`` and ``To`` of different channels (21910), an unknown Content
SID (21655), content variables that are not a JSON object (21656), more than 10 media (21623), a patient who
replied STOP (21610). Accepted messages answer 201 with the Message resource.

Status callbacks: for a message sent with ``StatusCallback``, Twilio's ``sent`` then ``delivered``; ``read``
when the patient reads (:meth:`TwilioEmulator.read_all`); or ``undelivered`` with ``ErrorCode`` 63016 (a free-form
WhatsApp message outside the 24-hour window), 63003 (a number not on WhatsApp) or 30003 (fault
``undelivered``). Each is signed (``X-Twilio-Signature`` over the callback URL) and posted from a background
thread; :meth:`TwilioEmulator.wait_for_webhooks` waits until all are posted.

Patients (:mod:`emulators._twilio_patient`) post the forms Twilio posts for a message: text, quick-reply
button, list-picker row, location, media (files served at their ``MediaUrl`` with Basic auth, through a
redirect to a short-lived link, as Twilio does), ad referrals, and SMS ``STOP``/``START``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, ClassVar
from urllib.parse import urlencode

import requests
from flask import Flask, Response, jsonify, redirect, request

from emulators._twilio_checks import create_message_errors, path_errors
from emulators._twilio_patient import MediaFile, Patient
from emulators._webhook_sender import WebhookSender

API = "2010-04-01"
_ADDRESS = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")
WINDOW_SECONDS = 24 * 3600
#: Twilio's code for an invalid value of these parameters (20001 otherwise)
_PARAMETER_CODES = {"To": 21211, "From": 21212, "StatusCallback": 21609, "ContentSid": 21655,
                    "MessagingServiceSid": 21701, "AccountSid": 20404}


def sign(url: str, params: list[tuple[str, str]] | dict[str, str], auth_token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio sends: base64 HMAC-SHA1 of the URL and the parameters sorted by name,
    each as name followed by value (written here from Twilio's docs, apart from the relay's own check)."""
    pairs = sorted(set(params.items() if isinstance(params, dict) else params))
    data = url + "".join(name + value for name, value in pairs)
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass
class Sent:
    """One message the relay sent, as the emulator recorded it."""

    sid: str
    to: str
    sender: str
    form: list[tuple[str, str]]
    at: float
    status: str = "queued"

    def get(self, name: str) -> str | None:
        """The first value of form parameter ``name``."""
        return next((value for key, value in self.form if key == name), None)

    def all(self, name: str) -> list[str]:
        """Every value of form parameter ``name``."""
        return [value for key, value in self.form if key == name]


@dataclass
class TwilioEmulator:
    """State and behaviour of the emulated Twilio account.

    Args:
        account_sid: the account (``AC`` and 32 hex digits).
        auth_token: the API password and the webhooks' signing key.
        numbers: the account's senders (``whatsapp:+…`` or ``+…``).
        relay_url: where patients' webhooks are posted.
        webhook_url: the webhook URL as configured at Twilio, which signatures cover (default ``relay_url``;
            another when the relay sits behind a proxy).
        contents: Content SIDs of the account's content templates.
        not_on_whatsapp: numbers (``+…``) that have no WhatsApp.
    """

    FAULTS: ClassVar[frozenset[str]] = frozenset({"429", "500", "timeout", "20003", "undelivered", "status_delay"})

    account_sid: str
    auth_token: str
    numbers: list[str] = field(default_factory=lambda: ["whatsapp:+14155238886", "+14155238886"])
    relay_url: str = ""
    webhook_url: str = ""
    contents: set[str] = field(default_factory=set)
    not_on_whatsapp: set[str] = field(default_factory=set)
    timeout_seconds: float = 20.0
    status_delay_seconds: float = 1.0
    sent: list[Sent] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    #: when each patient (address) last wrote, for WhatsApp's 24-hour window
    last_inbound: dict[str, float] = field(default_factory=dict)
    media: dict[str, MediaFile] = field(default_factory=dict)
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[str] = []
        self.callbacks = WebhookSender(self._post_callback, "twilio-status-callbacks")
        self.app = self._make_app()
        self.url = ""  # where the emulator is served (set by the caller once it is), for media URLs

    # -- faults ----------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, kind: str = "500") -> None:
        """Make the next ``count`` message creations fail with ``kind`` (one of :attr:`FAULTS`).

        Raises:
            ValueError: ``kind`` is not one of them.
        """
        if kind not in self.FAULTS:
            raise ValueError(f"kind must be one of {sorted(self.FAULTS)}, got {kind!r}")
        with self.lock:
            self.faults.extend([kind] * count)

    def _take_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def messages_to(self, address: str) -> list[Sent]:
        """What the relay sent to one patient's address, in order."""
        with self.lock:
            return [m for m in self.sent if m.to == address]

    # -- webhooks --------------------------------------------------------------------------------
    def post_webhook(self, form: list[tuple[str, str]], *, url: str | None = None, signature: str | None = None,
                     post_to: str | None = None) -> int:
        """POST ``form`` as Twilio does: form-encoded, signed over ``url`` (the configured webhook URL) unless
        ``signature`` says otherwise, to ``post_to`` (default: ``relay_url``). Returns the relay's status."""
        signed = url or self.webhook_url or self.relay_url
        header = signature if signature is not None else sign(signed, form, self.auth_token)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "I-Twilio-Idempotency-Token": sid("")}
        if header:
            headers["X-Twilio-Signature"] = header
        return requests.post(post_to or self.relay_url, data=urlencode(form), headers=headers, timeout=10).status_code

    def _post_callback(self, body: dict[str, Any]) -> None:
        self.post_webhook(body["form"], url=body["url"], post_to=body["url"])

    def wait_for_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every status callback scheduled so far has been posted.

        Raises:
            TimeoutError: some were still waiting after ``timeout`` seconds.
        """
        if not self.callbacks.wait(timeout):
            raise TimeoutError(f"{self.callbacks.pending} status callbacks still waiting after {timeout} s")

    def _status(self, message: Sent, status: str, delay: float = 0.0, error: int | None = None) -> None:
        message.status = status
        callback = message.get("StatusCallback")
        if not callback:
            return
        form = [("AccountSid", self.account_sid), ("ApiVersion", API), ("From", message.sender),
                ("MessageSid", message.sid), ("MessageStatus", status), ("SmsSid", message.sid),
                ("SmsStatus", status), ("To", message.to)]
        if message.to.startswith("whatsapp:"):
            form += [("ChannelPrefix", "whatsapp"), ("ChannelToAddress", message.to.removeprefix("whatsapp:"))]
        if error is not None:
            form.append(("ErrorCode", str(error)))
        self.callbacks.schedule({"form": form, "url": callback}, delay)

    def read_all(self, address: str) -> int:
        """The patient reads every WhatsApp message delivered to them: a ``read`` callback for each."""
        count = 0
        for message in self.messages_to(address):
            if message.status == "delivered" and address.startswith("whatsapp:"):
                self._status(message, "read")
                count += 1
        return count

    # -- the API ---------------------------------------------------------------------------------
    def _error(self, status: int, code: int, message: str, **extra: Any) -> tuple[Response, int]:
        return jsonify({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        "status": status, **extra}), status

    def _authorized(self, account_sid: str) -> bool:
        auth = request.authorization
        return bool(auth and auth.type == "basic" and auth.username == self.account_sid == account_sid
                    and hmac.compare_digest(auth.password or "", self.auth_token))

    def _refusal(self, form: list[tuple[str, str]]) -> tuple[int, str] | None:
        """Twilio's code and message for a form its reference refuses in words (None: accepted)."""
        values = dict(form)
        to, sender = values.get("To", ""), values.get("From")
        bodies, media, content = values.get("Body"), [v for k, v in form if k == "MediaUrl"], values.get("ContentSid")
        if not sender and not values.get("MessagingServiceSid"):
            return 21603, "A 'From' phone number is required."
        if not (bodies or media or content):
            return 21619, "A text message body or media url must be specified."
        if not _ADDRESS.match(to):
            return 21211, f"Invalid 'To' Phone Number: {to[:4]}XXXX"
        if sender and sender not in self.numbers:
            return 21606, "The 'From' phone number provided is not a valid message-capable Twilio phone number."
        if sender and sender.startswith("whatsapp:") != to.startswith("whatsapp:"):
            return 21910, "Invalid From and To pair. From and To should be of the same channel"
        if bodies and len(bodies) > 1600:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        if len(media) > 10:
            return 21623, "Number of media files exceeds allowed limit."
        if content and content not in self.contents:
            return 21655, "The ContentSid is Invalid."
        if "ContentVariables" in values:
            try:
                variables = json.loads(values["ContentVariables"])
            except ValueError:
                variables = None
            if not isinstance(variables, dict):
                return 21656, "The ContentVariables Parameter is invalid."
        if to in self.opted_out:
            return 21610, "Attempt to send to unsubscribed recipient"
        return None

    def _resource(self, message: Sent) -> dict[str, Any]:
        now = formatdate(message.at, usegmt=True).replace("GMT", "+0000")
        base = f"/{API}/Accounts/{self.account_sid}/Messages/{message.sid}"
        return {"account_sid": self.account_sid, "api_version": API, "body": message.get("Body") or "",
                "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
                "error_code": None, "error_message": None, "from": message.sender,
                "messaging_service_sid": message.get("MessagingServiceSid"),
                "num_media": str(len(message.all("MediaUrl"))), "num_segments": "1", "price": None,
                "price_unit": "USD", "sid": message.sid, "status": "queued",
                "subresource_uris": {"media": f"{base}/Media.json"}, "to": message.to, "uri": f"{base}.json"}

    def _accept(self, form: list[tuple[str, str]], fault: str | None) -> tuple[Response, int]:
        values = dict(form)
        sender = values.get("From") or next(n for n in self.numbers if n.startswith("whatsapp:") ==
                                            values["To"].startswith("whatsapp:"))
        message = Sent(sid("MM" if "MediaUrl" in values else "SM"), values["To"], sender, form, time.time())
        with self.lock:
            self.sent.append(message)
        error = self._undeliverable(message, fault)
        delay = self.status_delay_seconds if fault == "status_delay" else 0.0
        self._status(message, "sent", delay)
        if error is None:
            self._status(message, "delivered", delay)
        else:
            self._status(message, "undelivered", delay, error)
        return jsonify(self._resource(message)), 201

    def _undeliverable(self, message: Sent, fault: str | None) -> int | None:
        """The ``ErrorCode`` of a message accepted but not delivered (None: delivered)."""
        if fault == "undelivered":
            return 30003
        if not message.to.startswith("whatsapp:"):
            return None
        if message.to.removeprefix("whatsapp:") in self.not_on_whatsapp:
            return 63003
        last = self.last_inbound.get(message.to)
        if message.get("ContentSid") is None and (last is None or time.time() - last > WINDOW_SECONDS):
            return 63016
        return None

    def _make_app(self) -> Flask:
        app = Flask("twilio-emulator")

        @app.post(f"/{API}/Accounts/<account_sid>/Messages.json")
        def create(account_sid: str) -> tuple[Response, int]:
            self.calls += 1
            fault = self._take_fault()
            if fault == "timeout":
                time.sleep(self.timeout_seconds)
            if fault == "500":
                return self._error(500, 20500, "Internal Server Error")
            if fault == "429":
                response, status = self._error(429, 20429, "Too Many Requests")
                response.headers["Retry-After"] = "1"
                return response, status
            if fault == "20003" or not self._authorized(account_sid):
                return self._error(401, 20003, "Authenticate")
            form = list(request.form.items(multi=True))
            problems = path_errors(account_sid) + create_message_errors(form)
            if problems:
                with self.lock:
                    self.violations.append({"form": form, "problems": problems})
                name = problems[0].split(":", 1)[0]
                return self._error(400, _PARAMETER_CODES.get(name, 20001), problems[0])
            refusal = self._refusal(form)
            if refusal is not None:
                return self._error(400, *refusal)
            return self._accept(form, fault)

        @app.get(f"/{API}/Accounts/<account_sid>/Messages/<message_sid>/Media/<media_sid>")
        def media(account_sid: str, message_sid: str, media_sid: str) -> Any:
            self.calls += 1
            if not self._authorized(account_sid):
                return self._error(401, 20003, "Authenticate")
            found = self.media.get(media_sid)
            if found is None or found.message_sid != message_sid:
                return self._error(404, 20404, f"The requested resource /{API}/Accounts/{account_sid}/Messages/"
                                   f"{message_sid}/Media/{media_sid} was not found")
            return redirect(f"/_media/{found.token}", code=307)

        @app.get("/_media/<token>")
        def media_link(token: str) -> Any:
            found = next((m for m in self.media.values() if m.token == token), None)
            if found is None:
                return self._error(404, 20404, "The requested resource was not found")
            return Response(found.content, mimetype=found.mime_type)

        @app.get("/_emulator/messages")
        def list_messages() -> Response:
            to = request.args.get("to", "")
            return jsonify([{"sid": m.sid, "to": m.to, "from": m.sender, "status": m.status, "form": m.form}
                            for m in self.messages_to(to)])

        return app

    # -- patients --------------------------------------------------------------------------------
    def patient(self, number: str, name: str = "Patient", *, whatsapp: bool = True, to: str | None = None) -> Patient:
        """A patient who writes from ``number`` (``+…``), on WhatsApp or by SMS, to ``to`` (a sender of the account)."""
        address = f"whatsapp:{number}" if whatsapp else number
        business = to or next(n for n in self.numbers if n.startswith("whatsapp:") == whatsapp)
        return Patient(self, address, business, name)


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = TwilioEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app


__all__ = ["Patient", "Sent", "TwilioEmulator", "create_app", "sid", "sign"]
