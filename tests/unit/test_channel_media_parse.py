"""Files and delivery tracking in the channels' pure parts: parsing what a patient's file message and a
status carry, choosing how an agent's attachment goes, and the checks a downloaded file must pass."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from connector.channels.telegram import parse_update
from connector.channels.telegram_media import file_name_and_type, plan_file
from connector.channels.whatsapp import parse_payload, render, template_text
from connector.channels.whatsapp_media import media_type, sha256_matches, with_attachments
from core.errors import FatalError
from core.models import Attachment, Option, Reply
from emulators._checks import telegram_update_errors, whatsapp_webhook_errors

USER = {"id": 555001, "is_bot": False, "first_name": "Мария"}


def _telegram(**content: Any) -> dict[str, Any]:
    return {"update_id": 1, "message": {"message_id": 7, "from": USER, "chat": {"id": 555001, "type": "private"},
                                        "date": 1763800000, **content}}


@pytest.mark.parametrize(("content", "kind", "raw_type"), [
    ({"voice": {"file_id": "v1", "file_unique_id": "u1", "duration": 4, "mime_type": "audio/ogg"}}, "voice", "voice"),
    ({"audio": {"file_id": "a1", "file_unique_id": "u2", "duration": 180, "file_name": "kayıt.mp3",
                "mime_type": "audio/mpeg"}, "caption": "dinleyin"}, "audio", "audio"),
    ({"video": {"file_id": "m1", "file_unique_id": "u3", "width": 640, "height": 360, "duration": 9,
                "mime_type": "video/mp4"}}, "video", "video"),
    ({"video_note": {"file_id": "n1", "file_unique_id": "u4", "length": 240, "duration": 5}}, "video", "video_note"),
])
def test_telegram_voice_audio_video_and_video_notes_are_media(content: dict[str, Any], kind: str,
                                                              raw_type: str) -> None:
    update = _telegram(**content)
    assert telegram_update_errors(update) == []  # what the Bot API sends a bot
    (message,) = parse_update(update, "1").messages
    (media,) = message.media
    assert (message.kind, message.raw_type, media.kind) == ("media", raw_type, kind)
    assert media.media_id == next(iter(content.values()))["file_id"]
    assert message.text == content.get("caption")


def test_a_whatsapp_status_keeps_the_tracking_value_and_the_whole_error() -> None:
    error = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
             "error_data": {"details": "Message Undeliverable."},
             "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "905320000000", "phone_number_id": "1"},
        "statuses": [{"id": "wamid.A", "status": "failed", "timestamp": "1763800000", "recipient_id": "905321112233",
                      "biz_opaque_callback_data": "agent-reply:1", "errors": [error]},
                     {"id": "wamid.B", "status": "sent", "timestamp": "1763800000", "recipient_id": "905321112233"}],
    }}]}]}
    assert whatsapp_webhook_errors(body) == []
    failed, sent = parse_payload(body).statuses
    assert (failed.tracking, failed.errors) == ("agent-reply:1", [error])
    assert (sent.tracking, sent.errors) == (None, [])


def test_whatsapp_caption_rules() -> None:
    image = Attachment(url="https://f.example/a", mime_type="image/jpeg")
    assert with_attachments(Reply(text="ek", attachments=[image]), []) == [
        {"type": "image", "image": {"link": "https://f.example/a", "caption": "ek"}}]
    with_options = Reply(text="Uygun mu?", options=[Option(id="y", title="Evet")], attachments=[image])
    messages = with_attachments(with_options, render(with_options))
    assert [m["type"] for m in messages] == ["interactive", "image"] and "caption" not in messages[1]["image"]
    voice = Attachment(url="https://f.example/n.ogg")
    assert [m["type"] for m in with_attachments(Reply(text="dinleyin", attachments=[voice]),
                                                render(Reply(text="dinleyin")))] == ["text", "audio"]


@pytest.mark.parametrize(("attachment", "expected"), [
    (Attachment(url="https://f.example/x", mime_type="IMAGE/JPG; q=1"), "image/jpeg"),
    (Attachment(url="https://f.example/x", name="rapor.docx"),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (Attachment(url="https://f.example/files/kayit.mp3?sig=1"), "audio/mpeg"),
])
def test_whatsapp_media_type_is_given_or_guessed(attachment: Attachment, expected: str) -> None:
    assert media_type(attachment) == expected


def test_whatsapp_an_unknown_type_is_refused() -> None:
    with pytest.raises(FatalError, match="not known"):
        media_type(Attachment(url="https://f.example/blob"))


def test_a_hash_is_checked_in_hex_or_base64() -> None:
    content = b"bytes of a file"
    digest = hashlib.sha256(content).digest()
    assert sha256_matches(content, digest.hex()) and sha256_matches(content, base64.b64encode(digest).decode())
    assert not sha256_matches(b"other bytes", digest.hex()) and not sha256_matches(content, "not a hash")


def test_a_template_parameter_has_no_line_breaks_and_room_for_the_template() -> None:
    assert template_text("Merhaba,\n\nsonuçlar\thazır.      Görüşürüz") == "Merhaba, sonuçlar hazır.    Görüşürüz"
    assert len(template_text("a" * 5000)) == 768 and template_text("\n") == "-"


@pytest.mark.parametrize(("attachment", "method", "by_url"), [
    (Attachment(url="https://f.example/a.jpg"), "sendPhoto", True),
    (Attachment(url="https://f.example/a.jpg", size=6 * 1024 * 1024), "sendPhoto", False),
    (Attachment(url="https://f.example/a.jpg", size=11 * 1024 * 1024), "sendDocument", False),
    (Attachment(url="https://f.example/r.pdf"), "sendDocument", True),
    (Attachment(url="https://f.example/r.docx"), "sendDocument", False),
    (Attachment(url="https://f.example/n.ogg"), "sendVoice", True),
    (Attachment(url="https://f.example/s.mp3"), "sendAudio", True),
    (Attachment(url="https://f.example/c.mp4", size=25 * 1024 * 1024), "sendVideo", False),
])
def test_telegram_picks_the_method_and_whether_it_fetches_the_url(attachment: Attachment, method: str,
                                                                  by_url: bool) -> None:
    plan = plan_file(attachment)
    assert (plan.method, plan.by_url) == (method, by_url)


def test_telegram_refuses_what_no_bot_may_send() -> None:
    with pytest.raises(FatalError, match="at most"):
        plan_file(Attachment(url="https://f.example/big.zip", size=51 * 1024 * 1024))


def test_telegram_names_a_downloaded_file_by_its_path() -> None:
    assert file_name_and_type("voice/file_3.oga") == ("file_3.oga", "audio/ogg")
    assert file_name_and_type("documents/file_5.pdf") == ("file_5.pdf", "application/pdf")
    assert file_name_and_type("photos/file_1") == ("file_1", "application/octet-stream")
