"""Patients' messages reach the job processes through the ready list, not as rq jobs: a conversation is
made ready once while it is listed, a job process takes ready conversations and rq's jobs in turns, and a
drain runs under the same time-out and supervision a job had."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rq import Queue

from connector import conversations, inbox, queues
from connector.runtime import QUEUE_CRM, QUEUE_INBOUND, QUEUE_OUTBOUND, Runtime
from connector.supervisor import Slots
from core.models import InboundMessage, utcnow


def _message(sender: str, number: int) -> InboundMessage:
    return InboundMessage(channel="whatsapp", account="106540352242922", sender_id=sender,
                          message_id=f"wamid.{sender}.{number}", timestamp=utcnow(), kind="text", text=f"#{number}")


def _ready(runtime: Runtime) -> list[str]:
    return [raw.decode() for raw in runtime.redis.lrange(inbox.READY.key(), 0, -1)]


def _worker(runtime: Runtime, drain: Any, **kwargs: Any) -> queues.RelayWorker:
    worker_queues = [runtime.queue(name) for name in queues.ORDER]
    return queues.RelayWorker(worker_queues, connection=runtime.redis, drain=drain, **kwargs)


def test_a_conversation_is_made_ready_once_while_it_is_listed(runtime: Runtime) -> None:
    for number in range(3):
        assert inbox.enqueue_inbound(runtime, _message("905321112233", number), dedup_days=7)
    assert inbox.enqueue_inbound(runtime, _message("4915112345678", 0), dedup_days=7)
    assert not inbox.enqueue_inbound(runtime, _message("4915112345678", 0), dedup_days=7)  # a redelivery
    ayse, jan = _message("905321112233", 0).conversation_key, _message("4915112345678", 0).conversation_key
    assert _ready(runtime) == [ayse, jan]  # four messages, two conversations: two pushes
    assert [m.text for m in inbox.messages(runtime, ayse)] == ["#0", "#1", "#2"]
    assert runtime.queue(QUEUE_INBOUND).count == 0  # no rq job for a message
    runtime.redis.delete(inbox.READY.key())
    # a drain that ends with messages left makes its conversation ready again; an empty one leaves the list;
    # either way its lock is let go in the same call
    lock = conversations.lock(runtime, ayse)
    assert lock.acquire()
    assert inbox.release_and_finish(runtime, ayse, lock) is True
    assert _ready(runtime) == [ayse] and not runtime.redis.exists(lock.key)
    runtime.redis.delete(inbox.INBOX.key(jan))
    other = conversations.lock(runtime, jan)
    runtime.redis.set(other.key, "another drain's token")  # its lock was lost to another drain: kept
    assert inbox.release_and_finish(runtime, jan, other) is False
    assert _ready(runtime) == [ayse] and inbox.waiting(runtime) == [ayse]
    assert runtime.redis.get(other.key) == b"another drain's token"
    # once it left the work list, the conversation's next message makes it ready again
    assert inbox.enqueue_inbound(runtime, _message("4915112345678", 1), dedup_days=7)
    assert _ready(runtime) == [ayse, jan]


def test_a_job_process_takes_ready_conversations_and_rq_jobs_in_turns(runtime: Runtime) -> None:
    done: list[str] = []

    def drain(key: str) -> None:
        done.append(key)

    for sender in ("111", "222", "333"):
        inbox.make_ready(runtime, f"whatsapp:1:{sender}")
    for label in ("reply", "lead"):
        queue = runtime.queue(QUEUE_OUTBOUND if label == "reply" else QUEUE_CRM)
        queue.enqueue("tests.e2e.supervised_jobs.record", label, result_ttl=60)
    worker = _worker(runtime, drain)
    worked = worker.work(burst=True, with_scheduler=False)
    assert worked
    ran = [raw.decode().split()[0] for raw in runtime.redis.lrange("test:ran", 0, -1)]
    assert done == ["whatsapp:1:111", "whatsapp:1:222", "whatsapp:1:333"] and sorted(ran) == ["lead", "reply"]
    assert _ready(runtime) == [] and Queue.all(connection=runtime.redis) and all(
        runtime.queue(name).count == 0 for name in queues.ORDER)
    # nothing waiting: a burst run says it did nothing
    assert _worker(runtime, drain).work(burst=True, with_scheduler=False) is False


def test_the_two_kinds_alternate_when_both_wait(runtime: Runtime) -> None:
    order: list[str] = []
    worker = _worker(runtime, lambda key: order.append("conversation"))
    for sender in range(4):
        inbox.make_ready(runtime, f"whatsapp:1:{sender}")
        runtime.queue(QUEUE_OUTBOUND).enqueue("tests.e2e.supervised_jobs.record", f"reply-{sender}",
                                              result_ttl=0)
    original = worker.execute_job

    def execute(job: Any, queue: Any) -> None:
        if not isinstance(job, queues.ConversationWork):
            order.append("job")
        original(job, queue)

    worker.execute_job = execute  # type: ignore[method-assign]
    worker.work(burst=True, with_scheduler=False)
    assert order == ["job", "conversation"] * 4  # neither kind waits behind a backlog of the other


def test_a_drain_runs_under_its_time_out_and_in_its_supervisor_slot(runtime: Runtime) -> None:
    slots = Slots(1)
    seen: list[tuple[float, float]] = []

    def drain(key: str) -> None:
        seen.append(slots.state(0))
        if key.endswith(":stuck"):
            time.sleep(30)  # a drain that hangs where Python still runs: rq's time-out signal stops it

    inbox.make_ready(runtime, "whatsapp:1:stuck")
    inbox.make_ready(runtime, "whatsapp:1:next")
    started = time.monotonic()
    _worker(runtime, drain, drain_timeout=1, slot=(slots, 0)).work(burst=True, with_scheduler=False)
    assert time.monotonic() - started < 10  # stopped after its one second, and the next one went on
    assert len(seen) == 2
    for begun, deadline in seen:  # the supervisor knows when each drain must end (it kills one stuck longer)
        assert begun > 0 and deadline == pytest.approx(begun + 1, abs=0.01)
    assert slots.state(0) == (0.0, 0.0)  # idle again


def test_a_drain_that_fails_leaves_its_conversation_listed_for_the_sweeper(runtime: Runtime) -> None:
    message = _message("905321112233", 0)
    inbox.enqueue_inbound(runtime, message)

    def drain(key: str) -> None:
        raise ConnectionError("Redis went away")

    _worker(runtime, drain).work(burst=True, with_scheduler=False)
    assert inbox.waiting(runtime) == [message.conversation_key]  # the sweeper makes it ready once it is due
    assert [m.message_id for m in inbox.messages(runtime, message.conversation_key)] == [message.message_id]


def test_ready_conversations_count_in_the_inbound_queue_depth(runtime: Runtime) -> None:
    """The backlog alert (``chat2crm_queue_depth{queue=~".*inbound"} > 50``) still sees waiting messages."""
    from core.metrics import RedisCollector

    for sender in range(3):
        inbox.make_ready(runtime, f"whatsapp:1:{sender}")
    runtime.queue(QUEUE_INBOUND).enqueue("tests.e2e.supervised_jobs.record", "retry", result_ttl=0)
    inbound = runtime.queue(QUEUE_INBOUND).name
    collector = RedisCollector(runtime.redis, runtime.queues(), also_waiting={inbound: inbox.READY.key()})
    (depth,) = [family for family in collector.collect() if family.name == "chat2crm_queue_depth"]
    assert {sample.labels["queue"]: sample.value for sample in depth.samples}[inbound] == 4


def test_a_stop_signal_during_a_drain_lets_it_finish_then_stops(runtime: Runtime) -> None:
    """A deploy's SIGTERM in the middle of a turn: the drain ends as it would have (the message is not cut off
    and set aside as failed), and the process takes nothing more."""
    import os
    import signal

    finished: list[str] = []

    def drain(key: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the drain runs
        time.sleep(0.2)
        finished.append(key)

    inbox.make_ready(runtime, "whatsapp:1:first")
    inbox.make_ready(runtime, "whatsapp:1:second")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        _worker(runtime, drain).work(burst=True, with_scheduler=False)
    finally:  # rq leaves its own handlers installed
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert finished == ["whatsapp:1:first"]  # the first ran to its end; the second waits for the next process
    assert _ready(runtime) == ["whatsapp:1:second"]


def test_rq_suspend_stops_the_job_process_taking_work_and_is_looked_for_once_a_second(runtime: Runtime) -> None:
    from rq.suspension import resume, suspend
    done: list[str] = []
    for n in range(30):
        inbox.make_ready(runtime, f"whatsapp:1:{n}")
    before = runtime.redis.info("commandstats").get("cmdstat_exists", {}).get("calls", 0)
    assert _worker(runtime, done.append).work(burst=True, with_scheduler=False)
    looked = runtime.redis.info("commandstats").get("cmdstat_exists", {}).get("calls", 0) - before
    assert len(done) == 30 and looked < 10  # not once per conversation (six commands each, with rq's beat)
    suspend(runtime.redis)
    inbox.make_ready(runtime, "whatsapp:1:later")
    try:
        # suspended: a burst run takes nothing and says so
        assert _worker(runtime, done.append).work(burst=True, with_scheduler=False) is False
        assert _ready(runtime) == ["whatsapp:1:later"]
    finally:
        resume(runtime.redis)
    assert _worker(runtime, done.append).work(burst=True, with_scheduler=False)
    assert done[-1] == "whatsapp:1:later"
