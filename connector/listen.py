"""``chat2crm listen <crm>``: the process that keeps the CRM's event stream open (Salesforce's Pub/Sub API)
and takes agents' replies and closed conversations as they come, with the code the CRM webhooks use
(:func:`connector.crm_events.take`).

- **One listener per deployment.** It holds a lease in Redis (:data:`LEASE`), renewed by a thread every
  third of its TTL; a second ``listen`` waits as a standby and takes over when the lease frees itself (the
  holder stopped, or was killed). A listener that loses its lease closes its stream at once.
- **Checkpoint after taking.** The stream's position (Salesforce's replay id) is stored (:data:`CHECKPOINT`)
  only after the batch's events were taken, and only while the lease is this listener's. A listener
  killed between the two subscribes again from the previous position: the batch comes again, and the
  relay's de-duplication on the CRM's message id (``agent-reply:{crm_message}``) makes it change nothing.
  A keep-alive (an empty batch) moves the checkpoint to the stream's latest position.
- **Where it starts.** After the checkpoint; with none (the first start, or one Salesforce no longer has:
  it keeps events 72 hours, and a listener stopped longer finds its position gone), at the oldest event
  Salesforce keeps. Losing a reply is worse than reading again what was taken (de-duplicated): replies
  agents wrote while no listener ran are sent late rather than never (outside WhatsApp's 24-hour window
  they fail, and the agent sees why), and a first listener that fails before storing any position loses
  nothing. Replies older than 72 hours are lost, and the log says when a position was.
- **Failures.** An unavailable or failing stream, an expired session (the adapter logs in again) or a
  refusal is retried with exponential backoff and full jitter (:class:`Backoff`); what Salesforce said to
  wait (its event delivery allocation spent) is waited.

- **People's edits.** A CRM whose change events also say which fields a person edited on the records the relay
  wrote (Salesforce: the change channels of the mapping's contact and record objects,
  :mod:`adapters.salesforce.edits`) gets one more subscription per channel, each on its own thread under the
  same lease, with its own stored position (:data:`EDITS_CHECKPOINT`), taken the same way
  (:func:`connector.completeness.fields_edited` counts them). The record object's stage field is read from
  them too, whoever changed it but the relay (a person, a flow), with its new value: the stage changes
  conversions are sent for. Without an inbox that streams, the listener follows the edits alone.

Logs carry counts, positions and masked conversation keys, never a message's text. Metrics: the events
taken, by outcome (``crm_calls`` with ``operation="listener_events"``), beside the adapter's own calls.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from adapters.inbox import InboxStream, StreamBatch, StreamPositionLost
from connector import crm_events, handback
from connector.locks import Lock
from core import lua, metrics
from core.errors import AuthError, ConfigurationError, FatalError, Problem, RetryableError
from core.keys import family

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.listen")

#: seconds the listener's lease holds without renewal (a killed listener's standby takes over after this)
LEASE_SECONDS = 30
CHECKPOINT = family("listener", "{crm}:position", ttl=None, holds_pii=False, owner=__name__,
                    bounded_by="one key per CRM: the stream position of the last batch taken")
LEASE = family("listener", "{crm}:lease", ttl=LEASE_SECONDS, holds_pii=False, owner=__name__)
EDITS_CHECKPOINT = family("listener", "{crm}:edits:{object}", ttl=None, holds_pii=False, owner=__name__,
                          bounded_by="one key per CRM object whose change events are read: its stream position")

# Store the position only while the lease is this listener's: a listener that lost it never moves it back.
_CHECKPOINT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2])
return 1
"""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is random between 0 and ``base * 2**n``, capped."""

    base: float = 1.0
    ceiling: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self, at_least: float = 0.0) -> float:
        """The next wait (at least ``at_least`` seconds: what the CRM said to wait)."""
        wait = self.rng.uniform(0, min(self.ceiling, self.base * 2 ** self.attempt))
        self.attempt += 1
        return max(wait, at_least)

    def reset(self) -> None:
        self.attempt = 0


class Listener:
    """The listener of one CRM's event stream (see the module).

    Args:
        runtime: the process's runtime.
        crm: the CRM's name (it must be the configured one, with an inbox that streams).
        lease_seconds: the lease's TTL.
        backoff: the waits between attempts.
        on_taken: called with each batch once its events are taken, before its position is stored (a seam
            for the tests that stop a listener there).
    """

    def __init__(self, runtime: Runtime, crm: str, *, lease_seconds: float = LEASE_SECONDS,
                 backoff: Backoff | None = None, on_taken: Callable[[StreamBatch], None] | None = None) -> None:
        self.runtime = runtime
        self.crm = crm
        self.lease = Lock(runtime.redis, LEASE.key(crm), lease_seconds)
        self.lease_seconds = lease_seconds
        self.backoff = backoff or Backoff()
        self.on_taken = on_taken
        #: the edit streams (object → stream), then the inbox's stream (None: the edits alone)
        self.edit_streams: dict[str, InboxStream] = self._edit_streams()
        self.stream: InboxStream | None = self._stream(required=not self.edit_streams)
        self._stop = threading.Event()
        self._lost = threading.Event()
        #: batches taken, and whether this listener holds the lease (for tests and health)
        self.batches_taken = 0
        self.leading = threading.Event()

    def _edit_streams(self) -> dict[str, InboxStream]:
        """The streams of people's edits the CRM offers (none for a CRM whose edits arrive by webhook)."""
        runtime, crm = self.runtime, self.crm
        if crm != runtime.config.crm:
            raise ConfigurationError(Problem(f"chat2crm.yaml names crm {runtime.config.crm!r}, not {crm!r}",
                                             file="chat2crm.yaml", path="crm"))
        if crm != "salesforce":
            return {}
        from adapters.salesforce.edits import edit_streams, edited_objects

        adapter: Any = runtime.adapter
        mapping = runtime.mapping
        objects = edited_objects(mapping.contact.object, mapping.record.object if mapping.record else None)
        # the record's stage field travels with its changes (with its new value): a stage change is a conversion
        record = mapping.record
        carry: dict[str, tuple[str, ...]] = (
            {record.object: (record.stage_property,)} if record is not None and record.stage_property else {})
        return dict(edit_streams(adapter.session, endpoint=adapter.credentials.pubsub_endpoint, objects=objects,
                                 carry=carry))

    def _stream(self, *, required: bool) -> InboxStream | None:
        runtime, crm = self.runtime, self.crm
        inbox = runtime.inbox
        stream = inbox.stream() if inbox is not None else None
        if stream is None and not required:
            return None
        if stream is None:
            raise ConfigurationError(Problem(
                f"the {crm} inbox has no event stream to listen to (inbox.enabled is off, the adapter's `inbox` "
                "option is none, or its replies arrive by webhook)", file="chat2crm.yaml", path="inbox"))
        return stream

    # -- running --------------------------------------------------------------------------------
    def streams(self) -> list[tuple[InboxStream, str]]:
        """Every stream followed, with the key its position is stored under (the inbox's first)."""
        found = [(self.stream, CHECKPOINT.key(self.crm))] if self.stream is not None else []
        return found + [(s, EDITS_CHECKPOINT.key(self.crm, o)) for o, s in self.edit_streams.items()]

    def _close_all(self) -> None:
        for stream, _ in self.streams():
            stream.close()

    def stop(self) -> None:
        """Stop (from another thread or a signal handler): the streams are closed, :meth:`run` returns."""
        self._stop.set()
        self._close_all()

    def run(self) -> None:
        """Listen until :meth:`stop`: hold the lease (or wait for it as a standby), then subscribe, take, store."""
        while not self._stop.is_set():
            if not self.lease.acquire():
                self._stop.wait(min(1.0, self.lease_seconds / 3))
                continue
            log.info("listener leads", extra={"crm": self.crm})
            self._lost.clear()
            self.leading.set()
            renewing = threading.Thread(target=self._renew, name="listener-lease", daemon=True)
            renewing.start()
            try:
                self._lead()
            finally:
                self.leading.clear()
                self._lost.set()  # stops the renewal; a killed process renews nothing either
                renewing.join(timeout=5)
            if self._stop.is_set():
                self.lease.release()  # an orderly stop hands over at once

    def _renew(self) -> None:
        while not self._lost.wait(self.lease_seconds / 3):
            try:
                held = self.lease.extend()
            except redis.RedisError:
                held = False
            if not held:
                log.error("listener lost its lease: stopping its stream", extra={"crm": self.crm})
                self._lost.set()
                self._close_all()
                return

    def _lead(self) -> None:
        """Follow every stream while this listener holds the lease: the edits' on threads of their own."""
        (first, first_key), *others = self.streams()
        followers = [threading.Thread(target=self._follow, args=(stream, key, Backoff(
            base=self.backoff.base, ceiling=self.backoff.ceiling)), kwargs={"measuring": True},
            name="listener-edits", daemon=True) for stream, key in others]
        for follower in followers:
            follower.start()
        try:
            self._follow(first, first_key, self.backoff)
        finally:
            if followers:
                self._lost.set()  # the others end with this one (a stop, a lost lease, a crash)
                for stream, _ in others:
                    stream.close()
                for follower in followers:
                    follower.join(timeout=5)

    def _follow(self, stream: InboxStream, key: str, backoff: Backoff, *, measuring: bool = False) -> None:
        """Subscribe to one stream again and again while this listener holds the lease. A ``measuring`` stream
        (people's edits, for completeness) the CRM refuses is a warning: no reply waits on it."""
        while not (self._stop.is_set() or self._lost.is_set()):
            position = self._stored(key)
            try:
                got_any = False
                for batch in stream.batches(position, earliest=position is None):
                    got_any = True
                    self._take(batch, key)
                    if self._stop.is_set() or self._lost.is_set():
                        return
                    backoff.reset()
                if not got_any:
                    self._wait(backoff.next())
            except StreamPositionLost as exc:
                log.warning("stored stream position no longer valid: reading from the oldest event the CRM keeps "
                            "(replies older than that are lost)", extra={"crm": self.crm, "reason": str(exc)})
                self.runtime.redis.delete(key)
            except RetryableError as exc:
                wait = backoff.next(exc.retry_after or 0.0)
                log.warning("listener stream failed: subscribing again", extra={
                    "crm": self.crm, "reason": exc.message, "wait_seconds": round(wait, 2)})
                self._wait(wait)
            except (AuthError, FatalError) as exc:
                wait = backoff.next(backoff.ceiling / 2)
                (log.warning if measuring else log.error)(
                    "listener refused: retrying", extra={"crm": self.crm, "reason": exc.message,
                                                         "wait_seconds": round(wait, 2)})
                self._wait(wait)

    def _take(self, batch: StreamBatch, key: str | None = None) -> None:
        """Take a batch's events (again while a closed conversation is busy), then store its position (under
        ``key``: the inbox stream's by default)."""
        key = key or CHECKPOINT.key(self.crm)
        for attempt in range(5):
            try:
                counts = crm_events.take(self.runtime, self.crm, batch.events, report_unknown=True)
                break
            except handback.ConversationBusy:
                if attempt == 4:
                    raise RetryableError("a closed thread's conversation stayed busy") from None
                self._wait(0.5)
        for outcome, count in counts.items():
            if count:
                metrics.incr(self.runtime.redis, "crm_calls", count, adapter=self.crm, operation="listener_events",
                             outcome=outcome)
        if batch.received or batch.events:
            log.info("listener took a batch", extra={"crm": self.crm, "received": batch.received, **counts})
        if self.on_taken is not None:
            self.on_taken(batch)
        if not lua.run(self.runtime.redis, _CHECKPOINT, [LEASE.key(self.crm), key], [self.lease.token, batch.position]):
            self._lost.set()
            self._close_all()
            raise RetryableError("the listener's lease was lost: the position was not stored")
        self.batches_taken += 1

    def position(self) -> bytes | None:
        """The inbox stream's stored position (None: none yet)."""
        return self._stored(CHECKPOINT.key(self.crm))

    def _stored(self, key: str) -> bytes | None:
        raw: Any = self.runtime.redis.get(key)
        return bytes(raw) if raw else None

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)


def listen(runtime: Runtime, crm: str) -> int:
    """Run a listener in this process until SIGTERM or SIGINT; returns the exit code."""
    listener = Listener(runtime, crm)

    def stop(signum: int, frame: Any) -> None:
        log.info("listener stopping", extra={"crm": crm, "signal": signum})
        listener.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("listener started", extra={"crm": crm})
    listener.run()
    return 0


def wait_leading(listener: Listener, timeout: float) -> bool:
    """Whether ``listener`` holds the lease within ``timeout`` seconds (tests and the process supervisor)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener.leading.wait(0.05):
            return True
    return False
