"""The Telegram Bot API as a channel plug-in (``telegram``).

The parsing and the client are :mod:`connector.channels.telegram`'s; this module binds them to the
plug-in interface (:mod:`connector.channels.plugin`): the ``TELEGRAM_*`` settings, the
``X-Telegram-Bot-Api-Secret-Token`` check, the groups and bots policy (``channels.telegram.ignore_groups``,
``channels.ignore_bots``) and the error table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from connector.channels import telegram as tg
from connector.channels.base import ChannelClient, ParsedWebhook
from connector.channels.plugin import (
    Capabilities,
    ChannelContext,
    ChannelPlugin,
    ChannelSettings,
    WebhookRequest,
)
from connector.channels.telegram_errors import TELEGRAM_ERRORS
from core.settings import Settings as CoreSettings


class TelegramSettings(ChannelSettings):
    """The ``TELEGRAM_*`` settings (kept in the process's settings too, where they always were)."""

    telegram_bot_token: SecretStr | None = None
    telegram_secret_token: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"


class TelegramPlugin(ChannelPlugin):
    """Telegram: ``/webhooks/telegram``, proved by the secret token given to ``setWebhook``."""

    name = "telegram"
    Settings = TelegramSettings
    proof_header = "X-Telegram-Bot-Api-Secret-Token"
    secret_setting = "TELEGRAM_SECRET_TOKEN"  # noqa: S105  (the setting's name, not a secret)
    # inline keyboards take any number of buttons; the relay lays them out two a row
    capabilities = Capabilities(buttons=100, button_title=64, list_rows=0, templates=False, read_receipts=False,
                                media=True, max_text=tg.MAX_TEXT)
    errors = TELEGRAM_ERRORS

    def read_settings(self, core: CoreSettings) -> ChannelSettings:
        """The ``TELEGRAM_*`` settings as the process read them (tests and the demo set them there)."""
        return TelegramSettings.model_construct(**{name: getattr(core, name) for name in TelegramSettings.model_fields})

    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """The secret token, compared in constant time (:func:`connector.channels.telegram.verify_secret`)."""
        secret = ctx.core.telegram_secret_token
        if secret is None:
            return None
        key = secret.get_secret_value()
        return lambda request: tg.verify_secret(request.header(self.proof_header), key)

    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """One update (:func:`connector.channels.telegram.parse_update`), for the bot the token names."""
        token = ctx.core.telegram_bot_token.get_secret_value() if ctx.core.telegram_bot_token else None
        return tg.parse_update(body, tg.bot_id(token), ignore_groups=bool(ctx.options.get("ignore_groups", True)),
                               ignore_bots=ctx.ignore_bots)

    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The Bot API client (:class:`connector.channels.telegram.TelegramClient`)."""
        return tg.TelegramClient(ctx.core)
