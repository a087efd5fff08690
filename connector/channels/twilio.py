"""Twilio's Messaging API as a channel: WhatsApp and SMS patients through one Twilio account.

Inbound: Twilio posts form-encoded webhooks, signed with ``X-Twilio-Signature``: the base64 HMAC-SHA1,
under the account's auth token, of the full URL Twilio called followed by every POST parameter, sorted by
name, as name and value concatenated (twilio.com/docs/usage/webhooks/webhooks-security).
:func:`verify_signature` checks it over :func:`public_url`, built from the ``TWILIO_PUBLIC_BASE_URL``
setting and never from the request's ``Host`` (behind a proxy the relay sees another host, and a forged
``Host`` must not make a signature fit). :func:`parse` reads a form (:mod:`connector.channels.twilio_payload`)
into canonical messages, status updates and opt-outs.

Outbound: :class:`TwilioClient` sends through the official ``twilio`` library
(``Client.messages.create``), its HTTP calls made through :class:`~connector.channels.base.HttpChannel`
(timeouts, tries in place, call counting), its base URL from ``TWILIO_API_BASE`` (the emulator in tests).
Options become numbered text (Twilio carries buttons and lists only in content templates made beforehand);
a reply whose ``template`` is a Content SID (``HX…``) is sent as that template, with ``template_params`` as
its variables ``{"1": …, "2": …}``; attachments go as ``MediaUrl`` (one per message on WhatsApp). Outside
WhatsApp's 24-hour window only a content template goes out. Every message asks for status callbacks at the
relay's webhook URL, with the caller's ``tracking`` in its query (signed with the rest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from pydantic import Field, SecretStr, ValidationError
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from connector.channels import twilio_errors
from connector.channels.base import HttpChannel, ParsedWebhook, StatusUpdate, render_numbered
from connector.channels.parts import problems
from connector.channels.plugin import ChannelSettings
from connector.channels.twilio_payload import InboundForm, StatusForm
from core.errors import FatalError, SkippableError, WebhookRejectedError
from core.models import (
    AdReferral,
    Attachment,
    Conversation,
    InboundMessage,
    Location,
    MediaFile,
    MediaRef,
    Reply,
    SenderProfile,
)

log = logging.getLogger("chat2crm.twilio")

CHANNEL = "twilio"
#: where the relay receives Twilio's webhooks (messages and status callbacks alike)
WEBHOOK_PATH = "/webhooks/twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP_PREFIX = "whatsapp:"
WINDOW = timedelta(hours=24)
#: the longest body Twilio takes (error 21617)
MAX_BODY = 1600
#: bytes one file may have: WhatsApp's limit for documents and video, and MMS's for a whole message
MAX_WHATSAPP_FILE, MAX_MMS = 16 * 1024 * 1024, 5 * 1024 * 1024
MAX_TRACKING = 512
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
#: Twilio's statuses as the relay's: an undelivered message failed; the rest pass as they are
_STATUSES = {"undelivered": "failed"}


class TwilioSettings(ChannelSettings):
    """Twilio's credentials and addresses, from the environment (names are the field names upper-cased)."""

    twilio_account_sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$",
                                           description="The account SID (`AC…`), the API user name.")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="The account's auth token: the API password and the webhooks' signing key.")
    twilio_from: str | None = Field(
        default=None, description="The sender of anything not tied to a conversation: `whatsapp:+…` or `+…`.")
    twilio_messaging_service_sid: str | None = Field(
        default=None, pattern=r"^MG[0-9a-fA-F]{32}$",
        description="A Messaging Service (`MG…`) to send from instead of a number (Twilio picks the sender).")
    twilio_api_base: str = Field(default="https://api.twilio.com", description="Twilio's REST API.")
    twilio_public_base_url: str | None = Field(
        default=None, description="The relay's public base URL, exactly as configured at Twilio "
                                  f"(the webhook is this plus `{WEBHOOK_PATH}`): the URL signatures are checked over.")


# -- signatures ------------------------------------------------------------------------------------
def public_url(base: str, path: str, query: str = "") -> str:
    """The URL Twilio called: the configured public base, the request's path and its raw query string."""
    return base.rstrip("/") + path + (f"?{query}" if query else "")


def _pairs(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    return sorted(set(items))  # by name, then value: repeated names are signed in value order


def signature(url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], auth_token: str) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` to ``url``: base64 HMAC-SHA1 of the URL and the
    parameters sorted by name, each as name followed by value."""
    data = url + "".join(name + value for name, value in _pairs(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _port_variants(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed: Twilio signs either form."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif parts.port is not None:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] if host else parts.netloc)
    else:
        return [url]
    return [url, urlunsplit(other)]


def verify_signature(url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], header: str | None,
                     auth_token: str) -> None:
    """Check ``X-Twilio-Signature`` for a POST of ``params`` to ``url`` (the public URL, see :func:`public_url`).

    Raises:
        WebhookRejectedError: 401 when the header is missing, 403 when it does not match.
    """
    if not header:
        raise WebhookRejectedError(401, f"missing {SIGNATURE_HEADER}")
    given = header.strip().encode()
    pairs = _pairs(params)
    if not any(hmac.compare_digest(given, signature(candidate, pairs, auth_token).encode())
               for candidate in _port_variants(url)):
        raise WebhookRejectedError(403, "signature does not match")


# -- inbound -----------------------------------------------------------------------------------------
def _nonempty(value: str | None) -> str | None:
    return value or None


def _media_kind(mime: str | None) -> str:
    major = (mime or "").split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"


def parse(form: Mapping[str, str], headers: Mapping[str, str] | None = None,
          query: Mapping[str, str] | None = None) -> ParsedWebhook:
    """Read one Twilio webhook form: a patient's message, or a status callback of a message sent.

    ``query`` is the webhook URL's query: a status callback carries the relay's ``tracking`` there (the
    signature covers it). A form that is neither kind is refused; a message whose fields are malformed is
    dropped (``skipped``) and logged by field, never by value. An SMS ``STOP`` (``OptOutType``) is an opt-out,
    ``START`` an opt-in; Twilio has already answered the patient.

    Raises:
        WebhookRejectedError: 400 when the form is not a Twilio message webhook.
    """
    del headers  # the signature is checked before; nothing else in the headers tells the kind
    if not isinstance(form, Mapping) or not form.get("MessageSid"):
        raise WebhookRejectedError(400, "not a Twilio message webhook: MessageSid expected")
    parsed = ParsedWebhook()
    status = form.get("MessageStatus") or ""
    try:
        if status and status not in ("received", "receiving"):
            parsed.statuses.append(_status(StatusForm.model_validate(dict(form)), query or {}))
        else:
            message = _message(InboundForm.model_validate(dict(form)), parsed)
            if message is not None:
                parsed.messages.append(message)
    except ValidationError as exc:
        log.warning("webhook part dropped", extra={"channel": CHANNEL, "part": "form", "problems": problems(exc)})
        parsed.skipped += 1
    return parsed


def _status(form: StatusForm, query: Mapping[str, str]) -> StatusUpdate:
    errors: list[dict[str, Any]] = []
    if form.error_code and form.error_code != "0":
        errors.append({"code": int(form.error_code), "title": twilio_errors.reason(
            form.error_code, form.error_message or "the channel did not deliver it"), "status": form.message_status})
    tracking = query.get("t") or None
    return StatusUpdate(CHANNEL, form.message_sid, _STATUSES.get(form.message_status, form.message_status),
                        form.to, errors, tracking=tracking)


def _message(form: InboundForm, parsed: ParsedWebhook) -> InboundMessage | None:
    sender, account = form.from_, form.to
    opt = (form.opt_out_type or "").upper()
    if opt in ("STOP", "START"):
        (parsed.opt_outs if opt == "STOP" else parsed.opt_ins).append((account, sender))
        return None
    number = sender.removeprefix(WHATSAPP_PREFIX)
    phone = number if re.fullmatch(r"\+[1-9]\d{6,14}", number) else None
    fields: dict[str, Any] = {"kind": "unsupported", "raw_type": form.message_type or "unknown"}
    media = form.media()
    if form.button_payload or form.button_text:
        fields.update(kind="choice", raw_type="button", choice_id=_nonempty(form.button_payload),
                      choice_title=_nonempty(form.button_text), text=_nonempty(form.button_text or form.body))
    elif form.list_id:
        fields.update(kind="choice", raw_type="list", choice_id=form.list_id, choice_title=_nonempty(form.list_title),
                      text=_nonempty(form.list_title or form.body))
    elif form.latitude is not None and form.longitude is not None:
        fields.update(kind="location", raw_type="location", location=Location(
            latitude=float(form.latitude), longitude=float(form.longitude), name=_nonempty(form.label),
            address=_nonempty(form.address)))
    elif media:
        fields.update(kind="media", raw_type=form.message_type or "media", text=_nonempty(form.body), media=[
            MediaRef(kind=_media_kind(mime), media_id=url, mime_type=mime,
                     caption=_nonempty(form.body) if index == 0 else None)
            for index, (url, mime) in enumerate(media)])
    elif form.body is not None and form.body.strip():
        fields.update(kind="text", raw_type=form.message_type or "text", text=form.body)
    referral = AdReferral(
        source_url=_nonempty(form.referral_source_url), source_id=_nonempty(form.referral_source_id),
        source_type=_nonempty(form.referral_source_type), headline=_nonempty(form.referral_headline),
        body=_nonempty(form.referral_body), media_type=_nonempty(form.referral_media_content_type),
        image_url=_nonempty(form.referral_media_url), ctwa_clid=_nonempty(form.referral_ctwa_clid))
    return InboundMessage(
        channel=CHANNEL, account=account, sender_id=sender, message_id=form.message_sid,
        timestamp=datetime.now(UTC),  # Twilio's form carries no time: it posts as the message arrives
        profile=SenderProfile(name=_nonempty(form.profile_name)), sender_phone=phone,
        referral=referral if referral.model_dump(exclude_none=True) else None,
        reply_to=_nonempty(form.replied_to), **fields)


# -- outbound ----------------------------------------------------------------------------------------
class _ChannelHttp(HttpClient):
    """The ``twilio`` library's HTTP client, made through the relay's :class:`HttpChannel`: its timeouts, its
    tries of what surely never reached Twilio, and its call count. Remembers the last ``Retry-After``."""

    def __init__(self, channel: HttpChannel) -> None:
        super().__init__(log, is_async=False)
        self.channel = channel
        self.local = threading.local()

    def request(  # noqa: PLR0917 - the library calls it with these positions
            self, method: str, uri: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> TwilioResponse:
        response = self.channel.request(method.upper(), uri, params=params, data=data, headers=headers, auth=auth,
                                        allow_redirects=allow_redirects)
        after = response.headers.get("Retry-After", "")
        self.local.retry_after = float(after) if after.replace(".", "", 1).isdigit() else None
        return TwilioResponse(response.status_code, response.text, response.headers)


class TwilioClient(HttpChannel):
    """Sends replies through Twilio's Messages API from the number the patient wrote to (the conversation's
    account; ``TWILIO_FROM`` or ``TWILIO_MESSAGING_SERVICE_SID`` otherwise), and downloads patients' files."""

    def __init__(self, settings: TwilioSettings, session: requests.Session | None = None) -> None:
        super().__init__(CHANNEL, twilio_errors.TOKEN_SETTING, session)
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        self.account_sid = settings.twilio_account_sid or ""
        self.auth = (self.account_sid, token)
        self.sender = settings.twilio_from
        self.service = settings.twilio_messaging_service_sid
        self.api_base = settings.twilio_api_base.rstrip("/")
        self.http = _ChannelHttp(self)
        self.client = Client(self.account_sid, token, http_client=self.http)
        # the library's domain for api.twilio.com, pointed at TWILIO_API_BASE (the emulator in tests)
        self.client.api.base_url = self.api_base
        self.callback = public_url(settings.twilio_public_base_url, WEBHOOK_PATH) \
            if settings.twilio_public_base_url else None

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` to the conversation's patient (see :class:`~connector.channels.base.ChannelClient`).

        Raises:
            ValueError: ``tracking`` is over 512 characters.
            SkippableError: outside WhatsApp's 24-hour window and a reply has no Content SID.
            UnreachableError: the patient cannot be reached this way (``twilio_errors.ERRORS``).
            FatalError: an attachment is over the channel's size (nothing is sent then), or Twilio refused.
        """
        if tracking is not None and len(tracking) > MAX_TRACKING:
            raise ValueError(f"tracking must be at most {MAX_TRACKING} characters")
        whatsapp = conversation.sender_id.startswith(WHATSAPP_PREFIX)
        in_window = not whatsapp or (conversation.last_inbound_at is not None
                                     and datetime.now(UTC) - conversation.last_inbound_at < WINDOW)
        # every message is built before the first is sent: a reply refused for good sends nothing
        messages: list[dict[str, Any]] = []
        for reply in replies:
            if reply.template and CONTENT_SID.match(reply.template):
                messages.append(_content(reply))
            elif not in_window:
                raise SkippableError("twilio: outside WhatsApp's 24-hour window and the reply has no Content SID")
            else:
                messages.extend(_render(reply, whatsapp))
        common = self._common(conversation, tracking)
        return [self._create({**common, **message}) for message in messages]

    def _common(self, conversation: Conversation, tracking: str | None) -> dict[str, Any]:
        common: dict[str, Any] = {"to": conversation.sender_id}
        sender = conversation.account or self.sender
        if self.service and not conversation.account:
            common["messaging_service_sid"] = self.service
        elif sender:
            common["from_"] = sender
        else:
            raise FatalError("twilio: no sender: set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID",
                             setting="TWILIO_FROM")
        if self.callback:
            common["status_callback"] = self.callback + (f"?{urlencode({'t': tracking})}" if tracking else "")
        return common

    def _create(self, arguments: dict[str, Any]) -> str:
        try:
            message = self.client.messages.create(**arguments)
        except TwilioRestException as exc:
            raise twilio_errors.exception(exc.status, exc.code if isinstance(exc.code, int) else None,
                                          str(exc.msg), retry_after=getattr(self.http.local, "retry_after", None)
                                          ) from None
        return str(message.sid)

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a patient's file: its ``MediaUrl`` on Twilio's API, with the account's credentials, which
        answers a redirect to a short-lived link fetched without them. The credentials go to the API's own
        host only."""
        target, api = urlsplit(media_id), urlsplit(self.api_base)
        if (target.scheme, target.netloc) != (api.scheme, api.netloc):
            raise FatalError("twilio: the media URL is not on Twilio's API", details={"host": target.hostname})
        response = self.request("GET", media_id, auth=self.auth, allow_redirects=False, stream=True)
        if response.is_redirect:
            location = response.headers.get("Location", "")
            response.close()
            response = self.request("GET", requests.compat.urljoin(media_id, location), stream=True)
        if response.status_code != 200:
            response.close()
            code = _json_code(response)
            if response.status_code == 404:
                raise FatalError("twilio: the file does not exist (any more)", details={"code": code})
            raise twilio_errors.exception(response.status_code, code, "media download refused")
        content = self.read_limited(response, max_bytes, "the file")
        mime = response.headers.get("Content-Type") or "application/octet-stream"
        return MediaFile(content=content, mime_type=mime.split(";", 1)[0].strip(), name=None)

    def mark_read(self, message: InboundMessage) -> None:
        """Twilio's Messages API has no read receipts: nothing to do."""

    def answer_callback(self, message: InboundMessage) -> None:
        """Twilio needs no acknowledgement of a button press."""


def _json_code(response: requests.Response) -> int | None:
    try:
        code = json.loads(response.content or b"{}").get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def _cut(text: str, limit: int = MAX_BODY) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content(reply: Reply) -> dict[str, Any]:
    """A content template message: its SID and its variables numbered from 1, as Twilio's Content API names them."""
    message: dict[str, Any] = {"content_sid": reply.template}
    if reply.template_params:
        message["content_variables"] = json.dumps({str(i): p for i, p in enumerate(reply.template_params, 1)},
                                                  ensure_ascii=False)
    return message


def _render(reply: Reply, whatsapp: bool) -> list[dict[str, Any]]:
    """The messages that carry a free-form ``reply``: its text (options numbered), then its files."""
    text = render_numbered(reply.text, [o.title for o in reply.options]) if reply.options else reply.text
    if not reply.attachments:
        return [{"body": _cut(text)}]
    _check_sizes(reply.attachments, whatsapp)
    urls = [a.url for a in reply.attachments]
    if whatsapp:  # one file per WhatsApp message; the text as the first one's caption
        return [{"media_url": [url], **({"body": _cut(text)} if i == 0 and text else {})} for i, url in enumerate(urls)]
    groups = [urls[i:i + 10] for i in range(0, len(urls), 10)]
    return [{"media_url": group, **({"body": _cut(text)} if i == 0 and text else {})} for i, group in enumerate(groups)]


def _check_sizes(attachments: list[Attachment], whatsapp: bool) -> None:
    limit = MAX_WHATSAPP_FILE if whatsapp else MAX_MMS
    for attachment in attachments:
        if attachment.size is not None and attachment.size > limit:
            raise FatalError(f"twilio: a file of {attachment.size} bytes is over the {limit}-byte limit",
                             details={"size": attachment.size, "max_bytes": limit})
