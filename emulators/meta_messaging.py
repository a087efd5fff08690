"""An emulator of Meta's Messenger Platform: the Send API of a Facebook Page and of an Instagram account, and
the people who write to them.

Meta publishes no machine-readable description of the Messenger Platform under a licence that lets us keep one
in ``emulators/vendor_specs``: the contract every request is checked against is written from Meta's reference
pages (Send API, its error codes, message tags, the webhook events) in :mod:`emulators._meta_messaging_contract`.

Send API (what the relay calls), with a bearer token: ``POST /{version}/me/messages`` and
``/{version}/{page-id}/messages`` with the Page access token (Messenger, and Instagram through the Page linked to
it), ``/{version}/{ig-id}/messages`` with the Instagram token (Instagram API with Instagram Login). A body Meta
would refuse gets ``(#100)`` and is recorded in ``violations``. The windows are Meta's: a message goes within 24
hours of the person's last message (``RESPONSE``), an agent's reply tagged ``HUMAN_AGENT`` within 7 days, nothing
after (``(#10) … outside of allowed window``, subcode 2018278; Instagram 2534022). A recipient who never wrote
gets ``(#100) No matching user found``; one who blocked the account (:meth:`MetaMessagingEmulator.block`)
``(#551) This person isn't available right now``. Answers are ``{"recipient_id", "message_id"}``; errors are
Graph error objects. Faults are injected with :meth:`MetaMessagingEmulator.fail_next`.

Webhooks: :meth:`MetaMessagingEmulator.patient` (:mod:`emulators._meta_messaging_patient`) builds each event
kind as Meta sends it; :meth:`MetaMessagingEmulator.post_webhook` checks it against the contract, signs it with
the app secret (``X-Hub-Signature-256``) and posts it to ``relay_url``. With ``delivery_webhooks=True`` every
accepted Messenger message is followed by its ``delivery`` event, from a background thread. Files patients send
are served at ``/cdn/{name}`` (as Meta's CDN serves them: a signed link, no token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
from flask import Flask, Response, jsonify, request

from emulators._fault_queue import FaultQueue
from emulators._meta_messaging_contract import send_errors, webhook_errors
from emulators._meta_messaging_patient import MetaPatient, mid, now_ms
from emulators._webhook_sender import WebhookSender

WINDOW_SECONDS, AGENT_WINDOW_SECONDS = 24 * 3600, 7 * 86400
#: the subcode of "sent outside of allowed window", by platform
WINDOW_SUBCODE = {"messenger": 2018278, "instagram": 2534022}


def sign(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header Meta sends: ``sha256=`` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class Sent:
    """One message the relay sent, as the emulator recorded it."""

    id: str
    to: str
    payload: dict[str, Any]
    at: float
    platform: str


@dataclass
class MetaMessagingEmulator(FaultQueue):
    """State and behaviour of the emulated Messenger Platform (one Page and its linked Instagram account).

    Args:
        page_access_token: the Page's token (Messenger, and Instagram through the Page).
        app_secret: signs the webhooks.
        instagram_access_token: the Instagram Login token (``/{ig-id}/messages`` on its own host).
        relay_url: where webhooks go.
        delivery_webhooks: follow each accepted Messenger message with its ``delivery`` event.
    """

    #: what :meth:`fail_next` accepts: the next call answers this Graph error (or hangs: ``timeout``)
    FAULTS: ClassVar[frozenset[str]] = frozenset({"500", "1200", "429", "613", "4", "190", "551", "timeout"})

    page_access_token: str
    app_secret: str
    page_id: str = "104729412345678"
    instagram_id: str = "17841405822304914"
    instagram_access_token: str = ""
    relay_url: str = ""
    timeout_seconds: float = 20.0
    delivery_webhooks: bool = False
    sent: list[Sent] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)
    last_wrote: dict[str, float] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    faults: list[list[Any]] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.sender = WebhookSender(self.post_webhook, "meta-messaging-webhooks")
        self.app = self._make_app()

    # -- state ---------------------------------------------------------------------------------
    def patient(self, user_id: str, platform: str = "messenger") -> MetaPatient:
        """A person with this Page-scoped (or Instagram-scoped, ``platform="instagram"``) id."""
        return MetaPatient(self, user_id, platform)

    def wrote(self, user_id: str, seconds_ago: float = 0.0) -> None:
        """Record that the person last wrote ``seconds_ago`` (the window is counted from it)."""
        with self.lock:
            self.last_wrote[user_id] = time.time() - seconds_ago

    def block(self, user_id: str) -> None:
        """The person blocks the account: nothing reaches them any more."""
        with self.lock:
            self.blocked.add(user_id)

    def messages_to(self, user_id: str) -> list[Sent]:
        """What the relay sent to one person, in order."""
        with self.lock:
            return [m for m in self.sent if m.to == user_id]

    def host_file(self, content: bytes, mime: str) -> str:
        """Keep a file a person sends and return its CDN path (``/cdn/{name}``; prefix it with the URL)."""
        name = secrets.token_urlsafe(12)
        with self.lock:
            self.files[name] = (content, mime)
        return f"/cdn/{name}"

    # -- webhooks ------------------------------------------------------------------------------
    def envelope(self, platform: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A webhook body around ``events`` for the Page (``messenger``) or the Instagram account."""
        account = self.page_id if platform == "messenger" else self.instagram_id
        return {"object": "page" if platform == "messenger" else "instagram",
                "entry": [{"id": account, "time": now_ms(), "messaging": events}]}

    def post_webhook(self, body: dict[str, Any] | bytes, *, signature: str | None = None) -> tuple[int, bytes]:
        """POST a webhook to ``relay_url``, signed unless ``signature`` says otherwise; a dict body Meta would
        never send is recorded in ``violations`` (and still posted).

        Returns:
            The relay's HTTP status and the exact bytes posted.
        """
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        if isinstance(body, dict) and (problems := webhook_errors(body)):
            with self.lock:
                self.violations.append({"webhook": body, "problems": problems})
        header = signature if signature is not None else sign(raw, self.app_secret)
        headers = {"Content-Type": "application/json", **({"X-Hub-Signature-256": header} if header else {})}
        return requests.post(self.relay_url, data=raw, headers=headers, timeout=10).status_code, raw

    def wait_for_webhooks(self, timeout: float = 5.0) -> None:
        """Wait until every delivery webhook scheduled so far has been posted.

        Raises:
            TimeoutError: some were still waiting after ``timeout`` seconds.
        """
        if not self.sender.wait(timeout):
            raise TimeoutError(f"{self.sender.pending} webhooks still waiting after {timeout} s")

    # -- the Send API --------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: int, message: str, subcode: int | None = None,
               **extra: Any) -> tuple[Response, int]:
        error: dict[str, Any] = {"message": message, "type": extra.pop("type", "OAuthException"), "code": code,
                                 **extra}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["fbtrace_id"] = secrets.token_urlsafe(9)
        return jsonify({"error": error}), status

    def _fault(self, fault: str | None) -> tuple[Response, int] | None:
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
        answers = {
            "500": (500, 2, "An unexpected error has occurred. Please retry your request later.", None),
            "1200": (500, 1200, "Temporary send message failure. Please try again later.", None),
            "429": (429, 4, "(#4) Application request limit reached", None),
            "613": (400, 613, "Calls to this API have exceeded the rate limit.", None),
            "4": (400, 4, "(#4) Application request limit reached", None),
            "190": (400, 190, "Invalid OAuth access token - Cannot parse access token", None),
            "551": (400, 551, "This person isn't available right now.", 1545041),
        }
        if fault in answers:
            status, code, message, subcode = answers[fault]
            return self._error(status, code, message, subcode, **({"is_transient": True} if status >= 500 else {}))
        return None

    def _account(self, account: str) -> str | None:
        """The platform a call to ``/{account}/messages`` with this request's token sends from (None: refused)."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = token or request.args.get("access_token", "")
        if token and token == self.page_access_token and account in ("me", self.page_id):
            return "page"
        if token and token == self.instagram_access_token and account in ("me", self.instagram_id):
            return "instagram"
        return None

    def _window_error(self, body: dict[str, Any], platform: str, user: str) -> tuple[Response, int] | None:
        """Meta's windows: 24 hours for anything, 7 days for an agent's reply tagged HUMAN_AGENT."""
        if "sender_action" in body:
            return None
        with self.lock:
            last = self.last_wrote.get(user)
        since = time.time() - last if last is not None else None
        tagged = body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT"
        limit = AGENT_WINDOW_SECONDS if tagged else WINDOW_SECONDS
        if since is None or since >= limit:
            return self._error(400, 10, "(#10) This message is sent outside of allowed window. Learn more about "
                               "the new policy here: https://developers.facebook.com/docs/messenger-platform/"
                               "policy-overview", WINDOW_SUBCODE[platform])
        return None

    def _send(self, account: str) -> tuple[Response, int]:
        self.calls += 1
        refused = self._fault(self._take_fault())
        if refused is not None:
            return refused
        sender = self._account(account)
        if sender is None:
            return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        body = request.get_json(silent=True)
        user = str(((body or {}).get("recipient") or {}).get("id", "")) if isinstance(body, dict) else ""
        with self.lock:
            platform = self.users.get(user)
        if platform is None or (sender == "instagram" and platform != "instagram"):
            subcode = 2534014 if sender == "instagram" else 2018001
            return self._error(400, 100, "(#100) No matching user found", subcode)
        problems = send_errors(body, platform)
        if problems:
            with self.lock:
                self.violations.append({"body": body, "problems": problems})
            return self._error(400, 100, f"(#100) {problems[0]}", type="OAuthException")
        assert isinstance(body, dict)
        if user in self.blocked:
            return self._error(400, 551, "This person isn't available right now.", 1545041)
        refusal = self._window_error(body, platform, user)
        if refusal is not None:
            return refusal
        if "sender_action" in body:
            with self.lock:
                self.seen.append(user)
            return jsonify({"recipient_id": user}), 200
        message = Sent(mid(), user, body, time.time(), platform)
        with self.lock:
            self.sent.append(message)
        if self.delivery_webhooks and platform == "messenger":
            self.sender.schedule(self.envelope("messenger", [{
                "sender": {"id": user}, "recipient": {"id": self.page_id},
                "delivery": {"mids": [message.id], "watermark": now_ms()}}]))
        return jsonify({"recipient_id": user, "message_id": message.id}), 200

    def _make_app(self) -> Flask:
        app = Flask("meta-messaging-emulator")

        @app.post("/<version>/<account>/messages")
        def messages(version: str, account: str) -> tuple[Response, int]:
            if not version.startswith("v"):
                return self._error(400, 2500, "Unknown path components", type="OAuthException")
            return self._send(account)

        @app.get("/cdn/<name>")
        def cdn(name: str) -> Response | tuple[str, int]:
            if request.headers.get("Authorization"):
                return "a CDN link carries no token", 400  # the relay must not send the token along
            with self.lock:
                found = self.files.get(name)
            if found is None:
                return "URL signature expired", 403
            return Response(found[0], mimetype=found[1])

        @app.get("/_emulator/messages")
        def list_messages() -> Response:
            return jsonify([{"id": m.id, "to": m.to, "at": m.at, "payload": m.payload}
                            for m in self.messages_to(request.args.get("to", ""))])

        @app.get("/_emulator/state")
        def state() -> Response:
            return jsonify({"sent": len(self.sent), "seen": len(self.seen), "violations": self.violations[-20:]})

        return app


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = MetaMessagingEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app


__all__ = ["MetaMessagingEmulator", "MetaPatient", "Sent", "create_app", "sign"]
