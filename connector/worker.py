"""``chat2crm worker``: job processes on the relay's three queues, with rq's scheduler for delayed retries.

The command warms up once (configuration, language models, date patterns, templates), then forks
``WORKER_PROCESSES`` long-lived job processes under a supervisor (:mod:`connector.supervisor`) that
replaces one that dies, hangs or grows too large. Each runs jobs in-process, serving the
``outbound``, ``crm`` and ``inbound`` queues round-robin and, in turns with them, the conversations on the
ready list (:func:`connector.queues.work`), so replies, CRM writes and new messages each get their turn
however long the others' backlog. Each adds its counts up and writes them once a second
(:func:`core.metrics.batch_in_process`). A sweeper thread in
every job process stands for election; the one holding the lease re-enqueues what a killed process
left behind (:mod:`connector.sweeper`). rq's scheduler, which moves delayed retries to their queues, is a
thread of the job process that holds its locks (:class:`connector.queues.ThreadScheduler`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

import connector.jobs  # noqa: F401 - rq imports the jobs by name in each work-horse: loaded once, before the forks
from adapters import load_adapter
from connector import inbox, queues
from connector.attribution.language import preload_detector
from connector.bot.datetimes import warm_dates
from connector.bot.places import warm_places
from connector.mapping import required_schema
from connector.runtime import Runtime, current_runtime, set_current_runtime
from connector.supervisor import Slots, Supervisor, stop_with_launcher
from connector.sweeper import SWEEP_SECONDS, Sweeper
from connector.templating import strings_in, warm_templates
from core import metrics
from core.errors import ConfigurationError, RetryableError
from core.keys import family
from core.models import utcnow

log = logging.getLogger("chat2crm.worker")

HEARTBEAT_SECONDS = 7 * 86400
HEARTBEAT = family("worker", "heartbeat", ttl=HEARTBEAT_SECONDS, holds_pii=False, owner=__name__)

__all__ = ["SWEEP_SECONDS", "heartbeat", "prepare_adapter", "run_worker", "warm_up"]


def heartbeat() -> str:
    """A job that records which worker ran it and when (``chat2crm worker --check`` enqueues it).

    Returns:
        The name of the worker that ran it.
    """
    name = queues.current_worker_name()
    current_runtime().redis.set(HEARTBEAT.key(), f"{name} {utcnow().isoformat()}", ex=HEARTBEAT_SECONDS)
    return name


def warm_up(runtime: Runtime, *, for_forks: bool = True) -> None:
    """Load, once and before the job processes are forked, everything a job would otherwise load on first
    use: configuration, the language models, the date parser's patterns for the configured languages,
    the compiled flow and mapping templates, the CRM client's modules. The children share it (copy-on-write, heap frozen).

    No connection to a CRM or a channel is opened here: a child must not inherit a half-used socket.

    Args:
        for_forks: load the heavy parts too (a supervisor about to fork several processes that share them).

    Raises:
        ConfigurationError: the configuration is invalid (the worker must not start).
    """
    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    inbox.upgrade(runtime)
    if for_forks:  # a lone process (a burst run, or one job process) loads what its jobs need as they need it
        languages = list(runtime.config.languages)
        preload_detector(languages)
        warm_dates(languages)
        warm_places()  # the country names in every language: ~0.6 s of imports a fork would repeat
        warm_templates(strings_in([runtime.flows, runtime.mapping]))
        load_adapter(runtime.config.crm).preload_modules()  # the CRM client's modules, imported on first use
    # each child opens its own; only the idle ones are closed: closing one another thread is using (the
    # web's request threads beside an in-process burst run) left that thread waiting for good on its answer
    runtime.redis.connection_pool.disconnect(inuse_connections=False)


def prepare_adapter(runtime: Runtime) -> None:
    """Look up the CRM's schema once in this process (a child: its own connections)."""
    try:
        runtime.adapter.prepare(required_schema(runtime.mapping))
    except RetryableError as exc:  # the CRM is down: start anyway, the adapter looks things up when it writes
        log.warning("CRM not reachable at start", extra={"error": exc.message})


def run_worker(runtime: Runtime, *, burst: bool = False, name: str | None = None,
               sweep_every: float = SWEEP_SECONDS, processes: int | None = None) -> bool:
    """Run the relay's job processes on its queues until stopped.

    With ``burst`` (or one process), jobs run in this process: until the queues are empty, after one
    sweep, with ``burst``. Otherwise this process becomes a supervisor of ``processes`` job processes
    (default: the ``WORKER_PROCESSES`` setting), see :mod:`connector.supervisor`.

    Returns:
        True when a burst run did any work (always True for a supervisor that stopped cleanly).

    Raises:
        ConfigurationError: the configuration is invalid.
    """
    set_current_runtime(runtime)
    stop_with_launcher()  # started by `chat2crm demo`: not outliving it
    # Stopped while still warming up (seconds: the language models load): nothing was taken, exit cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    settings = runtime.settings
    count = processes or settings.worker_processes
    # Loading every model up front pays off when several processes share it; one loads what it meets.
    warm_up(runtime, for_forks=not burst and count > 1)
    max_growth = settings.worker_max_memory_mb * 2**20
    if burst:
        prepare_adapter(runtime)
        sweeper = Sweeper(runtime, name)
        sweeper.run_once()
        sweeper.resign()
        return queues.work(runtime, burst=True, name=name, max_growth=max_growth)

    def child(index: int, slots: Slots) -> int:
        prepare_adapter(runtime)
        # a busy job process writes its counts once a second, not with a command per count
        metrics.batch_in_process(runtime.redis)
        child_name = f"{name}-{index}" if name else None
        try:
            _run_sweeping(runtime, child_name, sweep_every,
                          lambda: queues.work(runtime, burst=False, name=child_name, slot=(slots, index),
                                              max_growth=max_growth))
        finally:
            metrics.flush()
        return 0

    Supervisor(count, child, hang_grace=settings.worker_hang_grace_seconds, max_growth=max_growth).run()
    return True


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _run_sweeping(runtime: Runtime, name: str | None, sweep_every: float, work: Callable[[], bool]) -> bool:
    """Run ``work`` with a sweeper thread beside it (which stands for election: one process sweeps)."""
    sweeper = Sweeper(runtime, name)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(sweep_every):
            try:
                sweeper.run_once()
            except Exception:  # a sweep must never take the worker down
                log.exception("sweep failed")

    threading.Thread(target=sweep, name="chat2crm-sweeper", daemon=True).start()
    try:
        return work()
    finally:
        stop.set()
        sweeper.resign()
