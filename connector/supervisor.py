"""A small pre-fork supervisor: N job processes forked from one warmed-up parent, each kept alive.

Why not rq's default of a fresh fork per job: a work-horse re-imports what its parent never loaded and
rebuilds every cache (the language models, the date parser's patterns, compiled templates, HTTP
connection pools), then throws them away. That cost about half a second of CPU per message. Here the
parent loads everything once, freezes its heap (``gc.freeze()``, so the children's collections never
touch, and copy, the shared pages), and forks long-lived children that run jobs in-process.

What forking per job gave, the supervisor keeps:

- **a crash takes one job down, not the service**: a child that dies (killed, segfault, out of
  memory) is replaced; its job's work is recovered by the sweeper as before;
- **a hung job cannot block the others**: every child publishes when its job started and its
  deadline in a shared array; a child still busy ``hang_grace`` seconds past its job's time-out (stuck
  where rq's time-out signal cannot reach, in C code or with signals blocked) is killed and replaced;
- **a leak cannot grow without bound**: a child that grew more than ``max_growth`` since it started is
  retired after its job (it stops taking work and exits; a fresh one takes its place), and one that
  grows past twice that in the middle of a job is killed.

The parent runs no job and opens no connection the children could inherit half-used.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import RawArray
from types import FrameType
from typing import Any

from connector.heap import trim_heap

log = logging.getLogger("chat2crm.supervisor")

#: how often the parent looks at its children
POLL_SECONDS = 0.25
#: a child that exits sooner than this after its start counts as failing to start
QUICK_EXIT_SECONDS = 2.0
#: the longest the parent waits before starting a child again after quick exits (doubling from 0.25 s)
MAX_RESPAWN_DELAY = 10.0


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident memory of process ``pid`` (this one when None), from ``/proc`` (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Slots:
    """What each child is doing, shared with the parent: per child, when its job started and the time it
    must be done by (both 0 while idle). Lives in anonymous shared memory made before the forks."""

    def __init__(self, count: int) -> None:
        self._values: Any = RawArray("d", 2 * count)

    def busy(self, index: int, timeout: float | None) -> None:
        """Child ``index`` starts a job that may run ``timeout`` seconds (None: no limit)."""
        now = time.time()
        # deadline first: the parent reads the pair without a lock and never sees a start without one
        self._values[2 * index + 1] = now + timeout if timeout and timeout > 0 else float("inf")
        self._values[2 * index] = now

    def idle(self, index: int) -> None:
        """Child ``index`` finished its job."""
        self._values[2 * index] = 0.0
        self._values[2 * index + 1] = 0.0

    def state(self, index: int) -> tuple[float, float]:
        """``(started, deadline)`` of child ``index``'s job, ``(0, 0)`` while idle."""
        return float(self._values[2 * index]), float(self._values[2 * index + 1])


@dataclass
class Child:
    """One forked job process."""

    index: int
    pid: int
    started: float
    base_rss: int | None


#: what a child runs: given its index and the shared slots, returns its exit status
ChildMain = Callable[[int, Slots], int]


class Supervisor:
    """Fork ``processes`` children running ``main`` and keep them running until told to stop.

    Args:
        processes: how many children to keep.
        main: what each child runs (in the child, after the fork).
        hang_grace: seconds past its job's deadline before a busy child is killed.
        max_growth: bytes a child may grow beyond its size at start before it is killed mid-job (at twice
            this; the child retires itself after its job at once this, see :func:`over_memory`).
        stop_timeout: seconds children get to finish their job when the supervisor stops, before SIGKILL.
    """

    def __init__(self, processes: int, main: ChildMain, *, hang_grace: float, max_growth: int,
                 stop_timeout: float = 30.0) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.processes = processes
        self.main = main
        self.hang_grace = hang_grace
        self.max_growth = max_growth
        self.stop_timeout = stop_timeout
        self.slots = Slots(processes)
        self.children: dict[int, Child] = {}
        self.started = 0
        self._stopping = threading.Event()
        self._delay = [0.0] * processes
        self._not_before = [0.0] * processes

    # -- the parent ------------------------------------------------------------------------------
    def run(self) -> int:
        """Start the children and supervise them until SIGTERM, SIGINT or SIGHUP. Returns the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._request_stop)
        # The children share the parent's heap pages; frozen objects are never scanned by the collector,
        # so a collection in a child does not write to (and so copy) every shared page.
        gc.collect()
        trim_heap()
        gc.freeze()
        try:
            while not self._stopping.is_set():
                self._reap()
                self._watch()
                self._fill()
                self._stopping.wait(POLL_SECONDS)
        finally:
            self._stop_children()
        return 0

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("supervisor stopping", extra={"signal": signal.Signals(signum).name})
        self._stopping.set()

    def _fill(self) -> None:
        running = {child.index for child in self.children.values()}
        now = time.monotonic()
        for index in range(self.processes):
            if index not in running and now >= self._not_before[index] and not self._stopping.is_set():
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        self.slots.idle(index)
        pid = os.fork()
        if pid == 0:  # the child: never return into the parent's loop
            status = 1
            try:
                status = self._child(index)
            except BaseException:
                log.exception("job process failed")
            finally:
                os._exit(status)
        self.started += 1
        self.children[pid] = Child(index, pid, time.monotonic(), rss_bytes(pid))
        log.info("job process started", extra={"pid": pid, "index": index})

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:  # a grandchild we do not manage (cannot happen: only our forks are children)
                continue
            self.slots.idle(child.index)
            lived = time.monotonic() - child.started
            code = os.waitstatus_to_exitcode(status)
            if lived < QUICK_EXIT_SECONDS and not self._stopping.is_set():
                # failing at start (Redis unreachable, a broken configuration): back off instead of a fork storm
                delay = min(MAX_RESPAWN_DELAY, max(0.25, self._delay[child.index] * 2))
                self._delay[child.index] = delay
                self._not_before[child.index] = time.monotonic() + delay
            else:
                self._delay[child.index] = 0.0
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "job process exited", extra={"pid": pid, "exit_code": code, "lived_seconds": round(lived, 1)})

    def _watch(self) -> None:
        now = time.time()
        for child in list(self.children.values()):
            started, deadline = self.slots.state(child.index)
            if not started:
                continue
            if now > deadline + self.hang_grace:
                log.error("job process hung past its job's time-out: killed", extra={
                    "pid": child.pid, "busy_seconds": round(now - started, 1)})
                self._kill(child)
                continue
            rss = rss_bytes(child.pid)
            if rss is not None and child.base_rss is not None and rss - child.base_rss > 2 * self.max_growth:
                log.error("job process grew past its memory limit mid-job: killed", extra={
                    "pid": child.pid, "grown_mb": (rss - child.base_rss) // 2**20})
                self._kill(child)

    def _kill(self, child: Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    def _stop_children(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)  # rq's warm shut-down: finish the job, take no other
        deadline = time.monotonic() + self.stop_timeout
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for child in list(self.children.values()):
            log.warning("job process did not stop in time: killed", extra={"pid": child.pid})
            self._kill(child)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
        self.children.clear()

    # -- the child -------------------------------------------------------------------------------
    def _child(self, index: int) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # the job loop installs its own
        _stop_with_parent(os.getppid())
        return self.main(index, self.slots)


def _stop_with_parent(parent: int) -> None:
    """Ask this process to stop (SIGTERM: a warm shut-down) once its parent is gone, so a supervisor
    killed outright leaves no job process running on its own."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="chat2crm-parent-watch", daemon=True).start()


#: set by a launcher (``chat2crm demo``) in the environment of the processes it starts: its process id
LAUNCHER_ENV = "CHAT2CRM_STOP_WITH_PID"


def stop_with_launcher() -> None:
    """Stop this process (SIGTERM, its own clean shut-down) once the launcher named in :data:`LAUNCHER_ENV`
    is no longer its parent: a demo killed outright (SIGKILL, a closed terminal) leaves no web server or
    worker running on its own. Nothing happens without the variable, or when this process is not the
    launcher's child (a command copied into another shell)."""
    try:
        launcher = int(os.environ.get(LAUNCHER_ENV, ""))
    except ValueError:
        return
    if launcher == os.getppid():
        _stop_with_parent(launcher)


def over_memory(base_rss: int | None, max_growth: int) -> bool:
    """Whether this process grew more than ``max_growth`` bytes beyond ``base_rss`` (False when unknown)."""
    rss = rss_bytes()
    return rss is not None and base_rss is not None and rss - base_rss > max_growth
