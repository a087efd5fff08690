"""LINE Messaging API errors: what each answer means for the relay, with a reason a person can read.

LINE answers a refused call with an HTTP status and a JSON body ``{"message": …, "details": [{"message",
"property"}]}`` (the ``ErrorResponse`` of ``emulators/vendor_specs/line/messaging-api.yml``); a status
alone does not say enough (a 400 may be a stale reply token or a message LINE cannot carry, a 429 a rate
limit or the month's message quota), so the table below reads the message too. :func:`classify` gives
one of four outcomes:

- ``retry``: LINE did not act and may on a later try (rate or concurrency limits, 5xx);
- ``give_up``: trying again cannot help (a message LINE refuses, a plan without the API, the month's
  quota spent, a token refused, which :func:`as_error` turns into an :class:`~core.errors.AuthError`);
- ``unreachable``: the patient cannot be reached on LINE (an unknown user, a user LINE will not deliver to:
  :class:`~connector.channels.plugin.UnreachableError`);
- ``reply_token``: the reply token is spent or too old: the client pushes instead.

``409`` with the retry key of a push means LINE already accepted that push: the client treats it as sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from connector.channels.plugin import UnreachableError
from core.errors import AuthError, FatalError, RetryableError, SyncError

Outcome = Literal["retry", "give_up", "unreachable", "reply_token", "already_sent"]
TOKEN_SETTING = "LINE_CHANNEL_ACCESS_TOKEN"  # noqa: S105 - the name of a setting, not a secret


@dataclass(frozen=True)
class LineError:
    """One failed answer of LINE's, classified."""

    status: int
    message: str
    outcome: Outcome
    reason: str
    #: what the answer's ``details`` name as wrong (property paths, never values)
    properties: tuple[str, ...] = ()
    retry_after: float | None = None
    #: ids LINE returns with a 409 on a retried push (the messages it already sent)
    sent_ids: tuple[str, ...] = ()


#: (status, start of LINE's message) → (outcome, reason); the first match wins, ``""`` matches any message
TABLE: list[tuple[int, str, Outcome, str]] = [
    (400, "Invalid reply token", "reply_token",
     "the reply token was already used or is too old (LINE accepts it once, within about a minute)"),
    (400, "The property, 'to',", "unreachable", "LINE knows no user with this id on this channel"),
    (400, "Failed to send messages", "unreachable", "LINE could not deliver to this user"),
    (400, "Invalid markAsReadToken", "give_up", "the read token belongs to another bot or is malformed"),
    (400, "The request body has", "give_up", "LINE refused the message's content (see the properties named)"),
    (400, "", "give_up", "LINE refused the request"),
    (401, "", "give_up", f"the channel access token was refused; check {TOKEN_SETTING}"),
    (403, "", "give_up", "this LINE plan or channel has no access to the API called"),
    (404, "", "give_up", "LINE no longer has what was asked for (a user's file is kept for a limited time)"),
    (409, "", "already_sent", "LINE already accepted a push with this retry key"),
    (410, "", "give_up", "LINE no longer has what was asked for"),
    (413, "", "give_up", "the request is over LINE's 2 MB limit"),
    (429, "You have reached your monthly limit", "give_up",
     "the LINE account's messages for this month are spent: raise the plan's limit or wait for next month"),
    (429, "You have exceeded the target limit", "give_up",
     "the LINE account's limit of additional messages for this month is reached"),
    (429, "", "retry", "LINE's rate or concurrency limit: try again later"),
]


def classify(status: int, body: bytes | str | None, headers: Any = None) -> LineError:
    """Classify one failed answer (``status``, raw ``body``, response ``headers``) of LINE's."""
    data = _json(body)
    message = str(data.get("message") or "")[:300]
    details = data.get("details")
    properties = tuple(str(d.get("property")) for d in details if isinstance(d, dict) and d.get("property")) \
        if isinstance(details, list) else ()
    sent = data.get("sentMessages")
    sent_ids = tuple(str(m["id"]) for m in sent if isinstance(m, dict) and m.get("id")) if isinstance(sent, list) else ()
    retry_after = _retry_after(headers)
    if status >= 500:
        return LineError(status, message, "retry", f"LINE's server error {status}: try again later",
                         properties, retry_after)
    for code, start, outcome, reason in TABLE:
        if code == status and message.startswith(start):
            return LineError(status, message, outcome, reason, properties, retry_after, sent_ids)
    return LineError(status, message, "give_up", f"LINE answered {status}", properties, retry_after)


def as_error(error: LineError, what: str = "line") -> SyncError:
    """The error-tree exception for a classified answer (``what`` names the call, for logs and metrics)."""
    details: dict[str, Any] = {"status": error.status, "outcome": error.outcome}
    if error.properties:
        details["properties"] = list(error.properties)
    text = f"{what}: {error.reason} ({error.status}: {error.message or 'no message'})"
    if error.outcome == "retry":
        return RetryableError(text, retry_after=error.retry_after, details=details)
    if error.outcome == "unreachable":
        return UnreachableError(text, details=details)
    if error.status == 401:
        return AuthError(text, setting=TOKEN_SETTING, details=details)
    return FatalError(text, details=details)


def _json(body: bytes | str | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` in seconds, when the answer carries one (LINE's 429 usually does not)."""
    if headers is None:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if isinstance(value, str) and value.replace(".", "", 1).isdigit():
        return float(value)
    return None
