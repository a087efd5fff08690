"""LINE webhooks: the signature (known-answer vectors), every event kind read into canonical messages, and
bad events dropped alone. Bodies are LINE's shapes, checked against LINE's ``CallbackRequest``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.channels.line import parse, signature, verify_signature
from connector.channels.line_errors import as_error, classify
from connector.channels.plugin import UnreachableError
from core.errors import AuthError, FatalError, RetryableError, WebhookRejectedError
from emulators._line_checks import request_errors, webhook_errors

BOT = "U" + "5" * 32
USER = "U4af4980629a1b2c3d4e5f6a7b8c9d0e1"
NOW_MS = 1_790_000_000_000


def _event(kind: str, n: int = 1, **content: Any) -> dict[str, Any]:
    event = {"type": kind, "mode": "active", "timestamp": NOW_MS, "webhookEventId": f"01HZEVENT{n:017d}",
             "deliveryContext": {"isRedelivery": False}, "source": {"type": "user", "userId": USER}, **content}
    if kind in ("message", "follow", "postback"):
        event["replyToken"] = f"reply-token-{n}"
    return event


def _message(n: int, kind: str, **content: Any) -> dict[str, Any]:
    message = {"id": str(500000 + n), "type": kind, **content}
    if kind in ("text", "image", "video", "sticker"):
        message["quoteToken"] = f"q{n}"
    message["markAsReadToken"] = f"read-{n}"
    return _event("message", n, message=message)


def _body(*events: dict[str, Any]) -> dict[str, Any]:
    body = {"destination": BOT, "events": list(events)}
    assert webhook_errors(body) == [], webhook_errors(body)  # LINE would send it
    return body


# -- signature ----------------------------------------------------------------------------------
# Vectors computed with `printf '<body>' | openssl dgst -sha256 -hmac '<secret>' -binary | base64`; the first
# is the one in LINE's Python SDK's own tests (secret "channel_secret", body "bodybodybodybody").
VECTORS = [
    (b"bodybodybodybody", "channel_secret", "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k="),
    (b'{"destination":"U1","events":[]}', "test-line-secret", "p/IsvAOOy1jh+J3s9WMXMAMj5B4H9Qgg5+3Sj3mLVpA="),
]


@pytest.mark.parametrize(("raw", "secret", "expected"), VECTORS)
def test_signature_known_answers(raw: bytes, secret: str, expected: str) -> None:
    assert signature(raw, secret) == expected
    verify_signature(raw, expected, secret)


def test_a_tampered_body_a_wrong_secret_or_no_header_is_refused() -> None:
    raw, secret, good = VECTORS[0]
    with pytest.raises(WebhookRejectedError) as tampered:
        verify_signature(raw + b" ", good, secret)
    assert tampered.value.status == 403
    with pytest.raises(WebhookRejectedError):
        verify_signature(raw, good, "another_secret")
    with pytest.raises(WebhookRejectedError) as missing:
        verify_signature(raw, None, secret)
    assert missing.value.status == 401


# -- events ---------------------------------------------------------------------------------------
def test_every_message_kind() -> None:
    parsed = parse(_body(
        _message(1, "text", text="Merhaba"),
        _message(2, "image", contentProvider={"type": "line"}),
        _message(3, "video", contentProvider={"type": "line"}, duration=2000),
        _message(4, "audio", contentProvider={"type": "line"}, duration=1500),
        _message(5, "file", fileName="report.pdf", fileSize=2048),
        _message(6, "location", title="Clinic", address="1 Main St", latitude=35.68, longitude=139.76),
        _message(7, "sticker", packageId="446", stickerId="1988", stickerResourceType="STATIC"),
    ))
    kinds = [(m.kind, m.raw_type) for m in parsed.messages]
    assert kinds == [("text", "text"), ("media", "image"), ("media", "video"), ("media", "audio"),
                     ("media", "file"), ("location", "location"), ("media", "sticker")]
    text, image, _, _, document, place, sticker = parsed.messages
    assert text.channel == "line" and text.account == BOT and text.sender_id == USER and text.text == "Merhaba"
    assert text.message_id == "01HZEVENT00000000000000001" and text.chat_message_id == "500001"
    assert text.callback_id == "reply-token-1" and text.timestamp.year == 2026
    assert image.media[0].kind == "image" and image.media[0].media_id == "500002"
    assert document.media[0].kind == "document" and document.media[0].filename == "report.pdf"
    assert place.location is not None and place.location.name == "Clinic" and place.location.latitude == 35.68
    assert sticker.media[0].kind == "sticker" and sticker.media[0].media_id == "446/1988"
    assert parsed.read_tokens[text.message_id] == "read-1"
    assert parsed.reply_tokens[text.message_id][0] == "reply-token-1"
    assert parsed.skipped == parsed.ignored == 0


def test_postbacks_are_choices_and_a_date_picker_gives_what_was_picked() -> None:
    parsed = parse(_body(_event("postback", 1, postback={"data": "implant"}),
                         _event("postback", 2, postback={"data": "when", "params": {"date": "2026-12-01"}})))
    button, picker = parsed.messages
    assert (button.kind, button.choice_id, button.text) == ("choice", "implant", "implant")
    assert (picker.choice_id, picker.text) == ("when", "2026-12-01")


def test_start_payloads_follow_unfollow() -> None:
    parsed = parse(_body(
        _message(1, "text", text="/start spring24"),
        _event("follow", 2, follow={"isUnblocked": False}),
        _event("follow", 3, follow={"isUnblocked": True}),
        _event("unfollow", 4),
    ))
    campaign, new_friend, unblocked = parsed.messages
    assert (campaign.kind, campaign.start_payload) == ("start", "spring24")
    assert (new_friend.kind, new_friend.start_payload, new_friend.raw_type) == ("start", None, "follow")
    assert unblocked.kind == "start"
    assert parsed.opt_ins == [(BOT, USER)] and parsed.opt_outs == [(BOT, USER)]


def test_redeliveries_keep_their_event_id_for_the_relays_de_duplication() -> None:
    event = _message(1, "text", text="hi")
    again = {**event, "deliveryContext": {"isRedelivery": True}}
    first, second = parse(_body(event)), parse(_body(again))
    assert first.messages[0].message_id == second.messages[0].message_id
    assert second.redeliveries == 1


def test_groups_other_events_and_bad_events_are_dropped_alone() -> None:
    group = {**_message(1, "text", text="hi all"), "source": {"type": "group", "groupId": "C" + "1" * 32,
                                                                "userId": USER}}
    unsend = {**_event("unsend", 2), "unsend": {"messageId": "500001"}}
    good = _message(3, "text", text="still read")
    bad = _message(4, "text", text="x")
    bad["timestamp"] = "yesterday"  # not LINE's milliseconds
    nul = _message(5, "text", text="a\x00b")
    body = {"destination": BOT, "events": [group, unsend, good, bad, nul]}
    parsed = parse(body)
    assert [m.text for m in parsed.messages] == ["still read"]
    assert parsed.ignored == 2 and parsed.skipped == 2
    assert len(parse(body, ignore_groups=False).messages) == 2


@pytest.mark.parametrize("body", [[], {"events": []}, {"destination": BOT}, {"destination": "", "events": []}])
def test_a_body_that_is_no_line_webhook_is_refused(body: Any) -> None:
    with pytest.raises(WebhookRejectedError) as info:
        parse(body)
    assert info.value.status == 400


def test_the_empty_check_body_is_accepted() -> None:
    parsed = parse(json.loads(json.dumps({"destination": BOT, "events": []})))
    assert parsed.messages == [] and parsed.skipped == 0


# -- the error table --------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "message", "outcome", "error"), [
    (400, "Invalid reply token", "reply_token", FatalError),
    (400, "The property, 'to', in the request body is invalid (line: -, column: -)", "unreachable", UnreachableError),
    (400, "The request body has 1 error(s)", "give_up", FatalError),
    (401, "Authentication failed. Confirm that the access token in the authorization header is valid.", "give_up",
     AuthError),
    (403, "Access to this API is not available for your account", "give_up", FatalError),
    (429, "The API rate limit has been exceeded. Try again later.", "retry", RetryableError),
    (429, "You have reached your monthly limit.", "give_up", FatalError),
    (500, "An error occurred in the internal server.", "retry", RetryableError),
    (409, "The retry key is already accepted", "already_sent", FatalError),
])
def test_error_table(status: int, message: str, outcome: str, error: type) -> None:
    body = json.dumps({"message": message, "details": [{"message": "May not be empty", "property": "messages[0].text"}]})
    found = classify(status, body.encode(), {"Retry-After": "7"})
    assert found.outcome == outcome and found.reason and found.properties == ("messages[0].text",)
    mapped = as_error(found)
    assert type(mapped) is error
    if status == 429 and outcome == "retry":
        assert mapped.retry_after == 7.0  # type: ignore[attr-defined]
    if status == 401:
        assert mapped.setting == "LINE_CHANNEL_ACCESS_TOKEN"  # type: ignore[attr-defined]


def test_the_request_checks_follow_lines_description() -> None:
    assert request_errors("PushMessageRequest", {"to": USER, "messages": [{"type": "text", "text": "hi"}]}) == []
    assert request_errors("PushMessageRequest", {"to": USER, "messages": [{"type": "text"}]})
    assert request_errors("PushMessageRequest", {"to": USER, "messages": [{"type": "text", "text": "x"}] * 6})
    assert request_errors("ReplyMessageRequest", {"messages": [{"type": "text", "text": "x"}]})
    assert request_errors("PushMessageRequest", {"to": USER, "messages": [
        {"type": "image", "originalContentUrl": "http://insecure/a.jpg", "previewImageUrl": "http://insecure/a.jpg"}]})
    assert request_errors("PushMessageRequest", {"to": USER, "messages": [{"type": "text", "text": "x", "quickReply": {
        "items": [{"type": "action", "action": {"type": "postback", "label": "L", "data": "d"}}] * 14}}]})


def test_lines_descriptions_are_the_vendors_files_with_their_licence() -> None:
    import hashlib
    import re

    from emulators.specs import spec_path, vendor_specs_dir

    sources = (vendor_specs_dir() / "SOURCES.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(line/[^`]+)` \|.*\| ([0-9a-f]{16}) \|$", sources, re.M))
    assert set(rows) == {"line/messaging-api.yml", "line/webhook.yml"}
    for relative, digest in rows.items():
        assert hashlib.sha256(spec_path(relative).read_bytes()).hexdigest()[:16] == digest, relative
    assert "Apache License" in spec_path("line/LICENSE").read_text(encoding="utf-8")
