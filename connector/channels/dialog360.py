"""WhatsApp through 360dialog (a Business Solution Provider) as a channel plug-in: ``dialog360``.

360dialog's Messaging API is the Cloud API behind another door: the same message bodies, the same webhook
payloads (Meta's envelope, passed through), the same error codes. What differs, as 360dialog documents it:

- the base URL ``https://waba-v2.360dialog.io``, and paths without a version or a phone number id
  (``POST /messages``, ``GET /{media_id}``): one API key serves one number;
- authentication by the ``D360-API-KEY`` header (``DIALOG360_API_KEY``);
- a patient's file: the media answer names a ``lookaside.fbsbx.com`` URL, downloaded from 360dialog's host
  instead (same path and query, with the key);
- the webhook is set with ``POST /v1/configs/webhook`` (``{"url": ..., "headers": {...}}``): the custom
  headers are 360dialog's way to prove a webhook is theirs. :meth:`Dialog360Plugin.register_webhook` sets
  the relay's URL with ``X-Chat2crm-Token: <DIALOG360_WEBHOOK_TOKEN>``, and the webhook is refused
  without it (401) or with another (403), compared in constant time.

So the plug-in is composed of the WhatsApp one's parts (:class:`~connector.channels.whatsapp_plugin.CloudApiPlugin`:
envelope, parser, limits, error table; :class:`~connector.channels.whatsapp.WhatsAppClient` with a 360dialog
:class:`~connector.channels.whatsapp_endpoint.CloudEndpoint`). Its messages are ``whatsapp`` messages: the
patient is on WhatsApp, so the 24-hour window, the numbers served (``channels.whatsapp.numbers``,
``WHATSAPP_PHONE_NUMBER_ID``), identities and opt-outs are WhatsApp's.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr

from connector.channels.base import ChannelClient, HttpChannel
from connector.channels.plugin import ChannelContext, ChannelSettings, ErrorTable, WebhookRequest
from connector.channels.whatsapp import WhatsAppClient
from connector.channels.whatsapp_endpoint import CloudEndpoint
from connector.channels.whatsapp_plugin import CloudApiPlugin
from core.errors import Problem, WebhookRejectedError

#: where 360dialog's Messaging API lives
API_BASE = "https://waba-v2.360dialog.io"
#: the header 360dialog sends back with every webhook, as :meth:`Dialog360Plugin.register_webhook` set it
TOKEN_HEADER = "X-Chat2crm-Token"  # noqa: S105  (the setting's name, not a secret)
#: the host of the media URLs whose files 360dialog serves from its own
LOOKASIDE_HOST = "lookaside.fbsbx.com"
#: 360dialog's configuration calls answer by HTTP status alone (no Meta codes)
_CONFIG_ERRORS = ErrorTable("dialog360", "DIALOG360_API_KEY")


class Dialog360Settings(ChannelSettings):
    """The ``DIALOG360_*`` settings."""

    dialog360_api_key: SecretStr | None = Field(
        default=None, description="The number's API key from the 360dialog hub (sent as `D360-API-KEY`).")
    dialog360_webhook_token: SecretStr | None = Field(
        default=None, description="A secret of your choosing: 360dialog sends it back in `X-Chat2crm-Token` with "
                                  "every webhook (set by registering the webhook).")
    dialog360_api_base: str = Field(default=API_BASE, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                                    description="360dialog's Messaging API.")


def endpoint(settings: Dialog360Settings) -> CloudEndpoint:
    """360dialog's addresses and credential for the Cloud-API-shaped client."""
    key = settings.dialog360_api_key.get_secret_value() if settings.dialog360_api_key else ""
    return CloudEndpoint(api="dialog360", token_setting="DIALOG360_API_KEY",  # noqa: S106
                         base=settings.dialog360_api_base.rstrip("/"), headers={"D360-API-KEY": key},
                         per_number=False, proxied_media_host=LOOKASIDE_HOST)


def _own(ctx: ChannelContext) -> Dialog360Settings:
    settings = ctx.settings
    if not isinstance(settings, Dialog360Settings):
        raise TypeError("the dialog360 plug-in needs its own settings")
    return settings


def _developer_message(response: Any) -> str:
    """360dialog's reason for refusing a configuration call (``meta.developer_message``), cut short."""
    try:
        meta = response.json().get("meta")
    except (ValueError, AttributeError):
        return ""
    message = meta.get("developer_message") if isinstance(meta, dict) else None
    return message[:200] if isinstance(message, str) else ""


def verify_token(header: str | None, token: str) -> None:
    """Check the custom header 360dialog sends back with each webhook.

    Raises:
        WebhookRejectedError: 401 when missing, 403 when wrong.
    """
    if not header:
        raise WebhookRejectedError(401, f"missing {TOKEN_HEADER}")
    if not hmac.compare_digest(header.encode(), token.encode()):
        raise WebhookRejectedError(403, "webhook token does not match")


class Dialog360Plugin(CloudApiPlugin):
    """WhatsApp through 360dialog: ``/webhooks/dialog360``, proved by the custom header set with the webhook."""

    name = "dialog360"
    Settings = Dialog360Settings
    proof_header = TOKEN_HEADER
    secret_setting = "DIALOG360_WEBHOOK_TOKEN"  # noqa: S105  (the setting's name, not a secret)

    def problems(self, ctx: ChannelContext) -> list[Problem]:
        """The API key and the webhook token are required."""
        settings = _own(ctx)
        found = []
        if settings.dialog360_api_key is None:
            found.append(Problem("is not set: nothing can be sent through 360dialog", file="environment",
                                 path="DIALOG360_API_KEY", hint="the number's API key from the 360dialog hub"))
        if settings.dialog360_webhook_token is None:
            found.append(Problem("is not set: 360dialog's webhooks cannot be verified", file="environment",
                                 path="DIALOG360_WEBHOOK_TOKEN", hint="any long random secret"))
        if not (ctx.core.whatsapp_phone_number_id or ctx.options.get("numbers")):
            found.append(Problem("no WhatsApp number is served: 360dialog's messages would all be ignored",
                                 file="environment", path="WHATSAPP_PHONE_NUMBER_ID",
                                 hint="the number's phone number id (the 360dialog hub shows it)"))
        return found

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """The custom header's token, compared in constant time."""
        token = _own(ctx).dialog360_webhook_token
        if token is None:
            return None
        secret = token.get_secret_value()
        return lambda request: verify_token(request.header(TOKEN_HEADER), secret)

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The WhatsApp client, sending through 360dialog."""
        return WhatsAppClient(ctx.core, endpoint=endpoint(_own(ctx)))

    def register_webhook(self, ctx: ChannelContext, url: str) -> dict[str, Any]:
        """Point the number's webhook at ``url`` (``POST /v1/configs/webhook``), with the token header.

        Returns:
            360dialog's answer (``{"url": ...}``).

        Raises:
            ValueError: ``DIALOG360_WEBHOOK_TOKEN`` is not set.
            RetryableError, AuthError, FatalError: 360dialog could not be reached or refused (a refused key
                names ``DIALOG360_API_KEY``).
        """
        settings = _own(ctx)
        token = settings.dialog360_webhook_token.get_secret_value() if settings.dialog360_webhook_token else ""
        if not token:
            raise ValueError("DIALOG360_WEBHOOK_TOKEN is not set")
        http = HttpChannel("dialog360", "DIALOG360_API_KEY")
        ep = endpoint(settings)
        response = http.request("POST", f"{ep.base}/v1/configs/webhook", headers=ep.headers,
                                json={"url": url, "headers": {TOKEN_HEADER: token}})
        if response.status_code not in (200, 201):
            # 360dialog's own refusal (``{"meta": {"developer_message": ...}}``), before any Meta code: the key's
            # setting is named, not WhatsApp's token
            reason = _developer_message(response) or response.reason or ""
            raise _CONFIG_ERRORS.error(response.status_code, response.status_code, reason)
        answer: dict[str, Any] = response.json()
        return answer
