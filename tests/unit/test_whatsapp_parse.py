"""WhatsApp webhooks → canonical messages: every kind, batches, statuses, opt-outs, bad parts, signatures."""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.channels import whatsapp
from connector.channels.whatsapp import parse_payload, render, sign, verify_challenge, verify_signature
from core.errors import WebhookRejectedError
from core.models import InboundMessage, Option, Reply

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


# -- typed parsing: documented payloads, and one bad part dropped alone ----------------------------
DATA = Path(__file__).parents[1] / "data" / "whatsapp"
DOCUMENTED = json.loads((DATA / "documented.json").read_text(encoding="utf-8"))


def _only(body: dict[str, Any]) -> InboundMessage:
    parsed = parse_payload(body)
    assert parsed.skipped == 0 and len(parsed.messages) == 1, parsed
    return parsed.messages[0]


def test_every_documented_message_kind_becomes_its_canonical_message() -> None:
    text = _only(DOCUMENTED["text"])
    assert (text.kind, text.text, text.sender_id, text.account) == (
        "text", "Does it come in another color?", "16505551234", "106540352242922")
    assert text.profile.name == "Sheena Nelson" and text.sender_phone == "+16505551234"
    assert text.timestamp == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)
    inquiry = _only(DOCUMENTED["text_product_inquiry"])
    assert inquiry.reply_to == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA"
    ad = _only(DOCUMENTED["text_from_ad"])
    assert ad.referral is not None and (ad.referral.source_id, ad.referral.source_type) == ("120226305854810726", "ad")
    reaction = _only(DOCUMENTED["reaction"])
    assert (reaction.kind, reaction.reaction) == ("reaction", "👍") and reaction.reply_to.startswith("wamid.")
    image = _only(DOCUMENTED["image"])
    assert (image.kind, image.text, image.media[0].kind, image.media[0].media_id) == (
        "media", "Taj Mahal", "image", "1003383421387256")
    document = _only(DOCUMENTED["document"])
    assert (document.media[0].filename, document.media[0].mime_type) == ("lucky-shrub-invoice.pdf", "application/pdf")
    assert _only(DOCUMENTED["audio"]).media[0].kind == "audio"
    place = _only(DOCUMENTED["location"]).location
    assert place is not None and (place.name, place.latitude) == ("Philz Coffee", 37.44221496582)
    pin = _only(DOCUMENTED["location_pin"]).location
    assert pin is not None and pin.name is None and pin.longitude == -122.16165924072
    card = _only(DOCUMENTED["contacts"]).contacts[0]
    assert (card.name, card.phones) == ("Lucía Gómez", ["+1 (983) 555-2319"])
    assert _only(DOCUMENTED["unsupported"]).kind == "unsupported"
    button = _only(DOCUMENTED["button"])
    assert (button.kind, button.choice_id, button.text) == ("choice", "Unsubscribe", "Unsubscribe")
    row = _only(DOCUMENTED["list_reply"])
    assert (row.choice_id, row.choice_title, row.raw_type) == ("priority_express", "Priority Mail Express",
                                                               "list_reply")
    assert row.reply_to == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJGMzEyNzhENTZDMzNGODlDRDgA"
    pressed = _only(DOCUMENTED["button_reply"])
    assert (pressed.choice_id, pressed.raw_type) == ("cancel-button", "button_reply")
    scoped = _only(DOCUMENTED["text_business_scoped_user"])
    assert (scoped.sender_id, scoped.sender_phone, scoped.sender_user_id) == (
        "US.13491208655302741918", None, "US.13491208655302741918")


def test_documented_statuses_and_preferences() -> None:
    sent = parse_payload(DOCUMENTED["status_sent"])
    assert [(s.message_id, s.status, s.recipient) for s in sent.statuses] == [
        ("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NzEzRjlEMTQ2QkQyNkIzODgA", "sent", "16505551234")]
    failed = parse_payload(DOCUMENTED["status_failed"]).statuses[0]
    assert failed.status == "failed" and failed.errors[0]["code"] == 131047
    assert parse_payload(DOCUMENTED["user_preferences_stop"]).opt_outs == [("106540352242922", "16505551234")]


def test_a_bad_message_in_a_batch_is_dropped_alone_and_logged_without_patient_data(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.loads((DATA / "batch_with_bad_message.json").read_text(encoding="utf-8"))
    parsed = parse_payload(body)
    assert parsed.skipped == 1
    assert [(m.sender_id, m.kind) for m in parsed.messages] == [
        ("16505551234", "text"), ("16505551234", "choice"), ("4915112345678", "media")]
    (line,) = [r for r in caplog.records if r.getMessage() == "webhook part dropped"]
    assert line.part == "message" and line.problems == ["text.body: string_type"]  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    for patient_data in ("4915112345678", "16505551234", "Hans", "Müller", "Sheena", "color", "Taj Mahal"):
        assert patient_data not in logged, patient_data


def _text_message(**changes: Any) -> dict[str, Any]:
    neighbour = {"from": "905321112233", "id": "wamid.T2", "timestamp": "1763800000", "type": "text",
                 "text": {"body": "valid neighbour"}}
    message = {**neighbour, "id": "wamid.T1", "text": {"body": "Merhaba"}, **changes}
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Ayşe"}, "wa_id": "905321112233"}],
        "messages": [message, neighbour]}}]}]}


@pytest.mark.parametrize(("changes", "fault"), [
    ({"text": {"body": 42}}, "text.body: string_type"),
    ({"text": {"body": "gizli\x00metin"}}, "text.body: Value error, text holds a NUL character"),
    ({"text": {"body": "yarım \ud800 karakter"}}, "text.body: Value error, text holds an unpaired surrogate"),
    ({"text": "Merhaba"}, "text: model_type"),
    ({"timestamp": "99999999999"}, "timestamp: Value error, timestamp outside any plausible range"),
    ({"timestamp": "946684800"}, "timestamp: Value error, timestamp outside any plausible range"),  # the year 2000
    ({"timestamp": "1763800000.5"}, "timestamp: Value error, a Unix time in seconds expected"),
    ({"id": 42}, "id: string_type"),
    ({"type": "image"}, "Value error, the content named by type is missing"),
    ({"from": None}, "Value error, a message names its sender (from or from_user_id)"),
    ({"type": "location", "location": {"latitude": "41.0", "longitude": 28.97}}, "location.latitude: float_type"),
    ({"type": "location", "location": {"latitude": 141.0, "longitude": 28.97}}, "location.latitude: less_than_equal"),
])
def test_an_invalid_message_is_dropped_and_its_neighbour_kept(changes: dict[str, Any], fault: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    parsed = parse_payload(_text_message(**changes))
    assert [m.text for m in parsed.messages] == ["valid neighbour"] and parsed.skipped == 1
    problems = [p for r in caplog.records for p in getattr(r, "problems", [])]
    assert any(p.endswith(fault) for p in problems), problems
    assert "gizli" not in caplog.text and "Ayşe" not in caplog.text and "905321112233" not in caplog.text


def test_unknown_fields_are_tolerated() -> None:
    body = _text_message(new_vendor_field={"anything": [1, 2]}, text={"body": "Merhaba", "preview": True})
    assert [m.text for m in parse_payload(body).messages] == ["Merhaba", "valid neighbour"]


# -- signatures: known answers, computed independently (openssl dgst -sha256 -hmac SECRET) ------------
KAT_SECRET = "kat-app-secret-7Q2x"
KAT_VECTORS = [
    # body bytes, the X-Hub-Signature-256 Meta would send
    (b'{"object":"whatsapp_business_account","entry":[]}',
     "sha256=6e89b9f6d1ca5c8f2e4dd92f9fc24030814b0e943872357920c83d3f64eb3504"),
    # UTF-8 beyond ASCII (ç, ı, an emoji): the HMAC runs over these bytes, not over characters
    ('{"entry":[{"changes":[{"value":{"messages":[{"text":{"body":"Saç ekimi için fiyat alabilir miyim? 👋"}}]}}]}]}'
     .encode(), "sha256=38d3a84bd0905fa1f7ddb7d6fd6f2bc92058292de12921df15f8ba2b5d6f3a50"),
    # spacing and an escaped character: decoding and encoding the JSON again would change these bytes
    (b'{"text": {"body": "Ay\\u015fe"},   "n": 1.0}',
     "sha256=f5f0428fa15ae2e6c78e444c53c43ef6d2a8a51ce1a713e9623cba2edb511970"),
]


@pytest.mark.parametrize(("raw", "header"), KAT_VECTORS)
def test_signature_known_answers(raw: bytes, header: str) -> None:
    verify_signature(raw, header, KAT_SECRET)
    with pytest.raises(WebhookRejectedError) as wrong_secret:
        verify_signature(raw, header, KAT_SECRET + "x")
    with pytest.raises(WebhookRejectedError) as flipped:
        verify_signature(raw, header[:-1] + ("0" if header[-1] != "0" else "1"), KAT_SECRET)
    assert wrong_secret.value.status == flipped.value.status == 403


def test_a_second_known_answer_for_another_secret() -> None:
    raw = b'{"object":"whatsapp_business_account","entry":[]}'
    verify_signature(raw, "sha256=b912dcec892c04dce937b08e4d19d560756e6da04fa10c09b099ca89d81c18d6", "another secret")
    verify_signature(b"Hello, World!", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                     "It's a Secret to Everybody")


def test_the_signature_covers_the_raw_bytes_not_the_json() -> None:
    raw, header = KAT_VECTORS[2]
    reserialised = json.dumps(json.loads(raw)).encode()
    assert reserialised != raw and json.loads(reserialised) == json.loads(raw)
    with pytest.raises(WebhookRejectedError) as info:
        verify_signature(reserialised, header, KAT_SECRET)
    assert info.value.status == 403
    non_ascii, non_ascii_header = KAT_VECTORS[1]
    with pytest.raises(WebhookRejectedError):  # the same text, its non-ASCII characters escaped
        verify_signature(json.dumps(json.loads(non_ascii), separators=(",", ":")).encode(), non_ascii_header,
                         KAT_SECRET)


def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(whatsapp.hmac, "compare_digest", spy)
    raw, header = KAT_VECTORS[0]
    verify_signature(raw, header, KAT_SECRET)
    assert compared == [(header.encode(), header.encode())]
    with pytest.raises(WebhookRejectedError):
        verify_signature(raw, "sha256=" + "0" * 64, KAT_SECRET)
    assert len(compared) == 2 and compared[1][1] == header.encode()
