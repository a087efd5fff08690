"""Telegram updates → canonical messages."""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.channels import telegram
from connector.channels.telegram import bot_id, parse_update, render, verify_secret
from core.errors import WebhookRejectedError
from core.models import Option, Reply

USER = {"id": 555001, "is_bot": False, "first_name": "Мария", "last_name": "Иванова", "username": "maria",
        "language_code": "ru"}
CHAT = {"id": 555001, "type": "private"}


def _msg(**content: object) -> dict[str, object]:
    return {"message_id": 7, "from": USER, "chat": CHAT, "date": 1763800000, **content}


def _one(update: dict[str, object]):  # type: ignore[no-untyped-def]
    parsed = parse_update(update, "7000000001")
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def test_text_with_profile_and_language_hint() -> None:
    message = _one({"update_id": 1, "message": _msg(text="Здравствуйте")})
    assert (message.kind, message.text, message.sender_id, message.account) == ("text", "Здравствуйте", "555001",
                                                                                "7000000001")
    assert message.profile.name == "Мария Иванова" and message.profile.language_code == "ru"
    assert message.message_id == "update:1"


def test_start_payload() -> None:
    message = _one({"update_id": 2, "message": _msg(text="/start K7Q2MX")})
    assert (message.kind, message.start_payload) == ("start", "K7Q2MX")
    assert _one({"update_id": 3, "message": _msg(text="/start")}).start_payload is None


def test_callback_query_carries_the_button_title() -> None:
    carrier = {"message_id": 9, "chat": CHAT, "date": 1, "text": "?",
               "reply_markup": {"inline_keyboard": [[{"text": "Имплант", "callback_data": "dental"}]]}}
    message = _one({"update_id": 4, "callback_query": {"id": "cbq1", "from": USER, "message": carrier,
                                                       "chat_instance": "1", "data": "dental"}})
    assert (message.kind, message.choice_id, message.text, message.callback_id) == ("choice", "dental", "Имплант",
                                                                                    "cbq1")


def test_contact_location_photo_edited() -> None:
    contact = _one({"update_id": 5, "message": _msg(contact={"phone_number": "+79161234567", "first_name": "M",
                                                             "user_id": 555001})})
    assert contact.kind == "contact" and contact.contacts[0].phones == ["+79161234567"]
    location = _one({"update_id": 6, "message": _msg(location={"latitude": 55.75, "longitude": 37.61})})
    assert location.location is not None and location.location.latitude == 55.75
    photo = _one({"update_id": 7, "message": _msg(photo=[{"file_id": "s", "file_unique_id": "1", "width": 1,
                                                          "height": 1},
                                                         {"file_id": "L", "file_unique_id": "2", "width": 9,
                                                          "height": 9}], caption="снимок")})
    assert photo.kind == "media" and photo.media[0].media_id == "L" and photo.text == "снимок"
    edited = _one({"update_id": 8, "edited_message": {**_msg(text="исправлено"), "edit_date": 1763800100}})
    assert edited.edited and edited.text == "исправлено"


def test_groups_and_bots_are_ignored_by_policy() -> None:
    group = parse_update({"update_id": 9, "message": {**_msg(text="hi"), "chat": {"id": -100, "type": "group"}}},
                         "1")
    bot = parse_update({"update_id": 10, "message": _msg(text="hi", **{"from": {**USER, "is_bot": True}})}, "1")
    assert group.messages == [] and group.ignored == 1 and bot.messages == [] and bot.ignored == 1
    allowed = parse_update({"update_id": 11, "message": {**_msg(text="hi"), "chat": {"id": -1, "type": "group"}}},
                           "1", ignore_groups=False)
    assert len(allowed.messages) == 1


@pytest.mark.parametrize("body", [{}, {"update_id": "1"}, {"update_id": True}, [], None])
def test_not_an_update(body: object) -> None:
    with pytest.raises(WebhookRejectedError):
        parse_update(body, "1")


def test_secret_and_bot_id() -> None:
    verify_secret("abc", "abc")
    with pytest.raises(WebhookRejectedError):
        verify_secret(None, "abc")
    with pytest.raises(WebhookRejectedError):
        verify_secret("abd", "abc")
    assert bot_id("7000000001:AAabc") == "7000000001"


def test_render_inline_keyboard_and_phone_request() -> None:
    params = render(Reply(text="?", options=[Option(id="a", title="Evet"), Option(id="b", title="Hayır"),
                                             Option(id="c", title="Belki daha sonra görüşelim")]))
    rows = params["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in rows] == [["a", "b"], ["c"]]
    phone = render(Reply(text="Numaranız?", request_phone=True))
    assert phone["reply_markup"]["keyboard"][0][0]["request_contact"] is True


# -- typed parsing of documented updates; a bad update dropped and logged without its contents ------
DOCUMENTED = json.loads((Path(__file__).parents[1] / "data" / "telegram" / "documented.json").read_text(
    encoding="utf-8"))


def test_every_documented_update_kind_becomes_its_canonical_message() -> None:
    text = _one(DOCUMENTED["text"])
    assert (text.kind, text.sender_id, text.message_id) == ("text", "111111111", "update:804512001")
    assert text.profile.name == "Мария Иванова" and text.profile.username == "maria_iv"
    assert text.timestamp == datetime(2025, 11, 22, 8, 26, 40, tzinfo=UTC)
    assert (_one(DOCUMENTED["start"]).kind, _one(DOCUMENTED["start"]).start_payload) == ("start", "K7Q2MX")
    press = _one(DOCUMENTED["callback_query"])
    assert (press.kind, press.choice_id, press.text, press.callback_id) == (
        "choice", "dental", "Стоматология", "4382bfdwdsb323b2d9")
    contact = _one(DOCUMENTED["contact"])
    assert contact.contacts[0].phones == ["79161234567"] and contact.contacts[0].user_id == "111111111"
    location = _one(DOCUMENTED["location"]).location
    assert location is not None and (location.latitude, location.longitude) == (55.755826, 37.6173)
    photo = _one(DOCUMENTED["photo"])
    assert (photo.media[0].media_id, photo.text) == ("AgACAgIAAxkBAAIBQ2VzAAF3", "снимок")
    document = _one(DOCUMENTED["document"])
    assert (document.media[0].filename, document.media[0].mime_type) == ("анализы.pdf", "application/pdf")
    edited = _one(DOCUMENTED["edited_message"])
    assert edited.edited and edited.timestamp == datetime(2025, 11, 22, 8, 28, 20, tzinfo=UTC)


def test_updates_the_relay_does_not_read_are_ignored_not_dropped() -> None:
    blocked = parse_update(DOCUMENTED["my_chat_member"], "1")  # a blocked bot is an opt-out, not a message
    group = parse_update(DOCUMENTED["group_message"], "1")
    assert (blocked.messages, blocked.ignored, blocked.skipped, blocked.opt_outs) == ([], 0, 0, [("1", "111111111")])
    assert (group.messages, group.ignored, group.skipped) == ([], 1, 0)


def _without(update: dict[str, Any], key: str) -> dict[str, Any]:
    message = dict(update["message"])
    del message[key]
    return {**update, "message": message}


@pytest.mark.parametrize(("update", "fault"), [
    (_without(DOCUMENTED["text"], "chat"), "message.chat: missing"),
    ({**DOCUMENTED["text"], "message": {**DOCUMENTED["text"]["message"], "text": {"text": "Здравствуйте"}}},
     "message.text: string_type"),
    ({**DOCUMENTED["text"], "message": {**DOCUMENTED["text"]["message"], "text": "тайна\x00"}},
     "message.text: Value error, text holds a NUL character"),
    ({**DOCUMENTED["text"], "message": {**DOCUMENTED["text"]["message"], "date": 32503680000}},  # the year 3000
     "message.date: Value error, timestamp outside any plausible range"),
    ({**DOCUMENTED["text"], "message": {**DOCUMENTED["text"]["message"], "from": {"id": "111111111"}}},
     "message.from.id: int_type"),
    ({**DOCUMENTED["contact"], "message": {**DOCUMENTED["contact"]["message"], "contact": {"phone_number": 79161234567,
                                                                                          "first_name": "Мария"}}},
     "message.contact.phone_number: string_type"),
])
def test_an_invalid_update_is_dropped_and_logged_without_its_contents(update: dict[str, Any], fault: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    parsed = parse_update(update, "7000000001")
    assert (parsed.messages, parsed.skipped) == ([], 1)
    problems = [p for r in caplog.records for p in getattr(r, "problems", [])]
    assert fault in problems, problems
    for patient_data in ("Мария", "Иванова", "maria_iv", "Здравствуйте", "тайна", "79161234567", "111111111"):
        assert patient_data not in caplog.text and all(patient_data not in str(r.__dict__) for r in caplog.records)


def test_the_secret_token_known_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telegram sends the secret given to setWebhook unchanged: the header must equal it, byte for byte,
    compared in constant time."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(telegram.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    verify_secret("Kx9_q-7ZtR2v", "Kx9_q-7ZtR2v")
    assert compared == [(b"Kx9_q-7ZtR2v", b"Kx9_q-7ZtR2v")]
    for forged, status in [("kx9_q-7ZtR2v", 403), ("Kx9_q-7ZtR2v ", 403), ("Kx9_q-7ZtR2", 403), ("", 401),
                           ("Кx9_q-7ZtR2v", 403)]:  # the last begins with a Cyrillic К
        with pytest.raises(WebhookRejectedError) as info:
            verify_secret(forged, "Kx9_q-7ZtR2v")
        assert info.value.status == status, forged
    assert len(compared) == 5  # every refusal but the missing header went through the constant-time compare
