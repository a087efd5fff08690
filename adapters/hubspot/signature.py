"""HubSpot's request signature, version 3: how the relay knows a webhook came from HubSpot.

HubSpot signs every request it sends to an app (custom channel events, the app's webhook subscriptions,
a private app's webhooks) with two headers:

- ``X-HubSpot-Request-Timestamp``: when it was sent, in milliseconds since the epoch;
- ``X-HubSpot-Signature-v3``: base64 of HMAC-SHA256, keyed with the app's client secret, over the UTF-8
  string ``method + URI + body + timestamp``, where the URI is the full URL the app registered (scheme, host,
  path, query) with the characters HubSpot's validation guide lists decoded (``%3A`` → ``:``…).

A request older than five minutes is refused (HubSpot's own guide and clients use that bound), so a captured
request cannot be replayed later. The comparison takes constant time. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from core.errors import WebhookRejectedError

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
#: how old (or how far ahead of our clock) a request may be, in seconds
MAX_AGE_SECONDS = 300.0

#: the percent-encodings HubSpot's v3 validation guide says to decode in the URI before signing (others stay)
_DECODED = {"3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$", "27": "'", "28": "(", "29": ")",
            "2A": "*", "2C": ",", "3B": ";"}
_ENCODED = re.compile("%(" + "|".join(_DECODED) + ")", re.IGNORECASE)


def signed_uri(url: str) -> str:
    """``url`` as it enters the signed string: the listed percent-encodings decoded, nothing else changed."""
    return _ENCODED.sub(lambda m: _DECODED[m.group(1).upper()], url)


def expected_signature(secret: str, *, method: str, url: str, body: bytes, timestamp: str) -> str:
    """The v3 signature HubSpot sends for this request (base64 of the HMAC-SHA256)."""
    source = method.upper().encode() + signed_uri(url).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (a plain dict is case-sensitive, HTTP is not)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def verify(secret: str, *, method: str, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Check a request's v3 signature and its age.

    Args:
        secret: the app's client secret (the key of its signatures).
        method: the HTTP method HubSpot used.
        url: the full URL HubSpot called, as the app registered it.
        headers: the request's headers.
        body: the exact bytes received.
        now: the time it was received, in seconds since the epoch.

    Raises:
        WebhookRejectedError: 401 when the signature or timestamp is missing, wrong or stale.
    """
    if not secret:
        raise WebhookRejectedError(401, "hubspot: no client secret to check the signature with "
                                        "(set HUBSPOT_CLIENT_SECRET)")
    signature = header(headers, SIGNATURE_HEADER)
    stamp = header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise WebhookRejectedError(401, f"hubspot: {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} missing")
    try:
        sent = int(stamp) / 1000.0
    except ValueError:
        raise WebhookRejectedError(401, f"hubspot: {TIMESTAMP_HEADER} is not a number of milliseconds") from None
    if abs(now - sent) > MAX_AGE_SECONDS:
        raise WebhookRejectedError(401, "hubspot: request too old (more than five minutes), or from the future",
                                   details={"age_seconds": round(now - sent, 1)})
    wanted = expected_signature(secret, method=method, url=url, body=body, timestamp=stamp)
    if not hmac.compare_digest(wanted.encode(), signature.strip().encode()):
        raise WebhookRejectedError(401, "hubspot: signature does not match")
