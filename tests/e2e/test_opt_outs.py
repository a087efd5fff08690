"""Opting out over real HTTP: a marketing template's "Stop promotions" button, a stop written inside a
sentence; the confirmation always reaches the patient, and nothing after it (no reply waiting from before,
no pause notice, not even when WhatsApp's own opt-out webhook follows at once)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from connector import conversations, outbox
from tests.e2e.conftest import Stack

STOPPED = "Understood, we will not message you again. Write 'start' to begin again."


@pytest.fixture
def stack_config() -> dict[str, Any]:
    # a throttled reply waits 1.5 to 3 s: long enough for the next turn to commit meanwhile
    return {"default_flow": "meeting_request", "limits.per_sender_per_minute": 5,
            "delivery.backoff_base_seconds": 3, "delivery.backoff_max_seconds": 4}


def _texts(stack: Stack, wa_id: str) -> list[str]:
    out = []
    for sent in stack.whatsapp.messages_to(wa_id):
        payload = sent.payload
        out.append(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])
    return out


def _work_until(stack: Stack, done: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the relay did not get there in time"
        time.sleep(0.1)
        stack.work()


def _press_template_button(patient: Any, stack: Stack, text: str, payload: str) -> int:
    """Tap a quick-reply button of a template, as Meta reports it (``type: button``)."""
    context = {"from": stack.whatsapp.display_phone_number, "id": "wamid.HBgMtemplate"}
    return int(patient.post(patient.payload([patient.message("button", {"payload": payload, "text": text},
                                                             context=context)])))


def _opted_out_in_the_crm(stack: Stack) -> bool:
    return any(c["properties"].get("chat2crm_opted_out") == "true" for c in stack.hubspot.records("contacts"))


def test_the_stop_promotions_button_is_confirmed_even_when_whatsapps_opt_out_follows(stack: Stack) -> None:
    wa_id = "4915160000001"
    patient = stack.whatsapp.patient(wa_id, "Button Stop")
    patient.send_text("Hello, I would like a meeting")
    stack.work()
    stack.whatsapp.fail_next(1, "429")  # the confirmation is throttled: it waits for its retry…
    assert _press_template_button(patient, stack, "Stop promotions", "STOP_PROMOTIONS") == 200
    assert patient.stop_marketing_messages() == 200  # …while WhatsApp's own opt-out arrives
    stack.work()
    _work_until(stack, lambda: STOPPED in _texts(stack, wa_id))
    assert _texts(stack, wa_id).count(STOPPED) == 1
    assert _opted_out_in_the_crm(stack)
    before = len(stack.whatsapp.messages_to(wa_id))
    for n in range(8):  # more than the flood limit: not even the pause notice goes out
        patient.send_text(f"are you there? {n}")
    stack.work()
    assert len(stack.whatsapp.messages_to(wa_id)) == before


# the waiting reply's retry must not come due before the stop is taken, however slow the machine
@pytest.mark.parametrize("stack_config", [{"default_flow": "meeting_request", "delivery.backoff_base_seconds": 60,
                                           "delivery.backoff_max_seconds": 90}], ids=["retry-in-a-minute"])
def test_a_reply_still_waiting_is_not_sent_after_a_stop_written_in_a_sentence(stack: Stack) -> None:
    wa_id = "4915160000002"
    patient = stack.whatsapp.patient(wa_id, "Sentence Stop")
    stack.whatsapp.fail_next(1, "429")  # the greeting and first question wait for their retry
    patient.send_text("Hello, I would like a meeting")
    stack.work()
    key = f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{wa_id}"
    (waiting,) = outbox.pending(stack.runtime, key)
    assert waiting.kind == "reply" and waiting.attempts == 1
    patient.send_text("Actually please stop messaging me, I found another clinic")
    stack.work()
    assert _texts(stack, wa_id) == [STOPPED]  # the confirmation, and not what waited before it
    assert outbox.pending(stack.runtime, key) == []  # the greeting's retry finds nothing to send
    conversation = conversations.load(stack.runtime, key)
    assert conversation is not None and conversation.opted_out and "topic" not in conversation.answers
    _work_until(stack, lambda: _opted_out_in_the_crm(stack))
