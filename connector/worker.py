"""The worker process: an rq worker on the relay's three queues, with rq's scheduler for delayed retries.

It serves the ``outbound``, ``crm`` and ``inbound`` queues round-robin (:func:`connector.queues.work`),
so replies, CRM writes and new messages each get their turn however long the others' backlog. A
sweeper thread in every worker stands for election; the one holding the lease re-enqueues what a
killed worker left behind (:mod:`connector.sweeper`).
"""

from __future__ import annotations

import logging
import threading

import connector.jobs  # noqa: F401 - rq imports the jobs by name in each work-horse: loaded once, before the forks
from connector import inbox, queues
from connector.attribution.language import detect_language
from connector.mapping import required_schema
from connector.runtime import Runtime, current_runtime, set_current_runtime
from connector.sweeper import SWEEP_SECONDS, Sweeper
from core.errors import ConfigurationError, RetryableError
from core.keys import family
from core.models import utcnow

log = logging.getLogger("chat2crm.worker")

HEARTBEAT_SECONDS = 7 * 86400
HEARTBEAT = family("worker", "heartbeat", ttl=HEARTBEAT_SECONDS, holds_pii=False, owner=__name__)

__all__ = ["SWEEP_SECONDS", "heartbeat", "run_worker", "warm_up"]


def heartbeat() -> str:
    """A job that records which worker ran it and when (``chat2crm worker --check`` enqueues it).

    Returns:
        The name of the worker that ran it.
    """
    name = queues.current_worker_name()
    current_runtime().redis.set(HEARTBEAT.key(), f"{name} {utcnow().isoformat()}", ex=HEARTBEAT_SECONDS)
    return name


def warm_up(runtime: Runtime) -> None:
    """Load configuration, the adapter and the language detector before rq forks work-horses.

    rq runs each job in a fork of this process: what is loaded here is shared by every job
    (copy-on-write) instead of being loaded again per job.

    Raises:
        ConfigurationError: the configuration is invalid (the worker must not start).
    """
    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    inbox.upgrade(runtime)
    try:
        runtime.adapter.prepare(required_schema(runtime.mapping))
    except RetryableError as exc:  # the CRM is down: start anyway, the adapter looks things up when it writes
        log.warning("CRM not reachable at start", extra={"error": exc.message})
    detect_language("warm up", list(runtime.config.languages))


def run_worker(runtime: Runtime, *, burst: bool = False, name: str | None = None,
               sweep_every: float = SWEEP_SECONDS) -> bool:
    """Run an rq worker on the relay's queues until stopped (or until idle with ``burst``, after one sweep).

    Returns:
        True when the worker did any work (rq's own answer).

    Raises:
        ConfigurationError: the configuration is invalid.
    """
    set_current_runtime(runtime)
    warm_up(runtime)
    sweeper = Sweeper(runtime, name)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(sweep_every):
            try:
                sweeper.run_once()
            except Exception:  # a sweep must never take the worker down
                log.exception("sweep failed")

    if burst:
        sweeper.run_once()
        sweeper.resign()
    else:
        threading.Thread(target=sweep, name="chat2crm-sweeper", daemon=True).start()
    try:
        return queues.work(runtime, burst=burst, name=name)
    finally:
        stop.set()
        if not burst:
            sweeper.resign()
