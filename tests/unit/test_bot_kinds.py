"""The bot and the messages that are not simply the next answer: reactions, stray files, edits, system notices."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.bot.engine import EngineContext, LeadReady, handle
from connector.bot.flows import load_flows
from connector.bot.kinds import NEEDS_ANSWER
from core.models import Conversation, InboundMessage, Location, MediaRef
from tests.paths import FLOWS as SHIPPED_FLOWS

ZONE = ZoneInfo("Europe/Istanbul")
FLOWS = load_flows(SHIPPED_FLOWS)
EMAIL_PROMPT = "Could you also write your e-mail address?"
COMPANY_PROMPT = "What is your company's name and your e-mail address?"
TIME_PROMPT = "Which day and time suit you?"


class Chat:
    """One Telegram patient talking to the meeting flow, each message with its chat message id."""

    def __init__(self, *, language: str | None = "en", channel: str = "telegram") -> None:
        self.flow = FLOWS["meeting_request"]
        self.now = datetime(2026, 11, 23, 9, 30, tzinfo=ZONE)
        self.conv = Conversation(key=f"{channel}:1:555001", channel=channel, account="1",  # type: ignore[arg-type]
                                 sender_id="555001", language=language)
        self.ids = itertools.count(1)
        self.events: list[Any] = []
        self.sent: dict[str, InboundMessage] = {}

    def send(self, text: str | None = None, *, minutes: float = 1, **extra: Any) -> list[str]:
        """Send a message (kind ``text`` unless ``extra`` says otherwise); the bot's reply texts."""
        self.now += timedelta(minutes=minutes)
        number = next(self.ids)
        fields: dict[str, Any] = {"kind": "text", "chat_message_id": str(1000 + number), **extra}
        message = InboundMessage(channel=self.conv.channel, account="1", sender_id="555001",
                                 message_id=f"update:{number}", timestamp=self.now, text=text, **fields)
        self.sent[text or str(number)] = message
        ctx = EngineContext(now=self.now, timezone=ZONE, languages=["tr", "en", "de", "ar", "ru"],
                            fallback_language="en", resume_window=timedelta(hours=2),
                            handoff_release=timedelta(hours=24), new_reference=lambda: "#1042",
                            transcript_url=lambda c: None, clinic_name="Demo Clinic")
        turn = handle(self.conv, message, flow=self.flow, ctx=ctx)
        self.conv, self.events = turn.conversation, self.events + turn.events
        return [r.text for r in turn.replies]

    def edit(self, original: str, text: str, **extra: Any) -> list[str]:
        """Edit the message that said ``original`` (Telegram: the same chat message id, ``edited``)."""
        return self.send(text, edited=True, chat_message_id=self.sent[original].chat_message_id, **extra)

    def file(self, kind: str = "image") -> list[str]:
        number = next(self.ids)
        return self.send(kind="media", media=[MediaRef(kind=kind, media_id=f"file-{number}")])  # type: ignore[arg-type]


def _at_email(chat: Chat) -> None:
    chat.send("Hi")
    chat.send("Reporting")
    assert chat.send("Acme") == [EMAIL_PROMPT]


def test_a_reaction_gets_no_turn_and_is_no_failed_answer() -> None:
    chat = Chat()
    _at_email(chat)
    assert chat.send(kind="reaction", reaction="\N{THUMBS UP SIGN}", minutes=600) == []  # even after a long pause
    assert (chat.conv.step, chat.conv.attempts) == ("email", {})
    assert chat.conv.transcript[-1].kind == "reaction"  # kept for the note
    assert chat.send("a@acme.io") == [TIME_PROMPT]


@pytest.mark.parametrize("kind", ["image", "document", "audio", "video", "sticker", "voice"])
def test_a_stray_file_is_kept_asks_once_and_never_hands_over(kind: str) -> None:
    chat = Chat()
    _at_email(chat)
    chat.send("nope")
    chat.send("still nope")
    assert chat.conv.attempts == {"email": 2}
    # the third failed try would hand over: a file is never that try
    assert chat.file(kind) == [NEEDS_ANSWER["en"], EMAIL_PROMPT]
    assert chat.file(kind) == [] and chat.file(kind) == []  # an album: said once
    assert chat.conv.status == "bot" and chat.conv.attempts == {"email": 2}
    assert [m.kind for m in chat.conv.media] == [kind] * 3
    assert "passing you to a colleague" in chat.send("no")[0]  # a bad text still counts
    assert chat.conv.status == "handoff" and [m.kind for m in chat.events[-1].lead.media] == [kind] * 3


def test_a_stray_file_counts_one_try_at_most() -> None:
    chat = Chat()
    _at_email(chat)
    assert chat.file() == [NEEDS_ANSWER["en"], EMAIL_PROMPT]
    assert chat.conv.attempts == {"email": 1}
    chat.file()
    assert chat.conv.attempts == {"email": 1}
    chat.send("still not an address")
    assert chat.file() == [NEEDS_ANSWER["en"], EMAIL_PROMPT]  # after a text, a new file is answered again
    assert chat.conv.attempts == {"email": 2} and chat.conv.status == "bot"


def test_files_while_the_language_is_asked_never_hand_over() -> None:
    chat = Chat(language=None)
    chat.send("Hi")
    assert chat.conv.step == "__language__"
    asked = chat.send("?")
    assert chat.file() == asked  # the language question again, once
    for _ in range(5):
        assert chat.file() == []
    assert chat.conv.status == "bot" and chat.conv.step == "__language__"
    assert chat.send("English") == ["Hello! Happy to help you on behalf of Demo Clinic.", "What would you like to "
                                                                                          "discuss?"]


def test_an_edit_corrects_the_answer_the_bot_just_moved_on_from() -> None:
    chat = Chat()
    chat.send("Hi")
    assert chat.send("Reporting") == [COMPANY_PROMPT]
    assert chat.edit("Reporting", "Automation of reports") == [COMPANY_PROMPT]  # the question after it, again
    assert chat.conv.answers["topic"] == "Automation of reports" and chat.conv.step == "company"
    assert chat.conv.transcript[-2].text == "✏️ Automation of reports"
    # an answer that named more than asked: the correction is read the same way
    assert chat.send("Acme") == [EMAIL_PROMPT]
    assert chat.edit("Acme", "Beta Ltd, info@beta.io") == [TIME_PROMPT]
    assert (chat.conv.answers["company"], chat.conv.answers["email"]) == ("Beta Ltd", "info@beta.io")


def test_an_edit_of_a_refused_answer_answers_again() -> None:
    chat = Chat()
    _at_email(chat)
    chat.send("my mail is secret")
    assert chat.edit("my mail is secret", "a@acme.io") == [TIME_PROMPT]
    assert chat.conv.answers["email"] == "a@acme.io"


def test_an_edit_is_ignored_once_the_conversation_moved_on() -> None:
    chat = Chat()
    chat.send("Hi")
    chat.send("Reporting")
    chat.send("Acme")  # answers the next step: "Reporting" can no longer be corrected
    before = chat.conv.model_copy(deep=True)
    assert chat.edit("Reporting", "Something else") == []
    assert chat.conv == before  # nothing changes, not even the transcript
    chat.send("nope")  # a refused answer is a message too: "Acme" is not the last answer any more
    assert chat.edit("Acme", "Other Ltd") == [] and chat.conv.answers["company"] == "Acme"


def test_an_edit_after_the_request_is_complete_is_ignored() -> None:
    chat = Chat()
    _at_email(chat)
    chat.send("a@acme.io")
    done = chat.send("Wednesday 11:00")
    assert "#1042" in done[0] and chat.conv.status == "closed"
    assert chat.edit("Wednesday 11:00", "Thursday 15:00") == []
    (lead,) = [e.lead for e in chat.events if isinstance(e, LeadReady)]  # one, as before the edit
    assert lead.request.preferred_time is not None and lead.request.preferred_time.startswith("2026-11-25T11:00")


def test_an_edited_location_is_not_an_answer() -> None:  # a live location moving is an edit too
    chat = Chat()
    chat.send("Hi")
    assert chat.send(kind="location", location=Location(latitude=41.0, longitude=29.0)) == [
        "Could you write a little more?", "What would you like to discuss?"]
    assert chat.send(kind="location", location=Location(latitude=41.1, longitude=29.1), edited=True,
                     chat_message_id="1002") == []
    assert chat.conv.attempts == {"topic": 1}


def test_a_number_change_updates_the_identity_without_a_turn() -> None:
    chat = Chat(channel="whatsapp")
    _at_email(chat)
    transcript = list(chat.conv.transcript)
    replies = chat.send(kind="unsupported", raw_type="user_changed_number", sender_phone="+12195555358")
    assert replies == [] and chat.conv.phone == "+12195555358"
    assert chat.conv.transcript == transcript and chat.conv.step == "email" and chat.conv.attempts == {}
    replies = chat.send(kind="unsupported", raw_type="user_changed_user_id", sender_user_id="US.99")
    assert replies == [] and chat.conv.user_id == "US.99"
