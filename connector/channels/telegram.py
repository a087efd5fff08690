"""Telegram Bot API: webhook verification and parsing, and the outbound client.

Inbound: :func:`verify_secret` compares ``X-Telegram-Bot-Api-Secret-Token`` in constant time;
:func:`parse_update` reads one update through the typed models of
:mod:`connector.channels.telegram_update` into a canonical message (text, ``/start <payload>``,
callback queries, shared contacts, locations, photos with captions, documents, edited messages); an
update that does not fit the Bot API's description is dropped and logged without its contents.

Outbound: :class:`TelegramClient` sends ``sendMessage`` with an inline keyboard for options, a
reply keyboard to share the phone number, and answers callback queries.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any

import requests

from connector.channels.base import HttpChannel, ParsedWebhook
from connector.channels.parts import valid_part
from connector.channels.telegram_update import CallbackQuery, Chat, Message, Update, User
from core.errors import WebhookRejectedError
from core.models import (
    Conversation,
    InboundMessage,
    Location,
    MediaRef,
    Reply,
    SenderProfile,
    SharedContact,
)
from core.settings import Settings

log = logging.getLogger("chat2crm.telegram")

MAX_CALLBACK_DATA = 64
MAX_TEXT = 4096


def verify_secret(header: str | None, secret: str) -> None:
    """Check the secret token Telegram sends with every update.

    Raises:
        WebhookRejectedError: 401 when missing, 403 when wrong.
    """
    if not header:
        raise WebhookRejectedError(401, "missing X-Telegram-Bot-Api-Secret-Token")
    if not hmac.compare_digest(header.encode(), secret.encode()):
        raise WebhookRejectedError(403, "secret token does not match")


def bot_id(token: str | None) -> str:
    """The bot's id: the digits before ``:`` in its token (the conversation's account)."""
    return (token or "").split(":", 1)[0] or "telegram"


def parse_update(body: Any, account: str, *, ignore_groups: bool = True, ignore_bots: bool = True) -> ParsedWebhook:
    """Parse one update through the typed models of :mod:`connector.channels.telegram_update`.

    An update that does not fit the Bot API's description (a message without ``chat``, ``text`` that
    is not a string, a NUL character, an implausible ``date``) is dropped with a log line that names
    the fields at fault and none of their values, and counted in ``skipped``. A well-formed update of
    a kind the relay does not read (``my_chat_member``, channel posts…), and messages from bots or
    groups when the policy says so, are counted in ``ignored``.

    Raises:
        WebhookRejectedError: 400 when the body is not a Telegram update.
    """
    if not isinstance(body, dict) or not isinstance(body.get("update_id"), int) or isinstance(body.get("update_id"),
                                                                                                bool):
        raise WebhookRejectedError(400, "not a Telegram update: integer 'update_id' expected")
    parsed = ParsedWebhook()
    update = valid_part(Update, body, channel="telegram", part="update")
    if update is None:
        parsed.skipped += 1
        return parsed
    callback = update.callback_query
    message = update.message or update.edited_message
    source: User | None
    chat: Chat | None
    if callback is not None:
        source, chat = callback.from_, (callback.message.chat if callback.message else None)
    elif message is not None:
        source, chat = message.from_, message.chat
    else:
        parsed.ignored += 1
        log.info("telegram update of a kind the relay does not read", extra={"update_id": update.update_id})
        return parsed
    if source is None:
        parsed.ignored += 1  # a message with no sender (a channel's post): nobody to answer
        log.info("telegram message without a sender ignored", extra={"update_id": update.update_id})
        return parsed
    chat_type = chat.type if chat else None
    if (ignore_bots and source.is_bot) or (ignore_groups and chat_type not in (None, "private")):
        parsed.ignored += 1
        log.info("telegram update ignored by policy", extra={"chat_type": chat_type, "is_bot": source.is_bot})
        return parsed
    name = " ".join(p for p in (source.first_name, source.last_name) if p) or None
    profile = SenderProfile(name=name, username=source.username or None,
                            language_code=source.language_code or None, is_bot=source.is_bot)
    timestamp = (message.edit_date or message.date) if message is not None and callback is None else datetime.now(UTC)
    parsed.messages.append(InboundMessage(
        channel="telegram", account=account, sender_id=str(source.id), message_id=f"update:{update.update_id}",
        timestamp=timestamp, profile=profile, edited=update.edited_message is not None and update.message is None,
        **_content(callback, message),
    ))
    return parsed


def _content(callback: CallbackQuery | None, message: Message | None) -> dict[str, Any]:
    """The canonical message's kind and content fields."""
    if callback is not None:
        data = callback.data or ""
        return {"kind": "choice", "raw_type": "callback_query", "choice_id": data, "callback_id": callback.id,
                "text": callback.button_title() or data}
    if message is None:
        return {"kind": "unsupported", "raw_type": "unknown"}
    if message.text:
        if message.text.startswith("/start"):
            payload = message.text[len("/start"):].strip()
            return {"kind": "start", "raw_type": "start", "text": message.text, "start_payload": payload[:64] or None}
        return {"kind": "text", "raw_type": "text", "text": message.text}
    if message.contact is not None:
        contact = message.contact
        return {"kind": "contact", "raw_type": "contact", "contacts": [SharedContact(
            name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
            phones=[contact.phone_number] if contact.phone_number else [],
            user_id=str(contact.user_id) if contact.user_id is not None else None)]}
    if message.location is not None:
        return {"kind": "location", "raw_type": "location",
                "location": Location(latitude=message.location.latitude, longitude=message.location.longitude)}
    caption = message.caption or None
    if message.photo:
        return {"kind": "media", "raw_type": "photo", "text": caption,
                "media": [MediaRef(kind="image", media_id=message.photo[-1].file_id, caption=caption)]}
    if message.document is not None:
        doc = message.document
        return {"kind": "media", "raw_type": "document", "text": caption, "media": [MediaRef(
            kind="document", media_id=doc.file_id, mime_type=doc.mime_type or None, filename=doc.file_name or None,
            caption=caption)]}
    return {"kind": "unsupported", "raw_type": "unknown"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def render(reply: Reply) -> dict[str, Any]:
    """The ``sendMessage`` parameters (without ``chat_id``) for ``reply``."""
    params: dict[str, Any] = {"text": reply.text[:MAX_TEXT]}
    if reply.options:
        # Two short options a row reads well on a phone; long titles get a row each.
        rows: list[list[dict[str, str]]] = []
        for option in reply.options:
            button = {"text": option.title[:64], "callback_data": option.id.encode()[:MAX_CALLBACK_DATA].decode(
                "utf-8", "ignore")}
            if rows and len(rows[-1]) < 2 and len(option.title) <= 14 and len(rows[-1][0]["text"]) <= 14:
                rows[-1].append(button)
            else:
                rows.append([button])
        params["reply_markup"] = {"inline_keyboard": rows}
    elif reply.request_phone:
        params["reply_markup"] = {"keyboard": [[{"text": "📱", "request_contact": True}]],
                                  "one_time_keyboard": True, "resize_keyboard": True}
    return params


class TelegramClient(HttpChannel):
    """Calls the Bot API (``{base}/bot{token}/{method}``)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__("telegram", "TELEGRAM_BOT_TOKEN", session)
        token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
        self.base = f"{settings.telegram_api_base.rstrip('/')}/bot{token}"

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call one Bot API method; return its ``result``.

        Raises:
            RetryableError, AuthError, FatalError: mapped from Telegram's error answer.
        """
        response = self.request("POST", f"{self.base}/{method}", json=params)
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code == 200 and data.get("ok"):
            return data.get("result")
        retry_after = _dict(data.get("parameters")).get("retry_after")
        code = data.get("error_code", response.status_code)
        description = str(data.get("description", response.reason))[:200]
        if response.status_code == 404 and "Not Found" in description:
            response.status_code = 401  # Telegram answers 404 for a wrong token
        raise self.status_error(response, code, description,
                                float(retry_after) if isinstance(retry_after, int | float) else None)

    def send(self, conversation: Conversation, replies: list[Reply]) -> list[str]:
        """Send ``replies`` to the conversation's chat (see :class:`ChannelClient`)."""
        ids = []
        for reply in replies:
            result = self.call("sendMessage", {"chat_id": int(conversation.sender_id), **render(reply)})
            ids.append(str(_dict(result).get("message_id", "")))
        return ids

    def mark_read(self, message: InboundMessage) -> None:
        """Telegram has no read receipts for bots."""

    def answer_callback(self, message: InboundMessage) -> None:
        """Stop the button's spinner."""
        if message.callback_id:
            self.call("answerCallbackQuery", {"callback_query_id": message.callback_id})
