"""The outbox: replies leave after the turn is committed, in order, once; a channel that fails never holds up,
loses or repeats the lead, and never makes the bot answer a message twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from connector import conversations, leads, outbox
from core import metrics
from tests.e2e.conftest import Stack
from tests.e2e.test_end_to_end import _bot_texts

PATIENT = "4915177770000"


@pytest.fixture
def stack_config() -> dict[str, Any]:
    # a first retry waits 3 to 6 s: long enough for the next message's turn to commit meanwhile, on a loaded
    # machine too (the next message is read from the channel's intake before its turn)
    return {"default_flow": "meeting_request", "delivery.backoff_base_seconds": 6, "delivery.backoff_max_seconds": 8}


def _work_until(stack: Stack, done: Any, seconds: float = 15.0) -> None:
    """Run workers until ``done()`` (a retry waits for its backoff, then for rq's scheduler or the sweeper)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the relay did not get there in time"
        time.sleep(0.2)
        stack.work()


def test_a_throttled_confirmation_is_sent_later_once_and_the_lead_does_not_wait(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    for said in ("Hello, I would like a meeting", "Reporting", "Muster GmbH, hans@muster.de"):
        patient.send_text(said)
        stack.work()
    stack.whatsapp.fail_next(1, "429")  # the confirmation is throttled: it waits for its retry
    patient.send_text("Thursday 15:00")
    stack.work()
    assert stack.hubspot.count("deals") == 1  # the lead reached the CRM while its reply waited
    key = f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{PATIENT}"
    (waiting,) = outbox.pending(stack.runtime, key)  # no read receipt: the reply tells the patient
    assert waiting.kind == "reply" and waiting.attempts == 1 and waiting.reply is not None
    assert "#1001" in waiting.reply.text
    _work_until(stack, lambda: "#1001" in " ".join(_bot_texts(stack, PATIENT)))
    texts = _bot_texts(stack, PATIENT)
    assert sum("#1001" in t for t in texts) == 1 and len(texts) == len(set(texts))
    assert int(stack.runtime.redis.get(leads.SEQUENCE.key()) or 0) == 1  # the turn ran once: one number issued
    assert metrics.read(stack.runtime.redis, "messages_in") == {("whatsapp", "text"): 4.0}  # each message once
    assert stack.hubspot.count("deals") == 1 and stack.hubspot.count("notes") == 1
    assert not outbox.pending(stack.runtime, key)


def test_a_later_reply_never_overtakes_one_waiting_for_its_retry(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    stack.whatsapp.fail_next(1, "429")  # the first message's reply (the greeting and the first question)
    patient.send_text("Hello, I would like a meeting")
    stack.work()
    patient.send_text("Reporting")
    stack.work()  # the second turn is committed, its reply queued behind the first
    _work_until(stack, lambda: len(_bot_texts(stack, PATIENT)) >= 2)
    texts = _bot_texts(stack, PATIENT)
    assert texts == ["Hello! Happy to help you on behalf of Demo Clinic.\n\nWhat would you like to discuss?",
                     "What is your company's name and your e-mail address?"]  # in order, each once
    # and the case was real: the second answer was decided before the first reply could go out
    conversation = conversations.load(stack.runtime, f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{PATIENT}")
    assert conversation is not None
    decided = next(e.at for e in conversation.transcript if e.text.startswith("What is your company"))
    assert stack.whatsapp.messages_to(PATIENT)[0].at > decided.timestamp()
