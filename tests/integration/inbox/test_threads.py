"""The conversation after the bot, published into the CRM's inbox: the history once the lead is ready, then
every later patient message, in order, each once, after the lead is in the CRM; patients' files stored once.

The relay runs over real HTTP with real Redis and rq workers, WhatsApp's emulator and HubSpot's emulator (for
the leads); the CRM's inbox is a recording one (:mod:`tests.integration.inbox.conftest`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from connector import conversations, inbox, leads, threads
from connector.crash import ENVIRONMENT_VARIABLE
from connector.jobs import publish_thread
from tests.e2e.conftest import Stack
from tests.integration.inbox.conftest import RecordingInbox

PATIENT = "4915177771111"
EXCHANGE = ("Hello, I would like a meeting", "Reporting", "Muster GmbH, hans@muster.de", "Thursday 15:00")


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request", "inbox": {"max_media_mb": 1}}


def _key(stack: Stack) -> str:
    return f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{PATIENT}"


def _work_until(stack: Stack, done: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    stack.work()
    while not done():
        assert time.monotonic() < deadline, "the relay did not get there in time"
        time.sleep(0.1)
        stack.work()


def _complete(stack: Stack, patient: Any) -> None:
    for said in EXCHANGE:
        assert patient.send_text(said) == 200
        stack.work()


def test_history_then_later_messages_in_order_once_after_the_lead(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    for said in EXCHANGE[:-1]:
        patient.send_text(said)
        stack.work()
    assert crm.order() == []  # the bot is still collecting: nothing for the agents yet
    # the lead's CRM write fails for now (the worker's start-up read of the pipelines passes): the thread waits
    stack.hubspot.fail_next(4, "503", after=1)
    patient.send_text(EXCHANGE[-1])
    stack.work()
    waiting = threads.pending(stack.runtime, _key(stack))
    assert waiting and crm.order() == [] and stack.hubspot.count("deals") == 0
    assert patient.send_text("Thanks! Can I bring a colleague?") == 200  # for the agents: the bot is quiet
    told = len(stack.whatsapp.messages_to(PATIENT))
    _work_until(stack, lambda: len(crm.order()) == len(waiting) + 1)
    assert len(stack.whatsapp.messages_to(PATIENT)) == told
    published = [crm.published[i] for i in crm.order()]
    # the history: every transcript line, the patient's incoming and the bot's outgoing, then the later message
    conversation = conversations.load(stack.runtime, _key(stack))
    assert conversation is not None
    assert [(m.direction, m.text, m.at) for m in published] == [
        ("incoming" if line.direction == "in" else "outgoing", line.text, line.at) for line in conversation.transcript]
    assert published[0].text == EXCHANGE[0] and published[1].direction == "outgoing"
    assert "#1001" in published[-2].text and published[-2].direction == "outgoing"  # the confirmation
    assert published[-1].text == "Thanks! Can I bring a colleague?" and published[-1].id.startswith("wamid.")
    contact = stack.hubspot.records("contacts")[0]["id"]
    assert {m.contact_id for m in published} == {contact} and {m.reference for m in published} == {"#1001"}
    assert {m.conversation for m in published} == {_key(stack)} and published[0].name == "Hans Müller"
    # each once; a redelivered webhook and a replayed job change nothing
    assert set(crm.publish_calls.values()) == {1}
    assert patient.redeliver() == 200
    stack.work()
    publish_thread(_key(stack))
    assert set(crm.publish_calls.values()) == {1} and len(crm.order()) == len(published)
    assert threads.pending(stack.runtime, _key(stack)) == []
    # the CRM's thread and contact lead back to the conversation (an agent's reply is routed with them)
    assert threads.conversation_of(stack.runtime, contact=contact) == _key(stack)
    assert threads.conversation_of(stack.runtime, thread=published[0].thread) == _key(stack)
    # a message later still goes after them, and the history is not published again
    patient.send_text("And parking?")
    stack.work()
    assert crm.order()[:-1] == [m.id for m in published] and crm.published[crm.order()[-1]].text == "And parking?"


def test_a_file_is_uploaded_once_even_when_publishing_fails_and_is_retried(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _complete(stack, patient)
    history = len(crm.order())
    crm.fail_next("publish", 2)  # the file is stored, then publishing fails twice: it is retried
    patient.send_document(b"%PDF-1.4 my results", "results.pdf", caption="my results")
    media_id = patient.last_media_id
    _work_until(stack, lambda: len(crm.order()) == history + 1)
    (message,) = [crm.published[i] for i in crm.order()[history:]]
    assert len(crm.uploads) == 1 and crm.uploads[0] == ("results.pdf", "application/pdf", b"%PDF-1.4 my results")
    (file,) = message.attachments
    assert file.crm_file_id == "F1" and file.media_id == media_id and message.text == "my results"
    assert crm.publish_calls[message.id] == 3  # two refusals, then published: the upload was not repeated


def test_a_file_over_the_limit_or_of_a_refused_type_is_published_as_a_line(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _complete(stack, patient)
    history = len(crm.order())
    patient.send_document(b"x" * (1024 * 1024 + 1), "scan.pdf")  # over inbox.max_media_mb (1 MB)
    patient.send_document(b"PK\x03\x04 zipped", "photos.zip", mime_type="application/zip", caption="all photos")
    _work_until(stack, lambda: len(crm.order()) == history + 2)
    large, refused = (crm.published[i] for i in crm.order()[history:])
    assert large.attachments == [] and "(a file was not stored: larger than 1 MB)" in large.text
    assert refused.attachments == [] and refused.text.startswith("all photos\n")
    assert "the CRM does not take application/zip files" in refused.text
    assert crm.uploads == []


def test_the_lead_s_write_kicks_a_thread_that_waited(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    for said in EXCHANGE[:-1]:
        patient.send_text(said)
        stack.work()
    stack.hubspot.fail_next(4, "503", after=1)  # the lead's write fails for now (the start-up read passes)
    patient.send_text(EXCHANGE[-1])
    stack.work()
    key = _key(stack)
    assert threads.pending(stack.runtime, key) and not crm.order()
    # the thread waits without spending its retries: only the lead's write brings it back
    assert stack.runtime.redis.zscore(threads.DUE.key(), key) > time.time() + 1
    assert all(p.attempts == 0 for p in threads.pending(stack.runtime, key))
    _work_until(stack, lambda: not leads.due(stack.runtime, time.time() + 3600) and bool(crm.order()))
    assert not threads.pending(stack.runtime, key)
    assert stack.runtime.redis.zscore(threads.DUE.key(), key) is None  # off the work list once published


def test_a_crash_after_the_crm_took_a_message_loses_nothing(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _complete(stack, patient)
    history, key = len(crm.order()), _key(stack)
    patient.send_text("Is Friday possible?")
    run_worker_inbound_only(stack)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, killed once its CRM (its own copy of the recorder) took the message
        try:
            os.environ[ENVIRONMENT_VARIABLE] = "thread-published"
            publish_thread(key)
        finally:
            os._exit(0)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    stack.runtime.redis.delete(threads.LOCK.key(key))  # what its TTL does to the killed job's lock
    (waiting,) = threads.pending(stack.runtime, key)  # the relay did not record it: it is published again
    stack.work()  # (on its id: a CRM's inbox shows a message published twice once)
    assert threads.pending(stack.runtime, key) == [] and len(crm.order()) == history + 1
    assert crm.published[waiting.message.id].text == "Is Friday possible?"
    assert stack.runtime.redis.hget(threads.PUBLISHED.key(key), waiting.message.id) == f"crm-{waiting.message.id}".encode()


def run_worker_inbound_only(stack: Stack) -> None:
    """Run the conversation's turn only (its thread's job stays queued for the test to run)."""
    from connector.jobs import process_conversation
    from connector.runtime import set_current_runtime

    set_current_runtime(stack.runtime)
    while (key := stack.runtime.redis.lpop(inbox.READY.key())) is not None:
        process_conversation(key.decode())


@pytest.mark.parametrize("local_history", [False, True], ids=["crm-call-per-line", "history-kept-locally"])
def test_a_lead_s_history_costs_one_call_per_line_or_one_in_all(stack: Stack, crm: RecordingInbox, redis_url: str,
                                                                 local_history: bool) -> None:
    from bench._monitor import Monitor
    from connector import queues
    from connector.jobs import sync_lead

    crm.local_history = local_history
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    for said in EXCHANGE:
        patient.send_text(said)
        run_worker_inbound_only(stack)
    key = _key(stack)
    lines = len(threads.pending(stack.runtime, key))
    assert lines >= 8
    # the turn that made the lead queued its write, not the thread's publishing: that would only find it waiting
    crm_queue = stack.runtime.queue(queues.CRM)
    (write,) = crm_queue.jobs
    assert write.func_name == "connector.jobs.sync_lead"
    crm_queue.remove(write)
    sync_lead(*write.args)  # the lead's write (run here) kicks the thread
    assert [job.func_name for job in crm_queue.jobs] == ["connector.jobs.publish_thread"]
    with Monitor(redis_url) as seen:
        assert publish_thread(key) == lines
    assert threads.pending(stack.runtime, key) == [] and len(crm.order()) == lines
    assert set(crm.publish_calls.values()) == {1}
    assert stack.runtime.redis.zscore(threads.DUE.key(), key) is None  # off the work list, the lock let go
    assert not stack.runtime.redis.exists(threads.LOCK.key(key))
    contact = stack.hubspot.records("contacts")[0]["id"]
    assert threads.conversation_of(stack.runtime, contact=contact) == key
    # the lock with the first line; each line recorded with the next one brought (or all of them in one step);
    # the lead's contact read once; nothing read line by line
    steps = 1 + (1 if local_history else lines)
    # (a script new to this Redis is loaded once: its first EVALSHA is refused, then it runs)
    assert seen.sent["EVALSHA"] - seen.sent["SCRIPT"] == steps, seen.sent
    assert seen.sent["LRANGE"] == (1 if local_history else 0), seen.sent
    assert seen.sent["GET"] == seen.sent["ZSCORE"] == 1 and "LINDEX" not in seen.sent and "HGET" not in seen.sent
