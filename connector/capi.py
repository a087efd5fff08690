"""Meta's Conversions API, as the relay speaks it: one event's payload (pure) and its ``POST``.

``POST /{version}/{dataset_id}/events`` with ``data``: a list of events, each with ``event_name``,
``event_time`` (unix seconds), ``event_id`` (the lead's reference and the event's name: Meta drops a second
event with the same id and name), ``action_source`` and ``user_data``; ``custom_data`` with ``value`` and
``currency`` for a purchase. Two kinds, by where the patient came from:

- a **click-to-WhatsApp** conversation (the ad's ``ctwa_clid`` kept from the first message): ``action_source``
  ``business_messaging``, ``messaging_channel`` ``whatsapp``, ``user_data.ctwa_clid`` and
  ``whatsapp_business_account_id`` (Meta's "Conversions API for Business Messaging");
- a **lead form** lead (Meta's lead id): ``action_source`` ``system_generated``, ``user_data.lead_id`` and
  ``custom_data.event_source`` ``crm`` with ``lead_event_source`` (Meta's "Conversions API for CRM", the
  Conversion Leads payload).

Customer information is hashed as Meta requires (SHA-256, lower-case hex) after normalising: a phone number to
its digits with the country code, an e-mail address trimmed and in lower case. Meta refuses an event whose
``event_time`` is more than 7 days old, or in the future: :func:`too_old` says so before sending.

Graph's error body decides what a refusal means (:func:`raise_for`): transient errors, throttling and 5xx are
retried; a refused token names the setting; anything else is a refusal of the event itself.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import requests

from connector.mapping.conversions import BUSINESS_MESSAGING_EVENTS
from core.errors import AuthError, FatalError, RetryableError

#: Graph codes that mean "try again later": unknown and service errors, throttling (application, user, custom)
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 341, 613})
#: Graph codes of a token that is expired, revoked or lacks a permission
AUTH_CODES = frozenset({102, 190, 10}) | frozenset(range(200, 300))
#: the oldest an event may be when sent (Meta: ``event_time`` up to 7 days before it is sent)
MAX_AGE_SECONDS = 7 * 86400
#: how far ahead of Meta's clock an event may be dated before Meta calls it "in the future"
FUTURE_SLACK_SECONDS = 60
#: the CRM name Meta's Conversion Leads payload asks for in ``lead_event_source``
LEAD_EVENT_SOURCE = "chat2crm"
_NOT_DIGIT = re.compile(r"\D")


def normalise_phone(phone: str) -> str:
    """A phone number as Meta hashes it: digits only, with the country code (``+1 (650) 555-1212`` →
    ``16505551212``); a leading ``00`` (international prefix) is dropped."""
    digits = _NOT_DIGIT.sub("", phone or "")
    return digits[2:] if digits.startswith("00") else digits


def normalise_email(email: str) -> str:
    """An e-mail address as Meta hashes it: trimmed, in lower case."""
    return (email or "").strip().lower()


def sha256(text: str) -> str:
    """SHA-256 of ``text`` (UTF-8), lower-case hex: the 64 characters Meta takes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hashed_phone(phone: str | None) -> str | None:
    """The phone number's hash for ``user_data.ph``, or None when it has no digits."""
    normal = normalise_phone(phone or "")
    return sha256(normal) if normal else None


def hashed_email(email: str | None) -> str | None:
    """The e-mail address's hash for ``user_data.em``, or None when there is none."""
    normal = normalise_email(email or "")
    return sha256(normal) if "@" in normal else None


def too_old(event_time: int, now: float, window_seconds: int = MAX_AGE_SECONDS) -> str | None:
    """Why Meta would refuse an event dated ``event_time`` sent ``now``: too old or in the future; else None."""
    if event_time > now + FUTURE_SLACK_SECONDS:
        return "event_time is in the future"
    if now - event_time > min(window_seconds, MAX_AGE_SECONDS):
        return f"event_time is more than {min(window_seconds, MAX_AGE_SECONDS) // 86400} days old"
    return None


def event(context: dict[str, Any], *, name: str, event_time: int, value: float | None = None,
          currency: str | None = None, waba_id: str | None = None) -> dict[str, Any] | None:
    """One event for the lead ``context`` (:func:`connector.conversions.context_of`), or None when nothing ties
    the lead to an ad (no click-to-WhatsApp click id and no lead form lead id): Meta could not attribute it; or
    when a click-to-WhatsApp conversation's event has a name business messaging refuses (``QualifiedLead``)."""
    user: dict[str, Any] = {}
    if context.get("ph"):
        user["ph"] = [context["ph"]]
    if context.get("em"):
        user["em"] = [context["em"]]
    body: dict[str, Any] = {"event_name": name, "event_time": int(event_time),
                            "event_id": f"{context['reference'].lstrip('#')}:{name}"}
    custom: dict[str, Any] = {}
    if context.get("lead_id"):
        body["action_source"] = "system_generated"
        user["lead_id"] = int(context["lead_id"])
        custom.update(event_source="crm", lead_event_source=LEAD_EVENT_SOURCE)
    elif context.get("ctwa_clid") and waba_id:
        if name not in BUSINESS_MESSAGING_EVENTS:
            return None  # business messaging refuses the name (2804066): nothing to send for this conversation
        body.update(action_source="business_messaging", messaging_channel="whatsapp")
        user.update(ctwa_clid=context["ctwa_clid"], whatsapp_business_account_id=waba_id)
    else:
        return None
    if value is not None and currency:
        custom.update(value=value, currency=currency)
    body["user_data"] = user
    if custom:
        body["custom_data"] = custom
    return body


def raise_for(response: requests.Response) -> None:
    """Map a refused answer to the relay's error tree.

    Raises:
        RetryableError: 429, 5xx, ``is_transient``, or a throttling/transient code.
        AuthError: a refused token or a missing permission (the access token setting is named by the caller).
        FatalError: any other refusal (the event itself: Graph's ``error_user_msg`` says why).
    """
    try:
        error = (response.json() or {}).get("error") or {}
    except ValueError:
        error = {}
    code = int(error.get("code") or 0)
    said = str(error.get("error_user_msg") or error.get("message") or f"HTTP {response.status_code}")
    details = {"status": response.status_code, "code": code, "subcode": error.get("error_subcode"),
               "fbtrace_id": error.get("fbtrace_id")}
    if response.status_code == 429 or response.status_code >= 500 or error.get("is_transient") \
            or code in TRANSIENT_CODES:
        raise RetryableError(f"meta conversions: {said}", retry_after=None, details=details)
    if code in AUTH_CODES:
        raise AuthError(f"meta conversions: the access token was refused ({said})", details=details)
    raise FatalError(f"meta conversions: event refused: {said}", details=details)


def post(base: str, version: str, dataset_id: str, token: str, events: list[dict[str, Any]], *,
         test_event_code: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``events`` to the dataset; returns Meta's answer (``events_received``, ``messages``, ``fbtrace_id``).

    Raises:
        RetryableError: a connection error, a time-out, or a transient refusal.
        AuthError, FatalError: as :func:`raise_for`.
    """
    body: dict[str, Any] = {"data": events}
    if test_event_code:
        body["test_event_code"] = test_event_code
    try:
        response = requests.post(f"{base.rstrip('/')}/{version}/{dataset_id}/events", json=body, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryableError(f"meta conversions: {type(exc).__name__}") from None
    if not response.ok:
        raise_for(response)
    answer: dict[str, Any] = response.json()
    return answer
