"""The LINE channel as a plug-in (``chat2crm.channels`` entry point ``line``): ``POST /webhooks/line``.

The verifier checks ``X-Line-Signature`` with ``LINE_CHANNEL_SECRET``
(:func:`connector.channels.line.verify_signature`); the parser is :func:`connector.channels.line.parse`;
the client :class:`connector.channels.line_client.LineClient`. The error table is
:mod:`connector.channels.line_errors` in the plug-in interface's terms: LINE's errors are named by status
and message, so each rule is keyed ``"<status> <start of the message>"`` (``"429 You have reached your
monthly limit"``), and ``classify`` is what the client itself uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.channels import line_errors
from connector.channels.base import ChannelClient, ParsedWebhook
from connector.channels.line import LineSettings, parse, verify_signature
from connector.channels.line_client import MAX_LABEL, MAX_QUICK_REPLIES, MAX_TEXT, LineClient
from connector.channels.plugin import (
    Capabilities,
    ChannelContext,
    ChannelPlugin,
    ErrorRule,
    ErrorTable,
    Outcome,
    WebhookRequest,
)
from core.errors import Problem, WebhookRejectedError

SIGNATURE_HEADER = "X-Line-Signature"
_OUTCOMES = {"retry": Outcome.RETRY, "give_up": Outcome.GIVE_UP, "unreachable": Outcome.UNREACHABLE,
             "reply_token": Outcome.GIVE_UP, "already_sent": Outcome.GIVE_UP}


def _rule(status: int, outcome: str, reason: str) -> ErrorRule:
    return ErrorRule(Outcome.AUTH if status == 401 else _OUTCOMES[outcome], reason)


ERRORS = ErrorTable("line", line_errors.TOKEN_SETTING, {
    f"{status} {start}".strip(): _rule(status, outcome, reason) for status, start, outcome, reason in line_errors.TABLE})


def _own(ctx: ChannelContext) -> LineSettings:
    settings = ctx.settings
    return settings if isinstance(settings, LineSettings) else LineSettings()


class LinePlugin(ChannelPlugin):
    """LINE official accounts through the Messaging API."""

    name = "line"
    Settings = LineSettings
    proof_header = SIGNATURE_HEADER
    secret_setting = "LINE_CHANNEL_SECRET"  # noqa: S105 - the name of a setting, not a secret
    # quick replies: up to 13 buttons of 20 characters; no lists, no templates. LINE marks messages read with
    # the token of each message event, which the web process sees and the sending worker does not: no receipts
    capabilities = Capabilities(buttons=MAX_QUICK_REPLIES, button_title=MAX_LABEL, list_rows=0, templates=False,
                                read_receipts=False, media=True, max_text=MAX_TEXT)
    errors = ERRORS

    def problems(self, ctx: ChannelContext) -> list[Problem]:
        """The channel secret and an access token are required."""
        settings = _own(ctx)
        return [Problem("is not set: LINE webhooks cannot be checked or replies sent", file="environment", path=name,
                        hint="the LINE Developers console: Basic settings and Messaging API tabs")
                for name, value in (("LINE_CHANNEL_SECRET", settings.line_channel_secret),
                                    ("LINE_CHANNEL_ACCESS_TOKEN", settings.line_channel_access_token))
                if value is None]

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """``X-Line-Signature``: Base64 HMAC-SHA256 of the raw body with the channel secret."""
        secret = _own(ctx).line_channel_secret
        if secret is None:
            return None
        value = secret.get_secret_value()

        def verify(request: WebhookRequest) -> None:
            verify_signature(request.raw, request.header(SIGNATURE_HEADER), value)

        return verify

    def envelope(self, body: Any) -> Any:
        """A LINE webhook: ``destination`` and an ``events`` list."""
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise WebhookRejectedError(400, "not a LINE webhook: 'destination' and an 'events' list expected")
        return body

    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """The events of one body (:func:`connector.channels.line.parse`)."""
        return parse(body, ignore_groups=_own(ctx).line_ignore_groups)

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The LINE client (the official SDK; files through the relay's HTTP chokepoint)."""
        return LineClient(_own(ctx))
