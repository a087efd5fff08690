"""The demo's patients on Twilio, Messenger, Instagram and LINE: what the demo page's phone does on those channels.

Each channel emulator plays its patients in the process that runs it (``chat2crm demo``), while the demo page's
back end runs in the relay's web process. A :class:`PatientDesk` bridges the two: it adds two routes to the
emulator's own app (before it serves), through which the page's back end (:mod:`demo.channels`) makes a patient
write (the emulator then posts its signed webhook to the relay, exactly as in the tests) and reads the chat as the
patient's phone shows it: their own messages, and the relay's replies as the emulator received them (Twilio's
numbered text, Messenger's button template and quick replies, LINE's quick-reply buttons).

- ``POST /_emulator/demo/<channel>/<patient>/send`` with ``{"text": …}`` or ``{"button": {"id", "title",
  "kind"}}``: the relay's HTTP status;
- ``GET /_emulator/demo/<channel>/<patient>/chat``: ``{"messages": [...]}`` in the page's shape.

``patient`` is the digits the page made up: a phone number on Twilio (WhatsApp), the person's scoped id on
Messenger and Instagram, and on LINE the seed of a user id (LINE's are ``U`` and 32 hex digits).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, abort, jsonify, request

#: the name the emulated patients show (Twilio's ProfileName, LINE's display name)
PATIENT_NAME = "Demo Patient"


def line_user_id(patient: str) -> str:
    """The LINE user id of the page's patient ``patient`` (digits): ``U`` and 32 hex digits, always the same."""
    return "U" + hashlib.sha256(f"chat2crm-demo:{patient}".encode()).hexdigest()[:32]


@dataclass
class _Inbound:
    """A message the patient sent, as their phone shows it, and where it falls among the emulator's sent list."""

    id: str
    patient: str
    text: str
    at: float
    #: how many messages the emulator had recorded as sent when this one went out: the relay's replies come after
    sent_before: int
    seq: int


@dataclass
class PatientDesk:
    """The patients of one emulator (Twilio, Meta's Messenger Platform or LINE) as the demo page plays them.

    Args:
        kind: ``twilio``, ``meta`` (Messenger and Instagram) or ``line``.
        emulator: the emulator (its patients post the webhooks).
        relay_urls: per channel, the relay's webhook the emulator posts to (set by :meth:`connect`).
    """

    kind: str
    emulator: Any
    relay_urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one lock for the emulator's webhook target: Messenger's and Instagram's share one emulator
        self.lock = threading.Lock()
        self.inbound: list[_Inbound] = []
        self._seq = itertools.count()
        #: LINE records no time for what it sent: when the page first saw each message
        self._first_seen: dict[str, float] = {}

    @property
    def channels(self) -> tuple[str, ...]:
        """The relay's channels this desk plays."""
        return {"twilio": ("twilio",), "meta": ("messenger", "instagram"), "line": ("line",)}[self.kind]

    def connect(self, relay_base: str) -> None:
        """Point the patients at the relay's webhooks (``relay_base``: the relay's base URL)."""
        self.relay_urls = {channel: f"{relay_base}/webhooks/{channel}" for channel in self.channels}
        self.emulator.relay_url = self.relay_urls[self.channels[0]]

    def install(self, app: Flask) -> None:
        """Add the desk's routes to the emulator's app (before it serves: Flask refuses routes after a request)."""

        @app.post("/_emulator/demo/<channel>/<patient>/send")
        def demo_send(channel: str, patient: str) -> tuple[Response, int]:
            self._check(channel, patient)
            data = request.get_json(silent=True) or {}
            return jsonify({"status": self.send(channel, patient, data)}), 200

        @app.get("/_emulator/demo/<channel>/<patient>/chat")
        def demo_chat(channel: str, patient: str) -> Response:
            self._check(channel, patient)
            return jsonify({"messages": self.chat(channel, patient)})

    def _check(self, channel: str, patient: str) -> None:
        if channel not in self.channels or not patient.isdigit() or len(patient) > 20:
            abort(404)

    # -- the patient writes ------------------------------------------------------------------------
    def send(self, channel: str, patient: str, data: dict[str, Any]) -> int:
        """The patient sends ``data`` (``text``, or a ``button`` they pressed); returns the relay's HTTP status."""
        button = data.get("button") if isinstance(data.get("button"), dict) else None
        text = str(data.get("text") or "").strip()
        if not (text or button):
            abort(400)
        shown = str(button.get("display") or button.get("title") or "") if button else text
        with self.lock:  # the webhook target and the position in the sent list go with this one message
            self.inbound.append(_Inbound(f"in-{next(self._seq)}", f"{channel}:{patient}", shown, time.time(),
                                         len(self.emulator.sent), len(self.inbound)))
            if self.kind == "twilio":
                return self._twilio(patient, text, button)
            if self.kind == "meta":
                self.emulator.relay_url = self.relay_urls[channel]
                return self._meta(channel, patient, text, button)
            return self._line(patient, text, button)

    def _twilio(self, patient: str, text: str, button: dict[str, Any] | None) -> int:
        sender = self.emulator.patient(f"+{patient}", PATIENT_NAME, whatsapp=True)
        # Twilio carries buttons only as content templates: a free-form reply's options are numbered text
        status: int = sender.send_text(text or str(button.get("title") if button else ""))
        return status

    def _meta(self, channel: str, patient: str, text: str, button: dict[str, Any] | None) -> int:
        person = self.emulator.patient(patient, channel)
        if button and button.get("kind") == "postback":
            status: int = person.press_postback(str(button["id"]), str(button.get("title") or ""))
        elif button:
            status = person.tap_quick_reply(str(button["id"]), str(button.get("title") or ""))
        else:
            status = person.send_text(text)
        return status

    def _line(self, patient: str, text: str, button: dict[str, Any] | None) -> int:
        from emulators.line import LineUser

        user_id = line_user_id(patient)
        user = self.emulator.users.get(user_id)
        if user is None:  # the patient added the clinic's account as a friend before writing
            user = LineUser(self.emulator, user_id, PATIENT_NAME, "en")
            self.emulator.users[user_id] = user
        if button and button.get("kind") == "postback":
            event = user.postback(str(button["id"]))
        else:  # a quick reply of the "message" kind sends its text, as typing it would
            event = user.text(text or str(button.get("id") if button else ""))
        status: int = self.emulator.post_events(event)[0]
        return status

    # -- the patient's phone -----------------------------------------------------------------------
    def chat(self, channel: str, patient: str) -> list[dict[str, Any]]:
        """The conversation as the patient's phone shows it, oldest first."""
        with self.lock:
            mine = [m for m in self.inbound if m.patient == f"{channel}:{patient}"]
        keyed: list[tuple[tuple[int, int, int], dict[str, Any]]] = [
            ((m.sent_before, 0, m.seq), {"id": m.id, "direction": "in", "text": m.text, "at": m.at * 1000})
            for m in mine]
        for index, shown in self._sent(channel, patient):
            keyed.append(((index, 1, 0), {"direction": "out", **shown}))
        keyed.sort(key=lambda pair: pair[0])
        return [shown for _key, shown in keyed]

    def _sent(self, channel: str, patient: str) -> list[tuple[int, dict[str, Any]]]:
        """What the relay sent to the patient, each with its place in the emulator's sent list."""
        with self.emulator.lock:
            sent = list(enumerate(self.emulator.sent))
        if self.kind == "twilio":
            return [(i, twilio_shown(m)) for i, m in sent if m.to == f"whatsapp:+{patient}"]
        if self.kind == "meta":
            return [(i, meta_shown(m)) for i, m in sent if m.to == patient and m.platform == channel]
        user_id, now = line_user_id(patient), time.time()
        found = []
        for i, m in sent:
            if m.to == user_id:
                at = self._first_seen.setdefault(m.id, now)
                found.append((i, {**line_shown(m.message), "id": m.id, "at": at * 1000}))
        return found


# -- the relay's replies as each channel shows them ---------------------------------------------------
def twilio_shown(message: Any) -> dict[str, Any]:
    """A message sent through Twilio: its body (options already numbered in it), its media, its status."""
    text = message.get("Body") or ""
    if not text and message.get("ContentSid"):
        text = f"[template {message.get('ContentSid')}]"
    files = [{"name": url.rsplit("/", 1)[-1] or "file", "url": url} for url in message.all("MediaUrl")]
    return {"id": message.sid, "text": text, "at": message.at * 1000, "status": message.status,
            **({"files": files} if files else {})}


def meta_shown(message: Any) -> dict[str, Any]:
    """A Send API message: text with its quick replies, a button template with its postback buttons, or a file."""
    body = message.payload.get("message") or {}
    shown: dict[str, Any] = {"id": message.id, "at": message.at * 1000, "text": body.get("text") or ""}
    quick = [{"id": q["payload"], "title": q["title"], "kind": "quick_reply"}
             for q in body.get("quick_replies") or [] if q.get("content_type") == "text"]
    attachment = body.get("attachment") or {}
    payload = attachment.get("payload") or {}
    if attachment.get("type") == "template":
        shown["text"] = payload.get("text") or ""
        quick = [{"id": b["payload"], "title": b["title"], "kind": "postback"}
                 for b in payload.get("buttons") or [] if b.get("type") == "postback"]
    elif attachment:
        url = str(payload.get("url") or "")
        shown["files"] = [{"name": url.rsplit("/", 1)[-1] or attachment.get("type", "file"), "url": url or None}]
    if quick:
        shown["buttons"] = quick
    return shown


def line_shown(message: dict[str, Any]) -> dict[str, Any]:
    """A LINE message object: its text or image, and the quick-reply buttons LINE shows under it."""
    shown: dict[str, Any] = {"text": message.get("text") or ""}
    if message.get("type") == "image":
        url = str(message.get("originalContentUrl") or "")
        shown["files"] = [{"name": url.rsplit("/", 1)[-1] or "image", "url": url or None}]
    buttons = []
    for item in (message.get("quickReply") or {}).get("items") or []:
        action = item.get("action") or {}
        if action.get("type") == "postback":
            buttons.append({"id": action["data"], "title": action.get("label") or "", "kind": "postback",
                            "display": action.get("displayText") or action.get("label") or ""})
        elif action.get("type") == "message":
            buttons.append({"id": action["text"], "title": action.get("label") or "", "kind": "message"})
    if buttons:
        shown["buttons"] = buttons
    return shown
