"""The door keeps the raw body; a job process reads it: in arrival order, nothing lost when reading fails,
nothing doubled when it is read again, and ``chat2crm forget`` never misses a body not read yet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from connector import inbox, queues, received
from connector.channels.whatsapp import sign
from connector.commands.forget import erase
from connector.jobs import process_conversation
from connector.runtime import QUEUE_INBOUND, Runtime, set_current_runtime
from tests.conftest import TEST_SECRETS
from tests.intake import kept, read

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]
INTAKE = received.intake_key("whatsapp")


@pytest.fixture(autouse=True)
def _current(runtime: Runtime) -> Iterator[None]:
    set_current_runtime(runtime)  # jobs find their runtime as in a job process
    yield


def body(*texts: str, sender: str = "905321112233", first: int = 1) -> bytes:
    messages = [{"from": sender, "id": f"wamid.R{first + i}", "timestamp": "1763800000", "type": "text",
                 "text": {"body": text}} for i, text in enumerate(texts)]
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": "1", "phone_number_id": ACCOUNT},
            "contacts": [{"profile": {"name": "Ayşe"}, "wa_id": sender}], "messages": messages}}]}]}).encode()


def post(client: Any, raw: bytes) -> Any:
    return client.post("/webhooks/whatsapp", data=raw, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, TEST_SECRETS["whatsapp_app_secret"])})


def texts(runtime: Runtime, sender: str = "905321112233") -> list[str | None]:
    return [m.text for m in inbox.messages(runtime, f"whatsapp:{ACCOUNT}:{sender}")]


def test_the_door_keeps_the_body_and_makes_the_intake_ready_once(client: Any, runtime: Runtime) -> None:
    for number in range(3):
        assert kept(post(client, body(f"#{number}", first=number)))
    assert texts(runtime) == []  # nothing parsed at the door
    assert [k.decode() for k in runtime.redis.lrange(inbox.READY.key(), 0, -1)] == [INTAKE]
    process_conversation(INTAKE)  # what a job process does with what it popped
    # read in the order received; each conversation made ready for its turns
    assert texts(runtime) == ["#0", "#1", "#2"]
    assert runtime.redis.llen(inbox.INBOX.key(INTAKE)) == 0 and INTAKE not in inbox.waiting(runtime)
    assert [k.decode() for k in runtime.redis.lrange(inbox.READY.key(), 0, -1)] == [
        INTAKE, f"whatsapp:{ACCOUNT}:905321112233"]


def test_redis_failing_while_a_body_is_read_keeps_it_for_later(client: Any, runtime: Runtime,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Mid-batch: the bodies read before the failing one are popped, it waits at the head, and each body is
    read exactly once in all."""
    for number, text in enumerate(["first", "second", "third"]):
        assert kept(post(client, body(text, first=number)))
    original = received.handle
    seen: list[bytes] = []

    def failing_on_second(rt: Runtime, item: bytes) -> received.Counts:
        if b'"second"' in item:
            raise redis.ConnectionError("Redis went away")
        seen.append(item)
        return original(rt, item)

    monkeypatch.setattr(received, "handle", failing_on_second)
    process_conversation(INTAKE)
    assert texts(runtime) == ["first"]
    assert [b'"second"' in i for i in runtime.redis.lrange(inbox.INBOX.key(INTAKE), 0, -1)] == [True, False]
    assert [job.description for _q, job in queues.failed_jobs(runtime)] == []
    assert runtime.queue(QUEUE_INBOUND).scheduled_job_registry.count == 1  # tried again after a backoff
    monkeypatch.setattr(received, "handle", lambda rt, item: (seen.append(item), original(rt, item))[1])
    process_conversation(INTAKE)  # the retry
    assert texts(runtime) == ["first", "second", "third"]
    assert len(seen) == 3 == len(set(seen))  # none read twice


def test_the_bodies_read_are_popped_only_if_they_are_still_the_first(runtime: Runtime) -> None:
    """A replayed body put in front while a batch is read: the batch is not popped blindly (the replayed
    body would go unread); it is read again, which queues nothing twice."""
    from connector import conversations

    for number in range(3):
        assert received.receive(runtime, "whatsapp", {}, body(f"#{number}", first=number))
    lock = conversations.lock(runtime, INTAKE)
    found, items = inbox.take_batch(runtime, INTAKE, lock, 10)
    assert found == "head" and len(items) == 3
    runtime.redis.lpush(inbox.INBOX.key(INTAKE), b"replayed")
    found, heads = inbox.next_batch(runtime, INTAKE, lock, items, 10)
    assert found == "head" and heads == [b"replayed", *items]  # nothing popped
    found, heads = inbox.next_batch(runtime, INTAKE, lock, [b"replayed"], 2)
    assert found == "head" and heads == items[:2]  # popped once it was the first
    found, heads = inbox.next_batch(runtime, INTAKE, lock, items, 2)
    assert (found, heads) == ("done", []) and not runtime.redis.exists(lock.key)
    assert INTAKE not in inbox.waiting(runtime)
    # a lock lost meanwhile: nothing popped
    assert received.receive(runtime, "whatsapp", {}, body("#9", first=9))
    found, items = inbox.take_batch(runtime, INTAKE, lock, 10)
    runtime.redis.set(lock.key, "another job process")
    assert inbox.next_batch(runtime, INTAKE, lock, items, 10) == ("locked", [])
    assert runtime.redis.llen(inbox.INBOX.key(INTAKE)) == 1


def test_a_body_the_relay_fails_on_is_set_aside_and_replayed(client: Any, runtime: Runtime,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    assert kept(post(client, body("before", first=0)))
    assert kept(post(client, body("broken", first=1)))
    assert kept(post(client, body("fine", first=2)))
    original = received.handle
    calls = 0

    def once_broken(rt: Runtime, item: bytes) -> received.Counts:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug met this body")
        return original(rt, item)

    def once_broken_on_second(rt: Runtime, item: bytes) -> received.Counts:
        return original(rt, item) if b'"broken"' not in item else once_broken(rt, item)

    monkeypatch.setattr(received, "handle", once_broken_on_second)
    process_conversation(INTAKE)
    assert texts(runtime) == ["before", "fine"]  # read once each; the next body went on
    [(queue, job)] = list(queues.failed_jobs(runtime))
    assert job.description == "webhook body" and job.meta["channel"] == "whatsapp"
    assert "broken" not in caplog.text and "905321112233" not in caplog.text  # logs carry no patient data
    queues.replay(queue, job)  # chat2crm failed replay: the job is queued again...
    assert queue.get_job_ids() == [job.id]
    job.perform()  # ...and a job process runs it: the body is back at the head of its intake
    process_conversation(INTAKE)
    assert texts(runtime) == ["before", "fine", "broken"]


def test_forget_reads_the_bodies_received_before_it(client: Any, runtime: Runtime) -> None:
    assert kept(post(client, body("my number is +90 532 111 22 33")))
    assert kept(post(client, body("other", sender="4915112345678", first=9)))
    audit = erase(runtime, "+905321112233")
    assert audit.inboxes == 1 and texts(runtime) == []
    assert runtime.redis.llen(inbox.INBOX.key(INTAKE)) == 0
    assert texts(runtime, "4915112345678") == ["other"]  # the other patient's message is in their inbox


def test_forget_waits_for_a_body_a_job_process_is_reading(client: Any, runtime: Runtime) -> None:
    from connector import conversations

    assert kept(post(client, body("hello")))
    reading = conversations.lock(runtime, INTAKE)
    assert reading.acquire()  # a job process is reading the intake and does not finish
    assert received.read_through(runtime, timeout=0.3) is False
    assert runtime.redis.llen(inbox.INBOX.key(INTAKE)) == 1
    reading.release()
    assert received.read_through(runtime, timeout=0.3) is True and texts(runtime) == ["hello"]


def test_a_body_of_a_channel_no_longer_enabled_is_dropped(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    item = received.frame("line", {}, b"{}")
    assert received.handle(runtime, item) == received.Counts(dropped=1)
    assert "no longer enabled" in caplog.text


def test_the_query_travels_with_the_body(runtime: Runtime) -> None:
    item = received.frame("whatsapp", {"t": "agent-reply:1"}, body("x"))
    head, _, raw = item.partition(b"\n")
    assert json.loads(head) == {"c": "whatsapp", "a": {"t": "agent-reply:1"}} and raw == body("x")
    assert read(runtime)["queued"] == 0 and received.handle(runtime, item)["queued"] == 1
