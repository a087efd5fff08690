"""Request bodies, read in full before the app sees them: under a hard size limit and a deadline.

A webhook's signature covers its exact body, so the body must be read whole; a client must not be able
to make the relay hold more than ``MAX_BODY_BYTES`` or wait on it for long. :class:`BodyLimit` is the
WSGI middleware that does this for every route, whatever the framing:

- a ``Content-Length`` over the limit is answered 413 before anything is read;
- a chunked body (``Transfer-Encoding: chunked``, no length) is read up to one byte past the limit, and
  answered 413 as soon as it passes it: never cut short and handed on;
- a body still arriving after ``BODY_TIMEOUT_SECONDS`` is answered 408. Under gunicorn (which hands the
  connection's socket over as ``gunicorn.socket``) one watchdog thread per process stops the read at the
  deadline, however slowly the bytes trickle in; the connection is then closed.

What passes is handed on as a complete, in-memory body with its length, so nothing downstream reads the
network. A refused request's connection carries no other request: the answer says ``Connection: close``,
and under gunicorn (which keeps HTTP/1.1 connections open whatever the app says, and reads what is
left of a body before the next request) the connection's reading side is cut ``BODY_TIMEOUT_SECONDS``
after the answer: a client that goes on sending gets no more of the server's time than that, and one
that simply finishes its body first still reads the answer cleanly.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gunicorn.http.errors import ParseException

#: bytes read at a time
CHUNK = 64 * 1024

#: (environ, status, reason) of a refused body: for the caller's log line and metric
OnRefused = Callable[[dict[str, Any], int, str], None]
StartResponse = Callable[..., Any]


class BodyRefused(Exception):
    """A body that is not handed on: its HTTP status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Watch:
    """One body being read against its deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.expired = False
        self._done = False
        self._lock = threading.Lock()

    def expire(self) -> None:
        """Stop the read: a blocked ``recv`` returns at once, as at the end of the stream."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            with contextlib.suppress(OSError):  # the client went away meanwhile
                self.sock.shutdown(socket.SHUT_RD)  # the answer can still be written

    def done(self) -> None:
        """The body was read (or refused): the watchdog leaves the socket alone from now on."""
        with self._lock:
            self._done = True

    @property
    def finished(self) -> bool:
        """Whether the read ended (in time or not): nothing left to watch."""
        return self._done or self.expired


#: how late the watchdog may stop a read, at most, rather than wake up once more
SLACK_SECONDS = 0.1
#: how long the watchdog sleeps at most (it then drops the reads that ended meanwhile)
POLL_SECONDS = 1.0


class _Watchdog:
    """One thread per process that stops the reads whose deadline has passed.

    It wakes when the earliest deadline is due, and at least once a second to drop the reads that ended
    in time (so only the reads in progress, and a second of ended ones, are kept). A new read wakes it only
    when its deadline comes before that: a body read in time, under any load, costs the thread nothing."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._pid = 0
        #: when the sleeping thread wakes next (0: it is awake, and looks at every deadline before it sleeps)
        self._wakes_at = 0.0

    def reset(self) -> None:
        """Forget the parent's thread and lock in a forked child (its thread does not exist there)."""
        self._due, self._wake, self._pid, self._wakes_at = [], threading.Condition(), 0, 0.0

    def watch(self, sock: socket.socket, seconds: float) -> _Watch:
        """Watch a read on ``sock`` that must end within ``seconds``."""
        watch = _Watch(sock, time.monotonic() + seconds)
        with self._wake:
            if self._pid != os.getpid():  # first use in this process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="chat2crm-body-watchdog", daemon=True).start()
            heapq.heappush(self._due, (watch.deadline, next(self._order), watch))
            if watch.deadline < self._wakes_at - SLACK_SECONDS:  # due before the thread would look again
                self._wake.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wakes_at = 0.0
                now = time.monotonic()
                late = []
                while self._due and (self._due[0][2].finished or self._due[0][0] <= now):
                    _, _, watch = heapq.heappop(self._due)
                    if not watch.finished:
                        late.append(watch)
                if not late:
                    wakes_at = now + POLL_SECONDS
                    if self._due:
                        wakes_at = min(wakes_at, self._due[0][0] + SLACK_SECONDS)
                    self._wakes_at = wakes_at
                    self._wake.wait(wakes_at - now)
                    continue
            for watch in late:
                watch.expire()


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.reset)  # gunicorn forks its workers


def _declared_length(environ: dict[str, Any]) -> int | None:
    """The ``Content-Length`` of a body that has one (None for chunked or none).

    Raises:
        BodyRefused: 400 for a length that is not a number.
    """
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise BodyRefused(400, "Content-Length is not a number")
    return int(raw)


def read_body(environ: dict[str, Any], max_bytes: int, timeout: float) -> bytes | None:
    """The whole body of the request, or None when it has none (no length, not chunked).

    Raises:
        BodyRefused: 413 over ``max_bytes``; 408 not received within ``timeout`` seconds (under gunicorn);
            400 when the body is shorter than its length or its chunks are malformed.
    """
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    length = _declared_length(environ)
    if length is not None and length > max_bytes:
        raise BodyRefused(413, "body too large")
    if not chunked and not length:
        return None if length is None else b""
    want = length if length is not None else max_bytes + 1
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    watch = _watchdog.watch(sock, timeout) if isinstance(sock, socket.socket) else None
    received = bytearray()
    try:
        while len(received) < want:
            piece = stream.read(min(CHUNK, want - len(received)))
            if not piece:
                break
            received.extend(piece)
    except (OSError, ValueError, ParseException):
        # a chunk header that is not one, or the connection cut (by the client or by the deadline)
        if watch is None or not watch.expired:
            raise BodyRefused(400, "body could not be read") from None
    finally:
        if watch is not None:
            watch.done()
    if watch is not None and watch.expired:
        raise BodyRefused(408, "body not received in time")
    if len(received) > max_bytes:
        raise BodyRefused(413, "body too large")
    if length is not None and len(received) < length:
        raise BodyRefused(400, "body shorter than its Content-Length")
    return bytes(received)


class BodyLimit:
    """WSGI middleware: every request's body read by :func:`read_body` before ``app`` runs.

    Args:
        app: the WSGI app.
        max_bytes: the largest body accepted.
        timeout: seconds a client has to send a body.
        on_refused: told of each refused body (to log and count it).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *, max_bytes: int, timeout: float,
                 on_refused: OnRefused | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.on_refused = on_refused

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = read_body(environ, self.max_bytes, self.timeout)
        except BodyRefused as exc:
            if self.on_refused is not None:
                self.on_refused(environ, exc.status, exc.reason)
            sock = environ.get("gunicorn.socket")
            return _Refusal(start_response, exc, sock if isinstance(sock, socket.socket) else None, self.timeout)
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = True  # the whole body is there: it may be read to its end
        return self.app(environ, start_response)


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large"}


class _Refusal:
    """The answer to a refused body; once it is sent, the connection's reading side is cut after ``grace``."""

    def __init__(self, start_response: StartResponse, exc: BodyRefused, sock: socket.socket | None,
                 grace: float) -> None:
        self.payload = json.dumps({"error": exc.reason}).encode()
        start_response(f"{exc.status} {_REASONS[exc.status]}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(self.payload))),
            # the rest of the body is not read: the connection cannot carry another request
            ("Connection", "close")])
        self.sock = sock
        self.grace = grace

    def __iter__(self) -> Iterator[bytes]:
        return iter([self.payload])

    def close(self) -> None:
        """Called by the server once the answer is sent: bound what it may still read of the body."""
        if self.sock is not None:
            _watchdog.watch(self.sock, self.grace)  # never marked done: it cuts the reads when due
