"""Messenger and Instagram against the Messenger Platform emulator over real HTTP: the client's every kind of
message, its fallbacks and errors; Meta's windows; signed webhooks of each event kind parsed by the relay's
parser; the emulator refusing what Meta would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from connector.channels import base as channel_base
from connector.channels.meta_messaging import MetaMessagingClient, MetaMessagingSettings, parse
from connector.channels.plugin import UnreachableError
from core.errors import AuthError, FatalError, RetryableError, SkippableError
from core.models import Attachment, Conversation, InboundMessage, Option, Reply, utcnow
from emulators.meta_messaging import MetaMessagingEmulator
from emulators.server import ServedApp
from tests.integration.channel_servers import Receiver

PAGE_TOKEN, IG_TOKEN, SECRET = "EAAPageToken0123456789", "IGQVJtestInstagramToken0123", "meta-app-secret-0123"
PSID, IGSID = "6543210987654321", "1133557799"


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    with Receiver() as hooks:
        yield hooks


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Receiver:
    """The module's webhook endpoint, emptied for each test (one server started, not one per test)."""
    with shared_receiver.lock:
        shared_receiver.received.clear()
    return shared_receiver


@pytest.fixture
def meta(receiver: Receiver) -> Iterator[MetaMessagingEmulator]:
    emulator = MetaMessagingEmulator(page_access_token=PAGE_TOKEN, instagram_access_token=IG_TOKEN,
                                     app_secret=SECRET, relay_url=receiver.url, timeout_seconds=2.0)
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        emulator.sender.close()
        served.stop()
    assert not emulator.violations, f"requests Meta would reject: {emulator.violations}"


def _settings(meta: MetaMessagingEmulator, **more: Any) -> MetaMessagingSettings:
    url = meta.url  # type: ignore[attr-defined]
    return MetaMessagingSettings(page_access_token=PAGE_TOKEN, app_secret=SECRET, page_id=meta.page_id,
                                 instagram_id=meta.instagram_id, api_base=url, instagram_api_base=url, **more)


def _conversation(channel: str, sender: str, account: str, *, hours_ago: float = 0.1) -> Conversation:
    return Conversation(key=f"{channel}:{account}:{sender}", channel=channel, account=account, sender_id=sender,
                        last_inbound_at=utcnow() - timedelta(hours=hours_ago))


@pytest.fixture
def messenger(meta: MetaMessagingEmulator) -> tuple[MetaMessagingClient, Conversation]:
    meta.patient(PSID).send_text("Merhaba")  # the person writes: the window opens
    return MetaMessagingClient(_settings(meta)), _conversation("messenger", PSID, meta.page_id)


def test_text_buttons_quick_replies_and_numbered(messenger: tuple[MetaMessagingClient, Conversation],
                                                 meta: MetaMessagingEmulator) -> None:
    client, conversation = messenger
    options = [Option(id=f"t{i}", title=f"Tedavi {i}") for i in range(1, 15)]
    ids = client.send(conversation, [Reply(text="Merhaba!"), Reply(text="Seçin", options=options[:3]),
                                     Reply(text="Seçin", options=options[:9]), Reply(text="Seçin", options=options),
                                     Reply(text="x" * 4500)])
    assert len(ids) == 7 and all(i.startswith("m_") for i in ids)
    sent = [m.payload for m in meta.messages_to(PSID)]
    assert all(p["messaging_type"] == "RESPONSE" and p["recipient"] == {"id": PSID} for p in sent)
    assert sent[0]["message"] == {"text": "Merhaba!"}
    assert sent[1]["message"]["attachment"]["payload"]["buttons"][2] == {"type": "postback", "title": "Tedavi 3",
                                                                         "payload": "t3"}
    assert len(sent[2]["message"]["quick_replies"]) == 9
    assert "14. Tedavi 14" in sent[3]["message"]["text"] and "quick_replies" not in sent[3]["message"]
    assert [len(p["message"]["text"]) for p in sent[4:]] == [2000, 2000, 500]


def test_files_by_url_after_the_text_and_refused_before_anything_is_sent(
        messenger: tuple[MetaMessagingClient, Conversation], meta: MetaMessagingEmulator) -> None:
    client, conversation = messenger
    client.send(conversation, [Reply(text="Raporunuz", attachments=[
        Attachment(url="https://files.example/r.pdf", mime_type="application/pdf", size=1000),
        Attachment(url="https://files.example/x.jpg", mime_type="image/jpeg")])])
    sent = [m.payload["message"] for m in meta.messages_to(PSID)]
    assert sent[0] == {"text": "Raporunuz"}
    assert [(m["attachment"]["type"], m["attachment"]["payload"]["url"]) for m in sent[1:]] == [
        ("file", "https://files.example/r.pdf"), ("image", "https://files.example/x.jpg")]
    with pytest.raises(FatalError, match="over the"):
        client.send(conversation, [Reply(text="big", attachments=[
            Attachment(url="https://files.example/big.mp4", mime_type="video/mp4", size=26 << 20)])])
    assert len(meta.messages_to(PSID)) == 3  # nothing of the refused reply went out


def test_mark_seen_is_the_read_receipt(messenger: tuple[MetaMessagingClient, Conversation],
                                       meta: MetaMessagingEmulator) -> None:
    client, _ = messenger
    client.mark_read(InboundMessage(channel="messenger", account=meta.page_id, sender_id=PSID, message_id="m_1",
                                    timestamp=utcnow(), kind="text", text="hi"))
    assert meta.seen == [PSID]


def test_windows_24_hours_then_only_an_agent_reply_tagged_then_nothing(
        messenger: tuple[MetaMessagingClient, Conversation], meta: MetaMessagingEmulator) -> None:
    client, _ = messenger
    meta.wrote(PSID, seconds_ago=30 * 3600)
    stale = _conversation("messenger", PSID, meta.page_id, hours_ago=30)
    with pytest.raises(SkippableError, match="only an agent's reply"):
        client.send(stale, [Reply(text="bot follow-up")])
    client.send(stale, [Reply(text="agent")], tracking="agent-entry-1")
    assert meta.messages_to(PSID)[-1].payload["tag"] == "HUMAN_AGENT"
    assert meta.messages_to(PSID)[-1].payload["messaging_type"] == "MESSAGE_TAG"
    meta.wrote(PSID, seconds_ago=8 * 86400)
    with pytest.raises(SkippableError, match="more than 7 days"):
        client.send(_conversation("messenger", PSID, meta.page_id, hours_ago=8 * 24), [Reply(text="late")],
                    tracking="agent-entry-2")
    # the relay's clock and Meta's may disagree: Meta's window error is a skip too, with its reason
    with pytest.raises(SkippableError, match="outside the allowed window") as info:
        client.send(_conversation("messenger", PSID, meta.page_id, hours_ago=1), [Reply(text="x")])
    assert info.value.details["subcode"] == 2018278


@pytest.mark.parametrize(("kind", "error", "outcome"), [
    ("500", RetryableError, "retry"), ("1200", RetryableError, "retry"), ("613", RetryableError, "retry"),
    ("4", RetryableError, "retry"), ("190", AuthError, "auth"), ("551", UnreachableError, "unreachable"),
    ("timeout", RetryableError, None)])
def test_errors_map_to_the_error_tree(messenger: tuple[MetaMessagingClient, Conversation],
                                      meta: MetaMessagingEmulator, monkeypatch: pytest.MonkeyPatch,
                                      kind: str, error: type, outcome: str | None) -> None:
    client, conversation = messenger
    monkeypatch.setattr(channel_base, "TIMEOUT", (1, 0.5))
    meta.fail_next(channel_base.ATTEMPTS if kind in ("500", "1200") else 1, kind)  # 5xx are tried in place
    with pytest.raises(error) as info:
        client.send(conversation, [Reply(text="x")])
    if outcome:
        assert info.value.details["outcome"] == outcome
    if kind == "190":
        assert info.value.setting == "META_MESSAGING_PAGE_ACCESS_TOKEN"


def test_a_blocked_person_and_an_unknown_one_are_unreachable(
        messenger: tuple[MetaMessagingClient, Conversation], meta: MetaMessagingEmulator) -> None:
    client, conversation = messenger
    meta.block(PSID)
    with pytest.raises(UnreachableError, match="isn't available"):
        client.send(conversation, [Reply(text="x")])
    with pytest.raises(UnreachableError, match="no person matches"):
        client.send(_conversation("messenger", "999", meta.page_id), [Reply(text="x")])


def test_instagram_through_the_page_and_with_instagram_login(meta: MetaMessagingEmulator) -> None:
    meta.patient(IGSID, "instagram").send_text("Selam")
    conversation = _conversation("instagram", IGSID, meta.instagram_id)
    through_page = MetaMessagingClient(_settings(meta), "instagram")
    ig_login = MetaMessagingClient(_settings(meta, instagram_access_token=IG_TOKEN), "instagram")
    assert through_page.url.endswith("/me/messages") and ig_login.url.endswith(f"/{meta.instagram_id}/messages")
    long_text = "ç" * 700  # 1400 bytes: Instagram counts bytes
    through_page.send(conversation, [Reply(text=long_text)])
    ig_login.send(conversation, [Reply(text="Seçin", options=[Option(id="a", title="A"), Option(id="b", title="B")])])
    sent = [m.payload["message"] for m in meta.messages_to(IGSID)]
    assert [len(m["text"].encode()) for m in sent[:2]] == [1000, 400]
    assert sent[2]["attachment"]["payload"]["template_type"] == "button"
    with pytest.raises(FatalError, match="only PDF"):
        ig_login.send(conversation, [Reply(text="doc", attachments=[
            Attachment(url="https://files.example/a.docx", mime_type="application/msword")])])
    wrong = MetaMessagingClient(_settings(meta, instagram_access_token="wrong"), "instagram")
    with pytest.raises(AuthError) as info:
        wrong.send(conversation, [Reply(text="x")])
    assert info.value.setting == "META_MESSAGING_INSTAGRAM_ACCESS_TOKEN"


def test_a_patients_file_is_downloaded_without_the_token(messenger: tuple[MetaMessagingClient, Conversation],
                                                         meta: MetaMessagingEmulator) -> None:
    client, _ = messenger
    url = meta.url + meta.host_file(b"\x89PNG...", "image/png")  # type: ignore[attr-defined]
    file = client.fetch_media(url, max_bytes=1000)
    assert (file.content, file.mime_type) == (b"\x89PNG...", "image/png")
    with pytest.raises(FatalError, match="over the"):
        client.fetch_media(url, max_bytes=4)
    with pytest.raises(FatalError, match="refused"):
        client.fetch_media(meta.url + "/cdn/expired", max_bytes=1000)  # type: ignore[attr-defined]
    with pytest.raises(FatalError, match="not https"):
        client.fetch_media("http://elsewhere.example/x.png", max_bytes=1000)


# -- webhooks ------------------------------------------------------------------------------------------------
def test_every_event_kind_arrives_signed_and_parses(meta: MetaMessagingEmulator, receiver: Receiver) -> None:
    meta.delivery_webhooks = True
    person = meta.patient(PSID)
    person.get_started(ref="K7QX2M-de")
    person.send_text("Merhaba")
    person.tap_quick_reply("hair", "Saç ekimi")
    person.press_postback("yes", "Evet")
    person.send_file("image", "https://cdn.example/a.jpg")
    person.share_location(41.0, 29.0)
    person.click_ad("6045246247433", "Hair", ref="spring")
    person.follow_link("AB12CD")
    person.send_echo("from the Page")
    client = MetaMessagingClient(_settings(meta))
    [sent_id] = client.send(_conversation("messenger", PSID, meta.page_id), [Reply(text="Hoş geldiniz")])
    meta.wait_for_webhooks()
    person.react(sent_id)
    person.read_all()
    insta = meta.patient(IGSID, "instagram")
    insta.send_text("Selam", ad={"ad_id": "777", "title": "IG ad"})
    insta.read_all()  # nothing sent to them yet: no read event
    parsed = [parse(hook.raw, hook.headers, SECRET) for hook in receiver.received]
    kinds = [(m.channel, m.kind, m.start_payload or m.choice_id or m.text or m.reaction)
             for p in parsed for m in p.messages]
    assert kinds == [("messenger", "start", "K7QX2M-de"), ("messenger", "text", "Merhaba"),
                     ("messenger", "choice", "hair"), ("messenger", "choice", "yes"), ("messenger", "media", None),
                     ("messenger", "location", None), ("messenger", "start", "spring"),
                     ("messenger", "start", "AB12CD"), ("messenger", "reaction", "❤"),
                     ("instagram", "text", "Selam")]
    statuses = [(s.message_id, s.status) for p in parsed for s in p.statuses]
    assert statuses[0] == (sent_id, "delivered") and statuses[1][1] == "read"
    assert sum(p.ignored for p in parsed) == 1  # the echo
    ad = next(m for p in parsed for m in p.messages if m.channel == "instagram").referral
    assert ad is not None and ad.source_id == "777"
    with pytest.raises(Exception, match="signature"):
        parse(receiver.received[0].raw + b" ", receiver.received[0].headers, SECRET)


def test_the_emulator_refuses_what_meta_would(meta: MetaMessagingEmulator) -> None:
    meta.patient(PSID).send_text("hi")
    url = f"{meta.url}/v23.0/me/messages"  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {PAGE_TOKEN}"}
    bad = [
        {"recipient": {"id": PSID}, "message": {"text": "no messaging_type"}},
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "x", "quick_replies": [
            {"content_type": "text", "title": str(i), "payload": str(i)} for i in range(14)]}},
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"attachment": {
            "type": "template", "payload": {"template_type": "button", "text": "x", "buttons": [
                {"type": "postback", "title": "t", "payload": str(i)} for i in range(4)]}}}},
        {"recipient": {"id": PSID}, "messaging_type": "MESSAGE_TAG", "message": {"text": "no tag"}},
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "x" * 2001}},
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "sender_action": "mark_seen",
         "message": {"text": "both"}},
    ]
    for body in bad:
        response = requests.post(url, json=body, headers=auth, timeout=5)
        assert response.status_code == 400 and response.json()["error"]["code"] == 100, body
    assert len(meta.violations) == len(bad)
    meta.violations.clear()  # expected here; the fixture fails on any other
    unsigned = requests.post(url, json={"recipient": {"id": PSID}, "sender_action": "mark_seen"}, timeout=5)
    assert unsigned.json()["error"]["code"] == 190
