"""The sweeper: enqueue again the work a killed worker left behind, from one elected process.

Every piece of in-flight work is listed with the time by which its job could have been lost: the
conversations with messages waiting (:data:`connector.inbox.DUE`), the outboxes with replies waiting
(:data:`connector.outbox.DUE`), the leads not yet in the CRM (:data:`connector.leads.PENDING`), the threads
with messages waiting for the CRM's inbox (:data:`connector.threads.DUE`), the delivery reports of agents'
replies (:data:`connector.agent.REPORTS_DUE`), and rq's delayed retries. A sweep looks only at what is
due, so its cost follows the failures, not the traffic. Work that is locked (being done right now) is
looked at again later; the rest is enqueued again and pushed back by ``delivery.lost_job_seconds``.
Every job is idempotent, so a job enqueued twice is harmless.

Every worker runs a sweeper thread; only the one holding the lease (:data:`LEASE`) sweeps, and it
renews the lease each time. A killed holder's lease expires and another worker takes over.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from connector import agent, inbox, leads, measures, outbox, queues, threads
from connector.conversations import LOCK as CONVERSATION_LOCK
from core import lua
from core.keys import family

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.sweeper")

#: seconds between sweeps of the elected worker
SWEEP_SECONDS = 5.0
#: seconds a lease lasts without renewal: three sweeps, so a live holder never loses it between two,
#: and a killed holder is replaced within 15 s
LEASE_SECONDS = 15
LEASE = family("sweeper", "lease", ttl=LEASE_SECONDS, holds_pii=False, owner=__name__)

_TAKE_OR_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
_GIVE_UP = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Sweeper:
    """One process's candidacy for sweeping, and the sweep itself.

    Args:
        runtime: the process's runtime.
        name: how this candidate is known in the lease (a worker's name; a random one when omitted).
    """

    def __init__(self, runtime: Runtime, name: str | None = None) -> None:
        self.runtime = runtime
        self.token = f"{name or 'sweeper'}:{uuid.uuid4().hex[:8]}"

    def elected(self) -> bool:
        """Take the lease if it is free, or renew it if this candidate holds it. Returns whether it holds it."""
        return bool(lua.run(self.runtime.redis, _TAKE_OR_RENEW, [LEASE.key()], [self.token, LEASE_SECONDS]))

    def resign(self) -> None:
        """Give the lease up (a worker that stops), so that another takes over at once."""
        lua.run(self.runtime.redis, _GIVE_UP, [LEASE.key()], [self.token])

    def run_once(self) -> dict[str, int] | None:
        """Sweep if elected. Returns what was enqueued again, or None when another process sweeps."""
        if not self.elected():
            return None
        return sweep(self.runtime)


def sweep(runtime: Runtime) -> dict[str, int]:
    """Enqueue again whatever is due and not being worked on. Safe to run at any time, more than once.

    Returns:
        How many conversations, outboxes, leads, threads, report queues and delayed retries were enqueued,
        and how many failed-job entries of killed workers were dropped.
    """
    now = time.time()
    lost = runtime.config.delivery.lost_job_seconds
    conversations = replies = written = 0
    for key in inbox.due(runtime, now):
        if not inbox.finish(runtime, key):
            continue  # drained: it left the work list
        locked = _locked_for(runtime, CONVERSATION_LOCK.key(key))
        if locked is not None:  # being drained right now, or its drainer died: look again once its lock is free
            inbox.postpone(runtime, key, locked + 1)
            continue
        inbox.make_ready(runtime, key, postpone_by=lost)
        conversations += 1
    for key in outbox.due(runtime, now):
        if not outbox.finish(runtime, key):
            continue
        locked = _locked_for(runtime, outbox.LOCK.key(key))
        if locked is not None:
            outbox.postpone(runtime, key, locked + 1)
            continue
        outbox.postpone(runtime, key, lost)
        queues.enqueue(runtime, queues.OUTBOUND, queues.DELIVER_OUTBOX, key, description="replies")
        replies += 1
    for reference in leads.due(runtime, now):
        if leads.being_written(runtime, reference):
            continue  # its writer holds it; looked at again once the lock expires
        leads.postpone(runtime, reference, lost)
        leads.enqueue_write(runtime, reference)
        written += 1
    published, reported = _sweep_inbox(runtime, now, lost)
    measures.sweep(runtime, now)  # the conversations left at a question past the resume window
    retries = queues.release_due_retries(runtime)
    abandoned = queues.drop_abandoned_jobs(runtime)
    if conversations or replies or written or published or reported or retries or abandoned:
        log.info("sweep re-enqueued work", extra={"conversations": conversations, "outboxes": replies,
                                                  "leads": written, "threads": published, "reports": reported,
                                                  "retries": retries, "abandoned_dropped": abandoned})
    return {"conversations": conversations, "outboxes": replies, "leads": written, "threads": published,
            "reports": reported, "retries": retries, "abandoned": abandoned}


def _sweep_inbox(runtime: Runtime, now: float, lost: int) -> tuple[int, int]:
    """The CRM inbox's work: threads waiting to be published, delivery reports waiting to be written.
    Returns how many threads and report queues were enqueued again."""
    published = reported = 0
    for key in threads.due(runtime, now):
        if not threads.finish(runtime, key):
            continue
        locked = _locked_for(runtime, threads.LOCK.key(key))
        if locked is not None:
            threads.postpone(runtime, key, locked + 1)
            continue
        threads.postpone(runtime, key, lost)
        threads.enqueue(runtime, key)
        published += 1
    if agent.reports_due(runtime, now):
        locked = _locked_for(runtime, agent.REPORTS_LOCK.key())
        agent.postpone_reports(runtime, lost if locked is None else locked + 1)
        if locked is None:
            agent.enqueue_reports(runtime)
            reported = 1
    return published, reported


def _locked_for(runtime: Runtime, lock_key: str) -> float | None:
    """Seconds until the lock ``lock_key`` frees itself, or None when it is free."""
    remaining = int(runtime.redis.pttl(lock_key))
    return None if remaining == -2 else max(remaining, 0) / 1000
