"""Who writes, to which number, in what kind of message: signed webhooks through the relay, its worker and the
emulators, to the CRM. One person keeps one conversation and one CRM contact across their WhatsApp ids."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from connector import conversations
from connector.channels import client_for
from connector.channels.telegram import bot_id
from connector.inbox import messages as inbox_messages
from core.errors import FatalError
from core.models import Conversation, Reply
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack

MAIN = TEST_SECRETS["whatsapp_phone_number_id"]
SECOND, FOREIGN = "106540352200002", "106540352200003"
PHONE, NEW_PHONE, BSUID = "905321112233", "905329998877", "TR.1234567890"


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request", "inbox": {"enabled": False},
            "channels.whatsapp": {"phone_number": "905320000000", "numbers": [
                {"phone_number_id": SECOND, "flow": "health_tourism_intake"}]}}


@pytest.fixture(autouse=True)
def _account_numbers(whatsapp_emulator: Any) -> None:
    # the business account has three numbers; the deployment serves two of them
    whatsapp_emulator.other_numbers.update({SECOND: "905320000002", FOREIGN: "905320000003"})


def _texts(sent: list[Any]) -> list[str]:
    out = []
    for message in sent:
        payload = message.payload
        out.append(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])
    return out


def _key(sender: str, account: str = MAIN) -> str:
    return f"whatsapp:{account}:{sender}"


def test_one_person_one_conversation_one_contact_whichever_id_they_write_with(stack: Stack) -> None:
    hidden = stack.whatsapp.patient(PHONE, "Ayşe Yılmaz", user_id=BSUID, username="@ayse", phone_hidden=True)
    hidden.send_text("Merhaba, bir görüşme ayarlamak istiyorum")
    stack.work()
    assert stack.whatsapp.messages_to(BSUID)  # only the business-scoped id is known: the reply goes there
    hidden.send_text("Süreç otomasyonu")
    stack.work()
    # the number shows again (Meta's contact book): same person, same conversation, replies to the number
    hidden.phone_hidden = False
    hidden.send_text("ABC Lojistik, info@abc.com")
    stack.work()
    assert _texts(stack.whatsapp.messages_to(PHONE)) == ["Hangi gün ve saat size uygun?"]
    # a message naming the number alone reaches the same conversation too
    stack.whatsapp.patient(PHONE, "Ayşe Yılmaz").send_text("Çarşamba 11:00")
    stack.work()
    assert "kaydedildi" in _texts(stack.whatsapp.messages_to(PHONE))[-1]
    assert inbox_messages(stack.runtime, _key(PHONE)) == [] and conversations.load(stack.runtime, _key(PHONE)) is None
    conversation = conversations.load(stack.runtime, _key(BSUID))
    assert conversation is not None and conversation.phone == f"+{PHONE}" and conversation.status == "closed"
    (contact,) = stack.hubspot.records("contacts")
    assert contact["properties"]["chat2crm_contact_key"] == f"whatsapp:{BSUID}"  # the id first seen: stable
    assert contact["properties"]["phone"] == f"+{PHONE}"  # the number learned later, on the same contact


def test_a_card_shared_as_their_own_gives_a_username_user_a_number(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PHONE, "Ayşe", user_id=BSUID, username="@ayse", phone_hidden=True)
    patient.send_text("Merhaba")
    stack.work()
    stack.whatsapp.patient(None, "Ayşe", user_id=BSUID, phone_hidden=True).share_contact(
        "Annem", "+90 532 000 00 00", "905320000000")  # someone else's card: kept, not linked
    stack.work()
    assert conversations.load(stack.runtime, _key(BSUID)).phone is None  # type: ignore[union-attr]
    patient.share_own_contact()  # through WhatsApp's request-contact-info button
    stack.work()
    assert conversations.load(stack.runtime, _key(BSUID)).phone == f"+{PHONE}"  # type: ignore[union-attr]
    patient.send_text("Süreç otomasyonu")
    stack.work()
    assert stack.whatsapp.messages_to(PHONE)  # from now on the number is where replies go


def test_a_changed_number_carries_the_conversation_and_the_contact(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PHONE, "Ayşe Yılmaz")
    for text in ("Merhaba, görüşme istiyorum", "Süreç otomasyonu"):
        patient.send_text(text)
        stack.work()
    before = len(stack.whatsapp.sent)
    assert patient.change_number(NEW_PHONE) == 200  # Meta's system notice: no bot turn
    stack.work()
    assert len(stack.whatsapp.sent) == before
    patient.send_text("ABC Lojistik, info@abc.com")
    stack.work()
    assert _texts(stack.whatsapp.messages_to(NEW_PHONE)) == ["Hangi gün ve saat size uygun?"]
    patient.send_text("Çarşamba 11:00")
    stack.work()
    (contact,) = stack.hubspot.records("contacts")
    assert contact["properties"]["chat2crm_contact_key"] == f"whatsapp:{PHONE}"
    assert contact["properties"]["phone"] == f"+{NEW_PHONE}"
    # someone who gets the old number later is someone else
    stranger = stack.whatsapp.patient(PHONE, "Mehmet", user_id="TR.5550000001")
    stranger.send_text("Merhaba")
    stack.work()
    assert conversations.load(stack.runtime, _key("TR.5550000001")) is not None
    assert conversations.load(stack.runtime, _key(PHONE)).phone == f"+{NEW_PHONE}"  # type: ignore[union-attr]


def test_each_served_number_has_its_flow_and_answers_from_itself(stack: Stack,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    stack.whatsapp.patient("4915112345678", "Jonas").send_text("Hello, I would like a call")
    stack.whatsapp.patient("447700900123", "Emma", to=SECOND).send_text("Hello, a question about implants")
    caplog.set_level(logging.INFO, "chat2crm.routing")
    assert stack.whatsapp.patient("33612345678", "Lea", to=FOREIGN).send_text("Bonjour") == 200
    stack.work()
    (meeting,) = stack.whatsapp.messages_to("4915112345678")
    (intake,) = stack.whatsapp.messages_to("447700900123")
    assert (meeting.sender, intake.sender) == (MAIN, SECOND)
    assert conversations.load(stack.runtime, _key("4915112345678")).flow == "meeting_request"  # type: ignore[union-attr]
    assert conversations.load(stack.runtime, _key("447700900123", SECOND)).flow == (  # type: ignore[union-attr]
        "health_tourism_intake")
    assert stack.whatsapp.messages_to("33612345678") == []
    assert conversations.load(stack.runtime, _key("33612345678", FOREIGN)) is None
    assert any(r.getMessage().startswith("message to a WhatsApp number this deployment does not serve")
               for r in caplog.records)


def test_reactions_and_stickers(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PHONE, "Ayşe")
    patient.send_text("Merhaba, görüşme istiyorum")
    stack.work()
    (question,) = stack.whatsapp.messages_to(PHONE)
    patient.react(question.id)
    stack.work()
    assert len(stack.whatsapp.messages_to(PHONE)) == 1  # no bot turn
    patient.send_sticker()
    patient.send_sticker()
    stack.work()
    replies = _texts(stack.whatsapp.messages_to(PHONE))[1:]
    assert len(replies) == 1 and replies[0].endswith("Görüşmenin konusu nedir?")  # said once, the question again
    conversation = conversations.load(stack.runtime, _key(PHONE))
    assert conversation is not None and [m.kind for m in conversation.media] == ["sticker", "sticker"]
    assert conversation.attempts == {"topic": 1} and conversation.status == "bot"


def test_a_telegram_edit_corrects_the_answer(stack: Stack) -> None:
    user = stack.telegram.user(555001, "Jonas Weber", language_code="de")
    user.send_text("Hallo, ich möchte einen Termin")
    stack.work()
    user.send_text("Berichte")
    stack.work()
    user.edit("Automatisierung der Berichte")
    stack.work()
    texts = [m["text"] for m in stack.telegram.messages_to(555001)]
    assert texts[-1] == texts[-2]  # the question after the corrected answer, again
    conversation = conversations.load(stack.runtime, f"telegram:{bot_id(TEST_SECRETS['telegram_bot_token'])}:555001")
    assert conversation is not None and conversation.answers["topic"] == "Automatisierung der Berichte"


def test_nothing_reaches_a_telegram_chat_that_blocked_the_bot_until_it_starts_again(stack: Stack) -> None:
    user = stack.telegram.user(555002, "Jonas Weber", language_code="de")
    user.send_text("Hallo")
    stack.work()
    user.block()
    stack.work()
    account = bot_id(TEST_SECRETS["telegram_bot_token"])
    conversation = conversations.load(stack.runtime, f"telegram:{account}:555002")
    assert conversation is not None and conversation.opted_out
    calls = stack.telegram.calls
    chat = Conversation(key=conversation.key, channel="telegram", account=account, sender_id="555002")
    with pytest.raises(FatalError, match="blocked the bot"):  # an agent's reply, say: refused before any call
        client_for(stack.runtime, "telegram").send(chat, [Reply(text="Guten Tag")])
    assert stack.telegram.calls == calls
    user.unblock()
    user.start()
    stack.work()
    assert stack.telegram.messages_to(555002)[-1]["text"].startswith("Willkommen zurück")
