"""How HubSpot signs the requests it sends to an app (webhooks of its subscriptions, a custom channel's
outgoing messages), written from HubSpot's "Validating requests" documentation, apart from the relay's
own check (the tests hold both to the same documented examples).

- **v3** (``X-HubSpot-Signature-v3``, with ``X-HubSpot-Request-Timestamp`` in milliseconds): the base64
  HMAC-SHA256, under the app's client secret, of ``method + URI + body + timestamp``. The URI is the full
  URL HubSpot called, with the few URL-encoded characters the documentation lists decoded. A receiver
  refuses a timestamp older than five minutes.
- **v2** (``X-HubSpot-Signature`` with ``X-HubSpot-Signature-Version: v2``): the hex SHA-256 of
  ``client secret + method + URI + body``.
- **v1** (the same header with ``v1``, what webhook subscriptions are still sent with): the hex SHA-256
  of ``client secret + body``.

HubSpot sends the older versions beside v3 for backwards compatibility; the emulator does the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

#: the URL-encoded characters decoded in the URI before signing (v3), as the documentation lists them
URI_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
               "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
#: how old a v3 timestamp may be before a receiver refuses the request (milliseconds)
MAX_AGE_MS = 5 * 60 * 1000


def signed_uri(uri: str) -> str:
    """The URI as it enters a v3 signature: the listed escapes decoded (either case), nothing else."""
    out = []
    i = 0
    while i < len(uri):
        chunk = uri[i:i + 3].upper()
        if uri[i] == "%" and chunk in URI_DECODED:
            out.append(URI_DECODED[chunk])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` of a request (``timestamp`` is the ``X-HubSpot-Request-Timestamp``)."""
    source = method.upper().encode() + signed_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(client_secret.encode(), source, hashlib.sha256).digest()).decode()


def signature_v2(client_secret: str, method: str, uri: str, body: bytes) -> str:
    """The v2 ``X-HubSpot-Signature`` of a request."""
    return hashlib.sha256(client_secret.encode() + method.upper().encode() + uri.encode() + body).hexdigest()


def signature_v1(client_secret: str, body: bytes) -> str:
    """The v1 ``X-HubSpot-Signature`` of a request."""
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def signed_headers(client_secret: str, url: str, body: bytes, timestamp_ms: int, *, legacy: str = "v1",
                   method: str = "POST") -> dict[str, str]:
    """Every signature header HubSpot sends with a ``method`` request of ``body`` to ``url``: v3, and the
    ``legacy`` version (``v1`` for webhook subscriptions, ``v2`` for other requests)."""
    timestamp = str(timestamp_ms)
    older = signature_v1(client_secret, body) if legacy == "v1" else signature_v2(client_secret, method, url, body)
    return {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": signature_v3(client_secret, method, url, body, timestamp),
            "X-HubSpot-Signature-Version": legacy, "X-HubSpot-Signature": older}


def verify_v3(client_secret: str, method: str, uri: str, body: bytes, *, timestamp: str, signature: str,
              now_ms: int) -> bool:
    """Whether a v3 signature is right and its timestamp recent (what a receiver checks)."""
    try:
        fresh = 0 <= now_ms - int(timestamp) <= MAX_AGE_MS
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature_v3(client_secret, method, uri, body, timestamp), signature)
