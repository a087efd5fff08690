"""LINE Messaging API, outbound: replies and pushes through LINE's official SDK, read marks, users' files.

:class:`LineClient` implements :class:`~connector.channels.base.ChannelClient` with ``line-bot-sdk`` v3
(``MessagingApi`` on ``Configuration(host=LINE_API_BASE)``):

- A turn's first messages go as a **reply** (``/v2/bot/message/reply``, free of charge) while the event's
  reply token is fresh (used once, within :data:`REPLY_TOKEN_SECONDS`); the rest, and everything when the
  token is spent, too old or refused (``Invalid reply token``), as a **push** (``/v2/bot/message/push``,
  counted against the month's quota), each push with an ``X-Line-Retry-Key`` kept for its tries, so a try
  after a time-out cannot send twice (LINE answers 409 with the ids it already sent).
- Options become **quick replies** (≤ 13 postback buttons, labels ≤ 20 characters: the option's id as
  ``data``, its title shown as the patient's message); options that do not fit become numbered text, with
  quick replies of the numbers when there are at most 13. A location request adds LINE's location button.
- Attachments: JPEG and PNG images by URL (https, up to 1 MB so the file is its own preview); anything
  else as a link in text (LINE sends no documents, and a video needs a preview image).
- Read marks (:meth:`LineClient.mark_read`) use the message's ``markAsReadToken`` with
  ``/v2/bot/chat/markAsRead``; LINE has no other read receipt for bots.
- Users' files come from the content endpoint on the data host (``/v2/bot/message/{id}/content``),
  streamed under a size limit (the SDK's blob client reads whole bodies and is fixed to LINE's host, so
  this one call goes through :class:`~connector.channels.base.HttpChannel`).

LINE has no message templates and no service window: a push reaches a friend at any time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MarkMessagesAsReadByTokenRequest,
    MessagingApi,
    PushMessageRequest,
    ReplyMessageRequest,
)

from connector.channels.base import ATTEMPTS, TIMEOUT, HttpChannel, render_numbered
from connector.channels.line import LineSettings, LineWebhook
from connector.channels.line_errors import LineError, as_error, classify
from core.errors import FatalError, RetryableError
from core.models import Attachment, Conversation, InboundMessage, MediaFile, Reply, SenderProfile

log = logging.getLogger("chat2crm.line")

#: LINE accepts a reply token once, within about a minute of the event; a little less leaves time for the call
REPLY_TOKEN_SECONDS = 50.0
MAX_MESSAGES = 5  # per reply or push request
MAX_TEXT = 5000
MAX_QUICK_REPLIES, MAX_LABEL, MAX_DATA = 13, 20, 300
#: an image sent by URL is also its preview, which LINE takes up to 1 MB
MAX_PREVIEW_BYTES = 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png")
LOCATION_LABEL = "📍 Location"
_STATUSES_TRIED_AGAIN = frozenset({500, 502, 503, 504})


class LineTokens:
    """The reply and read tokens LINE gave with events, kept in memory for the short time they are useful.

    A reply token is kept per conversation (the latest wins: LINE accepts any unused one) and taken once;
    a read token per message id. Entries older than :data:`REPLY_TOKEN_SECONDS` are dropped.
    """

    def __init__(self, clock: Callable[[], float] = time.time, ttl: float = REPLY_TOKEN_SECONDS) -> None:
        self._clock, self._ttl = clock, ttl
        self._lock = threading.Lock()
        self._reply: dict[str, tuple[str, float]] = {}
        self._read: dict[str, tuple[str, float]] = {}

    def remember_reply(self, conversation: str, token: str, at: float | None = None) -> None:
        """Keep ``token`` to answer ``conversation`` (``at``: when the event happened, epoch seconds)."""
        with self._lock:
            self._prune()
            self._reply[conversation] = (token, self._clock() if at is None else at)

    def remember_read(self, message_id: str, token: str) -> None:
        """Keep the ``markAsReadToken`` of one message."""
        with self._lock:
            self._prune()
            self._read[message_id] = (token, self._clock())

    def take_reply(self, conversation: str) -> str | None:
        """The conversation's reply token if still fresh, forgotten once taken (LINE accepts it once)."""
        with self._lock:
            self._prune()
            found = self._reply.pop(conversation, None)
        return found[0] if found else None

    def take_read(self, message_id: str) -> str | None:
        """The message's read token, forgotten once taken."""
        with self._lock:
            found = self._read.pop(message_id, None)
        return found[0] if found else None

    def _prune(self) -> None:
        oldest = self._clock() - self._ttl
        for store in (self._reply, self._read):
            for key in [k for k, (_, at) in store.items() if at < oldest]:
                del store[key]


def quick_reply(reply: Reply) -> list[dict[str, Any]]:
    """The quick-reply items of ``reply``: its options as postback buttons, or numbers; a location button."""
    options, items = reply.options, []
    if options and _fits(reply):
        items = [{"type": "action", "action": {"type": "postback", "label": _cut(o.title, MAX_LABEL),
                                                "data": o.id, "displayText": o.title}} for o in options]
    elif options and len(options) <= MAX_QUICK_REPLIES:
        items = [{"type": "action", "action": {"type": "message", "label": str(n), "text": str(n)}}
                 for n in range(1, len(options) + 1)]
    if reply.request_location and len(items) < MAX_QUICK_REPLIES:
        items.append({"type": "action", "action": {"type": "location", "label": LOCATION_LABEL}})
    return items


def _fits(reply: Reply) -> bool:
    """Whether the options can be quick-reply buttons: at most 13, titles whole on a label, ids as data."""
    return len(reply.options) <= MAX_QUICK_REPLIES and all(
        0 < len(o.title) <= MAX_LABEL and 0 < len(o.id) <= MAX_DATA and len(o.title) <= MAX_DATA
        for o in reply.options)


def render(reply: Reply) -> list[dict[str, Any]]:
    """The LINE message objects that carry ``reply``: its text (numbered when the options need it), then its
    attachments; quick replies ride on the last message, where LINE shows them."""
    text = reply.text if not reply.options or _fits(reply) else render_numbered(reply.text, [o.title for o in reply.options])
    messages: list[dict[str, Any]] = []
    if text.strip():
        messages.append({"type": "text", "text": _cut(text, MAX_TEXT)})
    messages.extend(_attachment(file) for file in reply.attachments)
    if not messages:
        messages.append({"type": "text", "text": "-"})
    items = quick_reply(reply)
    if items:
        messages[-1]["quickReply"] = {"items": items}
    return messages


def _attachment(file: Attachment) -> dict[str, Any]:
    mime = (file.mime_type or "").split(";", 1)[0].strip().lower()
    small = file.size is None or file.size <= MAX_PREVIEW_BYTES
    if mime in IMAGE_TYPES and file.url.startswith("https://") and small and len(file.url) <= 2000:
        return {"type": "image", "originalContentUrl": file.url, "previewImageUrl": file.url}
    return {"type": "text", "text": _cut(f"{file.name or 'File'}: {file.url}", MAX_TEXT)}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LineClient(HttpChannel):
    """Sends the bot's replies to LINE users, marks their messages read and downloads their files.

    Args:
        settings: the channel's credentials and hosts.
        tokens: where reply and read tokens are kept (one per process by default).
    """

    def __init__(self, settings: LineSettings, tokens: LineTokens | None = None,
                 session: requests.Session | None = None) -> None:
        super().__init__("line", "LINE_CHANNEL_ACCESS_TOKEN", session)
        token = settings.line_channel_access_token.get_secret_value() if settings.line_channel_access_token else ""
        self.session.headers.update({"Authorization": f"Bearer {token}"})
        self.data_api = settings.line_data_api_base.rstrip("/")
        configuration = Configuration(host=settings.line_api_base.rstrip("/"), access_token=token)
        configuration.retries = False  # tries are decided here (see _call), never by urllib3 behind our back
        self.messaging = MessagingApi(ApiClient(configuration))
        self.tokens = tokens or LineTokens()

    # -- tokens --------------------------------------------------------------------------------
    def remember(self, parsed: LineWebhook) -> None:
        """Keep the reply and read tokens of a parsed webhook (when the web process also sends)."""
        for message in parsed.messages:
            if message.message_id in parsed.reply_tokens:
                token, at = parsed.reply_tokens[message.message_id]
                self.tokens.remember_reply(message.conversation_key, token, at.timestamp())
            if message.message_id in parsed.read_tokens:
                self.tokens.remember_read(message.message_id, parsed.read_tokens[message.message_id])

    def answer_callback(self, message: InboundMessage) -> None:
        """LINE needs no acknowledgement of a button press; the event's reply token (``callback_id``) is kept
        so the replies that follow go as a reply."""
        if message.callback_id:
            self.tokens.remember_reply(message.conversation_key, message.callback_id)

    # -- sending -------------------------------------------------------------------------------
    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` to the conversation's user (see :class:`ChannelClient`); ``tracking`` is not
        echoed by LINE and is ignored. Returns LINE's message ids.

        Raises:
            RetryableError: rate limits, 5xx, time-outs.
            AuthError: the channel access token was refused.
            FatalError: LINE refused a message, or the month's quota is spent.
            UnreachableError: the user cannot be reached on LINE.
        """
        del tracking
        messages = [message for reply in replies for message in render(reply)]
        chunks = [messages[i:i + MAX_MESSAGES] for i in range(0, len(messages), MAX_MESSAGES)]
        ids: list[str] = []
        token = self.tokens.take_reply(conversation.key)
        for n, chunk in enumerate(chunks):
            if n == 0 and token:
                sent = self._reply(token, chunk)
                if sent is not None:
                    ids += sent
                    continue
            ids += self._push(conversation.sender_id, chunk)
        return ids

    def _reply(self, token: str, messages: list[dict[str, Any]]) -> list[str] | None:
        """Send as a reply; None when the token is refused (the caller pushes instead)."""
        request = ReplyMessageRequest.from_dict({"replyToken": token, "messages": messages})
        try:
            response = self._call(lambda: self.messaging.reply_message_with_http_info(
                request, _request_timeout=TIMEOUT), safe_to_repeat=False)
        except _Refused as refused:
            if refused.error.outcome == "reply_token":
                log.info("line reply token refused: pushing instead")
                return None
            raise as_error(refused.error, "line reply") from None
        return [m.id for m in response.data.sent_messages]

    def _push(self, to: str, messages: list[dict[str, Any]]) -> list[str]:
        request = PushMessageRequest.from_dict({"to": to, "messages": messages})
        retry_key = str(uuid.uuid4())  # the same for every try of this push: LINE sends it once
        try:
            response = self._call(lambda: self.messaging.push_message_with_http_info(
                request, x_line_retry_key=retry_key, _request_timeout=TIMEOUT), safe_to_repeat=True)
        except _Refused as refused:
            if refused.error.outcome == "already_sent":
                return list(refused.error.sent_ids)
            raise as_error(refused.error, "line push") from None
        return [m.id for m in response.data.sent_messages]

    def _call(self, call: Callable[[], Any], *, safe_to_repeat: bool) -> Any:
        """Make one SDK call, tried again in place (up to ``ATTEMPTS``) where that cannot send twice: LINE
        answered 5xx, no connection was made, or (``safe_to_repeat``: a push with its retry key) the answer
        never came.

        Raises:
            _Refused: LINE answered with an error (classified).
            RetryableError: no answer after the tries.
        """
        for attempt in range(1, ATTEMPTS + 1):
            self.calls += 1
            try:
                return call()
            except ApiException as exc:
                error = classify(int(exc.status or 0), exc.body, exc.headers)
                if exc.status in _STATUSES_TRIED_AGAIN and attempt < ATTEMPTS:
                    time.sleep(0.2 * attempt)
                    continue
                raise _Refused(error) from None
            except urllib3.exceptions.HTTPError as exc:
                never_sent = isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
                if (never_sent or safe_to_repeat) and attempt < ATTEMPTS:
                    time.sleep(0.2 * attempt)
                    continue
                kind = "timed out" if isinstance(exc, urllib3.exceptions.TimeoutError) else "connection failed"
                raise RetryableError(f"line: {kind}", details={"error": type(exc).__name__}) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- courtesies and files ------------------------------------------------------------------
    def mark_read(self, message: InboundMessage) -> None:
        """Mark the user's message (and those before it) as read, with its ``markAsReadToken``; without one
        (LINE gives it with message events only) nothing is sent."""
        token = self.tokens.take_read(message.message_id)
        if not token:
            return
        request = MarkMessagesAsReadByTokenRequest(mark_as_read_token=token)
        try:
            self._call(lambda: self.messaging.mark_messages_as_read_by_token_with_http_info(
                request, _request_timeout=TIMEOUT), safe_to_repeat=True)
        except _Refused as refused:
            raise as_error(refused.error, "line mark-as-read") from None

    def profile(self, user_id: str) -> SenderProfile:
        """The user's display name and language (``/v2/bot/profile/{userId}``)."""
        try:
            response = self._call(lambda: self.messaging.get_profile_with_http_info(
                user_id, _request_timeout=TIMEOUT), safe_to_repeat=True)
        except _Refused as refused:
            raise as_error(refused.error, "line profile") from None
        data = response.data
        return SenderProfile(name=data.display_name or None, language_code=data.language or None)

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a user's file from the content endpoint, refusing one over ``max_bytes`` (see
        :class:`ChannelClient`). A sticker has no file; a video or audio LINE is still preparing is retried."""
        if "/" in media_id:
            raise FatalError("line: a sticker has no file to download", details={"media_id": media_id})
        response = self.request("GET", f"{self.data_api}/v2/bot/message/{quote(media_id, safe='')}/content",
                                stream=True)
        if response.status_code == 202:
            response.close()
            raise RetryableError("line: the file is still being prepared", retry_after=5.0,
                                 details={"status": 202})
        if response.status_code != 200:
            error = classify(response.status_code, response.content, response.headers)
            response.close()
            raise as_error(error, "line content")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            response.close()
            raise FatalError(f"line: the file is {declared} bytes, over the {max_bytes}-byte limit",
                             details={"media_id": media_id, "max_bytes": max_bytes})
        content = self.read_limited(response, max_bytes, "the file")
        mime = response.headers.get("Content-Type") or "application/octet-stream"
        return MediaFile(content=content, mime_type=mime.split(";", 1)[0].strip(), name=None)


class _Refused(Exception):
    """LINE answered a call with an error (carried classified)."""

    def __init__(self, error: LineError) -> None:
        super().__init__(error.message)
        self.error = error
