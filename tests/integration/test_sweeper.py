"""The sweeper recovers what a killed worker left behind, on real Redis, from one elected process, and never
doubles work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from rq.registry import ScheduledJobRegistry

from connector import conversations, inbox, leads, outbox, queues
from connector.jobs import sync_lead
from connector.runtime import QUEUE_CRM, QUEUE_INBOUND, QUEUE_OUTBOUND, Runtime
from connector.sweeper import LEASE, Sweeper, sweep
from connector.worker import heartbeat


def _queued_ids(runtime: Runtime, name: str) -> list[str]:
    return runtime.queue(name).get_job_ids()


def test_an_overdue_retry_whose_scheduler_died_is_enqueued_once(runtime: Runtime) -> None:
    queue = runtime.queue(QUEUE_CRM)
    # no worker, so no rq scheduler: the state a SIGKILLed scheduler leaves behind
    overdue = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=30), heartbeat)
    recent = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), heartbeat)
    later = queue.enqueue_at(datetime.now(UTC) + timedelta(minutes=5), heartbeat)
    assert _queued_ids(runtime, QUEUE_CRM) == []
    assert queues.release_due_retries(runtime) == 1
    assert queues.release_due_retries(runtime) == 0  # a second sweep finds nothing to claim
    assert _queued_ids(runtime, QUEUE_CRM) == [overdue.id]
    registry = ScheduledJobRegistry(queue=queue)
    assert set(registry.get_job_ids()) == {recent.id, later.id}  # a live scheduler is still in time for these
    overdue.refresh()
    assert overdue.get_status() == "queued"


def test_a_due_inbox_is_kicked_once_a_locked_one_later_an_empty_one_dropped(runtime: Runtime) -> None:
    client = runtime.redis
    past = time.time() - 1
    for key in ("whatsapp:1:111", "whatsapp:1:222"):
        client.rpush(inbox.INBOX.key(key), b"{}")
    client.zadd(inbox.DUE.key(), {"whatsapp:1:111": past, "whatsapp:1:222": past, "whatsapp:1:333": past,
                                  "whatsapp:1:444": time.time() + 600})  # 444: its job is not late yet
    client.rpush(inbox.INBOX.key("whatsapp:1:444"), b"{}")
    client.set(conversations.LOCK.key("whatsapp:1:222"), "someone", px=60_000)  # a worker is draining it
    first = sweep(runtime)
    second = sweep(runtime)
    assert first["conversations"] == 1 and second["conversations"] == 0
    assert [k.decode() for k in client.lrange(inbox.READY.key(), 0, -1)] == ["whatsapp:1:111"]  # made ready
    assert _queued_ids(runtime, QUEUE_INBOUND) == []  # no rq job: the ready list is what job processes pop
    assert set(inbox.waiting(runtime)) == {"whatsapp:1:111", "whatsapp:1:222", "whatsapp:1:444"}  # 333 was empty
    assert client.zscore(inbox.DUE.key(), "whatsapp:1:111") > time.time()  # not again until it could be lost
    assert client.zscore(inbox.DUE.key(), "whatsapp:1:222") > time.time()  # looked at again after the lock


def test_a_due_outbox_is_kicked_once_and_a_busy_one_left_alone(runtime: Runtime) -> None:
    client = runtime.redis
    past = time.time() - 1
    for key in ("whatsapp:1:111", "whatsapp:1:222"):
        client.rpush(outbox.OUTBOX.key(key), b"{}")
        client.zadd(outbox.DUE.key(), {key: past})
    client.zadd(outbox.DUE.key(), {"whatsapp:1:333": past})  # sent meanwhile: nothing left
    client.set(outbox.LOCK.key("whatsapp:1:222"), "someone", px=60_000)
    assert sweep(runtime)["outboxes"] == 1
    assert sweep(runtime)["outboxes"] == 0
    (job_id,) = _queued_ids(runtime, QUEUE_OUTBOUND)
    assert runtime.queue(QUEUE_OUTBOUND).fetch_job(job_id).args == ("whatsapp:1:111",)  # type: ignore[union-attr]
    assert client.zscore(outbox.DUE.key(), "whatsapp:1:333") is None


def test_a_pending_lead_whose_job_vanished_is_enqueued_again(runtime: Runtime) -> None:
    client = runtime.redis
    client.zadd(leads.PENDING.key(), {"#1042": time.time() - 1, "#1043": time.time() - 1, "#1044": time.time() + 600})
    client.set(leads.WRITER.key("1043"), "someone", px=60_000)  # being written right now
    result = sweep(runtime)
    assert result["leads"] == 1
    (job_id,) = _queued_ids(runtime, QUEUE_CRM)
    job = runtime.queue(QUEUE_CRM).fetch_job(job_id)
    assert job is not None and job.args == ("#1042",) and job.description == "lead #1042"
    assert client.zscore(leads.PENDING.key(), "#1042") > time.time()  # not again until it could be lost again


def test_the_work_list_of_an_earlier_version_is_carried_over(runtime: Runtime) -> None:
    runtime.redis.sadd(inbox.DUE.key(), "whatsapp:1:111", "whatsapp:1:222")  # a set, as it used to be
    assert inbox.upgrade(runtime) == 2 and inbox.upgrade(runtime) == 0
    assert set(inbox.waiting(runtime)) == {"whatsapp:1:111", "whatsapp:1:222"}
    assert all(score <= time.time() for _m, score in runtime.redis.zrange(inbox.DUE.key(), 0, -1, withscores=True))


def test_one_worker_sweeps_and_another_takes_over_when_it_stops(runtime: Runtime) -> None:
    client = runtime.redis
    first, second = Sweeper(runtime, "w1"), Sweeper(runtime, "w2")
    assert first.run_once() is not None
    client.rpush(inbox.INBOX.key("whatsapp:1:111"), b"{}")
    client.zadd(inbox.DUE.key(), {"whatsapp:1:111": time.time() - 1})
    assert second.run_once() is None  # not elected: it leaves the work alone
    assert _queued_ids(runtime, QUEUE_INBOUND) == []
    assert first.run_once() == {"conversations": 1, "outboxes": 0, "leads": 0, "threads": 0, "reports": 0, "retries": 0,
                                "abandoned": 0}
    assert 0 < client.ttl(LEASE.key()) <= LEASE.ttl  # type: ignore[operator]
    first.resign()
    assert second.elected() and not first.elected()


def test_jobs_abandoned_by_a_killed_worker_leave_the_failed_registry_real_failures_stay(runtime: Runtime) -> None:
    from rq.job_lifecycle import record_job_failure
    from rq.registry import StartedJobRegistry

    queue = runtime.queue(QUEUE_CRM)
    abandoned = queue.enqueue(sync_lead, "#1042")
    other = queue.enqueue(heartbeat)  # not work the sweeper recovers: it stays for a person to look at
    failed = queue.enqueue(sync_lead, "#1043")
    for job in (abandoned, other):
        # what a work-horse SIGKILLed mid-job leaves: a started job whose execution expired
        queue.remove(job.id)
        job.set_status("started")
        runtime.redis.zadd(StartedJobRegistry(queue=queue).key, {f"{job.id}:dead-horse": 1})
    StartedJobRegistry(queue=queue).cleanup()
    horse = queue.enqueue(sync_lead, "#1044")  # its work-horse died under a live worker (Redis went away)
    queue.remove(horse.id)
    with runtime.redis.pipeline() as pipe:  # as the worker records it
        record_job_failure(horse, "Work-horse terminated unexpectedly; waitpid returned 256; ", pipe)
        pipe.execute()
    queue.remove(failed.id)
    failed.meta["reason"] = "FatalError: salesforce: request rejected"
    failed.save_meta()
    queue.failed_job_registry.add(failed, exc_string="FatalError")
    assert set(queue.failed_job_registry.get_job_ids()) == {abandoned.id, other.id, failed.id, horse.id}
    assert queues.drop_abandoned_jobs(runtime) == 2
    assert set(queue.failed_job_registry.get_job_ids()) == {other.id, failed.id}
