"""The WhatsApp Cloud API's error codes and what each means for a message (the plug-in's error table).

Written from Meta's error-code reference for the Cloud API (``error.code`` of a Graph API error answer, and
of a ``failed`` status's ``errors``). The same table serves every WhatsApp provider whose API is the Cloud
API's (360dialog passes Meta's errors through).
"""

from __future__ import annotations

from connector.channels.plugin import ErrorRule, ErrorTable, Outcome

_RETRY, _GIVE_UP, _UNREACHABLE, _AUTH, _WINDOW = (Outcome.RETRY, Outcome.GIVE_UP, Outcome.UNREACHABLE,
                                                  Outcome.AUTH, Outcome.WINDOW)

#: code → (outcome, reason a person can read)
_RULES: dict[int, tuple[Outcome, str]] = {
    0: (_AUTH, "the access token could not be validated"),
    4: (_RETRY, "the app's call limit was reached"),
    10: (_AUTH, "the app lacks the permission"),
    190: (_AUTH, "the access token expired or was revoked"),
    200: (_AUTH, "the app lacks the permission"),
    368: (_GIVE_UP, "the account is temporarily blocked for a policy violation"),
    80007: (_RETRY, "the business account's rate limit was reached"),
    130429: (_RETRY, "the number's throughput limit was reached"),
    130472: (_UNREACHABLE, "the patient's number is part of a Meta experiment and gets no business messages"),
    131000: (_RETRY, "WhatsApp failed to send the message for an unknown reason"),
    131016: (_RETRY, "WhatsApp's service is unavailable for now"),
    131021: (_GIVE_UP, "the recipient is the business number itself"),
    131026: (_UNREACHABLE, "the message could not be delivered: the number is not on WhatsApp, or its app is "
                           "too old, or the patient has not accepted WhatsApp's terms"),
    131047: (_WINDOW, "more than 24 hours since the patient's last message: only a template may be sent"),
    131048: (_RETRY, "spam rate limit: too many messages were refused or blocked"),
    131049: (_GIVE_UP, "Meta chose not to deliver this marketing message, to keep engagement healthy"),
    131050: (_UNREACHABLE, "the patient stopped marketing messages from this business"),
    131051: (_GIVE_UP, "the message type is not supported"),
    131052: (_GIVE_UP, "the patient's file could not be downloaded"),
    131053: (_GIVE_UP, "the file could not be uploaded (its type or size is refused)"),
    131056: (_RETRY, "too many messages to the same patient in a short time"),
    132000: (_GIVE_UP, "the template's parameters do not match its placeholders"),
    132001: (_GIVE_UP, "the template does not exist in that language, or is not approved"),
    132005: (_GIVE_UP, "the template's text with its parameters is too long"),
    132007: (_GIVE_UP, "the template's format breaks a policy"),
    132012: (_GIVE_UP, "a template parameter has the wrong format"),
    132015: (_GIVE_UP, "the template is paused for low quality"),
    132016: (_GIVE_UP, "the template is disabled"),
    132018: (_GIVE_UP, "a template parameter holds new lines, tabs or too many spaces"),
    133010: (_GIVE_UP, "the business number is not registered"),
}

#: the WhatsApp Cloud API's error table
WHATSAPP_ERRORS = ErrorTable(api="whatsapp", token_setting="WHATSAPP_ACCESS_TOKEN",  # noqa: S106
                             rules={str(code): ErrorRule(outcome, reason) for code, (outcome, reason) in _RULES.items()})
