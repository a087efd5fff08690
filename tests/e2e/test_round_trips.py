"""What a patient's message costs in calls to Redis, the whole way: the webhook, reading its body, the bot's
turn, and the reply sent. Each call is a round trip on the relay's side (a script
counts once, however much it does inside), so this is what the worker's CPU per message follows; the figures
under load are `bench/run messages`'."""

from __future__ import annotations

from bench._monitor import Monitor
from connector import inbox, jobs
from core import metrics
from tests.e2e.conftest import Stack


def _drain(stack: Stack) -> None:
    """What the job processes do: every ready conversation (or channel intake) drained, until none is left."""
    client = stack.runtime.redis
    for _ in range(50):
        stack.whatsapp.wait_for_webhooks()
        popped = client.lpop(inbox.READY.key())
        if popped is None:
            return
        jobs.process_conversation(popped.decode())
    raise AssertionError("the ready list never emptied")


def test_a_message_and_its_reply_cost_a_handful_of_round_trips(stack: Stack, redis_url: str) -> None:
    metrics.batch_in_process(stack.runtime.redis, every=3600)  # as the worker counts: in memory, flushed each second
    try:
        patient = stack.whatsapp.patient("4915112345678", "Hans Müller")
        patient.send_text("Hi, what is the price for a hair transplant?")  # the first: CRM look-up, identity, forms
        _drain(stack)
        before = len(stack.whatsapp.messages_to("4915112345678"))
        with Monitor(redis_url) as seen:
            patient.send_text("Berlin, Germany")
            _drain(stack)
        assert len(stack.whatsapp.messages_to("4915112345678")) == before + 1  # the next question went out
    finally:
        metrics.stop_batching()
    count = seen.sent
    total = sum(count.values())
    # the webhook: one append. Reading its body: the channel's intake taken, the patient's identity, the message
    # into its conversation's inbox, the intake let go. The turn: the conversation taken with its message, the
    # commit (which also takes the outbox for the reply and says whether another message waits), the reply
    # acknowledged with the outbox let go. Every one a script run by its digest: no plain GET or SET between
    assert count["EVALSHA"] <= 8, count
    # and the ready list popped by the job process: the intake, the conversation, then nothing left
    assert count["LPOP"] == 3 and set(count) == {"EVALSHA", "LPOP"}, count
    assert seen.in_scripts > 3 * total  # what the scripts do inside is not a round trip each
