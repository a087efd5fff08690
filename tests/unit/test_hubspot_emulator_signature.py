"""The HubSpot emulator signs its requests as HubSpot's "Validating requests" documentation says.

v1 and v2 are held to the documentation's own worked examples. The documentation gives no worked example
for v3, so the expected values are computed here, by hand, from the documented recipe (base64 of the
HMAC-SHA256, under the client secret, of method + URI + body + timestamp, with the listed URL escapes
decoded in the URI).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from emulators.hubspot.signature import signature_v1, signature_v2, signature_v3, signed_headers, verify_v3

DOCS_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DOCS_BODY = (b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
             b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
             b'"changeFlag":"NEW","appId":54321}]')


def test_v1_matches_the_documented_example() -> None:
    assert signature_v1(DOCS_SECRET, DOCS_BODY) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"


def test_v2_matches_the_documented_example() -> None:
    assert signature_v2(DOCS_SECRET, "GET", "https://www.example.com/webhook_uri", b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e")


def test_v3_is_the_documented_hmac() -> None:
    secret, body, stamp = "client-secret-1", b'{"type":"OUTGOING_CHANNEL_MESSAGE_CREATED"}', "1767225600000"
    uri = "https://relay.example/webhooks/hubspot?channel=1"
    expected = base64.b64encode(hmac.new(secret.encode(), b"POST" + uri.encode() + body + stamp.encode(),
                                         hashlib.sha256).digest()).decode()
    assert signature_v3(secret, "POST", uri, body, stamp) == expected
    assert signature_v3(secret, "POST", uri, body + b" ", stamp) != expected
    assert signature_v3("another-secret", "POST", uri, body, stamp) != expected


def test_v3_decodes_only_the_listed_escapes_in_the_uri() -> None:
    secret, body, stamp = "s", b"[]", "1767225600000"
    sent = "https://relay.example/a%3Ab%2fc?who=%40me%2C%20you"
    as_signed = "https://relay.example/a:b/c?who=@me,%20you"  # %20 is not in the documented list
    expected = base64.b64encode(hmac.new(b"s", b"POST" + as_signed.encode() + body + stamp.encode(),
                                         hashlib.sha256).digest()).decode()
    assert signature_v3(secret, "POST", sent, body, stamp) == expected


def test_headers_carry_v3_and_the_older_version() -> None:
    headers = signed_headers("s", "https://relay.example/hook", b"[]", 1767225600000, legacy="v1")
    assert headers["X-HubSpot-Request-Timestamp"] == "1767225600000"
    assert headers["X-HubSpot-Signature-v3"] == signature_v3("s", "POST", "https://relay.example/hook", b"[]",
                                                             "1767225600000")
    assert (headers["X-HubSpot-Signature-Version"], headers["X-HubSpot-Signature"]) == ("v1", signature_v1("s", b"[]"))
    v2 = signed_headers("s", "https://relay.example/hook", b"[]", 1767225600000, legacy="v2")
    assert v2["X-HubSpot-Signature"] == signature_v2("s", "POST", "https://relay.example/hook", b"[]")


def test_a_stale_or_wrong_v3_signature_is_refused() -> None:
    uri, body, stamp = "https://relay.example/hook", b"[]", "1767225600000"
    good = signature_v3("s", "POST", uri, body, stamp)
    assert verify_v3("s", "POST", uri, body, timestamp=stamp, signature=good, now_ms=1767225600000 + 299_000)
    assert not verify_v3("s", "POST", uri, body, timestamp=stamp, signature=good, now_ms=1767225600000 + 301_000)
    assert not verify_v3("s", "POST", uri, b"[1]", timestamp=stamp, signature=good, now_ms=1767225600000)
    assert not verify_v3("s", "POST", uri, body, timestamp="soon", signature=good, now_ms=1767225600000)
