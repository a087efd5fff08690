"""WhatsApp webhooks → canonical messages: every kind, batches, statuses, opt-outs, bad parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.channels.whatsapp import parse_payload, render, sign, verify_challenge, verify_signature
from connector.errors import WebhookRejectedError
from connector.models import Option, Reply

BATCH = json.loads((Path(__file__).parents[1] / "data" / "whatsapp" / "batch.json").read_text(encoding="utf-8"))


def test_batch_yields_every_message_of_every_sender() -> None:
    parsed = parse_payload(BATCH)
    by_id = {m.message_id: m for m in parsed.messages}
    assert len(parsed.messages) == 14 and parsed.skipped == 1  # the one with a numeric id is dropped alone
    assert by_id["wamid.A1"].kind == "text" and by_id["wamid.A1"].text == "Merhaba"
    assert by_id["wamid.A1"].profile.name == "Ayşe Yılmaz" and by_id["wamid.A1"].sender_phone == "+905321112233"
    assert by_id["wamid.A2"].sender_id == "4915112345678" and by_id["wamid.A2"].profile.name == "Hans Müller"
    assert (by_id["wamid.A2"].kind, by_id["wamid.A2"].choice_id, by_id["wamid.A2"].raw_type) == (
        "choice", "hair", "button_reply")
    assert (by_id["wamid.A3"].choice_id, by_id["wamid.A3"].raw_type) == ("dental", "list_reply")
    assert (by_id["wamid.A4"].kind, by_id["wamid.A4"].choice_id, by_id["wamid.A4"].text) == ("choice", "yes", "Evet")
    loc = by_id["wamid.A5"].location
    assert loc is not None and (loc.latitude, loc.name) == (41.0082, "Klinik")
    shared = by_id["wamid.A6"].contacts[0]
    assert shared.name == "Mehmet Kaya" and shared.phones == ["+90 532 999 88 77"] and shared.emails == [
        "mehmet@example.com"]
    image = by_id["wamid.A7"]
    assert image.kind == "media" and image.media[0].kind == "image" and image.text == "röntgen"
    assert by_id["wamid.A8"].media[0].filename == "rapor.pdf"
    assert by_id["wamid.A9"].media[0].kind == "audio" and by_id["wamid.A10"].media[0].kind == "video"
    assert by_id["wamid.A11"].kind == "reaction" and by_id["wamid.A11"].reply_to == "wamid.OUT1"
    assert by_id["wamid.A12"].kind == "unsupported"
    assert {"code": 131051, "title": "Message type unknown"} in parsed.errors


def test_business_scoped_user_without_phone_is_keyed_by_user_id() -> None:
    message = next(m for m in parse_payload(BATCH).messages if m.message_id == "wamid.A14")
    assert message.sender_id == "TR.1234567890" and message.sender_phone is None
    assert message.sender_user_id == "TR.1234567890"
    assert message.conversation_key == "whatsapp:106540352242922:TR.1234567890"


def test_ad_referral_is_kept_whole() -> None:
    message = next(m for m in parse_payload(BATCH).messages if m.message_id == "wamid.A15")
    assert message.referral is not None
    assert message.referral.source_id == "120210000000001" and message.referral.ctwa_clid.startswith("ARAk")
    assert message.referral.headline == "Hair transplant Istanbul"


def test_statuses_and_opt_outs_are_not_patient_messages() -> None:
    parsed = parse_payload(BATCH)
    assert [(s.message_id, s.status, s.recipient) for s in parsed.statuses] == [
        ("wamid.OUT1", "delivered", "905321112233"), ("wamid.OUT2", "failed", "TR.1234567890")]
    assert parsed.statuses[1].errors[0]["code"] == 131026
    assert parsed.opt_outs == [("106540352242922", "4915112345678")]


@pytest.mark.parametrize("body", [[], "x", {"entry": "nope"}, {"object": "page"}])
def test_not_a_whatsapp_webhook(body: object) -> None:
    with pytest.raises(WebhookRejectedError) as info:
        parse_payload(body)
    assert info.value.status == 400


def test_wrong_types_inside_are_skipped_not_fatal() -> None:
    body = {"entry": [{"changes": [{"field": "messages", "value": {"metadata": [], "messages": {"a": 1}}}, 7]}, None]}
    parsed = parse_payload(body)
    assert parsed.messages == [] and parsed.statuses == []


def test_signature() -> None:
    raw = b'{"entry": []}'
    verify_signature(raw, sign(raw, "s3cret"), "s3cret")
    with pytest.raises(WebhookRejectedError) as missing:
        verify_signature(raw, None, "s3cret")
    with pytest.raises(WebhookRejectedError) as wrong:
        verify_signature(raw + b" ", sign(raw, "s3cret"), "s3cret")
    assert (missing.value.status, wrong.value.status) == (401, 403)


def test_challenge() -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert verify_challenge(ok, "tok") == ("1158201444", 200)
    assert verify_challenge({**ok, "hub.verify_token": "bad"}, "tok")[1] == 403
    assert verify_challenge({**ok, "hub.mode": "unsubscribe"}, "tok")[1] == 400


def _options(n: int, title: str = "Option") -> list[Option]:
    return [Option(id=f"o{i}", title=f"{title} {i}") for i in range(n)]


def test_render_falls_back_from_buttons_to_list_to_numbered_text() -> None:
    assert render(Reply(text="Hi"))[0]["type"] == "text"
    buttons = render(Reply(text="Pick", options=_options(3)))[0]["interactive"]
    assert buttons["type"] == "button" and len(buttons["action"]["buttons"]) == 3
    # four options: too many for buttons
    listed = render(Reply(text="Pick", options=_options(4), list_button="Treatments"))[0]["interactive"]
    assert listed["type"] == "list" and len(listed["action"]["sections"][0]["rows"]) == 4
    # three options, one title too long for a button (> 20) but fine for a list row (≤ 24)
    long_title = [Option(id="a", title="Saç ekimi ve sakal ekimi"), *_options(2)]
    assert render(Reply(text="Pick", options=long_title))[0]["interactive"]["type"] == "list"
    # eleven options: too many for a list
    numbered = render(Reply(text="Pick", options=_options(11)))[0]
    assert numbered["type"] == "text" and "11. Option 10" in numbered["text"]["body"]
