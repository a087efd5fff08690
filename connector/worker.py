"""The rq worker process: runs conversation and CRM jobs, with rq's scheduler for delayed retries.

A sweeper thread in every worker re-enqueues work that a killed worker left behind: conversation
inboxes that still hold messages but have no job and no lock, and leads not yet in the CRM whose
job has vanished. Because every CRM write is idempotent, re-running such work is safe.
"""

from __future__ import annotations

import logging
import threading

from rq import Worker

from connector.runtime import Runtime, set_current_runtime

log = logging.getLogger("chat2crm.worker")

SWEEP_SECONDS = 5.0


def heartbeat() -> str:
    """A job that records which worker ran it and when (``chat2crm worker --check`` enqueues it).

    Returns:
        The name of the worker that ran it.
    """
    from rq import get_current_job

    from connector.models import utcnow
    from connector.runtime import current_runtime, rkey

    job = get_current_job()
    name = job.worker_name if job is not None and job.worker_name else "unknown"
    current_runtime().redis.set(rkey("worker", "heartbeat"), f"{name} {utcnow().isoformat()}", ex=7 * 86400)
    return name


def warm_up(runtime: Runtime) -> None:
    """Load configuration, the adapter and the language detector before rq forks work-horses.

    rq runs each job in a fork of this process: what is loaded here is shared by every job
    (copy-on-write) instead of being loaded again per job.

    Raises:
        ConfigurationError: the configuration is invalid (the worker must not start).
    """
    from connector.errors import ConfigurationError

    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    from connector.errors import RetryableError
    from connector.mapping import required_schema

    try:
        runtime.adapter.prepare(required_schema(runtime.mapping))
    except RetryableError as exc:  # the CRM is down: start anyway, the adapter looks things up when it writes
        log.warning("CRM not reachable at start", extra={"error": exc.message})
    from connector.attribution.language import detect_language

    detect_language("warm up", list(runtime.config.languages))


def run_worker(runtime: Runtime, *, burst: bool = False, name: str | None = None,
               sweep_every: float = SWEEP_SECONDS) -> bool:
    """Run an rq worker on the relay's queues until stopped (or until idle with ``burst``).

    Returns:
        True when the worker did any work (rq's own answer).
    """
    from connector import pipeline

    set_current_runtime(runtime)
    warm_up(runtime)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(sweep_every):
            try:
                pipeline.sweep(runtime)
            except Exception:  # a sweep must never take the worker down
                log.exception("sweep failed")

    sweeper = threading.Thread(target=sweep, name="chat2crm-sweeper", daemon=True)
    if not burst:
        sweeper.start()
    else:
        pipeline.sweep(runtime)
    # Maintenance (which also restarts a scheduler whose worker died) every minute, not every ten.
    worker = Worker(runtime.queues(), connection=runtime.redis, name=name, maintenance_interval=60)
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
    finally:
        stop.set()
