"""Telegram Bot API: webhook verification and parsing, and the outbound client.

Inbound: :func:`verify_secret` compares ``X-Telegram-Bot-Api-Secret-Token`` in constant time;
:func:`parse_update` turns one update into a canonical message (text, ``/start <payload>``,
callback queries, shared contacts, locations, photos with captions, edited messages).

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
from connector.errors import WebhookRejectedError
from connector.models import (
    Conversation,
    InboundMessage,
    Location,
    MediaRef,
    Reply,
    SenderProfile,
    SharedContact,
)
from connector.settings import Settings

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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_update(body: Any, account: str, *, ignore_groups: bool = True, ignore_bots: bool = True) -> ParsedWebhook:
    """Parse one update.

    Raises:
        WebhookRejectedError: 400 when the body is not a Telegram update.
    """
    if not isinstance(body, dict) or not isinstance(body.get("update_id"), int) or isinstance(body.get("update_id"),
                                                                                                bool):
        raise WebhookRejectedError(400, "not a Telegram update: integer 'update_id' expected")
    parsed = ParsedWebhook()
    update_id = body["update_id"]
    callback = _dict(body.get("callback_query"))
    edited = "edited_message" in body
    message = _dict(body.get("message") or body.get("edited_message"))
    source = _dict(callback.get("from")) if callback else _dict(message.get("from"))
    chat = _dict(_dict(callback.get("message")).get("chat")) if callback else _dict(message.get("chat"))
    user_id = source.get("id")
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        parsed.skipped += 1
        return parsed
    if (ignore_bots and source.get("is_bot") is True) or (ignore_groups and chat.get("type") not in (None, "private")):
        parsed.ignored += 1
        log.info("telegram update ignored by policy", extra={"chat_type": chat.get("type"),
                                                             "is_bot": bool(source.get("is_bot"))})
        return parsed
    name = " ".join(p for p in (_str(source.get("first_name")), _str(source.get("last_name"))) if p) or None
    profile = SenderProfile(name=name, username=_str(source.get("username")),
                            language_code=_str(source.get("language_code")), is_bot=source.get("is_bot") is True)
    date = message.get("edit_date") or message.get("date")
    timestamp = datetime.fromtimestamp(date, UTC) if isinstance(date, int) else datetime.now(UTC)
    fields: dict[str, Any] = {"kind": "unsupported", "raw_type": "unknown"}
    if callback:
        data = _str(callback.get("data")) or ""
        fields.update(kind="choice", raw_type="callback_query", choice_id=data, callback_id=_str(callback.get("id")),
                      text=_button_title(callback, data))
    elif _str(message.get("text")):
        text = message["text"]
        if text.startswith("/start"):
            payload = text[len("/start"):].strip()
            fields.update(kind="start", raw_type="start", text=text, start_payload=payload[:64] or None)
        else:
            fields.update(kind="text", raw_type="text", text=text)
    elif _dict(message.get("contact")):
        contact = message["contact"]
        phone = _str(contact.get("phone_number"))
        name_parts = (_str(contact.get("first_name")), _str(contact.get("last_name")))
        fields.update(kind="contact", raw_type="contact", contacts=[SharedContact(
            name=" ".join(p for p in name_parts if p) or None, phones=[phone] if phone else [],
            user_id=str(contact["user_id"]) if isinstance(contact.get("user_id"), int) else None)])
    elif _dict(message.get("location")):
        loc = message["location"]
        fields.update(kind="location", raw_type="location", location=Location(
            latitude=loc.get("latitude") if isinstance(loc.get("latitude"), int | float) else None,
            longitude=loc.get("longitude") if isinstance(loc.get("longitude"), int | float) else None))
    elif isinstance(message.get("photo"), list) and message["photo"]:
        largest = _dict(message["photo"][-1])
        file_id = _str(largest.get("file_id"))
        if file_id:
            fields.update(kind="media", raw_type="photo", text=_str(message.get("caption")), media=[
                MediaRef(kind="image", media_id=file_id, caption=_str(message.get("caption")))])
    elif _dict(message.get("document")):
        doc = message["document"]
        if _str(doc.get("file_id")):
            fields.update(kind="media", raw_type="document", text=_str(message.get("caption")), media=[
                MediaRef(kind="document", media_id=doc["file_id"], mime_type=_str(doc.get("mime_type")),
                         filename=_str(doc.get("file_name")), caption=_str(message.get("caption")))])
    parsed.messages.append(InboundMessage(
        channel="telegram", account=account, sender_id=str(user_id), message_id=f"update:{update_id}",
        timestamp=timestamp, profile=profile, edited=edited, **fields,
    ))
    return parsed


def _button_title(callback: dict[str, Any], data: str) -> str:
    """The title of the pressed inline button, found in the message that carried the keyboard."""
    markup = _dict(_dict(callback.get("message")).get("reply_markup"))
    for row in markup.get("inline_keyboard") or []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return str(button.get("text", data))
    return data


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
