"""WhatsApp Cloud API: webhook verification and parsing, and the outbound client.

Inbound: :func:`verify_challenge` answers the ``GET`` handshake; :func:`verify_signature` checks
``X-Hub-Signature-256`` (HMAC-SHA256 of the exact raw body with the app secret, compared in
constant time); :func:`parse_payload` reads a body through the typed models of
:mod:`connector.channels.whatsapp_payload` into canonical messages, statuses and opt-outs. Every
message is parsed on its own: one malformed message is dropped (and logged without its contents),
never the others.

Outbound: :class:`WhatsAppClient` sends text, reply buttons (≤ 3, titles ≤ 20 characters), lists
(≤ 10 rows, titles ≤ 24) or, when the options fit neither, numbered text, and an agent's attachments
as media messages by link (:mod:`connector.channels.whatsapp_media`); outside the 24-hour
customer-service window it sends the reply's template, or raises :class:`SkippableError`. It tags
every message with the caller's ``tracking`` (``biz_opaque_callback_data``, echoed in the status
webhooks) and downloads patients' files (:meth:`WhatsAppClient.fetch_media`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel

from connector.channels.base import HttpChannel, ParsedWebhook, StatusUpdate, render_numbered
from connector.channels.parts import valid_parts
from connector.channels.plugin import Outcome
from connector.channels.whatsapp_endpoint import CloudEndpoint
from connector.channels.whatsapp_errors import WHATSAPP_ERRORS
from connector.channels.whatsapp_media import sha256_matches, with_attachments
from connector.channels.whatsapp_payload import (
    Card,
    Change,
    Contact,
    Entry,
    FlowReply,
    Message,
    Status,
    SystemChange,
    UserPreference,
    VendorError,
)
from core.errors import FatalError, RetryableError, SkippableError, WebhookRejectedError
from core.models import (
    AdReferral,
    Conversation,
    InboundMessage,
    Location,
    MediaFile,
    MediaRef,
    Reply,
    SenderProfile,
    SharedContact,
)
from core.settings import Settings

log = logging.getLogger("chat2crm.whatsapp")
P = TypeVar("P", bound=BaseModel)

MAX_BUTTONS, MAX_BUTTON_TITLE = 3, 20
MAX_ROWS, MAX_ROW_TITLE, MAX_ROW_DESCRIPTION, MAX_LIST_BUTTON = 10, 24, 72, 20
MAX_BODY = 1024
#: the button that opens a form (Meta advises at most 20 characters, and allows 30)
MAX_FLOW_CTA = 30
WINDOW = timedelta(hours=24)
#: ``biz_opaque_callback_data``: at most 512 characters (Meta's /messages reference)
MAX_TRACKING = 512
#: a template's body, its parameters filled in, holds at most 1024 characters (error 132005 beyond): the
#: agent's text as a parameter keeps the rest for the template's own words
MAX_TEMPLATE_PARAM = 768
#: what a template parameter may not hold (error 132018): new lines, tabs, more than 4 spaces in a row
_PARAM_BREAKS = re.compile(r"[\n\r\t]+")
_PARAM_SPACES = re.compile(r" {5,}")

#: Graph API error codes that mean "slow down"
THROTTLING_CODES = {4, 80007, 130429, 131048, 131056}
#: error codes that mean the token is wrong or expired
AUTH_CODES = {0, 190, 10, 200}
#: outside the customer-service window (re-engagement required)
REENGAGEMENT_CODE = 131047
#: the raw type of WhatsApp's system notice that a user changed number (``customer_changed_number`` before v12)
NUMBER_CHANGED = "user_changed_number"
NUMBER_CHANGES = (NUMBER_CHANGED, "customer_changed_number")
#: the raw type of WhatsApp's system notice that a user's business-scoped id changed
USER_ID_CHANGED = "user_changed_user_id"


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


def _nonempty(value: str | None) -> str | None:
    return value or None


def parse_payload(body: Any) -> ParsedWebhook:
    """Parse a webhook body (already JSON-decoded) through the typed models of
    :mod:`connector.channels.whatsapp_payload`.

    Every part stands alone: an entry, change, message, status or preference that does not fit Meta's
    description (a number where text belongs, a NUL character, an implausible timestamp, a message
    without its content) is dropped with a log line that names the fields at fault and none of their
    values, and counted in ``skipped``; the rest of the batch is still parsed.

    Raises:
        WebhookRejectedError: 400 when the body is not a WhatsApp Business webhook at all.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a WhatsApp webhook: 'entry' list expected")
    parsed = ParsedWebhook()
    for entry in _parts(Entry, body["entry"], parsed, "entry"):
        for change in _parts(Change, entry.changes, parsed, "change"):
            _read_change(change, parsed)
    return parsed


def _parts(model: type[P], items: Any, parsed: ParsedWebhook, part: str) -> list[P]:
    found, dropped = valid_parts(model, items, channel="whatsapp", part=part)
    parsed.skipped += dropped
    return found


def _read_change(change: Change, parsed: ParsedWebhook) -> None:
    value = change.value
    account = value.metadata.phone_number_id if value.metadata else None
    if change.field == "user_preferences":
        for pref in _parts(UserPreference, value.user_preferences, parsed, "user_preference"):
            sender = pref.wa_id or pref.user_id
            if account and sender and pref.value == "stop":
                parsed.opt_outs.append((account, sender))
        return
    if change.field not in (None, "messages"):
        return
    parsed.errors.extend(error.as_dict() for error in _parts(VendorError, value.errors, parsed, "error"))
    profiles: dict[str, Contact] = {}
    for contact in _parts(Contact, value.contacts, parsed, "contact"):
        for ident in (contact.wa_id, contact.user_id):
            if ident:
                profiles[ident] = contact
    for message in _parts(Message, value.messages, parsed, "message"):
        if account is None:
            parsed.skipped += 1  # no business number: nobody to answer from
            continue
        parsed.messages.append(_canonical(message, account, profiles))
        parsed.errors.extend(error.as_dict() for error in message.errors)
    for status in _parts(Status, value.statuses, parsed, "status"):
        parsed.statuses.append(StatusUpdate(
            "whatsapp", status.id, status.status, status.recipient_id or status.recipient_user_id,
            [error.as_dict() for error in status.errors], tracking=status.biz_opaque_callback_data))


def _canonical(message: Message, account: str, profiles: dict[str, Contact]) -> InboundMessage:
    """The canonical message for one typed WhatsApp message."""
    wa_id, user_id = message.from_, message.from_user_id
    sender = wa_id or user_id or ""
    contact = profiles.get(sender) or (profiles.get(user_id) if user_id else None)
    user_id = user_id or (contact.user_id if contact else None)
    phone = f"+{wa_id}" if wa_id and wa_id.isascii() and wa_id.isdigit() else None
    kind_raw = message.type or "unknown"
    fields: dict[str, Any] = {"kind": "unsupported", "raw_type": kind_raw}
    if message.text is not None and kind_raw == "text":
        fields.update(kind="text", text=message.text.body)
    elif message.interactive is not None and kind_raw == "interactive":
        content = message.interactive
        reply = content.button_reply or content.list_reply
        if reply is not None:
            fields.update(kind="choice", choice_id=_nonempty(reply.id), choice_title=_nonempty(reply.title),
                          text=_nonempty(reply.title), raw_type=content.type or kind_raw)
        elif content.nfm_reply is not None:
            fields.update(_form_answers(content.nfm_reply))
    elif message.button is not None and kind_raw == "button":  # a template's quick-reply button
        button = message.button
        fields.update(kind="choice", choice_id=_nonempty(button.payload), choice_title=_nonempty(button.text),
                      text=_nonempty(button.text))
    elif message.location is not None and kind_raw == "location":
        place = message.location
        fields.update(kind="location", location=Location(
            latitude=place.latitude, longitude=place.longitude, name=_nonempty(place.name),
            address=_nonempty(place.address), url=_nonempty(place.url)))
    elif message.contacts is not None and kind_raw == "contacts":
        fields.update(kind="contact", contacts=[SharedContact(
            name=_nonempty(card.name.formatted_name) if card.name else None,
            phones=[p.phone for p in card.phones if p.phone], emails=[e.email for e in card.emails if e.email],
        ) for card in message.contacts])
        phone = phone or _own_phone(message.contacts, wa_id)
    elif message.system is not None and kind_raw == "system":
        raw_type, phone, user_id = _system(message.system, phone, user_id)
        fields.update(raw_type=raw_type)
    elif (media := message.media()) is not None:
        fields.update(kind="media", text=_nonempty(media.caption), media=[MediaRef(
            kind=kind_raw, media_id=media.id, mime_type=_nonempty(media.mime_type),
            caption=_nonempty(media.caption), filename=_nonempty(media.filename), sha256=_nonempty(media.sha256))])
    elif message.reaction is not None and kind_raw == "reaction":
        fields.update(kind="reaction", reaction=_nonempty(message.reaction.emoji),
                      reply_to=_nonempty(message.reaction.message_id))
    referral = message.referral
    return InboundMessage(
        channel="whatsapp", account=account, sender_id=sender, message_id=message.id,
        timestamp=message.timestamp,
        profile=SenderProfile(name=_nonempty(contact.profile.name) if contact and contact.profile else None,
                              username=_nonempty(contact.profile.username) if contact and contact.profile else None),
        sender_phone=phone, sender_user_id=user_id,
        referral=AdReferral(
            source_url=_nonempty(referral.source_url), source_id=_nonempty(referral.source_id),
            source_type=_nonempty(referral.source_type), headline=_nonempty(referral.headline),
            body=_nonempty(referral.body), media_type=_nonempty(referral.media_type),
            image_url=_nonempty(referral.image_url), video_url=_nonempty(referral.video_url),
            thumbnail_url=_nonempty(referral.thumbnail_url), ctwa_clid=_nonempty(referral.ctwa_clid),
        ) if referral is not None and referral.model_dump(exclude_none=True) else None,
        reply_to=fields.pop("reply_to", None) or (_nonempty(message.context.id) if message.context else None),
        **fields,
    )


def _system(change: SystemChange, phone: str | None, user_id: str | None) -> tuple[str, str | None, str | None]:
    """A system notice as ``(raw type, sender phone, sender user id)``: a changed number gives the new number
    (and a new business-scoped id, if any), a changed business-scoped id the new id; the message carries
    them to the relay, which links them to the person (``connector.routing``). Other notices change nothing."""
    new_wa_id = change.wa_id or change.new_wa_id
    if change.type in NUMBER_CHANGES and _digits(new_wa_id):
        return NUMBER_CHANGED, f"+{new_wa_id}", change.user_id
    if change.type == USER_ID_CHANGED and change.user_id:
        return USER_ID_CHANGED, phone, change.user_id
    return "system", phone, user_id


def _form_answers(reply: FlowReply) -> dict[str, Any]:
    """A WhatsApp Flow sent back (``nfm_reply``): its ``response_json`` is a JSON object of the answers, by the
    names the form's ``complete`` action gave them, with the ``flow_token`` the form was sent with. Anything else
    is kept as a message the bot does not read."""
    try:
        answers = json.loads(reply.response_json)
    except ValueError:
        answers = None
    if not isinstance(answers, dict):
        return {"kind": "unsupported", "raw_type": "nfm_reply"}
    token = answers.pop("flow_token", None)
    return {"kind": "form", "raw_type": "nfm_reply", "form": answers, "text": _nonempty(reply.body),
            "form_token": token if isinstance(token, str) and token else None}


def _digits(value: str | None) -> bool:
    return bool(value) and value.isascii() and value.isdigit()  # type: ignore[union-attr]


def _own_phone(cards: list[Card], wa_id: str | None) -> str | None:
    """The number (``+`` and digits) on a card the sender shared as their own: a phone whose WhatsApp id is the
    sender's, or a card WhatsApp marks as shared through its request-contact-info button. Someone else's card
    links nothing."""
    for card in cards:
        for entry in card.phones:
            if _digits(entry.wa_id) and (entry.wa_id == wa_id or card.origin == "contact_request"):
                return f"+{entry.wa_id}"
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(reply: Reply) -> list[dict[str, Any]]:
    """The message objects (without recipient) that carry ``reply``: buttons, a list, or numbered text."""
    options = reply.options
    body = _cut(reply.text, MAX_BODY)
    if reply.form is not None:  # a WhatsApp Flow opened from a button (Meta's interactive `flow` message)
        offer = reply.form
        return [{"type": "interactive", "interactive": {"type": "flow", "body": {"text": body}, "action": {
            "name": "flow", "parameters": {
                "flow_message_version": "3", "flow_id": offer.flow_id, "flow_cta": _cut(offer.button, MAX_FLOW_CTA),
                "flow_token": offer.token, "flow_action": "navigate",
                "flow_action_payload": {"screen": offer.screen}}}}}]
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


def template_text(text: str) -> str:
    """The agent's text as a template body parameter Meta accepts: no new lines or tabs, no run of more than
    four spaces (error 132018), and short enough to leave room for the template's own words (132005)."""
    flat = _PARAM_SPACES.sub("    ", _PARAM_BREAKS.sub(" ", text)).strip()
    return _cut(flat, MAX_TEMPLATE_PARAM) or "-"


class WhatsAppClient(HttpChannel):
    """Sends messages through the Cloud API (``{base}/{version}/{phone_number_id}/messages``) and downloads
    patients' media (``{base}/{version}/{media_id}``, then the URL it answers).

    A reply goes out from the business number the patient wrote to (the conversation's account, a phone
    number id); ``WHATSAPP_PHONE_NUMBER_ID`` is the number of anything not tied to one.
    """

    def __init__(self, settings: Settings, session: requests.Session | None = None, *,
                 endpoint: CloudEndpoint | None = None) -> None:
        # a provider in front of the Cloud API (360dialog) differs only in its addresses and credential
        self.endpoint = endpoint or CloudEndpoint.meta(settings)
        super().__init__(self.endpoint.api, self.endpoint.token_setting, session)
        self.session.headers.update({**self.endpoint.headers, "Content-Type": "application/json"})
        self.phone_number_id = settings.whatsapp_phone_number_id or ""
        self.graph = self.endpoint.base
        self.url = self.endpoint.messages_url(self.phone_number_id)

    def _messages_url(self, account: str) -> str:
        """Where to post a message sent from business number ``account`` (a phone number id)."""
        number = account if account.isascii() and account.isdigit() else self.phone_number_id
        return self.endpoint.messages_url(number)

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` to the conversation's patient (see :class:`ChannelClient`).

        Inside the 24-hour window a reply with attachments becomes one media message per file, the text
        as the first file's caption or before it (:func:`connector.channels.whatsapp_media.with_attachments`).
        Outside it, a reply with ``template`` is sent as that template alone: its attachments are not sent
        (a template carries no free file), and the caller reports them as not delivered.
        Every message carries ``tracking`` as ``biz_opaque_callback_data``.

        Raises:
            ValueError: ``tracking`` is over 512 characters.
            FatalError: also when an attachment is of a type or size WhatsApp does not take; nothing of
                the replies is sent then.
        """
        if tracking is not None and len(tracking) > MAX_TRACKING:
            raise ValueError(f"tracking must be at most {MAX_TRACKING} characters")
        in_window = conversation.last_inbound_at is not None and (
            datetime.now(UTC) - conversation.last_inbound_at) < WINDOW
        # every message is built before the first is sent: a reply refused for good sends nothing
        messages: list[dict[str, Any]] = []
        for reply in replies:
            if in_window:
                messages.extend(with_attachments(reply, render(reply)) if reply.attachments else render(reply))
            elif reply.template:
                messages.append(self._template(reply, conversation.language))
            else:
                raise SkippableError("whatsapp: outside the 24-hour window and the reply has no template")
        extra = {"biz_opaque_callback_data": tracking} if tracking else {}
        url = self._messages_url(conversation.account)
        return [self._post({"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": conversation.sender_id, **message, **extra}, url) for message in messages]

    def _template(self, reply: Reply, language: str | None) -> dict[str, Any]:
        template: dict[str, Any] = {"name": reply.template,
                                    "language": {"code": reply.template_language or language or "en",
                                                 "policy": "deterministic"}}
        if reply.template_params:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": template_text(p)} for p in reply.template_params]}]
        return {"type": "template", "template": template}

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a patient's file: ``GET /{version}/{media-id}`` for its URL, type, size and hash, then that
        URL with the same token (it is valid for 5 minutes). A file declared over ``max_bytes`` is refused
        before any byte is read; one that grows past it while streaming is given up; the bytes must match
        the declared SHA-256 (see :class:`ChannelClient`). The URL is never logged.
        """
        response = self.request("GET", f"{self.graph}/{quote(media_id, safe='')}",
                                params={"phone_number_id": self.phone_number_id} if self.endpoint.per_number else None)
        if response.status_code != 200:
            raise self._error(response)
        try:
            data = response.json()
            url, size = str(data["url"]), _size(data.get("file_size"))
        except (ValueError, KeyError, TypeError):
            raise FatalError("whatsapp: the media answer has no URL", details={"media_id": media_id}) from None
        if size is not None and size > max_bytes:
            raise FatalError(f"whatsapp: the file is {size} bytes, over the {max_bytes}-byte limit",
                             details={"media_id": media_id, "size": size, "max_bytes": max_bytes})
        url = self.endpoint.download_url(url)
        if not self._may_carry_token(url):
            raise FatalError("whatsapp: the media URL is neither https nor on the API's host",
                             details={"media_id": media_id})
        download = self.request("GET", url, stream=True)
        if download.status_code != 200:
            download.close()
            if download.status_code in (404, 410):  # the 5-minute link expired: the next try asks for a new one
                raise RetryableError("whatsapp: the media link expired", details={"status": download.status_code})
            raise self.status_error(download, download.status_code, "media download refused")
        content = self.read_limited(download, max_bytes, "the file")
        expected = data.get("sha256")
        if isinstance(expected, str) and expected and not sha256_matches(content, expected):
            raise FatalError("whatsapp: the downloaded file does not match its SHA-256",
                             details={"media_id": media_id})
        mime = data.get("mime_type") or download.headers.get("Content-Type") or "application/octet-stream"
        return MediaFile(content=content, mime_type=str(mime).split(";", 1)[0].strip(), name=None)

    def _may_carry_token(self, url: str) -> bool:
        """Whether the bearer token may go to ``url``: over https, or to the API's own host."""
        target, api = urlsplit(url), urlsplit(self.graph)
        return target.scheme == "https" or (target.scheme, target.netloc) == (api.scheme, api.netloc)

    def mark_read(self, message: InboundMessage) -> None:
        """Mark the patient's message as read (blue ticks)."""
        if message.message_id.startswith("wamid"):
            self._post({"messaging_product": "whatsapp", "status": "read", "message_id": message.message_id},
                       self._messages_url(message.account))

    def answer_callback(self, message: InboundMessage) -> None:
        """WhatsApp needs no acknowledgement of a button press."""

    def _post(self, payload: dict[str, Any], url: str | None = None) -> str:
        response = self.request("POST", url or self.url, json=payload)
        if response.status_code == 200:
            data = response.json()
            messages = data.get("messages") or [{}]
            return str(messages[0].get("id", "")) if isinstance(messages, list) else ""
        raise self._error(response)

    def _error(self, response: requests.Response) -> Exception:
        """The error-tree exception for a Graph API error answer."""
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {}
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", response.reason) if isinstance(error, dict) else response.reason)[:200]
        if code in THROTTLING_CODES:
            return self.status_error(response, code, message, throttled=True)
        if code == REENGAGEMENT_CODE:
            return SkippableError("whatsapp: outside the 24-hour window (131047)", details={"code": code})
        rule = WHATSAPP_ERRORS.rules.get(str(code))
        if rule is not None and rule.outcome in (Outcome.UNREACHABLE, Outcome.RETRY):
            return WHATSAPP_ERRORS.error(code, response.status_code, message)  # the error table's reason
        if code in AUTH_CODES and response.status_code in (400, 401, 403):
            response.status_code = 401
        return self.status_error(response, code, message)


def _size(value: Any) -> int | None:
    """``file_size`` as Meta gives it: a string of digits (its reference) or a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
