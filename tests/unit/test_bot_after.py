"""After the bot, with the CRM's inbox on: a completed or handed-over conversation is the agents'; the bot
speaks again only on a restart, a new start, a hand-back, or a long silence. With the inbox off, the bot
behaves as it always did."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from connector.bot.after import RELEASED, hand_back, with_agents
from connector.bot.engine import EngineContext, ForAgent, LeadReady
from tests.unit.test_bot_engine import Chat

IDLE = timedelta(hours=72)


class InboxChat(Chat):
    """A chat whose relay publishes the conversation after the bot into the CRM's inbox."""

    def __init__(self, *args: Any, inbox: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = inbox

    def ctx(self) -> EngineContext:
        return dataclasses.replace(super().ctx(), inbox=self.inbox, inbox_idle=IDLE)

    def for_agents(self) -> list[str]:
        return [e.message_id for e in self.events if isinstance(e, ForAgent)]


def _completed(inbox: bool = True) -> InboxChat:
    chat = InboxChat("meeting_request", language="en", inbox=inbox)
    for text in ("Hi", "Topic", "Acme, a@acme.io", "Wednesday 11:00"):
        chat.send(text)
    assert chat.conv.status == "closed" and len(chat.leads) == 1
    return chat


def _handed_over() -> InboxChat:
    chat = InboxChat("meeting_request", language="en")
    chat.send("Hi")
    chat.send("human")
    assert chat.conv.status == "handoff" and len(chat.leads) == 1
    return chat


def test_after_a_completed_request_every_message_is_for_the_agents() -> None:
    chat = _completed()
    assert chat.send("Thanks! Can I bring a colleague?") == []
    assert chat.send("Hello again", minutes=60 * 24) == []  # a day later: still the agents'
    assert chat.for_agents() == ["m5", "m6"]
    assert len(chat.leads) == 1 and chat.conv.status == "closed"
    # the messages are in the transcript, as the patient's
    assert [e.text for e in chat.conv.transcript[-2:]] == ["Thanks! Can I bring a colleague?", "Hello again"]


def test_asking_for_a_person_while_with_the_agents_makes_no_second_lead() -> None:
    chat = _handed_over()
    assert chat.send("human") == []
    assert chat.send("hello?") == []
    assert len(chat.leads) == 1 and chat.for_agents() == ["m3", "m4"]


def test_restart_and_a_new_start_bring_the_bot_back() -> None:
    chat = _completed()
    replies = chat.send("start over")
    assert replies[0].startswith("Hello!") and not chat.for_agents()
    chat = _completed()
    assert chat.send("/start", kind="start")[0].startswith("Welcome back")
    assert not chat.for_agents() and chat.conv.status == "bot"


def test_stop_still_opts_out() -> None:
    chat = _completed()
    assert len(chat.send("STOP")) == 1
    assert chat.conv.opted_out and not chat.for_agents()
    assert chat.send("hello") == [] and not chat.for_agents()  # opted out: neither the bot nor the agents


def test_silence_longer_than_the_idle_window_starts_the_bot_again() -> None:
    chat = _completed()
    assert chat.send("one more thing", minutes=IDLE.total_seconds() / 60 - 5) == []
    replies = chat.send("Hello, a new request", minutes=IDLE.total_seconds() / 60 + 5)
    assert replies[0].startswith("Welcome back") and chat.for_agents() == ["m5"]
    chat.send("New topic")
    chat.send("Friday 10:00")
    assert [lead.reference for lead in chat.leads] == ["#1042", "#1043"]


def test_a_handoff_stays_with_the_agents_while_the_patient_writes_and_returns_after_a_silence() -> None:
    chat = _handed_over()
    # a conversation with an agent that goes on for two days, the patient writing every few hours
    for n in range(8):
        assert chat.send(f"message {n}", minutes=6 * 60) == []
    assert len(chat.for_agents()) == 8
    assert chat.send("hello?", minutes=IDLE.total_seconds() / 60 + 5)[0].startswith("Welcome back")
    assert len(chat.for_agents()) == 8


def test_an_agent_hands_the_conversation_back() -> None:
    chat = _completed()
    assert with_agents(chat.conv)
    assert hand_back(chat.conv, chat.now) and RELEASED in chat.conv.pending
    assert not with_agents(chat.conv) and not hand_back(chat.conv, chat.now)  # once
    replies = chat.send("Hello, another question")
    assert replies[0].startswith("Welcome back") and not chat.for_agents()
    assert RELEASED not in chat.conv.pending  # the new request starts clean
    handed = _handed_over()
    assert hand_back(handed.conv, handed.now)
    assert handed.conv.status == "closed" and "handoff_at" not in handed.conv.pending
    assert handed.send("hi")[0].startswith("Welcome back")


def test_with_the_inbox_off_the_bot_behaves_as_before() -> None:
    chat = _completed(inbox=False)
    assert chat.send("Hello again", minutes=60)[0].startswith("Welcome back")
    assert not chat.for_agents()
    off = InboxChat("meeting_request", language="en", inbox=False)
    off.send("Hi")
    off.send("human")
    off.send("human")
    assert len([e for e in off.events if isinstance(e, LeadReady)]) == 2  # as today: each request is a lead
