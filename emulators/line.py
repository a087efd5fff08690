"""An emulator of the LINE Messaging API and of the LINE users who write to a clinic's official account.

Outbound side (what the relay calls, with ``Authorization: Bearer <channel access token>``):

- ``POST /v2/bot/message/reply`` and ``POST /v2/bot/message/push``: bodies checked against LINE's
  OpenAPI file and the reference's words (:mod:`emulators._line_checks`); a body LINE would refuse gets
  LINE's 400 ``The request body has N error(s)`` with ``details`` (and is recorded as a violation). A reply
  token is accepted once, within :attr:`LineEmulator.reply_token_seconds` of its event (else ``Invalid
  reply token``). A push to a user who never added the account gets ``The property, 'to', in the request
  body is invalid``; to a user who blocked it, 200 and nothing delivered (as LINE does). A push's
  ``X-Line-Retry-Key`` must be a UUID; a key seen before answers 409 with the ids already sent.
- ``POST /v2/bot/chat/markAsRead`` with a ``markAsReadToken`` the emulator gave; ``GET
  /v2/bot/profile/{userId}``; ``GET /v2/bot/message/{messageId}/content`` (LINE's data host: tests point
  ``LINE_DATA_API_BASE`` here too) serves the bytes of a user's file.
- Answers have LINE's shapes (``{"sentMessages": [{"id", "quoteToken"}]}``) and error bodies
  (``{"message", "details"}``): 401 for a wrong token, faults on demand (:meth:`LineEmulator.fail_next`:
  ``429`` rate limit, ``quota`` (the month's messages spent), ``500``, ``403``, and ``timeout``: the call
  is carried out but answered only after ``timeout_seconds``).

User side: :meth:`LineEmulator.user` makes a LINE user (a friend of the account unless told otherwise)
whose methods build events as LINE sends them (text, image, video, audio, file, location, sticker,
postback, follow, unfollow); :meth:`LineEmulator.post_events` checks the body against LINE's
``CallbackRequest`` (a body LINE would never send is a violation), signs it (``X-Line-Signature``) and
posts it to ``relay_url``; ``redelivery=True`` sends the same events again as LINE does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
from flask import Flask, Response, request

from emulators._line_checks import request_errors, webhook_errors

UNAUTHORIZED = "Authentication failed. Confirm that the access token in the authorization header is valid."
FAULT_BODIES = {
    "429": (429, "The API rate limit has been exceeded. Try again later."),
    "quota": (429, "You have reached your monthly limit."),
    "500": (500, "An error occurred in the internal server."),
    "403": (403, "Access to this API is not available for your account"),
}


def sign(raw: bytes, channel_secret: str) -> str:
    """The ``X-Line-Signature`` LINE sends: Base64 of the HMAC-SHA256 of the exact body under the channel
    secret (written here from LINE's docs, apart from the relay's own check)."""
    return base64.b64encode(hmac.new(channel_secret.encode(), raw, hashlib.sha256).digest()).decode()


@dataclass
class Sent:
    """One message the relay sent, as the emulator recorded it."""

    id: str
    to: str
    message: dict[str, Any]
    via: str  # "reply" or "push"
    delivered: bool = True


@dataclass
class LineUser:
    """A LINE user of the emulated account; its methods build the events LINE would send for them."""

    emulator: LineEmulator
    user_id: str
    name: str
    language: str = "en"
    friend: bool = True
    blocked: bool = False

    def _event(self, kind: str, **content: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": kind, "mode": "active", "timestamp": int(time.time() * 1000),
            "webhookEventId": self.emulator.event_id(), "deliveryContext": {"isRedelivery": False},
            "source": {"type": "user", "userId": self.user_id}, **content}
        if kind in ("message", "follow", "postback"):
            event["replyToken"] = self.emulator.issue_reply_token(self.user_id)
        return event

    def _message(self, kind: str, **content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"id": self.emulator.message_id(), "type": kind, **content}
        if kind in ("text", "image", "video", "sticker"):
            message["quoteToken"] = secrets.token_urlsafe(16)
        message["markAsReadToken"] = self.emulator.issue_read_token()
        return self._event("message", message=message)

    def text(self, text: str) -> dict[str, Any]:
        """A text message."""
        return self._message("text", text=text)

    def file(self, kind: str, content: bytes, mime_type: str, *, name: str | None = None) -> dict[str, Any]:
        """An image, video, audio or file message, its bytes kept for the content endpoint."""
        extra: dict[str, Any] = {}
        if kind in ("image", "video", "audio"):
            extra["contentProvider"] = {"type": "line"}
        if kind in ("video", "audio"):
            extra["duration"] = 3000
        if kind == "file":
            extra.update(fileName=name or "file.pdf", fileSize=len(content))
        event = self._message(kind, **extra)
        self.emulator.contents[event["message"]["id"]] = (content, mime_type)
        return event

    def location(self, latitude: float, longitude: float, *, title: str | None = None,
                 address: str | None = None) -> dict[str, Any]:
        """A location message."""
        extra = {k: v for k, v in (("title", title), ("address", address)) if v}
        return self._message("location", latitude=latitude, longitude=longitude, **extra)

    def sticker(self, package_id: str = "446", sticker_id: str = "1988") -> dict[str, Any]:
        """A sticker message."""
        return self._message("sticker", packageId=package_id, stickerId=sticker_id, stickerResourceType="STATIC")

    def postback(self, data: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """A quick-reply (or date picker) button pressed."""
        return self._event("postback", postback={"data": data, **({"params": params} if params else {})})

    def follow(self) -> dict[str, Any]:
        """The user adds the account as a friend, or unblocks it."""
        unblocked = self.blocked
        self.friend, self.blocked = True, False
        return self._event("follow", follow={"isUnblocked": unblocked})

    def unfollow(self) -> dict[str, Any]:
        """The user blocks the account: LINE delivers nothing to them any more (and says nothing)."""
        self.blocked = True
        return self._event("unfollow")


@dataclass
class LineEmulator:
    """State and behaviour of the emulated Messaging API (see the module's doc).

    Args:
        channel_secret: signs the webhooks.
        access_token: the channel access token the relay must send.
        relay_url: where webhooks go (``…/webhooks/line``).
        reply_token_seconds: how long a reply token is accepted after its event.
    """

    FAULTS: ClassVar[frozenset[str]] = frozenset({"429", "quota", "500", "403", "timeout"})

    channel_secret: str
    access_token: str
    relay_url: str = ""
    bot_user_id: str = "U" + "5" * 32
    reply_token_seconds: float = 60.0
    timeout_seconds: float = 2.0
    sent: list[Sent] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, LineUser] = field(default_factory=dict)
    contents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._ids = itertools.count(600000000000000)
        #: reply token → when it was issued and the user it answers
        self.reply_tokens: dict[str, tuple[float, str]] = {}
        self.read_tokens: set[str] = set()
        self.retry_keys: dict[str, list[str]] = {}
        self.app = self._make_app()

    # -- ids, tokens, faults, users ------------------------------------------------------------
    def message_id(self) -> str:
        """A new message id (LINE's are strings of digits)."""
        with self.lock:
            return str(next(self._ids))

    def event_id(self) -> str:
        """A new ``webhookEventId`` (a ULID: 26 characters of Crockford's Base32)."""
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        return "".join(secrets.choice(alphabet) for _ in range(26))

    def issue_reply_token(self, user_id: str) -> str:
        """A reply token answering ``user_id``, valid once within :attr:`reply_token_seconds`."""
        token = secrets.token_hex(16)
        with self.lock:
            self.reply_tokens[token] = (time.monotonic(), user_id)
        return token

    def issue_read_token(self) -> str:
        """A ``markAsReadToken``."""
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.read_tokens.add(token)
        return token

    def fail_next(self, count: int = 1, kind: str = "500") -> None:
        """Make the next ``count`` calls fail with ``kind`` (one of :attr:`FAULTS`)."""
        if kind not in self.FAULTS:
            raise ValueError(f"kind must be one of {sorted(self.FAULTS)}, got {kind!r}")
        with self.lock:
            self.faults.extend([kind] * count)

    def user(self, name: str = "Aiko", *, friend: bool = True, language: str = "ja") -> LineUser:
        """A new LINE user (``U`` and 32 hex digits), a friend of the account unless ``friend`` is False."""
        found = LineUser(self, "U" + secrets.token_hex(16), name, language, friend)
        self.users[found.user_id] = found
        return found

    def messages_to(self, user_id: str) -> list[Sent]:
        """What the relay sent to one user, in order."""
        with self.lock:
            return [m for m in self.sent if m.to == user_id]

    # -- webhooks ------------------------------------------------------------------------------
    def body(self, *events: dict[str, Any]) -> dict[str, Any]:
        """A webhook body carrying ``events``."""
        return {"destination": self.bot_user_id, "events": list(events)}

    def post_events(self, *events: dict[str, Any], redelivery: bool = False,
                    signature: str | None = None) -> tuple[int, bytes]:
        """Check, sign and POST a webhook of ``events`` to ``relay_url``; ``redelivery`` marks them sent again.

        Returns:
            The relay's HTTP status, and the exact bytes posted.
        """
        if redelivery:
            events = tuple({**e, "deliveryContext": {"isRedelivery": True}} for e in events)
        body = self.body(*events)
        problems = webhook_errors(body)
        if problems:
            with self.lock:
                self.violations.append({"webhook": body, "problems": problems})
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Line-Signature": signature if signature is not None else sign(raw, self.channel_secret)}
        response = requests.post(self.relay_url, data=raw, headers=headers, timeout=10)
        return response.status_code, raw

    # -- the API -------------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("line-emulator")
        app.add_url_rule("/v2/bot/message/reply", "reply", lambda: self._send("reply"), methods=["POST"])
        app.add_url_rule("/v2/bot/message/push", "push", lambda: self._send("push"), methods=["POST"])
        app.add_url_rule("/v2/bot/chat/markAsRead", "read", self._mark_read, methods=["POST"])
        app.add_url_rule("/v2/bot/profile/<user_id>", "profile", self._profile, methods=["GET"])
        app.add_url_rule("/v2/bot/message/<message_id>/content", "content", self._content, methods=["GET"])
        return app

    @staticmethod
    def _error(status: int, message: str, **extra: Any) -> Response:
        return Response(json.dumps({"message": message, **extra}), status=status, mimetype="application/json")

    def _guard(self) -> Response | None:
        """The answer to a call that fails before its body is read (token, fault), or None."""
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            return self._error(401, UNAUTHORIZED)
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == "timeout":
            # LINE slow to answer: the call is carried out, its answer comes after the caller gave up
            request.environ["line_emulator.slow"] = True
            return None
        if fault is not None:
            status, message = FAULT_BODIES[fault]
            return self._error(status, message)
        return None

    def _answer(self, name: str, response: Response) -> Response:
        if request.environ.get("line_emulator.slow"):
            time.sleep(self.timeout_seconds)
        with self.lock:
            self.calls.append((request.method, name, response.status_code))
        return response

    def _body(self, schema: str) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = json.loads(request.get_data() or b"")
        except ValueError:
            return None, self._error(400, "The request body could not be parsed as JSON (line: -, column: -)")
        problems = request_errors(schema, body)
        if problems:
            with self.lock:
                self.violations.append({"path": request.path, "body": body, "problems": problems})
            return None, self._error(400, f"The request body has {len(problems)} error(s)",
                                     details=[{"message": m, "property": p} for p, m in problems])
        return body, None

    def _send(self, via: str) -> Response:
        refused = self._guard()
        if refused is not None:
            return self._answer(via, refused)
        body, refused = self._body("ReplyMessageRequest" if via == "reply" else "PushMessageRequest")
        if refused is not None or body is None:
            return self._answer(via, refused or self._error(400, "no body"))
        if via == "reply":
            with self.lock:
                issued = self.reply_tokens.pop(body["replyToken"], None)
            if issued is None or time.monotonic() - issued[0] > self.reply_token_seconds:
                return self._answer(via, self._error(400, "Invalid reply token"))
            to = issued[1]
        else:
            key = request.headers.get("X-Line-Retry-Key")
            if key is not None:
                try:
                    uuid.UUID(key)
                except ValueError:
                    return self._answer(via, self._error(400, "The retry key must be a UUID"))
                with self.lock:
                    accepted = self.retry_keys.get(key)
                if accepted is not None:
                    return self._answer(via, self._error(409, "The retry key is already accepted",
                                                         sentMessages=[{"id": i} for i in accepted]))
            to = body["to"]
            known = self.users.get(to)
            if known is None or (not known.friend and not known.blocked):
                return self._answer(via, self._error(
                    400, "The property, 'to', in the request body is invalid (line: -, column: -)"))
        delivered = not (self.users.get(to) and self.users[to].blocked)
        sent = [Sent(self.message_id(), to, message, via, delivered) for message in body["messages"]]
        with self.lock:
            self.sent.extend(sent)
            if via == "push" and request.headers.get("X-Line-Retry-Key"):
                self.retry_keys[request.headers["X-Line-Retry-Key"]] = [s.id for s in sent]
        answer = {"sentMessages": [{"id": s.id, "quoteToken": secrets.token_urlsafe(16)} for s in sent]}
        return self._answer(via, Response(json.dumps(answer), status=200, mimetype="application/json"))

    def _mark_read(self) -> Response:
        refused = self._guard()
        if refused is not None:
            return self._answer("markAsRead", refused)
        body, refused = self._body("MarkMessagesAsReadByTokenRequest")
        if refused is not None or body is None:
            return self._answer("markAsRead", refused or self._error(400, "no body"))
        token = body["markAsReadToken"]
        with self.lock:
            known = token in self.read_tokens
            if known:
                self.read.append(token)
        if not known:
            return self._answer("markAsRead", self._error(400, "Invalid markAsReadToken"))
        return self._answer("markAsRead", Response("{}", status=200, mimetype="application/json"))

    def _profile(self, user_id: str) -> Response:
        refused = self._guard()
        if refused is not None:
            return self._answer("profile", refused)
        found = self.users.get(user_id)
        if found is None or not found.friend:
            return self._answer("profile", self._error(404, "Not found"))
        answer = {"displayName": found.name, "userId": found.user_id, "language": found.language}
        return self._answer("profile", Response(json.dumps(answer), status=200, mimetype="application/json"))

    def _content(self, message_id: str) -> Response:
        refused = self._guard()
        if refused is not None:
            return self._answer("content", refused)
        found = self.contents.get(message_id)
        if found is None:
            return self._answer("content", self._error(404, "Not found"))
        return self._answer("content", Response(found[0], status=200, mimetype=found[1]))
