"""Messenger and Instagram (Meta's Messenger Platform): webhook verification and parsing, and the outbound client.

Inbound: the subscription handshake and ``X-Hub-Signature-256`` are WhatsApp's (one Meta app signs both):
:func:`verify_challenge` and :func:`verify_signature` are :mod:`connector.channels.whatsapp`'s own. :func:`parse`
checks the signature over the raw body, then :func:`parse_payload` reads ``object: page`` (channel
``messenger``) and ``object: instagram`` (channel ``instagram``) bodies through the typed models of
:mod:`connector.channels.meta_messaging_payload`: text, attachments (image, video, audio, file, location,
stickers), quick replies and postbacks as choices, ``reply_to``, reactions, m.me links (``ref``) and ads
(``referral``) as the message's start payload and referral (so the relay's attribution reads them as it reads
Telegram's ``/start`` payload and WhatsApp's ad referral), deliveries and reads as statuses. The Page's own
messages (``is_echo``), taken-back reactions, deleted messages and events for another app (``standby``) are
ignored. One malformed event is dropped alone, logged without its contents.

Outbound: :class:`MetaMessagingClient` posts to the Send API (``/{version}/me/messages`` with the Page access
token; Instagram through the same endpoint and token, or ``graph.instagram.com/{version}/{ig-id}/messages``
with an Instagram token): text, a button template (≤ 3 postback buttons), quick replies (≤ 13), numbered text
when options fit neither, an agent's files by URL, and ``sender_action: mark_seen`` as the read receipt. Meta's
windows: within 24 hours of the person's last message anything goes (``messaging_type: RESPONSE``); up to 7
days only an agent's reply, tagged ``HUMAN_AGENT``; after that nothing. Errors follow
:mod:`connector.channels.meta_messaging_errors`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.channels.base import HttpChannel, ParsedWebhook, StatusUpdate, render_numbered
from connector.channels.meta_messaging_errors import to_exception
from connector.channels.meta_messaging_payload import FILE_TYPES, Entry, Event, Message, Postback, Referral
from connector.channels.parts import valid_parts
from connector.channels.whatsapp import verify_challenge, verify_signature
from core.errors import FatalError, SkippableError, WebhookRejectedError
from core.models import AdReferral, Conversation, InboundMessage, Location, MediaFile, MediaRef, Reply

log = logging.getLogger("chat2crm.meta_messaging")
P = TypeVar("P", bound=BaseModel)
ChannelName = Literal["messenger", "instagram"]

#: ``object`` of the webhook body → the relay's channel name
CHANNELS: dict[str, ChannelName] = {"page": "messenger", "instagram": "instagram"}
#: the standard messaging window, and the longer one of an agent's reply tagged HUMAN_AGENT
WINDOW, AGENT_WINDOW = timedelta(hours=24), timedelta(days=7)
MAX_QUICK_REPLIES, MAX_BUTTONS, MAX_TITLE, MAX_PAYLOAD = 13, 3, 20, 1000
#: text of a message: Messenger counts characters, Instagram bytes of UTF-8; a button template's text: 640
MAX_TEXT = {"messenger": 2000, "instagram": 1000}
MAX_BUTTON_TEXT = 640
#: bytes of a file sent by URL, by attachment type (Instagram: images 8 MB; the rest 25 MB on both)
MAX_FILE = {"messenger": {"image": 25 << 20, "video": 25 << 20, "audio": 25 << 20, "file": 25 << 20},
            "instagram": {"image": 8 << 20, "video": 25 << 20, "audio": 25 << 20, "file": 25 << 20}}
_MEDIA_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "document"}

__all__ = ["CHANNELS", "MetaMessagingClient", "MetaMessagingSettings", "parse", "parse_payload", "render",
           "verify_challenge", "verify_signature"]


class MetaMessagingSettings(BaseSettings):
    """The Messenger Platform's credentials and endpoints, read from ``META_MESSAGING_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="META_MESSAGING_", extra="ignore", case_sensitive=False)

    app_secret: SecretStr | None = Field(default=None, description="The Meta app's secret: signs the webhooks.")
    verify_token: SecretStr | None = Field(default=None, description="The webhook subscription's verify token.")
    page_access_token: SecretStr | None = Field(
        default=None, description="A Page access token with pages_messaging (and instagram_manage_messages for "
                                  "the Instagram account linked to the Page).")
    page_id: str | None = Field(default=None, description="The Facebook Page the relay answers for.")
    instagram_id: str | None = Field(default=None, description="The Instagram professional account's id.")
    page_username: str | None = Field(default=None, description="The Page's username: campaign links go to "
                                                                "m.me/<it>?ref=<code> (else the Page id).")
    instagram_username: str | None = Field(default=None, description="The Instagram account's username: campaign "
                                                                     "links go to ig.me/m/<it>?ref=<code>.")
    instagram_access_token: SecretStr | None = Field(
        default=None, description="An Instagram user access token (Instagram API with Instagram Login); unset: "
                                  "Instagram goes through the Page and its token.")
    api_base: str = Field(default="https://graph.facebook.com", description="The Graph API's base URL.")
    instagram_api_base: str = Field(default="https://graph.instagram.com",
                                    description="The Instagram Graph API's base URL (Instagram Login).")
    api_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$", description="The Graph API version.")


# -- inbound ---------------------------------------------------------------------------------------
def parse(raw: bytes, headers: Mapping[str, str], app_secret: str) -> ParsedWebhook:
    """Check ``X-Hub-Signature-256`` over the exact ``raw`` body, then parse it (see :func:`parse_payload`).

    Raises:
        WebhookRejectedError: 401 without a signature, 403 with a wrong one, 400 for a body that is not a
            Messenger Platform webhook.
    """
    header = next((value for name, value in headers.items() if name.lower() == "x-hub-signature-256"), None)
    verify_signature(raw, header, app_secret)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejectedError(400, "not JSON") from None
    return parse_payload(body)


def parse_payload(body: Any) -> ParsedWebhook:
    """Parse a webhook body (already JSON-decoded): every entry and event stands alone.

    Raises:
        WebhookRejectedError: 400 when the body is not a Messenger or Instagram messaging webhook.
    """
    if not isinstance(body, dict) or body.get("object") not in CHANNELS or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a Messenger Platform webhook: object page or instagram expected")
    channel = CHANNELS[body["object"]]
    parsed = ParsedWebhook()
    for entry in _parts(Entry, body["entry"], parsed, "entry", channel):
        parsed.ignored += len(entry.standby) if isinstance(entry.standby, list) else 0
        for event in _parts(Event, entry.messaging, parsed, "event", channel):
            _read_event(channel, entry.id, event, parsed)
    return parsed


def _parts(model: type[P], items: Any, parsed: ParsedWebhook, part: str, channel: str) -> list[P]:
    found, dropped = valid_parts(model, items, channel=channel, part=part)
    parsed.skipped += dropped
    return found


def _read_event(channel: ChannelName, account: str, event: Event, parsed: ParsedWebhook) -> None:
    """One event into a message, statuses, or nothing (ignored); the person is the sender, or for a status
    the recipient of the Page's message."""
    sender = event.sender.id
    if event.message is not None and event.message.is_echo:
        parsed.ignored += 1  # the Page's own message, echoed back
        return
    if event.delivery is not None:
        parsed.statuses.extend(StatusUpdate(channel, mid, "delivered", sender) for mid in event.delivery.mids)
        return
    if event.read is not None:
        # Instagram names the message; Messenger a watermark: everything sent up to then was read
        mid = event.read.mid or (f"watermark:{event.read.watermark}" if event.read.watermark is not None else None)
        if mid:
            parsed.statuses.append(StatusUpdate(channel, mid, "read", sender))
        return
    if sender is None or event.timestamp is None:
        parsed.skipped += 1  # a chat-plugin visitor (user_ref) cannot be answered through the Send API
        return
    fields = _content(event, sender)
    if fields is None:
        parsed.ignored += 1
        return
    parsed.messages.append(InboundMessage(channel=channel, account=account, sender_id=sender,
                                          timestamp=event.timestamp, **fields))


def _content(event: Event, sender: str) -> dict[str, Any] | None:
    """The message fields of an event, or None when the relay does not act on it."""
    stamp = int(event.timestamp.timestamp() * 1000) if event.timestamp else 0
    if event.message is not None:
        if event.message.is_deleted:
            return None
        return _message(event.message, event.referral)
    if event.postback is not None:
        return _postback(event.postback, sender, stamp)
    if event.referral is not None:
        # a person with a thread already came back through an m.me link or an ad: a new start
        referral = event.referral
        return {"message_id": f"referral:{sender}:{stamp}", "kind": "start", "raw_type": "referral",
                "start_payload": _nonempty(referral.ref), "referral": _ad(referral)}
    if event.reaction is not None:
        reaction = event.reaction
        if reaction.action == "unreact":
            return None
        return {"message_id": f"reaction:{reaction.mid or ''}:{sender}:{stamp}", "kind": "reaction",
                "raw_type": "reaction", "reaction": _nonempty(reaction.emoji) or _nonempty(reaction.reaction),
                "reply_to": _nonempty(reaction.mid)}
    return None


def _message(message: Message, outer: Referral | None) -> dict[str, Any]:
    referral = message.referral or outer
    fields: dict[str, Any] = {"message_id": message.mid, "kind": "unsupported", "raw_type": "message",
                              "referral": _ad(referral) if referral else None,
                              "start_payload": _nonempty(referral.ref) if referral else None,
                              "reply_to": _nonempty(message.reply_to.mid) if message.reply_to else None}
    if message.quick_reply is not None and message.quick_reply.payload:
        fields.update(kind="choice", raw_type="quick_reply", choice_id=message.quick_reply.payload,
                      choice_title=_nonempty(message.text), text=_nonempty(message.text))
    elif message.text is not None:
        fields.update(kind="text", raw_type="text", text=message.text)
    elif message.attachments:
        _attachments(message, fields)
    elif message.is_unsupported:
        fields.update(raw_type="unsupported")
    return fields


def _attachments(message: Message, fields: dict[str, Any]) -> None:
    """Files as media references (their URL is the media id: Meta's CDN serves them), a location as a place;
    shares, reels and story mentions stay unsupported, named by their type."""
    first = message.attachments[0]
    if first.type == "location" and first.payload and first.payload.coordinates:
        place = first.payload.coordinates
        fields.update(kind="location", raw_type="location", location=Location(
            latitude=place.lat, longitude=place.long, name=_nonempty(first.payload.title)))
        return
    media = []
    for item in message.attachments:
        if item.type in FILE_TYPES and item.payload and item.payload.url:
            kind = "sticker" if item.type == "image" and item.payload.sticker_id else _MEDIA_KINDS[item.type]
            media.append(MediaRef(kind=kind, media_id=item.payload.url))
    if media:
        fields.update(kind="media", raw_type=first.type, media=media)
    else:
        fields.update(raw_type=first.type)


def _postback(postback: Postback, sender: str, stamp: int) -> dict[str, Any]:
    """A tapped postback button is a choice; the Get Started button of a thread opened from an m.me link or an
    ad (its ``referral``) is a start, with the link's ``ref`` as the start payload."""
    message_id = postback.mid or f"postback:{sender}:{stamp}"
    if postback.referral is not None:
        return {"message_id": message_id, "kind": "start", "raw_type": "postback",
                "start_payload": _nonempty(postback.referral.ref), "referral": _ad(postback.referral)}
    return {"message_id": message_id, "kind": "choice", "raw_type": "postback",
            "choice_id": _nonempty(postback.payload), "choice_title": _nonempty(postback.title),
            "text": _nonempty(postback.title)}


def _ad(referral: Referral) -> AdReferral | None:
    """An ad's referral in the shape the relay's attribution reads (``source_id`` is the ad id); None for a
    referral that is not an ad (an m.me link: its ``ref`` is the start payload)."""
    if referral.source != "ADS" and not referral.ad_id:
        return None
    context = referral.ads_context_data
    video = _nonempty(context.video_url) if context else None
    photo = _nonempty(context.photo_url) if context else None
    return AdReferral(source_id=_nonempty(referral.ad_id), source_type="ad",
                      source_url=_nonempty(referral.referer_uri),
                      headline=_nonempty(context.ad_title) if context else None,
                      media_type="video" if video else "image" if photo else None,
                      image_url=photo, video_url=video)


def _nonempty(value: str | None) -> str | None:
    return value or None


# -- outbound --------------------------------------------------------------------------------------
def _fits(text: str, channel: str, limit: int | None = None) -> bool:
    size = len(text.encode()) if channel == "instagram" else len(text)
    return size <= (limit or MAX_TEXT[channel])


def split_text(text: str, channel: str) -> list[str]:
    """``text`` as pieces that each fit one message, cut at the last line break or space that fits."""
    pieces: list[str] = []
    rest = text
    while not _fits(rest, channel):
        low, high = 1, len(rest)  # the longest prefix that fits (Instagram counts bytes: found by bisection)
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if _fits(rest[:middle], channel) else (low, middle - 1)
        space = max(rest.rfind("\n", 0, low), rest.rfind(" ", 0, low))
        cut = space if space > low // 2 else low
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [*pieces, rest] if rest or not pieces else pieces


def render(reply: Reply, channel: str) -> list[dict[str, Any]]:
    """The ``message`` objects that carry ``reply``'s text and options: a button template (≤ 3 options whose
    titles fit, text ≤ 640), quick replies (≤ 13), or numbered text; long text in several messages, the options
    with the last."""
    options = reply.options
    fits = all(len(o.title) <= MAX_TITLE and 0 < len(o.id) <= MAX_PAYLOAD for o in options)
    if options and fits and len(options) <= MAX_BUTTONS and _fits(reply.text, channel, MAX_BUTTON_TEXT):
        return [{"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": reply.text,
            "buttons": [{"type": "postback", "title": o.title, "payload": o.id} for o in options]}}}]
    quick: list[dict[str, Any]] = []
    text = reply.text
    if options and fits and len(options) <= MAX_QUICK_REPLIES:
        quick = [{"content_type": "text", "title": o.title, "payload": o.id} for o in options]
    elif options:
        text = render_numbered(reply.text, [o.title for o in options])
    elif reply.request_phone:
        quick = [{"content_type": "user_phone_number"}]  # shown only when the profile holds a number
    messages: list[dict[str, Any]] = [{"text": piece} for piece in split_text(text or "-", channel)]
    if quick:
        messages[-1]["quick_replies"] = quick
    return messages


def _attachment(channel: str, url: str, mime: str | None, size: int | None) -> dict[str, Any]:
    """A file sent by URL (Meta fetches it), its type taken from its MIME type.

    Raises:
        FatalError: the file is over what Meta takes for its type, or Instagram cannot carry it.
    """
    major = (mime or "").split("/", 1)[0]
    kind = major if major in ("image", "video", "audio") else "file"
    if channel == "instagram" and kind == "file" and (mime or "") != "application/pdf":
        raise FatalError("instagram: only PDF documents can be sent as files", field="attachments")
    if size is not None and size > MAX_FILE[channel][kind]:
        raise FatalError(f"{channel}: the {kind} is {size} bytes, over the {MAX_FILE[channel][kind]}-byte limit",
                         field="attachments", details={"size": size})
    return {"attachment": {"type": kind, "payload": {"url": url, "is_reusable": True}}}


class MetaMessagingClient(HttpChannel):
    """Sends through the Send API for one channel (``messenger`` or ``instagram``) and downloads patients' files.

    ``send(..., tracking=...)`` is given a tracking id only for an agent's reply (the relay's agent path): that
    is what may go out, tagged ``HUMAN_AGENT``, between 24 hours and 7 days after the person last wrote.
    """

    def __init__(self, settings: MetaMessagingSettings, channel: ChannelName = "messenger",
                 session: requests.Session | None = None) -> None:
        instagram_login = channel == "instagram" and settings.instagram_access_token is not None
        setting = "META_MESSAGING_INSTAGRAM_ACCESS_TOKEN" if instagram_login else "META_MESSAGING_PAGE_ACCESS_TOKEN"
        super().__init__(channel, setting, session)
        secret = settings.instagram_access_token if instagram_login else settings.page_access_token
        token = secret.get_secret_value() if secret else ""
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        self.channel: ChannelName = channel
        base = settings.instagram_api_base if instagram_login else settings.api_base
        self.graph = f"{base.rstrip('/')}/{settings.api_version}"
        account = settings.instagram_id if instagram_login else None
        self.url = f"{self.graph}/{account or 'me'}/messages"

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` in order (see :class:`connector.channels.base.ChannelClient`); a reply's files go after
        its text, one message each. Everything is built, and the window checked, before the first is sent.

        Raises:
            SkippableError: the window is closed for this reply (the reason says which window).
            FatalError: a file Meta cannot carry; nothing is sent then.
        """
        extra = self._window(conversation, agent=tracking is not None)
        messages: list[dict[str, Any]] = []
        for reply in replies:
            messages.extend(render(reply, self.channel) if reply.text or not reply.attachments else [])
            messages.extend(_attachment(self.channel, a.url, a.mime_type, a.size) for a in reply.attachments)
        recipient = {"id": conversation.sender_id}
        return [self._post({"recipient": recipient, **extra, "message": message}) for message in messages]

    def _window(self, conversation: Conversation, *, agent: bool) -> dict[str, str]:
        """``messaging_type`` (and ``tag``) for a message now, or the reason none may go."""
        last = conversation.last_inbound_at
        since = datetime.now(UTC) - last if last is not None else None
        if since is not None and since < WINDOW:
            return {"messaging_type": "RESPONSE"}
        if agent and since is not None and since < AGENT_WINDOW:
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        reason = ("the person last wrote more than 7 days ago: Meta allows no message until they write again"
                  if agent else "the person last wrote more than 24 hours ago: Meta allows only an agent's reply "
                                "(HUMAN_AGENT tag, within 7 days) until they write again")
        raise SkippableError(f"{self.channel}: {reason}", details={"code": "window"})

    def mark_read(self, message: InboundMessage) -> None:
        """``sender_action: mark_seen``: the person sees their message was read."""
        self._post({"recipient": {"id": message.sender_id}, "sender_action": "mark_seen"})

    def answer_callback(self, message: InboundMessage) -> None:
        """Postbacks and quick replies need no acknowledgement."""

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a patient's file from the URL the webhook gave (Meta's CDN: a signed link, no token sent).

        Raises:
            RetryableError: throttling, 5xx, a broken connection.
            FatalError: not an https link, the link expired or was refused, or the file is over ``max_bytes``.
        """
        target = urlsplit(media_id)
        if target.scheme != "https" and (target.scheme, target.netloc) != (urlsplit(self.graph).scheme,
                                                                            urlsplit(self.graph).netloc):
            raise FatalError(f"{self.channel}: the attachment's link is not https")
        # the CDN's link is signed on its own: the access token never goes with it
        response = self.request("GET", media_id, stream=True, headers={"Authorization": None})
        if response.status_code != 200:
            response.close()
            if response.status_code >= 500 or response.status_code == 429:
                raise self.status_error(response, response.status_code, "download failed")
            raise FatalError(f"{self.channel}: the attachment's link was refused ({response.status_code}); "
                             "Meta's links expire", details={"status": response.status_code})
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            response.close()
            raise FatalError(f"{self.channel}: the file is {declared} bytes, over the {max_bytes}-byte limit",
                             details={"max_bytes": max_bytes})
        content = self.read_limited(response, max_bytes, "the file")
        mime = (response.headers.get("Content-Type") or "application/octet-stream").split(";", 1)[0].strip()
        return MediaFile(content=content, mime_type=mime, name=None)

    def _post(self, payload: dict[str, Any]) -> str:
        response = self.request("POST", self.url, json=payload)
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code == 200 and isinstance(data, dict) and "error" not in data:
            return str(data.get("message_id", ""))
        error = data.get("error") if isinstance(data, dict) else None
        header = response.headers.get("Retry-After", "")
        retry_after = float(header) if header.isdigit() else None
        exc = to_exception(self.channel, error if isinstance(error, dict) else {}, response.status_code,
                           self.token_setting, retry_after)
        log.warning("send api refused", extra={"channel": self.channel, "status": response.status_code,
                                                **{k: v for k, v in getattr(exc, "details", {}).items()
                                                   if k in ("code", "subcode", "outcome")}})
        raise exc
