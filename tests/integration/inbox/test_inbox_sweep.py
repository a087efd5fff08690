"""The sweeper recovers the CRM inbox's work a killed worker left: threads waiting to be published, delivery
reports waiting to be written; work being done right now is left alone."""

from __future__ import annotations

import time

from connector import agent, queues, threads
from connector.runtime import QUEUE_CRM, Runtime
from connector.sweeper import sweep
from core.inbox import DeliveryReport


def _queued(runtime: Runtime) -> list[tuple[str, tuple[object, ...]]]:
    queue = runtime.queue(QUEUE_CRM)
    jobs = [queue.fetch_job(job_id) for job_id in queue.get_job_ids()]
    return [(job.func_name, tuple(job.args)) for job in jobs if job is not None]


def test_a_due_thread_is_kicked_once_a_locked_one_later_an_empty_one_dropped(runtime: Runtime) -> None:
    client = runtime.redis
    past = time.time() - 1
    for key in ("whatsapp:1:111", "whatsapp:1:222"):
        client.rpush(threads.THREAD.key(key), b"{}")
    client.zadd(threads.DUE.key(), {"whatsapp:1:111": past, "whatsapp:1:222": past, "whatsapp:1:333": past})
    client.set(threads.LOCK.key("whatsapp:1:222"), "someone", px=60_000)  # being published right now
    assert sweep(runtime)["threads"] == 1 and sweep(runtime)["threads"] == 0
    assert _queued(runtime) == [(queues.PUBLISH_THREAD, ("whatsapp:1:111",))]
    assert client.zscore(threads.DUE.key(), "whatsapp:1:333") is None  # nothing waited: off the list
    assert client.zscore(threads.DUE.key(), "whatsapp:1:222") > time.time()  # looked at once its lock is free


def test_reports_whose_job_was_lost_are_enqueued_again(runtime: Runtime) -> None:
    client = runtime.redis
    assert sweep(runtime)["reports"] == 0  # none waiting
    client.rpush(agent.REPORTS.key(), DeliveryReport(crm_message_id="m-1", status="sent").model_dump_json())
    client.set(agent.REPORTS_DUE.key(), time.time() + 600)  # its job is on its way
    assert sweep(runtime)["reports"] == 0
    client.set(agent.REPORTS_DUE.key(), time.time() - 1)  # … and was lost
    assert sweep(runtime)["reports"] == 1 and sweep(runtime)["reports"] == 0
    assert _queued(runtime) == [(queues.REPORT_DELIVERY, ())]
