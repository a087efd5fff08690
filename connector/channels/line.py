"""LINE Messaging API, inbound: the webhook's signature, its events as canonical messages, and the settings.

:func:`verify_signature` checks ``X-Line-Signature``: the Base64 HMAC-SHA256 of the exact raw body under the
channel secret, compared in constant time. :func:`parse` reads a body through the typed models of
:mod:`connector.channels.line_payload`, one event at a time (a bad event is dropped alone, logged without
its contents):

- ``message`` events (text, image, video, audio, file, location, sticker) become messages; a text of the
  form ``/start <payload>`` (what a LINE link with prefilled text sends, see :data:`START`) is a ``start``
  with that payload, as on Telegram;
- ``postback`` events (a quick-reply button pressed) become choices (``data`` is the option's id);
- ``follow`` is a ``start`` without payload (a new friend: the bot greets them) and, when it is the account
  unblocked, an opt-in too; ``unfollow`` (the account blocked) is an opt-out;
- events from groups and rooms are ignored by default, as are the other types (``unsend``, ``join``…).

Every message's ``message_id`` is the event's ``webhookEventId``, which LINE keeps on a redelivery, so the
relay's de-duplication drops redeliveries; LINE's own message id is ``chat_message_id`` (and a file's
``MediaRef.media_id``). The event's ``replyToken`` travels as ``callback_id``: the relay hands it back to
the client (:meth:`connector.channels.line_client.LineClient.answer_callback`), which replies with it while
it is fresh and pushes otherwise. The tokens of a whole body are also in :class:`LineWebhook`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, SecretStr

from connector.channels.base import ParsedWebhook
from connector.channels.line_payload import Event, MessageContent
from connector.channels.parts import valid_parts
from connector.channels.plugin import ChannelSettings
from core.errors import WebhookRejectedError
from core.models import InboundMessage, Location, MediaRef

log = logging.getLogger("chat2crm.line")

CHANNEL = "line"
#: what a text must start with to be read as a start payload: LINE has no start parameter of its own, but
#: a link ``https://line.me/R/oaMessage/{basic id}/?/start%20{payload}`` opens the chat with that text typed
START = "/start"
#: the longest start payload kept (Telegram's limit, so campaigns are the same on both)
MAX_START_PAYLOAD = 64
#: LINE message types whose content is a file at the content endpoint, as the relay's media kinds
FILE_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "document"}


class LineSettings(ChannelSettings):
    """The LINE channel's credentials and endpoints, from the environment (``LINE_…``)."""

    line_channel_secret: SecretStr | None = Field(
        default=None, description="The channel secret (LINE Developers console, Basic settings): checks webhooks.")
    line_channel_access_token: SecretStr | None = Field(
        default=None, description="A channel access token (Messaging API tab): sends messages.")
    line_api_base: str = Field(default="https://api.line.me", description="The Messaging API's host.")
    line_data_api_base: str = Field(default="https://api-data.line.me",
                                    description="The host of users' files (the content endpoint).")
    line_ignore_groups: bool = Field(default=True, description="Ignore events from group chats and rooms.")
    line_basic_id: str | None = Field(default=None, description="The official account's basic id (@123abcde): "
                                                                "campaign links open a chat with it.")


@dataclass
class LineWebhook(ParsedWebhook):
    """A parsed LINE webhook: the canonical parts, and the tokens LINE gave to answer them."""

    #: the bot's user id the body was sent to (``destination``)
    destination: str = ""
    #: message id (the event's ``webhookEventId``) → its reply token and when the event happened
    reply_tokens: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    #: message id → the ``markAsReadToken`` that marks it (and everything before it) as read
    read_tokens: dict[str, str] = field(default_factory=dict)
    #: events LINE sent again (``deliveryContext.isRedelivery``): the relay's de-duplication drops repeats
    redeliveries: int = 0


def signature(raw: bytes, channel_secret: str) -> str:
    """The ``X-Line-Signature`` LINE sends with ``raw``: Base64 of HMAC-SHA256 under the channel secret."""
    return base64.b64encode(hmac.new(channel_secret.encode(), raw, hashlib.sha256).digest()).decode()


def verify_signature(raw: bytes, header: str | None, channel_secret: str) -> None:
    """Check ``X-Line-Signature`` over the exact raw body, in constant time.

    Raises:
        WebhookRejectedError: 401 when the header is missing, 403 when it does not match.
    """
    if not header:
        raise WebhookRejectedError(401, "missing X-Line-Signature")
    if not channel_secret:
        raise WebhookRejectedError(403, "no LINE channel secret is configured")
    if not hmac.compare_digest(header.strip().encode(), signature(raw, channel_secret).encode()):
        raise WebhookRejectedError(403, "signature does not match")


def parse(body: Any, headers: Any = None, *, ignore_groups: bool = True) -> LineWebhook:
    """Parse a webhook body (already JSON-decoded; check the signature on the raw bytes first).

    ``headers`` is accepted for the channel interface and not read (the signature is checked apart).
    An empty ``events`` list is LINE's check that the URL answers: nothing to do, 200.

    Raises:
        WebhookRejectedError: 400 when the body is not a LINE webhook at all.
    """
    del headers
    if not isinstance(body, dict) or not isinstance(body.get("events"), list) \
            or not isinstance(body.get("destination"), str) or not body["destination"]:
        raise WebhookRejectedError(400, "not a LINE webhook: 'destination' and an 'events' list expected")
    parsed = LineWebhook(destination=body["destination"])
    events, dropped = valid_parts(Event, body["events"], channel=CHANNEL, part="event")
    parsed.skipped += dropped
    for event in events:
        _read_event(event, parsed, ignore_groups=ignore_groups)
    return parsed


def _read_event(event: Event, parsed: LineWebhook, *, ignore_groups: bool) -> None:
    source = event.source
    user = source.userId if source else None
    if event.deliveryContext.isRedelivery:
        parsed.redeliveries += 1
    if source is None or user is None:
        parsed.ignored += 1  # nobody to answer (a group event without a user, an event without a source)
        log.info("line event without a user ignored", extra={"event_type": event.type})
        return
    if ignore_groups and source.type != "user":
        parsed.ignored += 1
        log.info("line event ignored by policy", extra={"source_type": source.type, "event_type": event.type})
        return
    account = parsed.destination
    if event.type == "unfollow":
        parsed.opt_outs.append((account, user))
        log.info("line account blocked by a user")
        return
    fields = _content(event)
    if fields is None:
        parsed.ignored += 1
        log.info("line event of a kind the relay does not read", extra={"event_type": event.type})
        return
    if event.type == "follow" and event.follow is not None and event.follow.isUnblocked:
        parsed.opt_ins.append((account, user))
    message_id = event.webhookEventId
    if event.replyToken:
        parsed.reply_tokens[message_id] = (event.replyToken, event.timestamp)
    if event.message is not None and event.message.markAsReadToken:
        parsed.read_tokens[message_id] = event.message.markAsReadToken
    parsed.messages.append(InboundMessage(
        channel=CHANNEL, account=account, sender_id=user, message_id=message_id, timestamp=event.timestamp,
        chat_message_id=event.message.id if event.message is not None else None,
        callback_id=event.replyToken or None, **fields))


def _content(event: Event) -> dict[str, Any] | None:
    """The canonical message's kind and content fields for one event; None for a kind the relay ignores."""
    if event.type == "message" and event.message is not None:
        return _message(event.message)
    if event.type == "postback" and event.postback is not None:
        data = event.postback.data
        # a date/time picker answers with what was picked; a plain button with its data (the option id)
        picked = next((value for value in (event.postback.params or {}).values() if value), None)
        return {"kind": "choice", "raw_type": "postback", "choice_id": data, "text": picked or data}
    if event.type == "follow" and event.follow is not None:
        return {"kind": "start", "raw_type": "follow", "text": None, "start_payload": None}
    return None


def _message(message: MessageContent) -> dict[str, Any]:
    """The kind and content fields of a ``message`` event."""
    kind = message.type
    reply_to = message.quotedMessageId or None
    if kind == "text" and message.text is not None:
        text = message.text
        if text == START or text.startswith(START + " "):
            payload = text[len(START):].strip()[:MAX_START_PAYLOAD]
            return {"kind": "start", "raw_type": "start", "text": text, "start_payload": payload or None}
        return {"kind": "text", "raw_type": "text", "text": text, "reply_to": reply_to}
    if kind == "location" and message.latitude is not None and message.longitude is not None:
        return {"kind": "location", "raw_type": "location", "location": Location(
            latitude=message.latitude, longitude=message.longitude, name=message.title or None,
            address=message.address or None)}
    if kind in FILE_KINDS:
        return {"kind": "media", "raw_type": kind, "media": [MediaRef(
            kind=FILE_KINDS[kind], media_id=message.id,
            filename=message.fileName or None)]}
    if kind == "sticker":
        # a sticker is an image LINE holds by package and id, with no bytes for the relay to fetch
        return {"kind": "media", "raw_type": "sticker", "text": message.text or None, "media": [MediaRef(
            kind="sticker", media_id=f"{message.packageId or ''}/{message.stickerId or ''}")]}
    return {"kind": "unsupported", "raw_type": kind}
