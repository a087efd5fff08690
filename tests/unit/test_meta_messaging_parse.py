"""Messenger and Instagram webhooks: every event kind into canonical messages and statuses; the signature."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.channels.meta_messaging import parse, parse_payload, render, split_text
from connector.channels.meta_messaging_errors import classify, to_exception
from connector.channels.plugin import UnreachableError
from core.errors import AuthError, FatalError, RetryableError, SkippableError, WebhookRejectedError
from core.models import Option, Reply

PAGE, IG, PSID, IGSID = "104729412345678", "17841405822304914", "6543210987654321", "1133557799"
TS = 1763800000000


def _body(event: dict[str, Any], obj: str = "page") -> dict[str, Any]:
    account = PAGE if obj == "page" else IG
    sender = PSID if obj == "page" else IGSID
    return {"object": obj, "entry": [{"id": account, "time": TS, "messaging": [
        {"sender": {"id": sender}, "recipient": {"id": account}, "timestamp": TS, **event}]}]}


def _one(event: dict[str, Any], obj: str = "page") -> Any:
    parsed = parse_payload(_body(event, obj))
    assert len(parsed.messages) == 1, parsed
    return parsed.messages[0]


def test_text_on_messenger_and_instagram() -> None:
    message = _one({"message": {"mid": "m_1", "text": "Merhaba", "reply_to": {"mid": "m_0"}}})
    assert (message.channel, message.account, message.sender_id, message.kind, message.text, message.reply_to) == (
        "messenger", PAGE, PSID, "text", "Merhaba", "m_0")
    assert message.timestamp.timestamp() == TS / 1000 and message.conversation_key == f"messenger:{PAGE}:{PSID}"
    insta = _one({"message": {"mid": "m_2", "text": "Hi"}}, "instagram")
    assert (insta.channel, insta.account, insta.sender_id) == ("instagram", IG, IGSID)


def test_quick_reply_and_postback_are_choices() -> None:
    quick = _one({"message": {"mid": "m_1", "text": "Saç ekimi", "quick_reply": {"payload": "hair"}}})
    assert (quick.kind, quick.choice_id, quick.choice_title, quick.raw_type) == ("choice", "hair", "Saç ekimi",
                                                                                 "quick_reply")
    postback = _one({"postback": {"mid": "m_2", "title": "Evet", "payload": "yes"}})
    assert (postback.kind, postback.choice_id, postback.choice_title, postback.message_id) == (
        "choice", "yes", "Evet", "m_2")


def test_attachments_become_media_and_a_location_a_place() -> None:
    files = _one({"message": {"mid": "m_1", "attachments": [
        {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}},
        {"type": "file", "payload": {"url": "https://cdn.example/b.pdf"}},
        {"type": "audio", "payload": {"url": "https://cdn.example/c.mp4"}},
        {"type": "video", "payload": {"url": "https://cdn.example/d.mp4"}},
        {"type": "image", "payload": {"url": "https://cdn.example/s.png", "sticker_id": 369239263222822}}]}})
    assert files.kind == "media"
    assert [(m.kind, m.media_id) for m in files.media] == [
        ("image", "https://cdn.example/a.jpg"), ("document", "https://cdn.example/b.pdf"),
        ("audio", "https://cdn.example/c.mp4"), ("video", "https://cdn.example/d.mp4"),
        ("sticker", "https://cdn.example/s.png")]
    place = _one({"message": {"mid": "m_2", "attachments": [{"type": "location", "payload": {
        "coordinates": {"lat": 41.0082, "long": 28.9784}, "title": "Pinned Location"}}]}})
    assert place.kind == "location" and place.location.latitude == 41.0082 and place.location.longitude == 28.9784
    reel = _one({"message": {"mid": "m_3", "attachments": [{"type": "ig_reel", "payload": {"url": "x"}}]}},
                "instagram")
    assert (reel.kind, reel.raw_type) == ("unsupported", "ig_reel")


def test_an_m_me_link_becomes_the_start_payload() -> None:
    first = _one({"postback": {"mid": "m_1", "title": "Get Started", "payload": "GET_STARTED",
                               "referral": {"ref": "K7QX2M-de", "source": "SHORTLINK", "type": "OPEN_THREAD"}}})
    assert (first.kind, first.start_payload, first.referral) == ("start", "K7QX2M-de", None)
    again = _one({"referral": {"ref": "K7QX2M", "source": "SHORTLINK", "type": "OPEN_THREAD"}})
    assert (again.kind, again.start_payload, again.raw_type) == ("start", "K7QX2M", "referral")
    assert again.message_id == f"referral:{PSID}:{TS}"  # stable: a redelivery is recognised


def test_an_ad_becomes_the_referral_the_attribution_reads() -> None:
    ad = {"ref": "spring", "ad_id": "6045246247433", "source": "ADS", "type": "OPEN_THREAD",
          "ads_context_data": {"ad_title": "Hair transplant", "photo_url": "https://cdn.example/ad.jpg",
                               "post_id": "1_2"}}
    came_back = _one({"referral": ad})
    assert came_back.kind == "start" and came_back.start_payload == "spring"
    assert came_back.referral is not None
    assert (came_back.referral.source_id, came_back.referral.source_type, came_back.referral.headline,
            came_back.referral.image_url, came_back.referral.media_type) == (
        "6045246247433", "ad", "Hair transplant", "https://cdn.example/ad.jpg", "image")
    started = _one({"postback": {"mid": "m_9", "title": "Get Started", "payload": "GET_STARTED", "referral": ad}})
    assert started.kind == "start" and started.referral and started.referral.source_id == "6045246247433"
    wrote = _one({"message": {"mid": "m_3", "text": "Fiyat?", "referral": ad}}, "instagram")
    assert wrote.kind == "text" and wrote.referral and wrote.referral.source_id == "6045246247433"


def test_reactions_and_taking_one_back() -> None:
    reaction = _one({"reaction": {"mid": "m_ours", "action": "react", "reaction": "love", "emoji": "❤"}})
    assert (reaction.kind, reaction.reaction, reaction.reply_to) == ("reaction", "❤", "m_ours")
    parsed = parse_payload(_body({"reaction": {"mid": "m_ours", "action": "unreact"}}))
    assert not parsed.messages and parsed.ignored == 1


def test_deliveries_and_reads_are_statuses_never_messages() -> None:
    delivered = parse_payload(_body({"delivery": {"mids": ["m_a", "m_b"], "watermark": TS}}))
    assert [(s.channel, s.message_id, s.status, s.recipient) for s in delivered.statuses] == [
        ("messenger", "m_a", "delivered", PSID), ("messenger", "m_b", "delivered", PSID)]
    read = parse_payload(_body({"read": {"watermark": TS}}))
    assert [(s.message_id, s.status) for s in read.statuses] == [(f"watermark:{TS}", "read")]
    seen = parse_payload(_body({"read": {"mid": "m_c"}}, "instagram"))
    assert [(s.channel, s.message_id, s.status) for s in seen.statuses] == [("instagram", "m_c", "read")]
    assert not delivered.messages and not read.messages and not seen.messages


def test_echoes_deleted_messages_and_standby_are_ignored() -> None:
    body = _body({"message": {"mid": "m_1", "text": "from the Page", "is_echo": True, "app_id": 1}})
    body["entry"][0]["standby"] = [{"sender": {"id": PSID}}]
    parsed = parse_payload(body)
    assert not parsed.messages and parsed.ignored == 2
    deleted = parse_payload(_body({"message": {"mid": "m_1", "is_deleted": True}}, "instagram"))
    assert not deleted.messages and deleted.ignored == 1


def test_one_bad_event_is_dropped_alone() -> None:
    body = _body({"message": {"mid": "m_1", "text": "good"}})
    events = body["entry"][0]["messaging"]
    events.append({**events[0], "message": {"mid": "m_2", "text": 42}})         # a number as text
    events.append({**events[0], "timestamp": 1000, "message": {"mid": "m_3", "text": "1970"}})
    events.append({**events[0], "message": {"mid": "m_4", "text": "nul\x00"}})
    parsed = parse_payload(body)
    assert [m.text for m in parsed.messages] == ["good"] and parsed.skipped == 3


def test_a_body_that_is_not_a_messaging_webhook_is_refused() -> None:
    for body in ({"object": "whatsapp_business_account", "entry": []}, {"object": "page"}, [], "x"):
        with pytest.raises(WebhookRejectedError) as info:
            parse_payload(body)
        assert info.value.status == 400


# -- signatures: known answers computed apart (openssl dgst -sha256 -hmac SECRET) --------------------------
KAT_SECRET = "kat-meta-secret-9Zp"
KAT_VECTORS = [
    (b'{"object":"page","entry":[]}', "sha256=84ef897d3577fd26e713abd42fb58a604208d741906b8199df34aaccf6825957"),
    ('{"object":"instagram","entry":[{"id":"17841405822304914","time":1700000000000,"messaging":[{"sender":'
     '{"id":"1"},"recipient":{"id":"2"},"timestamp":1700000000000,"message":{"mid":"m_1","text":"Saç ekimi 👋"}}]}]}'
     .encode(), "sha256=8f0dfbf00dd799d73d8d0bb3cb0edd55a0d4d542e99d74f96cd02f732d43d017"),
]


@pytest.mark.parametrize(("raw", "header"), KAT_VECTORS)
def test_signature_known_answers(raw: bytes, header: str) -> None:
    parse(raw, {"X-Hub-Signature-256": header}, KAT_SECRET)
    parse(raw, {"x-hub-signature-256": header}, KAT_SECRET)  # header names are case-insensitive
    with pytest.raises(WebhookRejectedError) as wrong:
        parse(raw, {"X-Hub-Signature-256": header}, KAT_SECRET + "x")
    assert wrong.value.status == 403


def test_a_tampered_or_unsigned_body_is_refused() -> None:
    raw, header = KAT_VECTORS[1]
    tampered = raw.replace("Saç".encode(), b"Sac")
    with pytest.raises(WebhookRejectedError) as changed:
        parse(tampered, {"X-Hub-Signature-256": header}, KAT_SECRET)
    reserialised = json.dumps(json.loads(raw)).encode()  # the same JSON, other bytes
    with pytest.raises(WebhookRejectedError) as reencoded:
        parse(reserialised, {"X-Hub-Signature-256": header}, KAT_SECRET)
    with pytest.raises(WebhookRejectedError) as missing:
        parse(raw, {}, KAT_SECRET)
    assert (changed.value.status, reencoded.value.status, missing.value.status) == (403, 403, 401)


# -- rendering and the error table (pure) -------------------------------------------------------------------
def test_options_render_as_buttons_quick_replies_or_numbered_text() -> None:
    three = [Option(id=f"o{i}", title=f"Option {i}") for i in range(3)]
    assert render(Reply(text="Pick", options=three), "messenger")[0]["attachment"]["payload"]["template_type"] == \
        "button"
    nine = [Option(id=f"o{i}", title=f"Option {i}") for i in range(9)]
    quick = render(Reply(text="Pick", options=nine), "instagram")
    assert len(quick) == 1 and len(quick[0]["quick_replies"]) == 9 and quick[0]["text"] == "Pick"
    many = [Option(id=f"o{i}", title=f"Option {i}") for i in range(14)]
    numbered = render(Reply(text="Pick", options=many), "messenger")
    assert "quick_replies" not in numbered[0] and "14. Option 13" in numbered[0]["text"]
    long_title = [Option(id="a", title="A title longer than twenty")]
    assert "1. A title longer than twenty" in render(Reply(text="Pick", options=long_title), "messenger")[0]["text"]
    phone = render(Reply(text="Your number?", request_phone=True), "messenger")
    assert phone[0]["quick_replies"] == [{"content_type": "user_phone_number"}]


def test_long_text_is_split_where_it_fits_instagram_counting_bytes() -> None:
    text = ("Saç ekimi hakkında bilgi " * 100).strip()
    pieces = split_text(text, "instagram")
    assert len(pieces) > 1 and all(len(p.encode()) <= 1000 for p in pieces)
    assert " ".join(pieces) == text
    assert split_text("short", "messenger") == ["short"]


@pytest.mark.parametrize(("error", "status", "outcome", "exc"), [
    ({"code": 10, "error_subcode": 2018278}, 400, "window", SkippableError),
    ({"code": 10, "error_subcode": 2534022}, 400, "window", SkippableError),
    ({"code": 551, "error_subcode": 1545041}, 400, "unreachable", UnreachableError),
    ({"code": 100, "error_subcode": 2018001}, 400, "unreachable", UnreachableError),
    ({"code": 613}, 400, "retry", RetryableError),
    ({"code": 4}, 400, "retry", RetryableError),
    ({"code": 1200}, 500, "retry", RetryableError),
    ({"code": 190}, 400, "auth", AuthError),
    ({"code": 100}, 400, "give_up", FatalError),
    ({"code": 99999, "is_transient": True}, 400, "retry", RetryableError),
    ({}, 502, "retry", RetryableError),
])
def test_the_error_table(error: dict[str, Any], status: int, outcome: str, exc: type) -> None:
    assert classify(error, status).outcome == outcome
    raised = to_exception("messenger", error, status, "META_MESSAGING_PAGE_ACCESS_TOKEN")
    assert type(raised) is exc and raised.details["outcome"] == outcome
    assert classify(error, status).reason in str(raised)


# -- the plug-ins --------------------------------------------------------------------------------------------
def test_messenger_and_instagram_are_registered_plugins() -> None:
    from connector.channels.meta_messaging import MetaMessagingClient
    from connector.channels.meta_messaging_plugin import MetaMessagingPluginSettings
    from connector.channels.plugin import ChannelContext, Outcome, WebhookRequest, load
    from tests.conftest import make_settings

    messenger, instagram = load("messenger"), load("instagram")
    assert (messenger.network, instagram.network) == ("messenger", "instagram")
    settings = MetaMessagingPluginSettings(app_secret=KAT_SECRET, verify_token="verify-me",
                                           page_access_token="EAAx")
    ctx = ChannelContext(settings=settings, core=make_settings("unix:///x"))
    raw, header = KAT_VECTORS[1]
    verify = instagram.verifier(ctx)
    assert verify is not None
    verify(WebhookRequest("POST", "/webhooks/instagram", {"x-hub-signature-256": header}, {}, raw, "u"))
    with pytest.raises(WebhookRejectedError):
        verify(WebhookRequest("POST", "/webhooks/instagram", {"x-hub-signature-256": header}, {}, raw + b" ", "u"))
    assert [m.text for m in instagram.parse(json.loads(raw), ctx).messages] == ["Saç ekimi 👋"]
    with pytest.raises(WebhookRejectedError):  # an Instagram body on the Messenger route
        messenger.parse(json.loads(raw), ctx)
    [route] = messenger.routes()
    args = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    request = WebhookRequest("GET", route.path, {}, args, b"", "u")
    assert (route.path, route.handler(request, ctx)) == ("/webhooks/messenger", ("1158201444", 200, "text/plain"))
    wrong = WebhookRequest("GET", route.path, {}, {**args, "hub.verify_token": "no"}, b"", "u")
    assert route.handler(wrong, ctx)[1] == 403
    assert isinstance(messenger.client(ctx), MetaMessagingClient)
    assert messenger.errors.rule("10/2018278", 400).outcome is Outcome.WINDOW
    assert messenger.errors.rule("551", 400).outcome is Outcome.UNREACHABLE
