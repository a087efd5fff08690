"""A turn's replies as outbox entries: plain texts joined into the reply after them, within what one message of
the channel holds; templates never joined; the read receipt only when no reply goes out."""

from __future__ import annotations

import pytest

from connector import outbox
from connector.channels import telegram, whatsapp
from connector.coalesce import coalesce, fits
from core.models import Channel, Conversation, InboundMessage, Option, Reply, utcnow

GREETING = Reply(text="Hello! Happy to help you on behalf of Demo Clinic.")
NOTE = Reply(text="I did not catch that.")
QUESTION = Reply(text="What would you like to discuss?")
CHOICE = Reply(text="Which treatment?", options=[Option(id="dental", title="Dental"), Option(id="hair", title="Hair")])
TEMPLATE = Reply(text="Your request #1001 is registered.", template="lead_confirmation", template_params=["#1001"])


def _options(count: int, title: str = "Option") -> list[Option]:
    return [Option(id=f"o{n}", title=f"{title} {n}") for n in range(count)]


@pytest.mark.parametrize("channel", ["whatsapp", "telegram"])
def test_a_greeting_a_note_and_a_question_leave_as_one_message(channel: Channel) -> None:
    (one,) = coalesce(channel, [GREETING, NOTE, QUESTION])
    assert one.text == f"{GREETING.text}\n\n{NOTE.text}\n\n{QUESTION.text}"


def test_the_joined_reply_keeps_the_second_replys_options_and_flags() -> None:
    phone = Reply(text="Your phone number?", request_phone=True)
    listed = Reply(text="Pick one", options=_options(5), list_button="Treatments")
    assert coalesce("telegram", [GREETING, phone]) == [
        Reply(text=f"{GREETING.text}\n\n{phone.text}", request_phone=True)]
    assert coalesce("whatsapp", [GREETING, CHOICE]) == [
        CHOICE.model_copy(update={"text": f"{GREETING.text}\n\n{CHOICE.text}"})]
    (joined,) = coalesce("whatsapp", [GREETING, listed])
    assert joined.options == listed.options and joined.list_button == "Treatments"


@pytest.mark.parametrize("first", [
    CHOICE,
    Reply(text="Share your phone", request_phone=True),
    Reply(text="Share your location", request_location=True),
    Reply(text="Pick one", list_button="Treatments"),
    TEMPLATE,
])
def test_a_reply_that_is_more_than_text_is_never_joined_to_the_next(first: Reply) -> None:
    assert coalesce("whatsapp", [first, QUESTION]) == [first, QUESTION]
    assert coalesce("telegram", [first, QUESTION]) == [first, QUESTION]


def test_a_template_reply_is_never_joined_to_the_text_before_it() -> None:
    assert coalesce("whatsapp", [GREETING, TEMPLATE]) == [GREETING, TEMPLATE]
    # the texts before the template still join each other
    assert coalesce("whatsapp", [GREETING, NOTE, TEMPLATE, QUESTION]) == [
        Reply(text=f"{GREETING.text}\n\n{NOTE.text}"), TEMPLATE, QUESTION]


def test_nothing_or_one_reply_stays_as_it_is() -> None:
    assert coalesce("whatsapp", []) == []
    assert coalesce("telegram", [QUESTION]) == [QUESTION]


def _pair(total: int, second: Reply) -> list[Reply]:
    """A plain reply, then ``second``, whose joined text is ``total`` characters long."""
    filler = total - len(second.text) - len("\n\n")
    return [Reply(text="x" * filler), second]


@pytest.mark.parametrize(("channel", "second", "limit"), [
    ("whatsapp", QUESTION, 4096),  # a text body
    ("whatsapp", CHOICE, whatsapp.MAX_BODY),  # reply buttons: 1024
    ("whatsapp", Reply(text="Pick one", options=_options(7)), whatsapp.MAX_BODY),  # a list: 1024
    ("telegram", QUESTION, telegram.MAX_TEXT),
    ("telegram", CHOICE, telegram.MAX_TEXT),  # an inline keyboard does not shorten Telegram's text
])
def test_texts_join_up_to_what_one_message_holds(channel: Channel, second: Reply, limit: int) -> None:
    assert len(coalesce(channel, _pair(limit, second))) == 1
    assert coalesce(channel, _pair(limit + 1, second)) == _pair(limit + 1, second)  # too long: kept apart


def test_whatsapp_numbered_options_count_their_lines_in_the_text_body() -> None:
    numbered = Reply(text="Pick one", options=_options(11))  # more than a list holds: numbered text
    # the text, a blank line, then one line an option
    lines = len("\n\n" + "\n".join(f"{n}. {o.title}" for n, o in enumerate(numbered.options, 1)))
    assert len(coalesce("whatsapp", _pair(4096 - lines, numbered))) == 1
    assert len(coalesce("whatsapp", _pair(4096 - lines + 1, numbered))) == 2
    assert len(coalesce("telegram", _pair(4096, numbered))) == 1


def test_long_titles_make_a_whatsapp_list_or_numbered_text_and_change_the_limit() -> None:
    rows = Reply(text="Pick one", options=_options(3, "Twenty-one characters"))  # 21 to 24: a list, not buttons
    assert whatsapp.MAX_BUTTON_TITLE < len(rows.options[0].title) <= whatsapp.MAX_ROW_TITLE
    assert fits("whatsapp", rows.model_copy(update={"text": "x" * 1024}))
    assert not fits("whatsapp", rows.model_copy(update={"text": "x" * 1025}))
    numbered = Reply(text="Pick one", options=_options(3, "A title longer than a list row"))  # > 24: numbered text
    assert len(numbered.options[0].title) > whatsapp.MAX_ROW_TITLE
    assert fits("whatsapp", numbered.model_copy(update={"text": "x" * 1025}))


def test_the_engines_replies_are_not_changed() -> None:
    replies = [GREETING, QUESTION]
    coalesce("whatsapp", replies)
    assert replies == [GREETING, QUESTION]


# -- the outbox entries of a turn: receipts ---------------------------------------------------------------------

def _turn(channel: Channel = "whatsapp", message_id: str = "wamid.IN1",
          callback_id: str | None = None) -> tuple[Conversation, InboundMessage]:
    message = InboundMessage(channel=channel, account="106540352242922", sender_id="905321112233",
                             message_id=message_id, timestamp=utcnow(), kind="text", text="Merhaba",
                             callback_id=callback_id)
    conversation = Conversation(key=message.conversation_key, channel=channel, account=message.account,
                                sender_id=message.sender_id)
    return conversation, message


def test_a_turn_with_replies_sends_no_read_receipt() -> None:
    conversation, message = _turn()
    made = outbox.entries(conversation, message, [GREETING, QUESTION])
    assert [e.kind for e in made] == ["reply"]  # the two texts as one message, and no receipt
    assert made[0].reply is not None and made[0].reply.text == f"{GREETING.text}\n\n{QUESTION.text}"


def test_a_turn_without_replies_marks_the_message_read() -> None:
    conversation, message = _turn()
    (receipt,) = outbox.entries(conversation, message, [])
    assert receipt.kind == "read" and receipt.message_id == "wamid.IN1"
    assert outbox.entries(conversation, message, [], courtesy=False) == []
    # a message with no WhatsApp id (a test's or the emulator's own) and Telegram (no receipts) get none
    assert outbox.entries(*_turn(message_id="local-1"), []) == []
    assert outbox.entries(*_turn("telegram", "update:7"), []) == []


def test_a_button_press_is_still_acknowledged_first() -> None:
    conversation, message = _turn("telegram", "update:8", callback_id="cb-1")
    assert [e.kind for e in outbox.entries(conversation, message, [GREETING, CHOICE])] == ["callback", "reply"]
    assert [e.kind for e in outbox.entries(conversation, message, [])] == ["callback"]


def test_entry_ids_are_stable_for_the_same_turn() -> None:
    conversation, message = _turn()
    first = [e.id for e in outbox.entries(conversation, message, [GREETING, TEMPLATE, QUESTION])]
    again = [e.id for e in outbox.entries(conversation, message, [GREETING, TEMPLATE, QUESTION])]
    assert first == again and len(set(first)) == 3
