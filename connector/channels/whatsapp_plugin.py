"""The WhatsApp Cloud API as a channel plug-in (``whatsapp``), and what every Cloud-API-shaped plug-in shares.

The parsing and the client are :mod:`connector.channels.whatsapp`'s; this module binds them to the
plug-in interface (:mod:`connector.channels.plugin`): the ``WHATSAPP_*`` settings, the
``X-Hub-Signature-256`` check, Meta's subscription handshake (``GET /webhooks/whatsapp``), the envelope
check and the error table. :class:`CloudApiPlugin` is the part a WhatsApp provider reuses (360dialog:
:mod:`connector.channels.dialog360`): the same envelope, parser and error table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from connector.channels import whatsapp as wa
from connector.channels.base import ChannelClient, ParsedWebhook
from connector.channels.plugin import (
    Capabilities,
    ChannelContext,
    ChannelPlugin,
    ChannelSettings,
    Route,
    WebhookRequest,
)
from connector.channels.whatsapp_errors import WHATSAPP_ERRORS
from core.errors import WebhookRejectedError
from core.settings import Settings as CoreSettings

log = logging.getLogger("chat2crm.webhooks")

#: Meta's ``hub.challenge`` is a number; letters and ``-_.~`` are let through, nothing that a page could run
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
#: lists of a WhatsApp change's ``value`` that Meta always sends as lists
_VALUE_LISTS = ("contacts", "messages", "statuses", "errors", "user_preferences")


class WhatsAppSettings(ChannelSettings):
    """The ``WHATSAPP_*`` settings (kept in the process's settings too, where they always were)."""

    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_api_base: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v23.0"


def whatsapp_envelope(body: Any) -> Any:
    """``body`` when Meta's envelope is sound: ``entry`` a list, each entry's ``changes`` a list, each
    value's batches (``messages``, ``statuses``…) lists. One message that does not fit is the parser's to
    drop alone; an envelope that does not fit is not a WhatsApp webhook at all.

    Raises:
        WebhookRejectedError: 400, naming the field.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a WhatsApp webhook: 'entry' list expected")
    for entry in body["entry"]:
        if not isinstance(entry, dict) or "changes" not in entry:
            continue
        if not isinstance(entry["changes"], list):
            raise WebhookRejectedError(400, "not a WhatsApp webhook: 'changes' list expected")
        for change in entry["changes"]:
            value = change.get("value") if isinstance(change, dict) else None
            for name in _VALUE_LISTS:
                if isinstance(value, dict) and name in value and not isinstance(value[name], list):
                    raise WebhookRejectedError(400, f"not a WhatsApp webhook: '{name}' list expected")
    return body


class CloudApiPlugin(ChannelPlugin):
    """What every plug-in whose webhooks are the Cloud API's shares: envelope, parser, limits, errors."""

    channel = "whatsapp"
    capabilities = Capabilities(buttons=wa.MAX_BUTTONS, button_title=wa.MAX_BUTTON_TITLE, list_rows=wa.MAX_ROWS,
                                row_title=wa.MAX_ROW_TITLE, templates=True, read_receipts=True, media=True,
                                max_text=4096)
    errors = WHATSAPP_ERRORS

    def envelope(self, body: Any) -> Any:
        """Meta's envelope, checked (:func:`whatsapp_envelope`)."""
        return whatsapp_envelope(body)

    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """Messages, statuses and ``user_preferences`` opt-outs (:func:`connector.channels.whatsapp.parse_payload`)."""
        return wa.parse_payload(body)


class WhatsAppPlugin(CloudApiPlugin):
    """WhatsApp through Meta's Cloud API: ``/webhooks/whatsapp``, signed with the app secret."""

    name = "whatsapp"
    Settings = WhatsAppSettings
    proof_header = "X-Hub-Signature-256"
    secret_setting = "WHATSAPP_APP_SECRET"  # noqa: S105  (the setting's name, not a secret)

    def read_settings(self, core: CoreSettings) -> ChannelSettings:
        """The ``WHATSAPP_*`` settings as the process read them (tests and the demo set them there)."""
        fields = {name: getattr(core, name) for name in WhatsAppSettings.model_fields}
        return WhatsAppSettings.model_construct(**fields)

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """HMAC-SHA256 of the raw body with ``WHATSAPP_APP_SECRET`` (:func:`connector.channels.whatsapp.verify_signature`)."""
        secret = ctx.core.whatsapp_app_secret
        if secret is None:
            return None
        key = secret.get_secret_value()
        return lambda request: wa.verify_signature(request.raw, request.header(self.proof_header), key)

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The Cloud API client (:class:`connector.channels.whatsapp.WhatsAppClient`)."""
        return wa.WhatsAppClient(ctx.core)

    def routes(self) -> list[Route]:
        """Meta's subscription handshake on ``GET /webhooks/whatsapp``."""
        return [Route("GET", "/webhooks/whatsapp", handshake)]


def handshake(request: WebhookRequest, ctx: ChannelContext) -> tuple[str, int, str]:
    """Meta's subscription handshake: the challenge echoed as plain text, and only a challenge of plain characters."""
    token = ctx.core.whatsapp_verify_token
    challenge = request.args.get("hub.challenge", "")
    if challenge and not _CHALLENGE.fullmatch(challenge):
        log.warning("webhook verification refused: the challenge is not plain characters",
                    extra={"channel": "whatsapp", "length": len(challenge)})
        return "bad request", 400, "text/plain"
    text, status = wa.verify_challenge(dict(request.args), token.get_secret_value() if token else None)
    return text, status, "text/plain"
