"""Twilio's error codes and what the relay does with each: try again, give up, or stop trying to reach the patient.

Twilio answers a refused request with ``{"code", "message", "more_info", "status"}`` and reports a message that
was accepted but not delivered with a status callback carrying ``ErrorCode``. Both kinds of code are listed
here once, each with its outcome and a reason a person (a coordinator reading the failed-job list or the CRM's
delivery report) can act on. Written from Twilio's error dictionary (twilio.com/docs/api/errors/<code>).

The outcomes are the plug-in interface's (:class:`~connector.channels.plugin.Outcome`), and :data:`ERRORS` is
the one table both the plug-in (``TwilioPlugin.errors``) and the client (:func:`exception`) use:

- ``retry``: the request or the delivery may well succeed later (throttling, queue overflow, Twilio's own
  trouble): :class:`~core.errors.RetryableError`.
- ``give_up``: retrying cannot help and someone must fix something (the sender, the content):
  :class:`~core.errors.FatalError`; ``auth`` for refused credentials: :class:`~core.errors.AuthError`.
- ``unreachable``: the patient cannot be reached this way (not on WhatsApp, unsubscribed, an invalid
  number): :class:`~connector.channels.plugin.UnreachableError`, set aside with the reason.
- ``window``: outside WhatsApp's 24-hour window, only a content template may go out:
  :class:`~core.errors.SkippableError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.channels.plugin import ErrorRule, ErrorTable, Outcome
from core.errors import SyncError

RETRY, GIVE_UP, UNREACHABLE = Outcome.RETRY, Outcome.GIVE_UP, Outcome.UNREACHABLE

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
    TwilioError(20003, Outcome.AUTH, "Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
    TwilioError(20404, GIVE_UP, "Twilio does not know the resource (wrong account SID or message SID)"),
    TwilioError(20429, RETRY, "Twilio's API asked to slow down (too many requests)"),
    TwilioError(20500, RETRY, "Twilio had an internal error"),
    TwilioError(20503, RETRY, "Twilio's service was unavailable"),
    TwilioError(21211, UNREACHABLE, "the patient's number is not a valid phone number"),
    TwilioError(21212, GIVE_UP, "the sender (TWILIO_FROM or the conversation's number) is not a valid number"),
    TwilioError(21408, GIVE_UP, "the account may not send messages to the patient's country (geo permissions)"),
    TwilioError(21602, GIVE_UP, "the message had no body"),
    TwilioError(21603, GIVE_UP, "no sender: set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"),
    TwilioError(21604, GIVE_UP, "the message had no recipient"),
    TwilioError(21606, GIVE_UP, "the sender number cannot send messages from this account"),
    TwilioError(21610, UNREACHABLE, "the patient unsubscribed (replied STOP) from this number"),
    TwilioError(21612, UNREACHABLE, "Twilio cannot route a message between the sender and the patient's number"),
    TwilioError(21614, UNREACHABLE, "the patient's number is not a mobile number"),
    TwilioError(21617, GIVE_UP, "the message is over 1600 characters"),
    TwilioError(21619, GIVE_UP, "the message had neither text, media nor a content template"),
    TwilioError(21620, GIVE_UP, "a media URL was refused"),
    TwilioError(21623, GIVE_UP, "more than 10 media files in one message"),
    TwilioError(21654, GIVE_UP, "a content template was expected but no Content SID was given"),
    TwilioError(21655, GIVE_UP, "the Content SID is not a content template of this account"),
    TwilioError(21656, GIVE_UP, "the content variables are not valid JSON for the template"),
    # -- delivery failed after Twilio accepted the message (status callbacks' ErrorCode) ----------
    TwilioError(30001, RETRY, "the sender's queue overflowed: too many messages at once"),
    TwilioError(30002, GIVE_UP, "the Twilio account is suspended"),
    TwilioError(30003, UNREACHABLE, "the patient's phone is switched off or out of reach"),
    TwilioError(30004, UNREACHABLE, "the patient's phone or carrier blocks the message"),
    TwilioError(30005, UNREACHABLE, "the patient's number does not exist"),
    TwilioError(30006, UNREACHABLE, "the patient's number is a landline or its carrier cannot receive messages"),
    TwilioError(30007, GIVE_UP, "the carrier filtered the message as spam"),
    TwilioError(30008, RETRY, "delivery failed for an unknown reason"),
    TwilioError(30034, GIVE_UP, "the US sender number is not registered for A2P 10DLC"),
    TwilioError(63001, GIVE_UP, "the WhatsApp sender's authentication failed at Meta"),
    TwilioError(63003, UNREACHABLE, "the patient's number is not on WhatsApp"),
    TwilioError(63005, GIVE_UP, "WhatsApp refused the message's content"),
    TwilioError(63007, GIVE_UP, "no WhatsApp sender with this From address on the account"),
    TwilioError(63013, GIVE_UP, "WhatsApp refused the message under its policy"),
    TwilioError(63016, Outcome.WINDOW, "outside WhatsApp's 24-hour window: only a content template can be sent"),
    TwilioError(63018, RETRY, "the WhatsApp sender's rate limit was reached"),
    TwilioError(63024, UNREACHABLE, "WhatsApp does not accept this recipient"),
    TwilioError(63038, RETRY, "the WhatsApp sender reached its daily message limit"),
    TwilioError(63049, UNREACHABLE, "Meta chose not to deliver this message to the patient"),
    TwilioError(63112, GIVE_UP, "Meta disabled the WhatsApp Business account"),
)

TABLE: dict[int, TwilioError] = {entry.code: entry for entry in _TABLE}

#: the table in the plug-in interface's terms: the plug-in's ``errors`` and what :func:`exception` decides by
ERRORS = ErrorTable("twilio", TOKEN_SETTING, {str(code): ErrorRule(entry.outcome, entry.reason)
                                              for code, entry in TABLE.items()})


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
    """The error-tree exception for an API error answer (HTTP ``status``, Twilio ``code`` and ``message``), as
    :data:`ERRORS` says: a code in the table decides; otherwise the HTTP status does (429 and 5xx retried, 401
    credentials, other 4xx given up).

    ``message`` is Twilio's and may name the patient's number: it goes in ``details`` only when the code is
    unknown, cut short, and is never put in the error's message.
    """
    error = ERRORS.error(code, status, retry_after=retry_after)
    if not isinstance(error, SyncError):  # every outcome of the table is one of the error tree's
        raise TypeError(f"not an error of the tree: {type(error).__name__}")
    if lookup(code) is None:
        error.details["vendor_message"] = message[:200]
    return error
