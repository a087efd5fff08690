"""Twilio's error codes and what the relay does with each: try again, give up, or stop trying to reach the patient.

Twilio answers a refused request with ``{"code", "message", "more_info", "status"}`` and reports a message that
was accepted but not delivered with a status callback carrying ``ErrorCode``. Both kinds of code are listed
here once, each with its outcome and a reason a person (a coordinator reading the failed-job list or the CRM's
delivery report) can act on. Written from Twilio's error dictionary (twilio.com/docs/api/errors/<code>).

- ``retry``: the request or the delivery may well succeed later (throttling, queue overflow, Twilio's own
  trouble): :class:`~core.errors.RetryableError`.
- ``give_up``: retrying cannot help and someone must fix something (credentials, the sender, the content):
  :class:`~core.errors.FatalError` (:class:`~core.errors.AuthError` for credentials).
- ``unreachable``: the patient cannot be reached this way (not on WhatsApp, unsubscribed, an invalid
  number, outside WhatsApp's 24-hour window): :class:`~core.errors.SkippableError`, the work is moot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import AuthError, FatalError, RetryableError, SkippableError, SyncError

Outcome = Literal["retry", "give_up", "unreachable"]

#: the setting that holds the credentials, named in authentication errors
TOKEN_SETTING = "TWILIO_AUTH_TOKEN"  # noqa: S105 - a variable's name, not its value


@dataclass(frozen=True)
class TwilioError:
    """One Twilio error code: what to do, and why, in words a coordinator can act on."""

    code: int
    outcome: Outcome
    reason: str


_TABLE: tuple[TwilioError, ...] = (
    # -- the API refused the request ------------------------------------------------------------
    TwilioError(20003, "give_up", "Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
    TwilioError(20404, "give_up", "Twilio does not know the resource (wrong account SID or message SID)"),
    TwilioError(20429, "retry", "Twilio's API asked to slow down (too many requests)"),
    TwilioError(20500, "retry", "Twilio had an internal error"),
    TwilioError(20503, "retry", "Twilio's service was unavailable"),
    TwilioError(21211, "unreachable", "the patient's number is not a valid phone number"),
    TwilioError(21212, "give_up", "the sender (TWILIO_FROM or the conversation's number) is not a valid number"),
    TwilioError(21408, "give_up", "the account may not send messages to the patient's country (geo permissions)"),
    TwilioError(21602, "give_up", "the message had no body"),
    TwilioError(21603, "give_up", "no sender: set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"),
    TwilioError(21604, "give_up", "the message had no recipient"),
    TwilioError(21606, "give_up", "the sender number cannot send messages from this account"),
    TwilioError(21610, "unreachable", "the patient unsubscribed (replied STOP) from this number"),
    TwilioError(21612, "unreachable", "Twilio cannot route a message between the sender and the patient's number"),
    TwilioError(21614, "unreachable", "the patient's number is not a mobile number"),
    TwilioError(21617, "give_up", "the message is over 1600 characters"),
    TwilioError(21619, "give_up", "the message had neither text, media nor a content template"),
    TwilioError(21620, "give_up", "a media URL was refused"),
    TwilioError(21623, "give_up", "more than 10 media files in one message"),
    TwilioError(21654, "give_up", "a content template was expected but no Content SID was given"),
    TwilioError(21655, "give_up", "the Content SID is not a content template of this account"),
    TwilioError(21656, "give_up", "the content variables are not valid JSON for the template"),
    # -- delivery failed after Twilio accepted the message (status callbacks' ErrorCode) ----------
    TwilioError(30001, "retry", "the sender's queue overflowed: too many messages at once"),
    TwilioError(30002, "give_up", "the Twilio account is suspended"),
    TwilioError(30003, "unreachable", "the patient's phone is switched off or out of reach"),
    TwilioError(30004, "unreachable", "the patient's phone or carrier blocks the message"),
    TwilioError(30005, "unreachable", "the patient's number does not exist"),
    TwilioError(30006, "unreachable", "the patient's number is a landline or its carrier cannot receive messages"),
    TwilioError(30007, "give_up", "the carrier filtered the message as spam"),
    TwilioError(30008, "retry", "delivery failed for an unknown reason"),
    TwilioError(30034, "give_up", "the US sender number is not registered for A2P 10DLC"),
    TwilioError(63001, "give_up", "the WhatsApp sender's authentication failed at Meta"),
    TwilioError(63003, "unreachable", "the patient's number is not on WhatsApp"),
    TwilioError(63005, "give_up", "WhatsApp refused the message's content"),
    TwilioError(63007, "give_up", "no WhatsApp sender with this From address on the account"),
    TwilioError(63013, "give_up", "WhatsApp refused the message under its policy"),
    TwilioError(63016, "unreachable", "outside WhatsApp's 24-hour window: only a content template can be sent"),
    TwilioError(63018, "retry", "the WhatsApp sender's rate limit was reached"),
    TwilioError(63024, "unreachable", "WhatsApp does not accept this recipient"),
    TwilioError(63038, "retry", "the WhatsApp sender reached its daily message limit"),
    TwilioError(63049, "unreachable", "Meta chose not to deliver this message to the patient"),
    TwilioError(63112, "give_up", "Meta disabled the WhatsApp Business account"),
)

TABLE: dict[int, TwilioError] = {entry.code: entry for entry in _TABLE}


def lookup(code: int | str | None) -> TwilioError | None:
    """The table's entry for ``code`` (a number, or digits as a status callback's ``ErrorCode`` gives it)."""
    if isinstance(code, str):
        code = int(code) if code.isascii() and code.isdigit() else None
    return TABLE.get(code) if isinstance(code, int) else None


def reason(code: int | str | None, fallback: str) -> str:
    """A reason a person can read for ``code``; ``fallback`` (the vendor's message) for a code not listed."""
    entry = lookup(code)
    return entry.reason if entry else fallback


def exception(status: int, code: int | None, message: str, *, retry_after: float | None = None) -> SyncError:
    """The error-tree exception for an API error answer (HTTP ``status``, Twilio ``code`` and ``message``).

    A code in the table decides; otherwise the HTTP status does (429 and 5xx retried, 401 credentials, other
    4xx given up). ``message`` is Twilio's and may name the patient's number: it goes in ``details`` only
    when the code is unknown, cut short, and is never put in the error's message.
    """
    entry = lookup(code)
    details: dict[str, object] = {"status": status, "code": code}
    if entry is None:
        details["vendor_message"] = message[:200]
    outcome: Outcome
    if entry is not None:
        outcome = entry.outcome
    elif status == 429 or status >= 500:
        outcome = "retry"
    else:
        outcome = "give_up"
    text = f"twilio: {entry.reason if entry else f'request rejected (HTTP {status})'} ({code})"
    if outcome == "retry":
        return RetryableError(text, retry_after=retry_after, details=details)
    if outcome == "unreachable":
        return SkippableError(text, details=details)
    if code == 20003 or (entry is None and status in (401, 403)):
        return AuthError(text, setting=TOKEN_SETTING, details=details)
    return FatalError(text, details=details)
