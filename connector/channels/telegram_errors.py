"""The Telegram Bot API's errors and what each means for a message (the plug-in's error table).

The Bot API answers ``{"ok": false, "error_code": <an HTTP status>, "description": ...}``: the table is by
that code.
"""

from __future__ import annotations

from connector.channels.plugin import ErrorRule, ErrorTable, Outcome

#: the Bot API answers ``error_code`` as an HTTP status, with a description: the table is by that code
TELEGRAM_ERRORS = ErrorTable(api="telegram", token_setting="TELEGRAM_BOT_TOKEN", rules={  # noqa: S106
    "400": ErrorRule(Outcome.GIVE_UP, "the Bot API refused the request (a bad parameter, or the chat is gone)"),
    "401": ErrorRule(Outcome.AUTH, "the bot token was refused"),
    "403": ErrorRule(Outcome.UNREACHABLE, "the user blocked the bot, or deleted their account"),
    "404": ErrorRule(Outcome.AUTH, "the bot token is unknown (Telegram answers 404 for a wrong token)"),
    "409": ErrorRule(Outcome.GIVE_UP, "another webhook or getUpdates holds the bot's updates"),
    "429": ErrorRule(Outcome.RETRY, "too many messages: Telegram asked to wait (retry_after)"),
})
