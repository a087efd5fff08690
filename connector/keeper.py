"""The web process's writes of webhook bodies, grouped: concurrent requests share one Redis call.

Under a campaign's load a web process has several webhook requests in flight at once, each of which has
only one thing left to do: append its body to its channel's intake (:func:`connector.inbox.append_many`).
A Redis round trip costs this machine's two cores several times the rest of the request (the client's
packing and parsing, two system calls, Redis's own work and the context switches to and from it), so
requests write together, the way a database commits a group of transactions with one log write:

- a request that finds no write in progress writes its own body at once (alone, nothing waits);
- requests that arrive while a write is in progress queue their bodies and wait;
- when a write ends, its requests are answered and the first one waiting writes everything queued
  since, up to :data:`MAX_GROUP` bodies, in one call.

No request is answered before its body is in Redis, so nothing acknowledged can be lost, and a failed
write fails every request of its group (each is answered 503 and its vendor sends the body again). There
is no thread of its own and no timer: a write never waits for company.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from connector import inbox

if TYPE_CHECKING:
    from connector.runtime import Runtime

#: the most bodies one call writes (a Lua call's arguments grow with it; 64 is several times a process's threads)
MAX_GROUP = 64


class _Waiting:
    """One request's body, and what became of it."""

    __slots__ = ("entry", "error", "event", "kept", "leads")

    def __init__(self, entry: inbox.Entry) -> None:
        self.entry = entry
        self.event = threading.Event()
        self.kept: bool | None = None
        self.error: BaseException | None = None
        #: set when this request is to write the next group (its own body among them)
        self.leads = False


class Keeper:
    """Appends entries for the threads of one process, grouping those that arrive during a write.

    Args:
        write: writes a group in one call and returns, for each entry, whether it was kept
            (:func:`connector.inbox.append_many` bound to a runtime).
        max_group: the most entries one call writes.
    """

    def __init__(self, write: Callable[[Sequence[inbox.Entry]], list[bool]], max_group: int = MAX_GROUP) -> None:
        self._write = write
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queued: list[_Waiting] = []
        self._writing = False
        #: calls made and entries written (the grouping's measure: the benchmark and the tests read them)
        self.calls = 0
        self.entries = 0

    def keep(self, entry: inbox.Entry) -> bool:
        """Append ``entry`` (with the others waiting) and return whether it was kept (False: seen before).

        Raises:
            redis.RedisError: the write of its group failed; nothing of the group was kept.
        """
        waiting = _Waiting(entry)
        with self._lock:
            self._queued.append(waiting)
            leads = waiting.leads = not self._writing
            self._writing = True
        if not leads:
            waiting.event.wait()  # answered, or asked to write the next group
        if waiting.leads:
            self._write_group()
        if waiting.error is not None:
            raise waiting.error
        return bool(waiting.kept)

    def _write_group(self) -> None:
        """Write what is queued (up to the limit), answer its requests, and hand the next write on."""
        with self._lock:
            group = self._queued[:self._max_group]
            del self._queued[:self._max_group]
        try:
            kept = self._write([waiting.entry for waiting in group])
            for waiting, one in zip(group, kept, strict=True):
                waiting.kept = one
            self.calls += 1  # only the one writer counts: no lock needed
            self.entries += len(group)
        except BaseException as exc:  # every request of the group answers with the failure
            for waiting in group:
                waiting.error = exc
        finally:
            # whatever happened, the next write is handed on and the group answered: a request left waiting
            # would never be answered
            with self._lock:
                if self._queued:
                    self._queued[0].leads = True
                    self._queued[0].event.set()
                else:
                    self._writing = False
            for waiting in group:
                waiting.event.set()


def keeper(runtime: Runtime) -> Keeper:
    """The process's keeper of webhook bodies (one per runtime, made on first use)."""
    return runtime.cached("received:keeper", lambda: Keeper(lambda entries: inbox.append_many(runtime, entries)))
