"""WhatsApp Cloud API: webhook verification and parsing, and the outbound client.

Inbound: :func:`verify_challenge` answers the ``GET`` handshake; :func:`verify_signature` checks
``X-Hub-Signature-256`` (HMAC-SHA256 of the exact raw body with the app secret, compared in
constant time); :func:`parse_payload` turns a body into canonical messages, statuses and
opt-outs. Every message is parsed on its own: one malformed message never drops the others.

Outbound: :class:`WhatsAppClient` sends text, reply buttons (≤ 3, titles ≤ 20 characters), lists
(≤ 10 rows, titles ≤ 24) or, when the options fit neither, numbered text; outside the 24-hour
customer-service window it sends the reply's template, or raises :class:`SkippableError`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from connector.channels.base import HttpChannel, ParsedWebhook, StatusUpdate, render_numbered
from connector.errors import SkippableError, WebhookRejectedError
from connector.models import (
    AdReferral,
    Conversation,
    InboundMessage,
    Location,
    MediaRef,
    Reply,
    SenderProfile,
    SharedContact,
)
from connector.settings import Settings

log = logging.getLogger("chat2crm.whatsapp")

MAX_BUTTONS, MAX_BUTTON_TITLE = 3, 20
MAX_ROWS, MAX_ROW_TITLE, MAX_ROW_DESCRIPTION, MAX_LIST_BUTTON = 10, 24, 72, 20
MAX_BODY = 1024
WINDOW = timedelta(hours=24)

#: Graph API error codes that mean "slow down"
THROTTLING_CODES = {4, 80007, 130429, 131048, 131056}
#: error codes that mean the token is wrong or expired
AUTH_CODES = {0, 190, 10, 200}
#: outside the customer-service window (re-engagement required)
REENGAGEMENT_CODE = 131047


def verify_challenge(args: dict[str, str], verify_token: str | None) -> tuple[str, int]:
    """The subscription handshake: echo ``hub.challenge`` when mode and token are right."""
    if args.get("hub.mode") != "subscribe" or not verify_token:
        return "bad request", 400
    given = args.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return "forbidden", 403
    challenge = args.get("hub.challenge", "")
    if not challenge or len(challenge) > 256:
        return "bad request", 400
    return challenge, 200


def verify_signature(raw: bytes, header: str | None, app_secret: str) -> None:
    """Check ``X-Hub-Signature-256`` over the exact raw body.

    Raises:
        WebhookRejectedError: 401 when the header is missing, 403 when it does not match.
    """
    if not header:
        raise WebhookRejectedError(401, "missing X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.strip().encode(), expected.encode()):
        raise WebhookRejectedError(403, "signature does not match")


def sign(raw: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends for ``raw`` (the emulator signs with it)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _timestamp(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def parse_payload(body: Any) -> ParsedWebhook:
    """Parse a webhook body (already JSON-decoded).

    Raises:
        WebhookRejectedError: 400 when the body is not a WhatsApp Business webhook at all.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a WhatsApp webhook: 'entry' list expected")
    parsed = ParsedWebhook()
    for entry in body["entry"]:
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            account = _str(_dict(value.get("metadata")).get("phone_number_id"))
            field = change.get("field")
            if field == "user_preferences":
                for pref in _list(value.get("user_preferences")):
                    pref = _dict(pref)
                    sender = _str(pref.get("wa_id")) or _str(pref.get("user_id"))
                    if account and sender and pref.get("value") == "stop":
                        parsed.opt_outs.append((account, sender))
                continue
            if field not in (None, "messages"):
                continue
            parsed.errors.extend(e for e in _list(value.get("errors")) if isinstance(e, dict))
            profiles = _contacts_by_id(value)
            for raw in _list(value.get("messages")):
                try:
                    message = _parse_message(_dict(raw), account, profiles)
                except (KeyError, TypeError, ValueError) as exc:
                    parsed.skipped += 1
                    log.warning("whatsapp message skipped", extra={"error": type(exc).__name__})
                    continue
                if message is None:
                    parsed.skipped += 1
                    continue
                parsed.messages.append(message)
                parsed.errors.extend(e for e in _list(_dict(raw).get("errors")) if isinstance(e, dict))
            for raw in _list(value.get("statuses")):
                raw = _dict(raw)
                message_id, status = _str(raw.get("id")), _str(raw.get("status"))
                if not message_id or not status:
                    parsed.skipped += 1
                    continue
                errors = [e for e in _list(raw.get("errors")) if isinstance(e, dict)]
                parsed.statuses.append(StatusUpdate(
                    "whatsapp", message_id, status,
                    _str(raw.get("recipient_id")) or _str(raw.get("recipient_user_id")), errors))
    return parsed


def _contacts_by_id(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for contact in _list(value.get("contacts")):
        contact = _dict(contact)
        for key in ("wa_id", "user_id"):
            ident = _str(contact.get(key))
            if ident:
                found[ident] = contact
    return found


def _parse_message(raw: dict[str, Any], account: str | None,
                   profiles: dict[str, dict[str, Any]]) -> InboundMessage | None:
    wa_id = _str(raw.get("from"))
    user_id = _str(raw.get("from_user_id"))
    message_id = _str(raw.get("id"))
    sender = wa_id or user_id
    if not (account and sender and message_id):
        return None
    contact = profiles.get(sender) or (profiles.get(user_id) if user_id else None) or {}
    user_id = user_id or _str(contact.get("user_id"))
    phone = f"+{wa_id}" if wa_id and wa_id.isdigit() else None
    kind_raw = _str(raw.get("type")) or "unknown"
    fields: dict[str, Any] = {"kind": "unsupported", "raw_type": kind_raw}
    content = _dict(raw.get(kind_raw))
    if kind_raw == "text":
        fields.update(kind="text", text=_str(content.get("body")) or "")
    elif kind_raw == "interactive":
        reply = _dict(content.get("button_reply")) or _dict(content.get("list_reply"))
        if reply:
            fields.update(kind="choice", choice_id=_str(reply.get("id")), choice_title=_str(reply.get("title")),
                          text=_str(reply.get("title")))
            fields["raw_type"] = _str(content.get("type")) or kind_raw
        elif _dict(content.get("nfm_reply")):
            fields.update(kind="text", text=_str(_dict(content.get("nfm_reply")).get("body")) or "")
    elif kind_raw == "button":  # a template's quick-reply button
        fields.update(kind="choice", choice_id=_str(content.get("payload")), choice_title=_str(content.get("text")),
                      text=_str(content.get("text")))
    elif kind_raw == "location":
        lat, lon = content.get("latitude"), content.get("longitude")
        fields.update(kind="location", location=Location(
            latitude=float(lat) if isinstance(lat, int | float) else None,
            longitude=float(lon) if isinstance(lon, int | float) else None,
            name=_str(content.get("name")), address=_str(content.get("address")), url=_str(content.get("url"))))
    elif kind_raw == "contacts":
        shared = []
        for card in _list(raw.get("contacts")):
            card = _dict(card)
            shared.append(SharedContact(
                name=_str(_dict(card.get("name")).get("formatted_name")),
                phones=[p["phone"] for p in _list(card.get("phones")) if isinstance(p, dict) and _str(p.get("phone"))],
                emails=[e["email"] for e in _list(card.get("emails")) if isinstance(e, dict) and _str(e.get("email"))],
            ))
        fields.update(kind="contact", contacts=shared)
    elif kind_raw in ("image", "document", "audio", "video", "sticker", "voice"):
        media_id = _str(content.get("id"))
        if media_id:
            fields.update(kind="media", text=_str(content.get("caption")), media=[MediaRef(
                kind=kind_raw,
                media_id=media_id, mime_type=_str(content.get("mime_type")),
                caption=_str(content.get("caption")), filename=_str(content.get("filename")),
                sha256=_str(content.get("sha256")))])
    elif kind_raw == "reaction":
        fields.update(kind="reaction", reaction=_str(content.get("emoji")),
                      reply_to=_str(content.get("message_id")))
    referral = _dict(raw.get("referral"))
    context = _dict(raw.get("context"))
    return InboundMessage(
        channel="whatsapp", account=account, sender_id=sender, message_id=message_id,
        timestamp=_timestamp(raw.get("timestamp")),
        profile=SenderProfile(name=_str(_dict(contact.get("profile")).get("name"))),
        sender_phone=phone, sender_user_id=user_id,
        referral=AdReferral(
            source_url=_str(referral.get("source_url")), source_id=_str(referral.get("source_id")),
            source_type=_str(referral.get("source_type")), headline=_str(referral.get("headline")),
            body=_str(referral.get("body")), media_type=_str(referral.get("media_type")),
            image_url=_str(referral.get("image_url")), video_url=_str(referral.get("video_url")),
            thumbnail_url=_str(referral.get("thumbnail_url")), ctwa_clid=_str(referral.get("ctwa_clid")),
        ) if referral else None,
        reply_to=fields.pop("reply_to", None) or _str(context.get("id")),
        **fields,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(reply: Reply) -> list[dict[str, Any]]:
    """The message objects (without recipient) that carry ``reply``: buttons, a list, or numbered text."""
    options = reply.options
    body = _cut(reply.text, MAX_BODY)
    if not options:
        return [{"type": "text", "text": {"body": reply.text[:4096], "preview_url": False}}]
    if len(options) <= MAX_BUTTONS and all(len(o.title) <= MAX_BUTTON_TITLE for o in options):
        return [{"type": "interactive", "interactive": {
            "type": "button", "body": {"text": body},
            "action": {"buttons": [{"type": "reply", "reply": {"id": o.id, "title": o.title}} for o in options]},
        }}]
    if len(options) <= MAX_ROWS and all(len(o.title) <= MAX_ROW_TITLE for o in options):
        rows = []
        for o in options:
            row = {"id": o.id, "title": o.title}
            if o.description:
                row["description"] = _cut(o.description, MAX_ROW_DESCRIPTION)
            rows.append(row)
        return [{"type": "interactive", "interactive": {
            "type": "list", "body": {"text": body},
            "action": {"button": _cut(reply.list_button or "Options", MAX_LIST_BUTTON),
                       "sections": [{"title": _cut(reply.list_button or "Options", MAX_ROW_TITLE), "rows": rows}]},
        }}]
    return [{"type": "text", "text": {"body": render_numbered(reply.text, [o.title for o in options])[:4096]}}]


class WhatsAppClient(HttpChannel):
    """Sends messages through the Cloud API (``{base}/{version}/{phone_number_id}/messages``)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__("whatsapp", "WHATSAPP_ACCESS_TOKEN", session)
        token = settings.whatsapp_access_token.get_secret_value() if settings.whatsapp_access_token else ""
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        self.phone_number_id = settings.whatsapp_phone_number_id or ""
        self.url = (f"{settings.whatsapp_api_base.rstrip('/')}/{settings.whatsapp_api_version}/"
                    f"{self.phone_number_id}/messages")

    def send(self, conversation: Conversation, replies: list[Reply]) -> list[str]:
        """Send ``replies`` to the conversation's patient (see :class:`ChannelClient`)."""
        in_window = conversation.last_inbound_at is not None and (
            datetime.now(UTC) - conversation.last_inbound_at) < WINDOW
        ids: list[str] = []
        for reply in replies:
            if in_window:
                messages = render(reply)
            elif reply.template:
                messages = [self._template(reply, conversation.language)]
            else:
                raise SkippableError("whatsapp: outside the 24-hour window and the reply has no template")
            for message in messages:
                ids.append(self._post({"messaging_product": "whatsapp", "recipient_type": "individual",
                                       "to": conversation.sender_id, **message}))
        return ids

    def _template(self, reply: Reply, language: str | None) -> dict[str, Any]:
        template: dict[str, Any] = {"name": reply.template,
                                    "language": {"code": reply.template_language or language or "en",
                                                 "policy": "deterministic"}}
        if reply.template_params:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": p} for p in reply.template_params]}]
        return {"type": "template", "template": template}

    def mark_read(self, message: InboundMessage) -> None:
        """Mark the patient's message as read (blue ticks)."""
        if message.message_id.startswith("wamid"):
            self._post({"messaging_product": "whatsapp", "status": "read", "message_id": message.message_id})

    def answer_callback(self, message: InboundMessage) -> None:
        """WhatsApp needs no acknowledgement of a button press."""

    def _post(self, payload: dict[str, Any]) -> str:
        response = self.request("POST", self.url, json=payload)
        if response.status_code == 200:
            data = response.json()
            messages = data.get("messages") or [{}]
            return str(messages[0].get("id", "")) if isinstance(messages, list) else ""
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        code = error.get("code")
        message = str(error.get("message", response.reason))[:200]
        if code in THROTTLING_CODES:
            raise self.status_error(response, code, message, throttled=True)
        if code == REENGAGEMENT_CODE:
            raise SkippableError("whatsapp: outside the 24-hour window (131047)", details={"code": code})
        if code in AUTH_CODES and response.status_code in (400, 401, 403):
            response.status_code = 401
        raise self.status_error(response, code, message)
