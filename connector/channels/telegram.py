"""Telegram Bot API: webhook verification and parsing, and the outbound client.

Inbound: :func:`verify_secret` compares ``X-Telegram-Bot-Api-Secret-Token`` in constant time;
:func:`parse_update` reads one update through the typed models of
:mod:`connector.channels.telegram_update` into a canonical message (text, ``/start <payload>``,
callback queries, shared contacts, locations, photos, stickers, documents, voice notes, audio, videos and
video notes with their captions, edited messages, the bot blocked or started again in ``my_chat_member``);
an update that does not fit the Bot API's description is dropped and logged without its contents.

Outbound: :class:`TelegramClient` sends ``sendMessage`` with an inline keyboard for options, a
reply keyboard to share the phone number, an agent's attachments (``sendPhoto``, ``sendVideo``,
``sendVoice``, ``sendAudio``, ``sendDocument``: by URL, or uploaded where Telegram will not fetch them;
see :mod:`connector.channels.telegram_media`), answers callback queries, and downloads patients' files
(``getFile``, then ``/file/bot<token>/<file_path>``).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from connector.channels.base import HttpChannel, ParsedWebhook
from connector.channels.parts import Part, valid_part
from connector.channels.telegram_errors import TELEGRAM_ERRORS
from connector.channels.telegram_media import (
    MAX_CAPTION,
    MAX_DOWNLOAD,
    Audio,
    FilePlan,
    Video,
    VideoNote,
    Voice,
    file_name_and_type,
    plan_file,
)
from connector.channels.telegram_update import CallbackQuery, Chat, ChatMemberUpdated, Message, Update, User
from core.errors import FatalError, RetryableError, WebhookRejectedError
from core.models import (
    Attachment,
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

log = logging.getLogger("chat2crm.telegram")
F = TypeVar("F", bound=Part)

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
    a kind the relay does not read (channel posts, a membership change other than the bot blocked or
    started again…), and messages from bots or groups when the policy says so, are counted in ``ignored``.
    A private chat's ``my_chat_member`` becomes an opt-out (``kicked``) or an opt-in (``member``).

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
    if update.my_chat_member is not None:
        return _membership(update.my_chat_member, account, parsed, ignore_bots=ignore_bots)
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
        chat_message_id=str(message.message_id) if message is not None and callback is None else None,
        **_content(callback, message, source.id),
    ))
    return parsed


def _membership(change: ChatMemberUpdated, account: str, parsed: ParsedWebhook, *, ignore_bots: bool) -> ParsedWebhook:
    """``my_chat_member`` of a private chat: the user blocked the bot (``kicked``: an opt-out, nothing is sent
    to them again) or started it again (``member``). Any other membership change is ignored."""
    status = change.new_chat_member.status
    if change.chat.type != "private" or (ignore_bots and change.from_.is_bot) or status not in ("kicked", "member"):
        parsed.ignored += 1
        log.info("telegram membership change ignored", extra={"chat_type": change.chat.type, "status": status})
        return parsed
    (parsed.opt_outs if status == "kicked" else parsed.opt_ins).append((account, str(change.chat.id)))
    log.info("telegram bot blocked by a user" if status == "kicked" else "telegram bot started again by a user")
    return parsed


def _phone(number: str) -> str | None:
    """A number as Telegram's contact gives it (with or without ``+``) as ``+`` and digits."""
    digits = "".join(ch for ch in number if ch.isascii() and ch.isdigit())
    return f"+{digits}" if 6 <= len(digits) <= 15 else None


def _content(callback: CallbackQuery | None, message: Message | None, sender: int) -> dict[str, Any]:
    """The canonical message's kind and content fields (and the sender's own number, when they shared it)."""
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
        fields: dict[str, Any] = {"kind": "contact", "raw_type": "contact", "contacts": [SharedContact(
            name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
            phones=[contact.phone_number] if contact.phone_number else [],
            user_id=str(contact.user_id) if contact.user_id is not None else None)]}
        if contact.user_id == sender:  # their own card (the phone button shares exactly that): linked to them
            fields["sender_phone"] = _phone(contact.phone_number)
        return fields
    if message.location is not None:
        return {"kind": "location", "raw_type": "location",
                "location": Location(latitude=message.location.latitude, longitude=message.location.longitude)}
    return _files(message)


def _files(message: Message) -> dict[str, Any]:
    """The kind and content fields of a message that carries a file (or of one the relay does not read)."""
    caption = message.caption or None
    if message.sticker is not None:
        sticker = message.sticker
        mime = "video/webm" if sticker.is_video else "application/x-tgsticker" if sticker.is_animated else "image/webp"
        return {"kind": "media", "raw_type": "sticker",
                "media": [MediaRef(kind="sticker", media_id=sticker.file_id, mime_type=mime)]}
    if message.photo:
        return {"kind": "media", "raw_type": "photo", "text": caption,
                "media": [MediaRef(kind="image", media_id=message.photo[-1].file_id, caption=caption)]}
    if message.document is not None:
        doc = message.document
        return {"kind": "media", "raw_type": "document", "text": caption, "media": [MediaRef(
            kind="document", media_id=doc.file_id, mime_type=doc.mime_type or None, filename=doc.file_name or None,
            caption=caption)]}
    if (voice := _file_of(message, "voice", Voice)) is not None:
        return {"kind": "media", "raw_type": "voice", "text": caption, "media": [MediaRef(
            kind="voice", media_id=voice.file_id, mime_type=voice.mime_type or None, caption=caption)]}
    if (audio := _file_of(message, "audio", Audio)) is not None:
        return {"kind": "media", "raw_type": "audio", "text": caption, "media": [MediaRef(
            kind="audio", media_id=audio.file_id, mime_type=audio.mime_type or None,
            filename=audio.file_name or None, caption=caption)]}
    if (video := _file_of(message, "video", Video)) is not None:
        return {"kind": "media", "raw_type": "video", "text": caption, "media": [MediaRef(
            kind="video", media_id=video.file_id, mime_type=video.mime_type or None,
            filename=video.file_name or None, caption=caption)]}
    if (note := _file_of(message, "video_note", VideoNote)) is not None:
        return {"kind": "media", "raw_type": "video_note", "media": [MediaRef(
            kind="video", media_id=note.file_id, mime_type="video/mp4")]}
    return {"kind": "unsupported", "raw_type": "unknown"}


def _file_of(message: Message, name: str, model: type[F]) -> F | None:
    """The ``name`` file object of a message, typed: a field of :class:`Message` where it declares one, else
    the raw object it kept (its unknown fields are kept), checked here against ``model``."""
    value = getattr(message, name, None)
    if value is None or isinstance(value, model):
        return value
    return valid_part(model, value, channel="telegram", part=name)


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
    """Calls the Bot API (``{base}/bot{token}/{method}``) and downloads files (``{base}/file/bot{token}/…``)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__("telegram", "TELEGRAM_BOT_TOKEN", session)
        token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
        self.base = f"{settings.telegram_api_base.rstrip('/')}/bot{token}"
        self.files = f"{settings.telegram_api_base.rstrip('/')}/file/bot{token}"

    def call(self, method: str, params: dict[str, Any], *,
             upload: tuple[str, tuple[str, bytes, str]] | None = None) -> Any:
        """Call one Bot API method; return its ``result``. With ``upload`` (the parameter, and the file's
        name, bytes and type) the call is multipart/form-data, as the Bot API takes new files.

        Raises:
            RetryableError, AuthError, FatalError: mapped from Telegram's error answer.
        """
        if upload is None:
            response = self.request("POST", f"{self.base}/{method}", json=params)
        else:
            fields = {key: str(value) for key, value in params.items()}
            response = self.request("POST", f"{self.base}/{method}", data=fields, files=dict([upload]))
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
        if response.status_code == 403:  # blocked by the user, or their account is gone: the table's reason
            raise TELEGRAM_ERRORS.error(code, 403, description)
        raise self.status_error(response, code, description,
                                float(retry_after) if isinstance(retry_after, int | float) else None)

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` to the conversation's chat (see :class:`ChannelClient`).

        A reply with attachments sends one message per file, the text as the first file's caption when it
        fits (1024 characters) and the reply has no options, else as a message of its own before them.
        ``tracking`` is ignored: the Bot API echoes nothing back about delivery.
        """
        chat_id = int(conversation.sender_id)
        # every file is planned, and every file the relay uploads fetched, before anything is sent: a reply
        # refused for good, or a link that fails, sends nothing
        plans = [[plan_file(attachment) for attachment in reply.attachments] for reply in replies]
        uploads = {id(attachment): self._fetch_attachment(attachment.url, plan.upload_limit)
                   for reply, files in zip(replies, plans, strict=True)
                   for plan, attachment in zip(files, reply.attachments, strict=True) if not plan.by_url}
        ids = []
        for reply, files in zip(replies, plans, strict=True):
            caption = None
            if files and not reply.options and len(reply.text) <= MAX_CAPTION:
                caption = reply.text.strip() or None
            elif not files or reply.text.strip():
                result = self.call("sendMessage", {"chat_id": chat_id, **render(reply)})
                ids.append(str(_dict(result).get("message_id", "")))
            for plan, attachment in zip(files, reply.attachments, strict=True):
                ids.append(self._send_file(chat_id, plan, attachment, caption, uploads.get(id(attachment))))
                caption = None
        return ids

    def _send_file(self, chat_id: int, plan: FilePlan, attachment: Attachment, caption: str | None,
                   content: bytes | None) -> str:
        params: dict[str, Any] = {"chat_id": chat_id}
        if caption:
            params["caption"] = caption
        if content is None:
            result = self.call(plan.method, {**params, plan.field: attachment.url})
        else:
            result = self.call(plan.method, params, upload=(plan.field, (plan.name, content, plan.mime_type)))
        return str(_dict(result).get("message_id", ""))

    def _fetch_attachment(self, url: str, max_bytes: int) -> bytes:
        """The bytes of an attachment Telegram will not fetch itself (a document other than PDF, ZIP, GIF)."""
        response = self.request("GET", url, stream=True, headers={"Accept": "*/*"})
        if response.status_code != 200:
            response.close()
            if response.status_code >= 500 or response.status_code == 429:
                raise RetryableError("telegram: the attachment could not be fetched for now",
                                     details={"status": response.status_code})
            raise FatalError("telegram: the attachment's link was refused (expired or removed?)", field="url",
                             details={"status": response.status_code})
        return self.read_limited(response, max_bytes, "the attachment")

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a patient's file: ``getFile`` for its path and size, then ``/file/bot<token>/<file_path>``
        (a bot downloads at most 20 MB). A file declared over ``max_bytes`` is refused before any byte is read;
        one that grows past it while streaming is given up. The download URL holds the token: never logged.
        The name and type come from the file's path; the ``MediaRef``'s are better when it has them.
        """
        try:
            result = _dict(self.call("getFile", {"file_id": media_id}))
        except FatalError as exc:
            if "too big" not in exc.message.lower():
                raise
            # Telegram refuses getFile for files over what bots may download: the file is too large, not gone
            raise FatalError(f"telegram: the file is over the {MAX_DOWNLOAD}-byte limit bots may download",
                             details={"max_bytes": min(max_bytes, MAX_DOWNLOAD)}) from None
        size, path = result.get("file_size"), result.get("file_path")
        if isinstance(size, int) and size > max_bytes:
            raise FatalError(f"telegram: the file is {size} bytes, over the {max_bytes}-byte limit",
                             details={"size": size, "max_bytes": max_bytes})
        if not isinstance(path, str) or not path:
            raise FatalError(f"telegram: the file cannot be downloaded (bots download at most {MAX_DOWNLOAD} bytes)",
                             details={"max_bytes": min(max_bytes, MAX_DOWNLOAD)})
        response = self.request("GET", f"{self.files}/{quote(path)}", stream=True)
        if response.status_code != 200:
            response.close()
            if response.status_code == 404:  # the link lasts an hour at least: the next try asks for a new one
                raise RetryableError("telegram: the file link expired", details={"status": 404})
            raise self.status_error(response, response.status_code, "file download refused")
        content = self.read_limited(response, max_bytes, "the file")
        name, mime = file_name_and_type(path)
        return MediaFile(content=content, mime_type=mime, name=name)

    def mark_read(self, message: InboundMessage) -> None:
        """Telegram has no read receipts for bots."""

    def answer_callback(self, message: InboundMessage) -> None:
        """Stop the button's spinner."""
        if message.callback_id:
            self.call("answerCallbackQuery", {"callback_query_id": message.callback_id})
