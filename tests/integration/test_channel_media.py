"""Files both ways on both channels, over real HTTP against the emulators (which check every request).

A patient's file: the emulated patient sends real bytes, the webhook the relay would get is parsed, and
the client downloads the file by the media id it names, within a size limit, checking its hash. An
agent's reply with files: media messages by link (WhatsApp) or by URL or upload (Telegram), the text as
the first file's caption where the docs allow it and it fits, else first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from connector.channels import base as channel_base
from connector.channels.telegram import TelegramClient, bot_id, parse_update
from connector.channels.whatsapp import WhatsAppClient, parse_payload
from core.errors import AuthError, FatalError, RetryableError
from core.models import Attachment, Conversation, MediaRef, Reply, utcnow
from tests.conftest import TEST_SECRETS, make_settings
from tests.integration.channel_servers import FileHost, Receiver

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]
PATIENT = "905321112233"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF"
OGG = b"OggS\x00\x02" + bytes(range(200)) * 30


def _conversation(channel: str = "whatsapp", sender: str = PATIENT, *, hours_ago: float = 0.1) -> Conversation:
    return Conversation(key=f"{channel}:{ACCOUNT}:{sender}", channel=channel, account=ACCOUNT,  # type: ignore[arg-type]
                        sender_id=sender, last_inbound_at=utcnow() - timedelta(hours=hours_ago), language="tr")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest.fixture
def files() -> Iterator[FileHost]:
    with FileHost() as started:
        yield started


@pytest.fixture
def wa_hooks(whatsapp_emulator: Any, receiver: Receiver) -> Receiver:
    """Where the emulated WhatsApp patients' webhooks go."""
    whatsapp_emulator.relay_url = receiver.url
    return receiver


@pytest.fixture
def tg_hooks(telegram_emulator: Any, receiver: Receiver) -> Receiver:
    """Where the emulated Telegram users' updates go."""
    telegram_emulator.relay_url = receiver.url
    return receiver


@pytest.fixture
def wa(whatsapp_emulator: Any) -> WhatsAppClient:
    return WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url))


@pytest.fixture
def tg(telegram_emulator: Any) -> TelegramClient:
    return TelegramClient(make_settings("unix:///x", telegram_api_base=telegram_emulator.url))


def _whatsapp_media(receiver: Receiver) -> MediaRef:
    (message,) = parse_payload(receiver.received[-1].body).messages
    return message.media[0]


def _telegram_media(receiver: Receiver) -> MediaRef:
    (message,) = parse_update(receiver.received[-1].body, bot_id(TEST_SECRETS["telegram_bot_token"])).messages
    return message.media[0]


# -- a patient's file, WhatsApp ------------------------------------------------------------------------
def test_whatsapp_image_document_and_voice_are_downloaded_whole(wa: WhatsAppClient, whatsapp_emulator: Any,
                                                                wa_hooks: Receiver) -> None:
    patient = whatsapp_emulator.patient(PATIENT, "Ayşe")
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"
    cases = [(lambda: patient.send_image("röntgen", content=photo), photo, "image/jpeg", "image"),
             (lambda: patient.send_document(PDF, "tahlil.pdf", caption="sonuçlar"), PDF, "application/pdf",
              "document"),
             (lambda: patient.send_voice(OGG), OGG, "audio/ogg", "audio")]
    for send, content, mime, kind in cases:
        assert send() == 200
        media = _whatsapp_media(wa_hooks)
        assert media.kind == kind and media.sha256 is not None
        got = wa.fetch_media(media.media_id, max_bytes=1_000_000)
        assert (got.content, got.mime_type) == (content, mime)
    assert _whatsapp_media(wa_hooks).mime_type == "audio/ogg; codecs=opus"


def test_whatsapp_a_file_over_the_limit_is_refused_before_any_byte_is_read(
        wa: WhatsAppClient, whatsapp_emulator: Any, wa_hooks: Receiver) -> None:
    whatsapp_emulator.patient(PATIENT).send_document(PDF, "tahlil.pdf")
    calls = whatsapp_emulator.calls
    with pytest.raises(FatalError, match="over the 100-byte limit") as info:
        wa.fetch_media(_latest_media_id(whatsapp_emulator), max_bytes=100)
    assert whatsapp_emulator.calls - calls == 1  # the URL answer only: no download
    assert info.value.details["size"] == len(PDF)


def _latest_media_id(emulator: Any) -> str:
    return max(emulator.media._files)  # ids grow


def test_whatsapp_a_damaged_file_is_refused(wa: WhatsAppClient, whatsapp_emulator: Any, wa_hooks: Receiver) -> None:
    whatsapp_emulator.patient(PATIENT).send_image(content=b"\xff\xd8 original \xff\xd9")
    whatsapp_emulator.media.get(_latest_media_id(whatsapp_emulator)).content = b"\xff\xd8 changed! \xff\xd9"
    with pytest.raises(FatalError, match="SHA-256"):
        wa.fetch_media(_latest_media_id(whatsapp_emulator), max_bytes=10_000)


def test_whatsapp_unknown_media_wrong_token_expired_link_and_server_errors(
        wa: WhatsAppClient, whatsapp_emulator: Any, wa_hooks: Receiver) -> None:
    with pytest.raises(FatalError) as missing:
        wa.fetch_media("1234567890", max_bytes=10_000)
    assert not isinstance(missing.value, AuthError) and missing.value.details["code"] == 100
    whatsapp_emulator.patient(PATIENT).send_voice(OGG)
    media_id = _latest_media_id(whatsapp_emulator)
    wrong = WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url,
                                         whatsapp_access_token="EAAwrong"))
    with pytest.raises(AuthError):
        wrong.fetch_media(media_id, max_bytes=10_000)
    whatsapp_emulator.media.link_seconds = -1  # the 5-minute link has run out by the time it is used
    with pytest.raises(RetryableError, match="expired"):
        wa.fetch_media(media_id, max_bytes=10_000)
    whatsapp_emulator.media.link_seconds = 300
    whatsapp_emulator.fail_next(channel_base.ATTEMPTS, "500")
    with pytest.raises(RetryableError):
        wa.fetch_media(media_id, max_bytes=10_000)
    assert wa.fetch_media(media_id, max_bytes=10_000).content == OGG


def test_the_media_link_gives_nothing_without_the_token(whatsapp_emulator: Any, wa_hooks: Receiver) -> None:
    whatsapp_emulator.patient(PATIENT).send_image()
    answer = requests.get(f"{whatsapp_emulator.url}/v23.0/{_latest_media_id(whatsapp_emulator)}", timeout=5,
                          headers={"Authorization": f"Bearer {TEST_SECRETS['whatsapp_access_token']}"}).json()
    assert set(answer) == {"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}
    assert requests.get(answer["url"], timeout=5).status_code == 401
    served = requests.get(answer["url"], timeout=5,
                          headers={"Authorization": f"Bearer {TEST_SECRETS['whatsapp_access_token']}"})
    assert hashlib.sha256(served.content).hexdigest() == answer["sha256"]
    assert int(answer["file_size"]) == len(served.content)


def test_a_stream_that_grows_past_the_limit_is_given_up(files: FileHost) -> None:
    http = channel_base.HttpChannel("whatsapp", "WHATSAPP_ACCESS_TOKEN")
    response = http.request("GET", f"{files.url}/endless", stream=True)
    with pytest.raises(FatalError, match="over the 300000-byte limit"):
        http.read_limited(response, 300_000, "the file")


# -- a patient's file, Telegram ------------------------------------------------------------------------
def test_telegram_photo_document_and_voice_are_downloaded_whole(tg: TelegramClient, telegram_emulator: Any,
                                                                tg_hooks: Receiver) -> None:
    user = telegram_emulator.user(555001, "Мария")
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 30 + b"\xff\xd9"
    cases = [(lambda: user.send_photo("снимок", content=photo), photo, "image/jpeg", "image"),
             (lambda: user.send_document(PDF, "анализы.pdf", caption="результаты"), PDF, "application/pdf",
              "document"),
             (lambda: user.send_voice(OGG), OGG, "audio/ogg", "voice")]
    for send, content, mime, kind in cases:
        assert send() == 200
        media = _telegram_media(tg_hooks)
        assert media.kind == kind
        got = tg.fetch_media(media.media_id, max_bytes=1_000_000)
        assert (got.content, got.mime_type) == (content, mime) and got.name
    assert telegram_emulator.violations == []


def test_telegram_limits_unknown_files_and_files_too_big_for_bots(tg: TelegramClient, telegram_emulator: Any,
                                                                  tg_hooks: Receiver) -> None:
    user = telegram_emulator.user(555001, "Мария")
    user.send_document(PDF, "анализы.pdf")
    calls = telegram_emulator.calls
    with pytest.raises(FatalError, match="over the 100-byte limit"):
        tg.fetch_media(user.last_file_id, max_bytes=100)
    assert telegram_emulator.calls - calls == 1  # getFile only
    with pytest.raises(FatalError, match="invalid file_id"):
        tg.fetch_media("BQACAgIAAxkBAAI-unknown", max_bytes=10_000)
    user.send_document(b"\0" * (20 * 1024 * 1024 + 1), "scan.zip", mime_type="application/zip")
    with pytest.raises(FatalError, match="over the 20971520-byte limit bots may download") as refused:
        tg.fetch_media(user.last_file_id, max_bytes=50 * 1024 * 1024)
    assert refused.value.details["max_bytes"] == 20 * 1024 * 1024  # too large, not gone: the thread says so


# -- an agent's reply with files, WhatsApp -------------------------------------------------------------
def _payloads(emulator: Any) -> list[dict[str, Any]]:
    return [m.payload for m in emulator.messages_to(PATIENT)]


def test_whatsapp_text_rides_as_the_first_files_caption(wa: WhatsAppClient, whatsapp_emulator: Any) -> None:
    reply = Reply(text="Sonuçlarınız ektedir.", attachments=[
        Attachment(url="https://files.example/r/1", mime_type="image/png"),
        Attachment(url="https://files.example/r/2", mime_type="application/pdf", name="rapor.pdf")])
    ids = wa.send(_conversation(), [reply])
    image, document = _payloads(whatsapp_emulator)
    assert len(ids) == 2 and image["type"] == "image" and document["type"] == "document"
    assert image["image"] == {"link": "https://files.example/r/1", "caption": "Sonuçlarınız ektedir."}
    assert document["document"] == {"link": "https://files.example/r/2", "filename": "rapor.pdf"}


def test_whatsapp_text_goes_first_when_it_cannot_be_a_caption(wa: WhatsAppClient, whatsapp_emulator: Any) -> None:
    long_text = "x" * 1025
    wa.send(_conversation(), [
        Reply(text=long_text, attachments=[Attachment(url="https://files.example/a.jpg", mime_type="image/jpeg")]),
        Reply(text="Sesli not", attachments=[Attachment(url="https://files.example/n.ogg", mime_type="audio/ogg")]),
        Reply(text="", attachments=[Attachment(url="https://files.example/clip.mp4")])])
    kinds = [(p["type"], p.get(p["type"], {}).get("caption")) for p in _payloads(whatsapp_emulator)]
    assert kinds == [("text", None), ("image", None), ("text", None), ("audio", None), ("video", None)]
    assert _payloads(whatsapp_emulator)[0]["text"]["body"] == long_text


def test_whatsapp_refuses_a_type_or_size_it_cannot_carry_and_sends_nothing(wa: WhatsAppClient,
                                                                           whatsapp_emulator: Any) -> None:
    fine = Attachment(url="https://files.example/ok.pdf", mime_type="application/pdf")
    for bad, reason in [(Attachment(url="https://files.example/a.gif", mime_type="image/gif"), "image/gif"),
                        (Attachment(url="https://files.example/a.zip"), "application/zip"),
                        (Attachment(url="https://files.example/big.jpg", mime_type="image/jpeg",
                                    size=6 * 1024 * 1024), "at most"),
                        (Attachment(url="ftp://files.example/a.pdf"), "http")]:
        with pytest.raises(FatalError, match=reason):
            wa.send(_conversation(), [Reply(text="ek", attachments=[fine, bad])])
    assert _payloads(whatsapp_emulator) == []


def test_whatsapp_outside_the_window_sends_the_template_alone(wa: WhatsAppClient, whatsapp_emulator: Any) -> None:
    agent_text = "Merhaba,\n\tsonuçlarınız     hazır." + " ek" * 400
    reply = Reply(text=agent_text, template="agent_reply", template_params=[agent_text],
                  attachments=[Attachment(url="https://files.example/r.pdf", mime_type="application/pdf")])
    assert len(wa.send(_conversation(hours_ago=30), [reply])) == 1
    (sent,) = _payloads(whatsapp_emulator)
    (parameter,) = sent["template"]["components"][0]["parameters"]
    assert sent["type"] == "template" and parameter["text"].startswith("Merhaba, sonuçlarınız    hazır.")
    assert len(parameter["text"]) <= 768 and "\n" not in parameter["text"]


def test_every_message_carries_the_tracking_value(wa: WhatsAppClient, whatsapp_emulator: Any) -> None:
    reply = Reply(text="x" * 2000, attachments=[Attachment(url="https://files.example/a.jpg")])
    wa.send(_conversation(), [reply], tracking="agent-reply:42")
    assert [m.tracking for m in whatsapp_emulator.messages_to(PATIENT)] == ["agent-reply:42"] * 2
    with pytest.raises(ValueError, match="512"):
        wa.send(_conversation(), [Reply(text="y")], tracking="t" * 513)


@pytest.mark.parametrize(("message", "code"), [
    ({"type": "audio", "audio": {"link": "https://files.example/n.ogg", "caption": "no"}}, 100),
    ({"type": "image", "image": {"link": "https://files.example/a.jpg", "caption": "c" * 1025}}, 100),
    ({"type": "image", "image": {"link": "https://files.example/a.jpg"}, "biz_opaque_callback_data": "t" * 513}, 100),
    ({"type": "template", "template": {
        "name": "agent_reply", "language": {"code": "tr", "policy": "deterministic"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "iki\nsatır"}]}]}}, 132018)])
def test_the_emulator_refuses_what_meta_refuses(whatsapp_emulator: Any, message: dict[str, Any], code: int) -> None:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PATIENT, **message}
    response = requests.post(f"{whatsapp_emulator.url}/v23.0/{ACCOUNT}/messages", json=body, timeout=5,
                             headers={"Authorization": f"Bearer {TEST_SECRETS['whatsapp_access_token']}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert len(whatsapp_emulator.violations) == 1
    whatsapp_emulator.violations.clear()  # expected here; the fixture fails on any other


# -- an agent's reply with files, Telegram -------------------------------------------------------------
def test_telegram_files_go_by_url_or_upload_with_the_caption(tg: TelegramClient, telegram_emulator: Any,
                                                             files: FileHost) -> None:
    photo = b"\xff\xd8\xff\xe0 photo \xff\xd9"
    docx = b"PK\x03\x04 word document"
    reply = Reply(text="Результаты во вложении.", attachments=[
        Attachment(url=files.add("scan.jpg", photo, "image/jpeg"), mime_type="image/jpeg"),
        Attachment(url=files.add("report.pdf", PDF, "application/pdf"), mime_type="application/pdf"),
        Attachment(url=files.add("letter", docx, "application/octet-stream"), name="письмо.docx",
                   mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        Attachment(url=files.add("note.ogg", OGG, "audio/ogg"), mime_type="audio/ogg")])
    ids = tg.send(_conversation("telegram", "555001"), [reply], tracking="ignored")
    sent = telegram_emulator.messages_to(555001)
    assert len(ids) == 4 and [m["_method"] for m in sent] == ["sendPhoto", "sendDocument", "sendDocument",
                                                             "sendVoice"]
    assert sent[0]["caption"] == "Результаты во вложении." and all("caption" not in m for m in sent[1:])
    assert [m["_source"] for m in sent] == [reply.attachments[0].url, reply.attachments[1].url, "upload",
                                            reply.attachments[3].url]
    uploaded = telegram_emulator.files.get(sent[2]["_file_id"])
    assert (uploaded.content, uploaded.file_name) == (docx, "письмо.docx")
    # the relay fetched the .docx before sending anything; Telegram fetched the rest as it sent them
    assert files.downloads == ["letter", "scan.jpg", "report.pdf", "note.ogg"]


def test_telegram_long_text_goes_first_and_a_dead_link_is_refused(tg: TelegramClient, telegram_emulator: Any,
                                                                  files: FileHost) -> None:
    video = Attachment(url=files.add("clip.mp4", b"\0\0\0\x18ftypmp42", "video/mp4"), mime_type="video/mp4")
    tg.send(_conversation("telegram", "555001"), [Reply(text="т" * 1025, attachments=[video])])
    text, clip = telegram_emulator.messages_to(555001)
    assert text["text"] == "т" * 1025 and clip["_method"] == "sendVideo" and "caption" not in clip
    dead = Attachment(url=f"{files.url}/files/expired.jpg", mime_type="image/jpeg")
    with pytest.raises(FatalError, match="failed to get HTTP URL content"):
        tg.send(_conversation("telegram", "555001"), [Reply(text="", attachments=[dead])])
    before = len(telegram_emulator.messages_to(555001))
    with pytest.raises(FatalError, match="refused"):
        tg.send(_conversation("telegram", "555001"), [Reply(text="Ekte", attachments=[
            Attachment(url=f"{files.url}/files/scan.jpg", mime_type="image/jpeg"),
            Attachment(url=f"{files.url}/files/expired.docx", name="a.docx")])])
    assert len(telegram_emulator.messages_to(555001)) == before  # nothing of that reply went out


def test_the_telegram_emulator_refuses_what_telegram_refuses(telegram_emulator: Any, tg_hooks: Receiver) -> None:
    base = f"{telegram_emulator.url}/bot{TEST_SECRETS['telegram_bot_token']}"
    too_long = requests.post(f"{base}/sendPhoto", timeout=5,
                             json={"chat_id": 555001, "photo": "https://files.example/a.jpg", "caption": "c" * 1025})
    unknown = requests.post(f"{base}/sendDocument", timeout=5, json={"chat_id": 555001, "document": "no-such-file"})
    assert [r.json()["description"] for r in (too_long, unknown)] == [
        "Bad Request: message caption is too long", "Bad Request: wrong file identifier/HTTP URL specified"]
    assert len(telegram_emulator.violations) == 2
    telegram_emulator.violations.clear()  # expected here; the fixture fails on any other
    user = telegram_emulator.user(555001, "Мария")
    user.send_voice(OGG)
    path = requests.post(f"{base}/getFile", json={"file_id": user.last_file_id}, timeout=5).json()["result"]["file_path"]
    assert requests.get(f"{telegram_emulator.url}/file/bot1:wrong/{path}", timeout=5).status_code == 404
    resent = requests.post(f"{base}/sendVoice", json={"chat_id": 555001, "voice": user.last_file_id}, timeout=5)
    assert resent.json()["result"]["voice"]["file_size"] == len(OGG)  # a file id the bot has is sent again as is


def test_telegram_audio_video_and_video_notes_fit_and_download(tg: TelegramClient, telegram_emulator: Any,
                                                              tg_hooks: Receiver) -> None:
    user = telegram_emulator.user(555001, "Мария")
    clip = b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 8
    for kind, mime, fields in [("audio", "audio/mpeg", {"duration": 60, "title": "Kayıt"}),
                               ("video", "video/mp4", {"duration": 9, "width": 640, "height": 360}),
                               ("video_note", "video/mp4", {"duration": 5, "length": 240})]:
        assert user.send_media(kind, clip, mime, **fields) == 200
        media = _telegram_media(tg_hooks)
        assert tg.fetch_media(media.media_id, max_bytes=10_000).content == clip
    assert telegram_emulator.violations == []
