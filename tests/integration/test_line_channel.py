"""The LINE client against the LINE emulator over real HTTP, and the emulator's signed webhooks read by the
parser: replies while the token is fresh, pushes otherwise, quick replies and their fallbacks, images,
read marks, files, errors mapped; the emulator refusing what LINE would refuse."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, request

from connector.channels import line_client
from connector.channels.base import ATTEMPTS
from connector.channels.line import LineSettings, LineWebhook, parse, verify_signature
from connector.channels.line_client import LineClient, LineTokens
from connector.channels.plugin import UnreachableError
from core.errors import AuthError, FatalError, RetryableError
from core.models import Attachment, Conversation, Option, Reply
from emulators.line import LineEmulator, LineUser
from emulators.server import ServedApp

SECRET = "test-line-channel-secret"
TOKEN = "test-line-access-token-0123456789"


@pytest.fixture
def line() -> Iterator[LineEmulator]:
    emulator = LineEmulator(channel_secret=SECRET, access_token=TOKEN, timeout_seconds=1.0)
    received: list[LineWebhook] = []
    relay = Flask("relay")

    @relay.post("/webhooks/line")
    def webhook() -> tuple[str, int]:
        raw = request.get_data()
        try:
            verify_signature(raw, request.headers.get("X-Line-Signature"), SECRET)
        except Exception as exc:
            return str(exc), getattr(exc, "status", 400)
        received.append(parse(json.loads(raw)))
        return "", 200

    with ServedApp(emulator.app) as api, ServedApp(relay) as served_relay:
        emulator.url = api.url  # type: ignore[attr-defined]
        emulator.relay_url = f"{served_relay.url}/webhooks/line"
        emulator.received = received  # type: ignore[attr-defined]
        yield emulator
    assert not emulator.violations, f"requests or webhooks LINE would refuse: {emulator.violations}"


def _client(line: LineEmulator, token: str = TOKEN) -> LineClient:
    settings = LineSettings(line_channel_access_token=token, line_channel_secret=SECRET,
                            line_api_base=line.url, line_data_api_base=line.url)  # type: ignore[attr-defined]
    return LineClient(settings)


def _conversation(line: LineEmulator, user: LineUser) -> Conversation:
    return Conversation(key=f"line:{line.bot_user_id}:{user.user_id}", channel="line", account=line.bot_user_id,
                        sender_id=user.user_id)


def _deliver(line: LineEmulator, client: LineClient, event: dict[str, Any]) -> LineWebhook:
    """POST the event as LINE does, let the relay parse it, and give the client its tokens."""
    status, _ = line.post_events(event)
    assert status == 200
    parsed: LineWebhook = line.received[-1]  # type: ignore[attr-defined]
    client.remember(parsed)
    return parsed


def test_a_fresh_token_replies_then_the_rest_is_pushed(line: LineEmulator) -> None:
    client, user = _client(line), line.user()
    _deliver(line, client, user.text("hello"))
    replies = [Reply(text=f"line {n}") for n in range(7)]  # 7 messages: 5 in the reply, 2 pushed
    ids = client.send(_conversation(line, user), replies)
    sent = line.messages_to(user.user_id)
    assert ids == [s.id for s in sent] and [s.via for s in sent] == ["reply"] * 5 + ["push"] * 2
    client.send(_conversation(line, user), [Reply(text="later")])  # the token is spent: pushed
    assert line.messages_to(user.user_id)[-1].via == "push"


def test_a_stale_or_refused_token_falls_back_to_push(line: LineEmulator) -> None:
    client, user = _client(line), line.user()
    line.reply_token_seconds = 0.0  # LINE refuses the token: "Invalid reply token"
    _deliver(line, client, user.text("hello"))
    client.send(_conversation(line, user), [Reply(text="hi")])
    assert [s.via for s in line.messages_to(user.user_id)] == ["push"]
    assert ("POST", "reply", 400) in line.calls
    clock = [1000.0]
    tokens = LineTokens(clock=lambda: clock[0])
    tokens.remember_reply("c", "t")
    clock[0] += 51
    assert tokens.take_reply("c") is None  # too old to try at all


def test_the_button_press_token_reaches_the_client_through_answer_callback(line: LineEmulator) -> None:
    client, user = _client(line), line.user()
    status, _ = line.post_events(user.postback("implant"))
    message = line.received[-1].messages[0]  # type: ignore[attr-defined]
    assert status == 200 and message.kind == "choice" and message.callback_id
    client.answer_callback(message)
    client.send(_conversation(line, user), [Reply(text="noted")])
    assert [s.via for s in line.messages_to(user.user_id)] == ["reply"]


def test_quick_replies_numbered_fallback_location_and_images(line: LineEmulator) -> None:
    client, user = _client(line), line.user()
    options = [Option(id=f"t{i}", title=f"Treatment {i}") for i in range(1, 16)]
    long_titles = [Option(id="a", title="A very long treatment title"), Option(id="b", title="Short")]
    client.send(_conversation(line, user), [
        Reply(text="Pick one", options=options[:3], request_location=True),
        Reply(text="Pick one", options=long_titles),
        Reply(text="Pick one", options=options),
        Reply(text="Your x-ray", attachments=[
            Attachment(url="https://files.example/xray.jpg", mime_type="image/jpeg", size=50_000),
            Attachment(url="https://files.example/plan.pdf", mime_type="application/pdf", name="plan.pdf")]),
    ])
    sent = [s.message for s in line.messages_to(user.user_id)]
    buttons = sent[0]["quickReply"]["items"]
    assert [i["action"]["type"] for i in buttons] == ["postback"] * 3 + ["location"]
    assert buttons[0]["action"] == {"type": "postback", "label": "Treatment 1", "data": "t1", "displayText": "Treatment 1"}
    assert sent[1]["text"].endswith("1. A very long treatment title\n2. Short")
    assert [i["action"]["text"] for i in sent[1]["quickReply"]["items"]] == ["1", "2"]
    assert "15. Treatment 15" in sent[2]["text"] and "quickReply" not in sent[2]  # 15 > 13 buttons
    assert [m["type"] for m in sent[3:]] == ["text", "image", "text"]
    assert sent[4]["originalContentUrl"] == "https://files.example/xray.jpg"
    assert sent[5]["text"] == "plan.pdf: https://files.example/plan.pdf"


def test_mark_read_profile_and_files(line: LineEmulator) -> None:
    client, user = _client(line), line.user(name="Aiko", language="ja")
    parsed = _deliver(line, client, user.file("image", b"\xff\xd8jpeg-bytes", "image/jpeg"))
    message = parsed.messages[0]
    client.mark_read(message)
    assert len(line.read) == 1
    client.mark_read(message)  # the token was used: nothing more is sent
    assert len(line.read) == 1
    assert client.profile(user.user_id).name == "Aiko"
    media = client.fetch_media(message.media[0].media_id, max_bytes=1000)
    assert media.content == b"\xff\xd8jpeg-bytes" and media.mime_type == "image/jpeg"
    with pytest.raises(FatalError):
        client.fetch_media(message.media[0].media_id, max_bytes=4)
    with pytest.raises(FatalError):
        client.fetch_media("999", max_bytes=1000)  # LINE no longer has it
    with pytest.raises(FatalError):
        client.fetch_media("446/1988", max_bytes=1000)  # a sticker has no file


@pytest.mark.parametrize(("kind", "error"), [("429", RetryableError), ("quota", FatalError), ("403", FatalError),
                                             ("500", RetryableError)])
def test_errors_map_to_the_error_tree(line: LineEmulator, kind: str, error: type) -> None:
    client, user = _client(line), line.user()
    line.fail_next(ATTEMPTS if kind == "500" else 1, kind)
    with pytest.raises(error):
        client.send(_conversation(line, user), [Reply(text="x")])
    assert line.messages_to(user.user_id) == []


def test_a_refused_token_names_the_setting_and_an_unknown_user_is_unreachable(line: LineEmulator) -> None:
    user = line.user()
    with pytest.raises(AuthError) as info:
        _client(line, "wrong").send(_conversation(line, user), [Reply(text="x")])
    assert info.value.setting == "LINE_CHANNEL_ACCESS_TOKEN"
    stranger = line.user(friend=False)
    with pytest.raises(UnreachableError):
        _client(line).send(_conversation(line, stranger), [Reply(text="x")])


def test_a_5xx_is_tried_again_in_place_and_a_timed_out_push_is_not_sent_twice(
        line: LineEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    client, user = _client(line), line.user()
    line.fail_next(1, "500")
    client.send(_conversation(line, user), [Reply(text="once")])
    assert len(line.messages_to(user.user_id)) == 1
    # LINE sends the push but answers after the client gave up: the next try carries the same retry key,
    # LINE answers 409 with the ids it sent, and the patient gets the message once
    monkeypatch.setattr(line_client, "TIMEOUT", (1, 0.3))
    line.fail_next(1, "timeout")
    ids = client.send(_conversation(line, user), [Reply(text="after a time-out")])
    sent = line.messages_to(user.user_id)
    assert [s.message["text"] for s in sent] == ["once", "after a time-out"] and ids == [sent[1].id]
    assert ("POST", "push", 409) in line.calls


def test_a_retry_key_already_accepted_answers_409_with_the_ids_sent(line: LineEmulator) -> None:
    user = line.user()
    key, body = str(uuid.uuid4()), {"to": user.user_id, "messages": [{"type": "text", "text": "hi"}]}
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Line-Retry-Key": key}
    first = requests.post(f"{line.url}/v2/bot/message/push", json=body, headers=headers, timeout=5)  # type: ignore[attr-defined]
    again = requests.post(f"{line.url}/v2/bot/message/push", json=body, headers=headers, timeout=5)  # type: ignore[attr-defined]
    assert first.status_code == 200 and again.status_code == 409
    assert [m["id"] for m in again.json()["sentMessages"]] == [m["id"] for m in first.json()["sentMessages"]]
    assert len(line.messages_to(user.user_id)) == 1


def test_the_emulator_refuses_what_line_would(line: LineEmulator) -> None:
    user, url = line.user(), line.url  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = requests.post(f"{url}/v2/bot/message/push", headers=auth, timeout=5,
                        json={"to": user.user_id, "messages": [{"type": "text", "text": ""}]})
    assert bad.status_code == 400 and bad.json()["message"] == "The request body has 1 error(s)"
    assert bad.json()["details"][0]["property"] == "messages[0].text"
    unsigned = requests.post(f"{url}/v2/bot/message/push", timeout=5, json={"to": user.user_id, "messages": []})
    assert unsigned.status_code == 401 and unsigned.json()["message"].startswith("Authentication failed")
    reused = requests.post(f"{url}/v2/bot/message/reply", headers=auth, timeout=5,
                           json={"replyToken": "never-issued", "messages": [{"type": "text", "text": "x"}]})
    assert reused.json() == {"message": "Invalid reply token"}
    read = requests.post(f"{url}/v2/bot/chat/markAsRead", headers=auth, json={"markAsReadToken": "x"}, timeout=5)
    assert read.status_code == 400
    not_json = requests.post(f"{url}/v2/bot/message/push", headers=auth, data=b"{", timeout=5)
    assert not_json.status_code == 400
    line.violations.clear()  # refused on purpose above


def test_signed_webhooks_of_every_kind_reach_the_relay_and_a_bad_signature_does_not(line: LineEmulator) -> None:
    user = line.user()
    events = [user.follow(), user.text("/start spring24"), user.location(35.6, 139.7, title="Home"), user.sticker(),
              user.file("file", b"%PDF-1.4", "application/pdf", name="a.pdf"), user.postback("yes"), user.unfollow()]
    status, _ = line.post_events(*events)
    parsed = line.received[-1]  # type: ignore[attr-defined]
    assert status == 200 and [m.kind for m in parsed.messages] == ["start", "start", "location", "media", "media",
                                                                   "choice"]
    assert parsed.opt_outs == [(line.bot_user_id, user.user_id)]
    status, _ = line.post_events(user.text("x"), redelivery=True)
    assert status == 200 and line.received[-1].redeliveries == 1  # type: ignore[attr-defined]
    status, _ = line.post_events(user.text("forged"), signature="AAAA")
    assert status == 403 and len(line.received) == 2  # type: ignore[attr-defined]
