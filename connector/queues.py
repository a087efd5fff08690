"""Everything the relay asks of rq, in one module: queues, enqueues, the failed registry, the worker.

Three queues, each job a thin entry point in :mod:`connector.jobs`, named here as strings (rq
imports them in the worker, so the web process never loads the bot or the adapters):

- ``inbound``: one job drains one conversation's inbox (:func:`connector.jobs.process_conversation`);
- ``outbound``: one job delivers one conversation's outbox (:func:`connector.jobs.deliver_outbox`);
- ``crm``: one job writes one lead, or one opt-out (:func:`connector.jobs.sync_lead`), publishes one
  conversation's thread into the CRM's inbox (:func:`connector.jobs.publish_thread`), or writes the
  delivery reports of agents' replies (:func:`connector.jobs.report_delivery`). A lead's write goes to the
  front of the queue, so leads never wait behind the conversation's messages.

A worker serves them round-robin, so CRM writes never wait behind a backlog of messages, nor
messages behind a CRM that is slow. Job descriptions (``lead #1002``, ``conversation``) are what
``chat2crm failed list`` shows: they never carry patient data. A failed job that holds patient data
(a message, a reply) is kept no longer than the retention settings allow.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue, SimpleWorker, get_current_job
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.scheduler import RQScheduler
from rq.suspension import is_suspended
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from connector import inbox
from connector.supervisor import Slots, over_memory, rss_bytes
from core import metrics
from core.errors import ErrorSummary
from core.keys import family

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.queues")

INBOUND = "inbound"
OUTBOUND = "outbound"
CRM = "crm"
#: the order a worker starts from (it then goes round-robin)
ORDER = (OUTBOUND, CRM, INBOUND)

PROCESS_CONVERSATION = "connector.jobs.process_conversation"
DELIVER_OUTBOX = "connector.jobs.deliver_outbox"
SYNC_LEAD = "connector.jobs.sync_lead"
SYNC_OPT_OUT = "connector.jobs.sync_opt_out"
REPLAY_MESSAGE = "connector.jobs.replay_message"
#: puts a webhook's body that failed back at the head of its channel's intake (:mod:`connector.received`)
REPLAY_WEBHOOK = "connector.jobs.replay_webhook"
REPLAY_REPLY = "connector.jobs.replay_reply"
PUBLISH_THREAD = "connector.jobs.publish_thread"
REPLAY_THREAD = "connector.jobs.replay_thread_message"
REPORT_DELIVERY = "connector.jobs.report_delivery"
#: reads a Meta lead form's lead and writes it as a lead (:mod:`connector.leadforms.intake`)
READ_LEAD_FORM = "connector.jobs.read_lead_form"
#: sends one conversion event to Meta's Conversions API (:mod:`connector.conversions`)
SEND_CONVERSION = "connector.jobs.send_conversion"
#: jobs whose work the sweeper recovers by itself when their process dies (the older names too)
RECOVERED = frozenset({PROCESS_CONVERSATION, DELIVER_OUTBOX, SYNC_LEAD, PUBLISH_THREAD, REPORT_DELIVERY,
                       "connector.pipeline.process_conversation", "connector.pipeline.sync_lead"})
#: how rq records a job whose process died under it (found by another worker's clean-up, or by the old
#: forking worker seeing its work-horse exit), and how a job fails when Redis itself went away or was
#: still loading its data after a restart: in each case the sweeper recovers the work, so the entry is noise
_DIED = ("AbandonedJobError", "Work-horse terminated unexpectedly", "redis.exceptions.ConnectionError",
         "redis.exceptions.BusyLoadingError", "redis.exceptions.TimeoutError")
#: how late a delayed retry may be before the sweeper assumes its scheduler is gone (a live one is 1 s late)
SCHEDULER_GRACE_SECONDS = 5.0

# rq's own keys, as rq 3 writes them for the relay's queues (``rq:`` prefix). Jobs hold their arguments
# (a conversation key names the patient; a failed message job holds the message): ``chat2crm forget``
# finds them through :func:`erase_jobs`.
_RQ = {"prefix": "rq:", "owner": "rq"}
JOBS = family("job", "{job}", ttl=None, holds_pii=True, **_RQ,
              bounded_by="queued jobs until run; then result_ttl (0 or 1 h), failure_ttl (retention), or deleted")
family("job", "{job}:dependents", ttl=None, holds_pii=False, **_RQ, bounded_by="deleted with its job")
family("results", "{job}", ttl=None, holds_pii=False, **_RQ, bounded_by="expires with its job")
family("executions", "{job}", ttl=None, holds_pii=False, **_RQ, bounded_by="expires with its job's run")
family("execution", "{execution}", ttl=None, holds_pii=False, **_RQ, bounded_by="expires with its job's run")
family("queue", "{queue}", ttl=None, holds_pii=False, **_RQ, bounded_by="job ids waiting to run")
family("queues", ttl=None, holds_pii=False, **_RQ, bounded_by="one member per queue (three)")
for _registry in ("failed", "finished", "started", "scheduled", "deferred", "canceled"):
    family(_registry, "{queue}", ttl=None, holds_pii=False, **_RQ,
           bounded_by="job ids, each dropped when its job expires")
family("workers", ttl=None, holds_pii=False, **_RQ, bounded_by="one member per live worker")
family("workers", "{queue}", ttl=None, holds_pii=False, **_RQ, bounded_by="one member per live worker")
family("worker", "{worker}", ttl=None, holds_pii=False, **_RQ, bounded_by="expires when its worker stops beating")
family("scheduler-lock", "{queue}", ttl=None, holds_pii=False, **_RQ, bounded_by="expires with its scheduler")
family("scheduler", "{scheduler}", ttl=None, holds_pii=False, **_RQ,
       bounded_by="one per running scheduler, expires when it stops beating")
family("clean_registries", "{queue}", ttl=None, holds_pii=False, **_RQ, bounded_by="a short lock of rq's")
family("last_cleaned_at", "{queue}", ttl=None, holds_pii=False, **_RQ, bounded_by="one per queue")
family("clean_groups", ttl=None, holds_pii=False, **_RQ, bounded_by="a short lock of rq's")
family("groups", ttl=None, holds_pii=False, **_RQ, bounded_by="rq's job groups (the relay makes none)")


def make_queue(client: redis.Redis, name: str, *, default_timeout: int) -> Queue:
    """The rq queue ``name`` on ``client`` (a cheap handle)."""
    return Queue(name, connection=client, default_timeout=default_timeout)


def enqueue(runtime: Runtime, queue_name: str, func: str, *args: object, description: str,
            pipe: redis.client.Pipeline | None = None, failure_ttl: int | None = None,
            result_ttl: int = 0, at_front: bool = False, **kwargs: object) -> Job:
    """Enqueue ``func(*args, **kwargs)`` on the relay's queue ``queue_name``, on ``pipe`` when given (then it
    happens when that transaction commits, or not at all); with ``at_front``, ahead of the jobs waiting.

    Raises:
        redis.RedisError: Redis failed (only without ``pipe``).
    """
    return runtime.queue(queue_name).enqueue_call(
        func, args=args, kwargs=kwargs or None, pipeline=pipe, description=description, result_ttl=result_ttl,
        failure_ttl=failure_ttl or runtime.config.retention.conversation_hours * 3600, at_front=at_front)


def enqueue_in(runtime: Runtime, queue_name: str, delay: float, func: str, *args: object, description: str,
               failure_ttl: int | None = None, result_ttl: int = 0, **kwargs: object) -> Job:
    """Enqueue ``func`` on ``queue_name`` after ``delay`` seconds (rq's scheduler, or the sweeper, moves it)."""
    return runtime.queue(queue_name).enqueue_in(
        timedelta(seconds=delay), func, *args, description=description, result_ttl=result_ttl,
        failure_ttl=failure_ttl or runtime.config.retention.conversation_hours * 3600, **kwargs)


def current_description() -> str | None:
    """The description of the job this process runs (``lead #1001``), if any."""
    job = get_current_job()
    return job.description if job is not None else None


def current_worker_name() -> str:
    """The name of the worker running the current job (``unknown`` outside one)."""
    job = get_current_job()
    return job.worker_name if job is not None and job.worker_name else "unknown"


def note_failure(runtime: Runtime, exc: BaseException, queue_name: str, note: str = "") -> str:
    """Keep a readable reason on the current job (rq moves it to the failed registry when it raises), count
    it, and log one ``job failed`` line. Returns the reason."""
    summary = ErrorSummary.of(exc)
    reason = f"{summary.kind}: {summary.message}" + (f" ({note})" if note else "")
    job = get_current_job()
    if job is not None:
        job.meta["reason"] = reason
        job.save_meta()
    metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queue_name).name)
    log.error("job failed", extra={**({"job": job.description} if job is not None else {}), "reason": reason,
                                   "details": summary.details})
    return reason


def set_aside(runtime: Runtime, queue_name: str, func: str, *args: object, description: str, reason: str,
              ttl: int, meta: dict[str, str] | None = None) -> Job:
    """Put a replayable job straight into the failed registry of ``queue_name`` (a message or a reply that
    could not be handled, moved aside so the ones after it go on). ``chat2crm failed replay`` runs it.

    Args:
        ttl: seconds the entry is kept (its arguments may hold patient data: the retention settings say).
    """
    queue = runtime.queue(queue_name)
    job = Job.create(func, args=args, connection=runtime.redis, description=description, failure_ttl=ttl,
                     meta={"reason": reason, **(meta or {})})
    job.origin = queue.name
    job.save()
    queue.failed_job_registry.add(job, ttl=ttl, exc_string=reason)
    return job


# -- the failed registry (``chat2crm failed``) ---------------------------------------------------
def failed_jobs(runtime: Runtime) -> Iterator[tuple[Queue, Job]]:
    """Every failed job of every relay queue, oldest first."""
    for queue in runtime.queues():
        registry = queue.failed_job_registry
        for job_id in registry.get_job_ids(cleanup=True):
            try:
                yield queue, Job.fetch(job_id, connection=runtime.redis)
            except NoSuchJobError:
                continue


def reason_of(job: Job) -> str:
    """The job's readable reason, or the last line of its traceback."""
    reason = job.meta.get("reason")
    if reason:
        return str(reason)
    result = job.latest_result()
    text = result.exc_string if result is not None else ""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown"


def traceback_of(job: Job) -> str:
    """The job's last traceback ('' when rq kept none)."""
    result = job.latest_result()
    return (result.exc_string or "") if result is not None else ""


def replay(queue: Queue, job: Job) -> None:
    """Put a failed job back on its queue, its old reason dropped."""
    job.meta.pop("reason", None)
    job.save_meta()
    queue.failed_job_registry.requeue(job.id)


def drop(queue: Queue, job: Job) -> None:
    """Delete a failed job without running it."""
    queue.failed_job_registry.remove(job, delete_job=True)


def drop_abandoned_jobs(runtime: Runtime) -> int:
    """Remove from the failed registries the jobs whose process died under them (rq marks them abandoned,
    or "work-horse terminated") when the sweeper recovers their work anyway: a message stays at the head
    of its inbox, a reply at the head of its outbox, a lead pending until written, so such an entry is
    noise in ``chat2crm failed list``. Real failures carry a reason and stay.

    Returns:
        How many entries were removed.
    """
    dropped = 0
    for queue in runtime.queues():
        registry = queue.failed_job_registry
        for job_id in registry.get_job_ids(0, 199):
            try:
                job = Job.fetch(job_id, connection=runtime.redis)
            except NoSuchJobError:
                registry.remove(job_id)
                continue
            if job.func_name not in RECOVERED or job.meta.get("reason"):
                continue
            if not any(marker in traceback_of(job) for marker in _DIED):
                continue
            registry.remove(job, delete_job=True)
            dropped += 1
    return dropped


def release_due_retries(runtime: Runtime, grace_seconds: float = SCHEDULER_GRACE_SECONDS) -> int:
    """Enqueue delayed retries that are overdue: their scheduler is gone.

    rq moves a delayed job to its queue from a scheduler process that one worker holds a lock for. When
    that worker is killed, the lock outlives it by a minute and other workers try to take it over only
    every few minutes, so retries would sit overdue while every worker idles. A live scheduler moves due
    jobs every second; a job overdue by ``grace_seconds`` is moved here. The ZREM is the claim: of the
    sweeper and the scheduler, only the one that removed the job enqueues it.

    Returns:
        How many jobs were moved.
    """
    moved = 0
    cutoff = time.time() - grace_seconds
    for queue in runtime.queues():
        registry = ScheduledJobRegistry(queue=queue)
        for raw_id in runtime.redis.zrangebyscore(registry.key, "-inf", cutoff, start=0, num=500):
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if not runtime.redis.zrem(registry.key, job_id):
                continue  # the scheduler took it
            try:
                job = Job.fetch(job_id, connection=runtime.redis)
            except NoSuchJobError:
                continue
            queue.enqueue_job(job)
            moved += 1
    return moved


def erase_jobs(runtime: Runtime, names_person: Callable[[str], bool]) -> int:
    """Delete every job of the relay's queues (waiting, delayed, failed, finished) whose arguments, keyword
    arguments or metadata ``names_person`` recognises (``chat2crm forget``).

    Returns:
        How many jobs were deleted.
    """
    deleted = 0
    for queue in runtime.queues():
        ids = set(queue.get_job_ids())
        for registry_class in (FailedJobRegistry, ScheduledJobRegistry, DeferredJobRegistry, FinishedJobRegistry,
                               StartedJobRegistry):
            ids.update(registry_class(queue=queue).get_job_ids())
        for job_id in sorted(ids):
            try:
                job = Job.fetch(job_id, connection=runtime.redis)
                words = [*map(str, job.args), *map(str, job.kwargs.values()), *map(str, job.meta.values())]
            except Exception as exc:  # a job rq cannot read (gone, or of another version) is not judged
                log.warning("job not readable", extra={"job_id": job_id, "error": type(exc).__name__})
                continue
            if any(names_person(word) for word in words):
                job.delete(remove_from_queue=True)
                deleted += 1
    return deleted


# -- the worker ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConversationWork:
    """A conversation popped from the ready list (:data:`connector.inbox.READY`): drained in the job process
    that popped it, with no rq job of its own. What :meth:`RelayWorker.dequeue_job_and_maintain_ttl` hands
    to :meth:`RelayWorker.execute_job` in place of a job."""

    key: str


class ThreadScheduler(RQScheduler):
    """rq's scheduler (delayed retries moved to their queues, once a second) in a thread of the job process that
    holds its locks, not in a process rq forks for it: a copy of the whole worker, language models included,
    whose pages become its own as it runs (13 MB and more), for a loop that sleeps. It ends with its job
    process (a daemon thread); the locks it held expire and another job process's maintenance takes them, as
    for a scheduler process that died with its worker."""

    def start(self) -> threading.Thread:
        """Run the scheduler's loop in a daemon thread; returns it (rq asks it ``is_alive()``)."""
        self._status = self.Status.STARTED
        thread = threading.Thread(target=self._loop, name="rq-scheduler", daemon=True)
        self._process = thread  # type: ignore[assignment]
        thread.start()
        return thread

    def _loop(self) -> None:
        try:
            self.work()
        except Exception as exc:  # the next maintenance (a minute) starts it again
            log.error("rq's scheduler stopped", extra={"error": type(exc).__name__})

    def _install_signal_handlers(self) -> None:
        """None: signals belong to the job process, which stops this loop itself (``stop_scheduler``)."""


class RelayWorker(SimpleWorker):
    """rq's in-process worker (no fork per job: the process's warm caches and connections serve every job),
    which also drains the conversations on the relay's ready list, reports each piece of work to its
    supervisor, and retires itself after one once it has grown too large.

    Patients' messages do not travel as rq jobs: the webhook appends its raw body to its channel's intake
    and pushes the intake onto the ready list, one small Lua call; reading a body appends each message to
    its conversation's inbox and pushes the conversation likewise. A job process pops from that list
    and from rq's queues in one blocking call, taking the two kinds in turns, and drains a popped
    conversation here (``drain``) under the same time-out and supervision as a job. rq still carries
    replies, CRM writes, delayed retries and failed work (``chat2crm failed``).

    Args:
        drain: drains one conversation (:func:`connector.jobs.process_conversation`).
        drain_timeout: seconds a drain may take (the conversation lock's life).
        slot: ``(slots, index)`` to publish job start and deadline in (see :mod:`connector.supervisor`).
        max_growth: bytes this process may grow beyond its size when it started; None: no limit.
    """

    #: rq's worker key is refreshed at most this often (rq beats around every job: three commands each)
    HEARTBEAT_SECONDS = 10.0

    def __init__(self, *args: Any, drain: Callable[[str], object], drain_timeout: int = 120,
                 slot: tuple[Slots, int] | None = None, max_growth: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain = drain
        self._drain_timeout = drain_timeout
        self._slot = slot
        self._max_growth = max_growth
        self._base_rss = rss_bytes()
        self._ready_first = False  # replies and CRM writes first, as rq's queues alone were served
        self._beaten_at = 0.0
        self._suspension_checked_at = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """rq's heartbeat, at most every :attr:`HEARTBEAT_SECONDS` when it is only the routine one (rq's
        worker key lives seven minutes: a beat around every message was most of the queue's cost)."""
        if timeout is None and pipeline is None:
            if time.monotonic() - self._beaten_at < self.HEARTBEAT_SECONDS:
                return
            self._beaten_at = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def subscribe(self) -> None:
        """rq's command channel (``rq`` stop and shutdown commands), on a connection pool of its own.

        rq's own takes its connection from the process's pool and gives it back when the worker stops, while
        its listening thread may still be reading it (the thread is given a second to end). A thread caught
        reading reconnects that very connection, now back in the pool, and reads the next answer on it: the
        answer to whichever thread took it next (a webhook's append, a sweep), which then waits forever.
        A pool of its own keeps the channel's connection out of everyone else's hands.
        """
        shared = self.connection.connection_pool
        own = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=shared.connection_class,
                                                               **shared.connection_kwargs))
        self.pubsub = own.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq declares it None
            sleep_time=60, daemon=True, exception_handler=self._pubsub_exception_handler)

    def unsubscribe(self) -> None:
        """rq's own, then the channel's pool is closed (a thread still reading reaches only that pool)."""
        pubsub = self.pubsub
        super().unsubscribe()
        if pubsub is not None:
            pubsub.connection_pool.disconnect()

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
        """rq's own, with the scheduler in a thread (:class:`ThreadScheduler`)."""
        self.scheduler = ThreadScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                         logging_level=logging_level if logging_level is not None else self.log.level,
                                         date_format=date_format, log_format=log_format)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:  # what is due now, then done (rq's burst run)
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def stop_scheduler(self) -> None:
        """Stop the scheduler's thread (it lets go of its locks) and wait for it, a few seconds at most."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        scheduler.request_stop()
        thread = scheduler._process
        if isinstance(thread, threading.Thread) and thread.is_alive():
            thread.join(timeout=scheduler.interval * 3 + 1)

    #: ``rq suspend`` is looked for at most this often (rq looks before every job, with a heartbeat: six commands)
    SUSPENSION_SECONDS = 1.0

    def check_for_suspension(self, burst: bool) -> None:
        """rq's check for ``rq suspend``, at most every :attr:`SUSPENSION_SECONDS` (a suspension still takes
        effect within that second); the heartbeat it carries stays at its own pace."""
        if time.monotonic() - self._suspension_checked_at < self.SUSPENSION_SECONDS:
            return
        self._suspension_checked_at = time.monotonic()
        if time.monotonic() - self._beaten_at >= self.HEARTBEAT_SECONDS:
            super().check_for_suspension(burst)  # with rq's heartbeat in the same round trip
            self._beaten_at = time.monotonic()
            return
        if is_suspended(self.connection):  # without the beat: one command
            super().check_for_suspension(burst)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Any, Queue] | None:
        """The next piece of work: a ready conversation or an rq job, whichever comes first, the two kinds
        taken in turns when both wait. Waits up to ``timeout`` seconds at a time (None: does not wait,
        a burst run), as rq's own does, keeping the worker's heartbeat and maintenance going."""
        ready_key = inbox.READY.key()
        if self._state != WorkerStatus.IDLE:  # rq writes it on every call: once is enough
            self.set_state(WorkerStatus.IDLE)
        idle_since = time.monotonic()
        wait = 1.0
        while True:
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                keys = [queue.key for queue in self._ordered_queues]
                keys = [ready_key, *keys] if self._ready_first else [*keys, ready_key]
                if timeout is not None and max_idle_time is not None:
                    timeout = max(1, min(timeout, math.ceil(max_idle_time - (time.monotonic() - idle_since))))
                popped = self.queue_class.lpop(keys, timeout, connection=self.connection)
                if popped is None:
                    return None  # a burst run found nothing
                key, value = (part.decode() if isinstance(part, bytes) else str(part) for part in popped)
                if key == ready_key:
                    self._ready_first = False
                    return ConversationWork(value), self._ordered_queues[0]
                self._ready_first = True
                fetched = self.queue_class._fetch_dequeued_job(  # rq's own step after its pop
                    self.connection, key, value, job_class=self.job_class, serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class)
                if fetched is None:
                    continue  # the job was deleted while it waited
                self.reorder_queues(reference_queue=next(q for q in self._ordered_queues if q.key == key))
                return fetched
            except DequeueTimeout:
                if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                    return None
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.error("Redis not reachable: trying again", extra={"error": type(exc).__name__,
                                                                       "delay_s": wait})
                time.sleep(wait)
                wait = min(wait * 2, 60.0)

    def execute_job(self, job: Job | ConversationWork, queue: Queue) -> None:
        """Run ``job`` (or drain a ready conversation) here, under its time-out; then stop taking work if this
        process grew too large."""
        deadline = self._drain_timeout if isinstance(job, ConversationWork) else job.timeout
        if self._slot is not None:
            self._slot[0].busy(self._slot[1], deadline if isinstance(deadline, int | float) else None)
        try:
            if isinstance(job, ConversationWork):
                self._drain_here(job.key)
            else:
                super().execute_job(job, queue)
        finally:
            if self._slot is not None:
                self._slot[0].idle(self._slot[1])
        if self._max_growth is not None and over_memory(self._base_rss, self._max_growth):
            log.warning("worker grew past its memory limit: replaced after this job",
                        extra={"worker": self.name, "limit_mb": self._max_growth // 2**20})
            self._stop_requested = True

    def _drain_here(self, key: str) -> None:
        """Drain one conversation under the drain's time-out. A failure is the drain's to handle (it sets a
        message aside, or leaves it at the head for a retry); what escapes it, Redis gone for one, leaves
        the conversation listed, and the sweeper makes it ready again."""
        # Busy in this process's eyes, so that a stop signal waits for the drain to end (rq raises StopRequested
        # at once in a worker it thinks idle: inside a turn, that would set the message aside). Not written to
        # rq's worker hash (two commands a message): the supervisor's slot says this process is busy, and until
        # when.
        self._state = WorkerStatus.BUSY
        try:
            with self.death_penalty_class(self._drain_timeout, JobTimeoutException, job_id="conversation"):
                self._drain(key)
        except Exception as exc:
            log.error("conversation drain failed", extra={"error": type(exc).__name__})
        finally:
            self._state = WorkerStatus.IDLE


def work(runtime: Runtime, *, burst: bool, name: str | None, slot: tuple[Slots, int] | None = None,
         max_growth: int | None = None) -> bool:
    """Run a :class:`RelayWorker` (with rq's scheduler, for delayed retries) on the relay's ready list and
    queues, round-robin, until stopped (or, with ``burst``, until they are empty).

    Returns:
        True when the worker did any work (rq's own answer).
    """
    from connector.jobs import process_conversation  # here: the jobs import this module

    queues = [runtime.queue(q) for q in ORDER]
    # Maintenance (which also restarts a scheduler whose worker died) every minute, not every ten.
    worker = RelayWorker(queues, connection=runtime.redis, name=name, maintenance_interval=60, slot=slot,
                         max_growth=max_growth, drain=process_conversation,
                         drain_timeout=runtime.config.delivery.job_timeout_seconds)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING",
                            dequeue_strategy="round_robin"))  # type: ignore[arg-type]
