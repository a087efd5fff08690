"""The Send API's errors (Messenger and Instagram) and what the relay does with each.

A failed Send API call answers a Graph API error object: ``{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}``. :data:`TABLE` names, by ``(code, subcode)`` and then by ``code`` alone, the
outcome of every error Meta's "Send API error codes" and "Common Error Codes" pages list that the relay can
meet, with a reason a person can read:

- ``retry``: Meta did not send and may on a later try (throttling, a temporary failure);
- ``auth``: the token is wrong, expired or lacks a permission (names the setting to fix);
- ``window``: the messaging window is closed (24 hours; 7 days with the ``HUMAN_AGENT`` tag);
- ``unreachable``: the person cannot be messaged (blocked the Page, left, no longer exists): the message is
  set aside with the reason (:class:`connector.channels.plugin.UnreachableError`);
- ``give_up``: the request itself is wrong; trying again cannot help.

:func:`classify` turns an error object into one of those, and :func:`to_exception` into the error tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from connector.channels.plugin import ErrorRule, ErrorTable, UnreachableError
from connector.channels.plugin import Outcome as PluginOutcome
from core.errors import AuthError, FatalError, RetryableError, SkippableError

Outcome = Literal["retry", "auth", "window", "unreachable", "give_up"]


@dataclass(frozen=True)
class Verdict:
    """What one Graph API error means for the relay."""

    outcome: Outcome
    reason: str


#: (code, subcode) first, then (code, None)
TABLE: dict[tuple[int, int | None], Verdict] = {
    (1200, None): Verdict("retry", "temporary send failure at Meta"),
    (2, None): Verdict("retry", "unexpected error at Meta (also answered when the person blocked the Page)"),
    (1, None): Verdict("retry", "unknown error at Meta"),
    (4, None): Verdict("retry", "the app's request limit was reached"),
    (4, 2018022): Verdict("retry", "too many send requests"),
    (17, None): Verdict("retry", "the user's request limit was reached"),
    (32, None): Verdict("retry", "the Page's request limit was reached"),
    (613, None): Verdict("retry", "calls to the Send API exceeded the rate limit"),
    (80006, None): Verdict("retry", "the Messenger rate limit (business use case) was reached"),
    (190, None): Verdict("auth", "the access token is invalid or expired"),
    (102, None): Verdict("auth", "the session behind the access token is invalid"),
    (230, None): Verdict("auth", "the token lacks the pages_messaging permission"),
    (200, None): Verdict("auth", "the app lacks a permission to message this person"),
    (200, 2018028): Verdict("auth", "the app is not live: it may message only its admins, developers and testers"),
    (200, 1545041): Verdict("give_up", "another app controls this conversation now (handover protocol)"),
    (10, None): Verdict("auth", "the app lacks a permission for this message"),
    (10, 2018278): Verdict("window", "sent outside the allowed window: the person last wrote more than 24 hours "
                                     "ago (7 days for an agent's reply with the HUMAN_AGENT tag)"),
    (10, 2534022): Verdict("window", "sent outside the allowed window (Instagram): the person last wrote more than "
                                     "24 hours ago (7 days for an agent's reply with the HUMAN_AGENT tag)"),
    (10, 2018065): Verdict("window", "sent outside the allowed window without the required permission"),
    (10, 2018108): Verdict("window", "sent outside the allowed window without the required permission"),
    (551, None): Verdict("unreachable", "this person isn't available right now (blocked the Page or left)"),
    (551, 1545041): Verdict("unreachable", "this person isn't available right now (blocked the Page or left)"),
    (100, 2018001): Verdict("unreachable", "no person matches this recipient id"),
    (100, 2534014): Verdict("unreachable", "no Instagram user matches this recipient id"),
    (100, 2018109): Verdict("give_up", "the attachment is over the size Meta allows"),
    (100, 2018047): Verdict("give_up", "the attachment could not be fetched from its URL"),
    (100, None): Verdict("give_up", "invalid parameter"),
}

#: codes and subcodes that mean "slow down" (the caller backs off longer)
THROTTLING = frozenset({4, 17, 32, 613, 80006})


def classify(error: dict[str, Any], status: int) -> Verdict:
    """The verdict for a Graph API ``error`` object answered with HTTP ``status``.

    An error the table does not name is a ``retry`` when Meta marks it transient (``is_transient``) or
    answered 5xx, else ``give_up``.
    """
    code, subcode = error.get("code"), error.get("error_subcode")
    if isinstance(code, int) and not isinstance(code, bool):
        found = TABLE.get((code, subcode if isinstance(subcode, int) else None)) or TABLE.get((code, None))
        if found is not None:
            return found
    if error.get("is_transient") is True or status >= 500:
        return Verdict("retry", "Meta reported a transient error")
    if status == 429:
        return Verdict("retry", "throttled")
    return Verdict("give_up", "the Send API refused the request")


def to_exception(api: str, error: dict[str, Any], status: int, token_setting: str,
                 retry_after: float | None = None) -> Exception:
    """The error-tree exception for a Send API error (its message never holds the person's words or ids)."""
    verdict = classify(error, status)
    code, subcode = error.get("code"), error.get("error_subcode")
    details = {"status": status, "code": code, "subcode": subcode, "outcome": verdict.outcome,
               "fbtrace_id": error.get("fbtrace_id")}
    label = f"{code}/{subcode}" if subcode is not None else f"{code}"
    message = f"{api}: {verdict.reason} ({label})"
    if verdict.outcome == "retry":
        throttled = isinstance(code, int) and code in THROTTLING
        return RetryableError(message, retry_after=retry_after if retry_after is not None else (
            60.0 if throttled else None), details=details)
    if verdict.outcome == "auth":
        return AuthError(f"{message}; check {token_setting}", setting=token_setting, details=details)
    if verdict.outcome == "unreachable":
        return UnreachableError(message, details=details)
    if verdict.outcome == "window":
        return SkippableError(message, details=details)
    return FatalError(message, details=details)


def error_table(api: str, token_setting: str) -> ErrorTable:
    """:data:`TABLE` as the plug-in interface's :class:`~connector.channels.plugin.ErrorTable`: keyed by ``code``
    and by ``code/subcode``."""
    rules = {(f"{code}/{subcode}" if subcode is not None else str(code)): ErrorRule(PluginOutcome(v.outcome), v.reason)
             for (code, subcode), v in TABLE.items()}
    return ErrorTable(api=api, token_setting=token_setting, rules=rules)
