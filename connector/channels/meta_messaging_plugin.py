"""Messenger and Instagram as channel plug-ins (``messenger``, ``instagram``).

The parsing and the client are :mod:`connector.channels.meta_messaging`'s; this module binds them to the plug-in
interface (:mod:`connector.channels.plugin`): the ``META_MESSAGING_*`` settings, the ``X-Hub-Signature-256``
check with the app secret and Meta's subscription handshake (WhatsApp's own functions), the error table of
:mod:`connector.channels.meta_messaging_errors`. Meta's App Dashboard gives the Messenger and the Instagram
products a callback URL each: ``/webhooks/messenger`` takes ``object: page`` bodies, ``/webhooks/instagram``
``object: instagram`` ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from pydantic_settings import SettingsConfigDict

from connector.channels import meta_messaging as meta
from connector.channels.base import ChannelClient, ParsedWebhook
from connector.channels.meta_messaging_errors import error_table
from connector.channels.plugin import (
    Capabilities,
    ChannelContext,
    ChannelPlugin,
    ChannelSettings,
    Route,
    WebhookRequest,
)
from core.errors import WebhookRejectedError
from core.settings import ENV_FILE

#: Meta's ``hub.challenge`` is a number; nothing a page could run is echoed
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_TOKEN_SETTING = "META_MESSAGING_PAGE_ACCESS_TOKEN"  # noqa: S105 (a setting's name)


class MetaMessagingPluginSettings(meta.MetaMessagingSettings, ChannelSettings):
    """The ``META_MESSAGING_*`` settings, read from the environment and ``.env``."""

    model_config = SettingsConfigDict(env_prefix="META_MESSAGING_", extra="ignore", case_sensitive=False,
                                      env_file=ENV_FILE, env_file_encoding="utf-8")


class _MetaMessagingPlugin(ChannelPlugin):
    """What the Messenger and Instagram plug-ins share: one Meta app, one Send API."""

    object: str = ""
    Settings = MetaMessagingPluginSettings
    proof_header = "X-Hub-Signature-256"
    secret_setting = "META_MESSAGING_APP_SECRET"  # noqa: S105 (a setting's name)

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """HMAC-SHA256 of the raw body with ``META_MESSAGING_APP_SECRET``."""
        secret = cast(meta.MetaMessagingSettings, ctx.settings).app_secret
        if secret is None:
            return None
        key = secret.get_secret_value()
        return lambda request: meta.verify_signature(request.raw, request.header(self.proof_header), key)

    def envelope(self, body: Any) -> Any:
        """``body`` when it is this product's webhook (``object`` and an ``entry`` list)."""
        if not isinstance(body, dict) or body.get("object") != self.object or not isinstance(body.get("entry"), list):
            raise WebhookRejectedError(400, f"not a {self.name} webhook: object {self.object!r} expected")
        return body

    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """Messages and statuses (:func:`connector.channels.meta_messaging.parse_payload`)."""
        return meta.parse_payload(self.envelope(body))

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The Send API client (:class:`connector.channels.meta_messaging.MetaMessagingClient`)."""
        return meta.MetaMessagingClient(cast(meta.MetaMessagingSettings, ctx.settings), cast(Any, self.name))

    def routes(self) -> list[Route]:
        """Meta's subscription handshake on ``GET /webhooks/<name>``."""
        return [Route("GET", f"/webhooks/{self.name}", handshake)]


class MessengerPlugin(_MetaMessagingPlugin):
    """Messenger: a Facebook Page's conversations."""

    name = "messenger"
    object = "page"
    capabilities = Capabilities(buttons=meta.MAX_BUTTONS, button_title=meta.MAX_TITLE,
                                list_rows=meta.MAX_QUICK_REPLIES, row_title=meta.MAX_TITLE, templates=False,
                                read_receipts=True, media=True, max_text=meta.MAX_TEXT["messenger"])
    errors = error_table("messenger", _TOKEN_SETTING)


class InstagramPlugin(_MetaMessagingPlugin):
    """Instagram: an Instagram professional account's direct messages."""

    name = "instagram"
    object = "instagram"
    # Instagram counts bytes: 1000 bytes hold 1000 characters of Latin text, fewer of others
    capabilities = Capabilities(buttons=meta.MAX_BUTTONS, button_title=meta.MAX_TITLE,
                                list_rows=meta.MAX_QUICK_REPLIES, row_title=meta.MAX_TITLE, templates=False,
                                read_receipts=True, media=True, max_text=meta.MAX_TEXT["instagram"] // 2)
    errors = error_table("instagram", _TOKEN_SETTING)


def handshake(request: WebhookRequest, ctx: ChannelContext) -> tuple[str, int, str]:
    """Meta's subscription handshake with ``META_MESSAGING_VERIFY_TOKEN``: the challenge echoed as plain text."""
    token = cast(meta.MetaMessagingSettings, ctx.settings).verify_token
    challenge = request.args.get("hub.challenge", "")
    if challenge and not _CHALLENGE.fullmatch(challenge):
        return "bad request", 400, "text/plain"
    text, status = meta.verify_challenge(dict(request.args), token.get_secret_value() if token else None)
    return text, status, "text/plain"
