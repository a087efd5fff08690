"""The Twilio channel as a plug-in (``chat2crm.channels`` entry point ``twilio``): ``POST /webhooks/twilio``.

Twilio posts forms signed over the URL it called (:func:`connector.channels.twilio.verify_signature`): the
verifier checks the signature over ``TWILIO_PUBLIC_BASE_URL`` and the path and query received when that is
set, else over the URL the relay derives from ``PUBLIC_BASE_URL``. A status callback's URL carries the
relay's tracking in its query (the client puts it there): :meth:`TwilioPlugin.parse_request` reads it, so the
delivery report reaches the message it tracks. Its error table is :data:`connector.channels.twilio_errors.ERRORS`,
the one the client raises by too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connector.channels import twilio_errors
from connector.channels.base import ChannelClient, ParsedWebhook
from connector.channels.plugin import Capabilities, ChannelContext, ChannelPlugin, WebhookRequest
from connector.channels.twilio import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TwilioClient,
    TwilioSettings,
    parse,
    public_url,
    verify_signature,
)
from core.errors import Problem


def _own(ctx: ChannelContext) -> TwilioSettings:
    settings = ctx.settings
    return settings if isinstance(settings, TwilioSettings) else TwilioSettings()


class TwilioPlugin(ChannelPlugin):
    """WhatsApp and SMS through Twilio's Messaging API."""

    name = "twilio"
    Settings = TwilioSettings
    body_format = "form"
    proof_header = SIGNATURE_HEADER
    secret_setting = twilio_errors.TOKEN_SETTING
    # buttons and lists exist only as content templates made beforehand: free-form options are numbered
    capabilities = Capabilities(buttons=0, list_rows=0, templates=True, read_receipts=False, media=True,
                                max_text=MAX_BODY)
    errors = twilio_errors.ERRORS

    def problems(self, ctx: ChannelContext) -> list[Problem]:
        """The account SID and the auth token are required, and a sender for what no conversation ties."""
        settings = _own(ctx)
        found = []
        for name, value in (("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                            ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token)):
            if value is None:
                found.append(Problem("is not set: nothing can be sent or verified through Twilio", file="environment",
                                     path=name, hint="the Twilio Console's account info"))
        if not (settings.twilio_from or settings.twilio_messaging_service_sid):
            found.append(Problem("is not set: replies go from the number the patient wrote to, nothing else can be "
                                 "sent", file="environment", path="TWILIO_FROM",
                                 hint="whatsapp:+… or +…, or TWILIO_MESSAGING_SERVICE_SID"))
        return found

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """``X-Twilio-Signature`` over the public URL and every form parameter."""
        settings = _own(ctx)
        if settings.twilio_auth_token is None:
            return None
        token = settings.twilio_auth_token.get_secret_value()
        base = settings.twilio_public_base_url

        def verify(request: WebhookRequest) -> None:
            url = request.url
            if base:
                url = public_url(base, request.path, urlsplit(request.url).query)
            pairs = parse_qsl(request.raw.decode("utf-8", "replace"), keep_blank_values=True)
            verify_signature(url, pairs, request.header(SIGNATURE_HEADER), token)

        return verify

    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """A message or a status callback (:func:`connector.channels.twilio.parse`), without the URL's query."""
        return parse(body)

    def parse_request(self, request: WebhookRequest, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """A message or a status callback, the callback's tracking read from the query of the URL Twilio called
        (covered by the signature)."""
        return parse(body, query=request.args)

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The Twilio client (the official library, through the relay's HTTP chokepoint)."""
        return TwilioClient(_own(ctx))
