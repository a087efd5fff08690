"""Telegram updates → canonical messages."""

from __future__ import annotations

import pytest

from connector.channels.telegram import bot_id, parse_update, render, verify_secret
from connector.errors import WebhookRejectedError
from connector.models import Option, Reply

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
