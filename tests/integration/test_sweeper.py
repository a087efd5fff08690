"""The sweeper recovers what a killed worker left behind, on real Redis, and never doubles work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from rq.registry import ScheduledJobRegistry

from connector.pipeline import INBOXES, LEADS_PENDING, inbox_key, release_due_retries, sweep
from connector.runtime import QUEUE_CRM, QUEUE_INBOUND, Runtime, rkey
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
    assert release_due_retries(runtime) == 1
    assert release_due_retries(runtime) == 0  # a second sweeper finds nothing to claim
    assert _queued_ids(runtime, QUEUE_CRM) == [overdue.id]
    registry = ScheduledJobRegistry(queue=queue)
    assert set(registry.get_job_ids()) == {recent.id, later.id}  # a live scheduler is still in time for these
    overdue.refresh()
    assert overdue.get_status() == "queued"


def test_an_orphaned_inbox_is_kicked_once_and_a_locked_one_is_left_alone(runtime: Runtime) -> None:
    client = runtime.redis
    for key in ("whatsapp:1:111", "whatsapp:1:222"):
        client.rpush(inbox_key(key), b"{}")
        client.sadd(INBOXES, key)
    client.set(rkey("lock", "whatsapp:1:222"), "someone", px=60_000)  # a worker is draining it
    client.sadd(INBOXES, "whatsapp:1:333")  # empty inbox: dropped from the work list
    first = sweep(runtime)
    second = sweep(runtime)
    assert first["conversations"] == 1 and second["conversations"] == 0
    assert len(_queued_ids(runtime, QUEUE_INBOUND)) == 1
    assert not client.sismember(INBOXES, "whatsapp:1:333")


def test_a_pending_lead_whose_job_vanished_is_enqueued_again(runtime: Runtime) -> None:
    client = runtime.redis
    client.zadd(LEADS_PENDING, {"#1042": time.time() - 1, "#1043": time.time() - 1, "#1044": time.time() + 600})
    client.set(rkey("lock", "lead:1043"), "someone", px=60_000)  # being written right now
    result = sweep(runtime)
    assert result["leads"] == 1
    (job_id,) = _queued_ids(runtime, QUEUE_CRM)
    assert runtime.queue(QUEUE_CRM).fetch_job(job_id).args == ("#1042",)  # type: ignore[union-attr]
    assert client.zscore(LEADS_PENDING, "#1042") > time.time()  # not again until it could be lost again


def test_jobs_abandoned_by_a_killed_worker_leave_the_failed_registry_real_failures_stay(runtime: Runtime) -> None:
    from rq.job_lifecycle import record_job_failure
    from rq.registry import StartedJobRegistry

    from connector.pipeline import drop_abandoned_jobs, sync_lead

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
    assert drop_abandoned_jobs(runtime) == 2
    assert set(queue.failed_job_registry.get_job_ids()) == {other.id, failed.id}
