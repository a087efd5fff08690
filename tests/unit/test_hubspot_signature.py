"""HubSpot's v3 request signature, checked by the relay's :mod:`adapters.hubspot.signature`.

The known answer is the v3 example of HubSpot's own Python client's tests (``hubspot-api-client``,
``tests/spec/utils/test_signature.py``): client secret ``yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy``, ``POST``,
``https://www.example.com/webhook_uri``, body ``{'example_field':'example_value'}``, timestamp ``15000000``.
Other expected signatures are computed here by hand from the documented algorithm (HMAC-SHA256 over
method + URI + body + timestamp, base64), never with the module under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from adapters.hubspot.signature import signed_uri, verify
from core.errors import WebhookRejectedError

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://www.example.com/webhook_uri"
BODY = b"{'example_field':'example_value'}"
STAMP = "15000000"
KNOWN = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
#: the request's time, a second after it was signed (the timestamp is in milliseconds)
NOW = 15000000 / 1000 + 1


def by_hand(method: str, uri: str, body: bytes, stamp: str, secret: str = SECRET) -> str:
    source = method.encode() + uri.encode() + body + stamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def headers(signature: str, stamp: str = STAMP) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}


def test_hubspots_own_example_passes() -> None:
    assert by_hand("POST", URL, BODY, STAMP) == KNOWN  # the vector is what the documented algorithm gives
    verify(SECRET, method="POST", url=URL, headers=headers(KNOWN), body=BODY, now=NOW)


def test_header_names_are_matched_whatever_their_case() -> None:
    verify(SECRET, method="POST", url=URL, headers={"x-hubspot-signature-v3": KNOWN,
                                                    "x-hubspot-request-timestamp": STAMP}, body=BODY, now=NOW)


@pytest.mark.parametrize(("change", "value"), [
    ("body", b"{'example_field':'other_value'}"), ("url", URL + "?x=1"), ("method", "PUT"), ("secret", "wrong-secret"),
])
def test_any_change_to_what_was_signed_is_refused(change: str, value: object) -> None:
    args: dict[str, object] = {"method": "POST", "url": URL, "body": BODY}
    secret = SECRET
    if change == "secret":
        secret = str(value)
    else:
        args[change] = value
    with pytest.raises(WebhookRejectedError) as caught:
        verify(secret, headers=headers(KNOWN), now=NOW, **args)  # type: ignore[arg-type]
    assert caught.value.status == 401 and "does not match" in caught.value.message


def test_a_request_older_than_five_minutes_is_refused_even_if_well_signed() -> None:
    stamp = "1700000000000"
    signature = by_hand("POST", URL, BODY, stamp)
    verify(SECRET, method="POST", url=URL, headers=headers(signature, stamp), body=BODY, now=1700000000 + 299)
    with pytest.raises(WebhookRejectedError) as caught:
        verify(SECRET, method="POST", url=URL, headers=headers(signature, stamp), body=BODY, now=1700000000 + 301)
    assert caught.value.status == 401 and "too old" in caught.value.message


@pytest.mark.parametrize("missing", ["X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"])
def test_a_missing_header_is_refused(missing: str) -> None:
    given = headers(KNOWN)
    del given[missing]
    with pytest.raises(WebhookRejectedError) as caught:
        verify(SECRET, method="POST", url=URL, headers=given, body=BODY, now=NOW)
    assert caught.value.status == 401


def test_a_timestamp_that_is_not_milliseconds_is_refused() -> None:
    with pytest.raises(WebhookRejectedError):
        verify(SECRET, method="POST", url=URL, headers=headers(KNOWN, "yesterday"), body=BODY, now=NOW)


def test_without_a_client_secret_nothing_is_accepted() -> None:
    with pytest.raises(WebhookRejectedError) as caught:
        verify("", method="POST", url=URL, headers=headers(KNOWN), body=BODY, now=NOW)
    assert "HUBSPOT_CLIENT_SECRET" in caught.value.message


def test_the_uri_is_signed_with_the_documented_characters_decoded() -> None:
    # HubSpot's guide: decode %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B before signing; leave the rest
    sent = "https://relay.example/crm/hubspot/webhooks?portal%3A1=%40a%2Cb%21&q=%20x%26y"
    decoded = "https://relay.example/crm/hubspot/webhooks?portal:1=@a,b!&q=%20x%26y"
    assert signed_uri(sent) == decoded
    signature = by_hand("POST", decoded, BODY, STAMP)
    verify(SECRET, method="POST", url=sent, headers=headers(signature), body=BODY, now=NOW)
    with pytest.raises(WebhookRejectedError):  # signed over the encoded form: not what HubSpot does
        verify(SECRET, method="POST", url=sent, headers=headers(by_hand("POST", sent, BODY, STAMP)), body=BODY,
               now=NOW)
