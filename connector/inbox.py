"""A conversation's inbox: the patient's messages waiting to be handled, oldest first.

Each new message of a webhook body (read by a job process, :mod:`connector.received`) is appended to
its conversation's inbox (:func:`enqueue_inbound`, one small Lua call); a channel's intake, where the
webhook keeps the raw bodies, is an inbox of the same kind under the key ``@<channel>`` (:func:`append`).
The worker handles the head and pops it in the same transaction that saves what it did
(:mod:`connector.turn`), so a message leaves its inbox only once it took effect. A message id seen
before is dropped, in the same atomic step that would queue it.

The work list (:data:`DUE`) scores each conversation with messages waiting by the time its drain could
have been lost; the sweeper looks only at the ones due. A conversation that joins the work list is
also pushed, once, onto the ready list (:data:`READY`), which the job processes pop
(:class:`connector.queues.RelayWorker`): a message costs no rq job, only its key on a list. While a
conversation is listed, later messages only join its inbox: its drain (or its retry, after its backoff)
takes them in order, and a drain that ends with messages left pushes it again
(:func:`release_and_finish`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import redis

from connector.locks import Found, Lock, next_head, next_heads, take_head, take_heads
from connector.transaction import Transaction
from core import lua
from core.keys import family
from core.models import Channel, InboundMessage, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime

INBOX = family("inbox", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
SEEN = family("seen", "{channel}:{message_id}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
DUE = family("inboxes", ttl=None, holds_pii=True, owner=__name__,
             bounded_by="one member per conversation with messages waiting, removed when its inbox is drained")
ATTEMPTS = family("inbox-attempts", "{conversation}", ttl=86400, holds_pii=True, owner=__name__)
READY = family("ready", ttl=None, holds_pii=True, owner=__name__,
               bounded_by="conversation keys waiting for a job process; pushed when a conversation joins the "
                          "work list, popped by the job processes")

# One call for one or several messages or bodies, each: drop a redelivery (its seen key set only if absent, when
# its seen TTL is not 0), append it to its inbox, and list the inbox; an inbox not listed yet is also pushed
# onto the ready list (one listed already has a drain or a retry on its way). Returns 1 (kept) or 0 for each.
# KEYS: work list, ready list, then for each item its seen key and its inbox.
# ARGV: inbox TTL, due time, then for each item its seen TTL (0: no check), the item, and the inbox's name.
_ENQUEUE = """
local kept = {}
for i = 0, (#KEYS - 2) / 2 - 1 do
  local seen, inbox, ttl, item, key = KEYS[3 + 2 * i], KEYS[4 + 2 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  if ttl ~= '0' and not redis.call('set', seen, '1', 'NX', 'EX', ttl) then
    kept[i + 1] = 0
  else
    redis.call('rpush', inbox, item)
    redis.call('expire', inbox, ARGV[1])
    if redis.call('zadd', KEYS[1], 'NX', ARGV[2], key) == 1 then redis.call('rpush', KEYS[2], key) end
    kept[i + 1] = 1
  end
end
return kept
"""

# Remove a conversation from the work list only if its inbox is empty, in one step (a message pushed in
# between keeps it listed).
_DRAINED = """
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[2], ARGV[1]) return 1 end
return 0
"""
# A drain that ends, in one call: release the conversation's lock (if still this drain's), then as _DRAINED,
# and a conversation with messages left is made ready again.
# KEYS: lock, inbox, work list, ready list. ARGV: token, key, due time.
_RELEASE_AND_FINISH = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
if redis.call('llen', KEYS[2]) == 0 then redis.call('zrem', KEYS[3], ARGV[2]) return 1 end
redis.call('zadd', KEYS[3], ARGV[3], ARGV[2])
redis.call('rpush', KEYS[4], ARGV[2])
return 0
"""
# The work list of earlier versions was a set: make it a sorted set, every member due now.
_UPGRADE = """
if redis.call('type', KEYS[1])['ok'] ~= 'set' then return 0 end
local members = redis.call('smembers', KEYS[1])
redis.call('del', KEYS[1])
for _, member in ipairs(members) do redis.call('zadd', KEYS[1], ARGV[1], member) end
return #members
"""
# Pop the head only if it is still the given message.
_POP_IF_HEAD = """
if redis.call('lindex', KEYS[1], 0) == ARGV[1] then redis.call('lpop', KEYS[1]) return 1 end
return 0
"""


def enqueue_inbound(runtime: Runtime, message: InboundMessage, *, dedup_days: int | None = None) -> bool:
    """Queue one patient message for its conversation (called when a webhook's body is read).

    The message is appended to the conversation's inbox, so messages are handled in arrival order, and
    the conversation is made ready for a job process unless it is already listed. With ``dedup_days``, the
    message id is remembered for that long and a message seen before is dropped, in the same atomic step:
    a redelivery is never queued twice, and a message is never marked seen without being queued. One
    Redis round trip (a Lua script called by its SHA1).

    Returns:
        False when the message was a redelivery (nothing queued).

    Raises:
        redis.RedisError: Redis failed; nothing was queued or remembered.
    """
    seen_ttl = dedup_days * 86400 if dedup_days is not None else 0
    if dedup_days is not None and seen_ttl <= 0:
        raise ValueError(f"dedup_days must be more than 0, got {dedup_days!r}")
    return append(runtime, message.conversation_key, message.model_dump_json().encode(),
                  seen_key=SEEN.key(message.channel, message.message_id), seen_seconds=seen_ttl)


def append(runtime: Runtime, key: str, item: bytes, *, seen_key: str, seen_seconds: int) -> bool:
    """Append ``item`` to the inbox ``key`` (a conversation's, or a channel's intake of webhook bodies) and
    list it, in one call: when ``seen_seconds`` is more than 0, only if ``seen_key`` was not set within that
    time (it is then set). Returns False when it was (nothing appended)."""
    return append_many(runtime, [Entry(key, item, seen_key, seen_seconds)])[0]


class Entry(NamedTuple):
    """One item for :func:`append_many`: its inbox, the item, and its seen key and how long it is kept."""

    key: str
    item: bytes
    seen_key: str
    seen_seconds: int


def append_many(runtime: Runtime, entries: Sequence[Entry]) -> list[bool]:
    """:func:`append` for several items in one call, in their order (the same item twice: the second is
    dropped when it has a seen key). Returns, for each, whether it was appended.

    Raises:
        redis.RedisError: Redis failed; nothing was appended or remembered.
    """
    keys: list[str] = [DUE.key(), READY.key()]
    args: list[Any] = [runtime.config.retention.conversation_hours * 3600,
                       time.time() + runtime.config.delivery.lost_job_seconds]
    for entry in entries:
        keys += [entry.seen_key, INBOX.key(entry.key)]
        args += [entry.seen_seconds, entry.item, entry.key]
    return [bool(kept) for kept in lua.run(runtime.redis, _ENQUEUE, keys=keys, args=args)]


def make_ready(runtime: Runtime, key: str, *, postpone_by: float | None = None) -> None:
    """Push conversation ``key`` onto the ready list (the sweeper, a drain that ended with messages left);
    with ``postpone_by``, the sweeper leaves it alone that many seconds."""
    pipe = runtime.redis.pipeline(transaction=True)
    if postpone_by is not None:
        pipe.zadd(DUE.key(), {key: time.time() + postpone_by})
    pipe.rpush(READY.key(), key)
    pipe.execute()


def ready_count(runtime: Runtime) -> int:
    """Conversations waiting for a job process."""
    return int(runtime.redis.llen(READY.key()))


def enqueue_opt_out(runtime: Runtime, channel: Channel, account: str, sender_id: str, *,
                    message_id: str | None = None) -> None:
    """Record a channel-level opt-out (WhatsApp ``user_preferences``) as a message of its conversation.

    It travels through the same inbox, so it is ordered with the patient's other messages. With
    ``message_id`` (derived from the webhook's body), an opt-out recorded under that id before is not
    recorded again: a body read twice records it once.
    """
    message = InboundMessage(
        channel=channel, account=account, sender_id=sender_id, message_id=message_id or f"opt-out:{uuid.uuid4().hex}",
        timestamp=utcnow(), kind="unsupported", raw_type="opt_out",
    )
    enqueue_inbound(runtime, message, dedup_days=runtime.config.retention.dedup_days if message_id else None)


def messages(runtime: Runtime, key: str) -> list[InboundMessage]:
    """The messages waiting in a conversation's inbox, oldest first (tests and diagnosis)."""
    return [InboundMessage.model_validate_json(raw) for raw in runtime.redis.lrange(INBOX.key(key), 0, -1)]


def waiting(runtime: Runtime) -> list[str]:
    """The conversations whose inbox may hold messages."""
    return [_text(k) for k in runtime.redis.zrange(DUE.key(), 0, -1)]


def guard(tx: Transaction, key: str, raw: bytes) -> None:
    """Make ``tx`` apply only while ``raw`` is still the head of the inbox (a turn commits once)."""
    tx.require_head(INBOX.key(key), raw)


def stage_pop(pipe: redis.client.Pipeline, key: str) -> None:
    """Pop the head, and forget its failed tries, as part of the turn's transaction."""
    pipe.lpop(INBOX.key(key))
    pipe.delete(ATTEMPTS.key(key))


def pop_if_head(runtime: Runtime, key: str, raw: bytes) -> bool:
    """Pop the head if it is still ``raw`` (a message set aside as failed). Returns whether it was popped."""
    runtime.redis.delete(ATTEMPTS.key(key))
    return bool(lua.run(runtime.redis, _POP_IF_HEAD, [INBOX.key(key)], [raw]))


def push_front(runtime: Runtime, raw: str) -> None:
    """Put a message back at the head of its inbox and make its conversation ready (a replayed failure)."""
    push_front_to(runtime, InboundMessage.model_validate_json(raw).conversation_key, raw)


def push_front_to(runtime: Runtime, key: str, raw: str) -> None:
    """Put ``raw`` back at the head of the inbox ``key`` and make it ready (a replayed failure)."""
    tx = Transaction(runtime.redis)
    tx.pipe.lpush(INBOX.key(key), raw)
    tx.pipe.expire(INBOX.key(key), runtime.config.retention.conversation_hours * 3600)
    tx.pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    tx.pipe.rpush(READY.key(), key)
    tx.commit()


def failed_try(runtime: Runtime, key: str) -> int:
    """Count a failed try of the head; returns how many tries failed before this one."""
    attempts = int(runtime.redis.incr(ATTEMPTS.key(key))) - 1
    runtime.redis.expire(ATTEMPTS.key(key), ATTEMPTS.ttl)  # type: ignore[arg-type]
    return attempts


def due(runtime: Runtime, now: float, limit: int = 500) -> list[str]:
    """Conversations whose job could have been lost by ``now``."""
    return [_text(k) for k in runtime.redis.zrangebyscore(DUE.key(), "-inf", now, start=0, num=limit)]


def postpone(runtime: Runtime, key: str, seconds: float) -> None:
    """Leave the conversation alone (in the sweeper's eyes) for ``seconds``: a job is on its way."""
    runtime.redis.zadd(DUE.key(), {key: time.time() + seconds})


def finish(runtime: Runtime, key: str) -> bool:
    """Drop the conversation from the work list if its inbox is empty.

    Returns:
        True when messages are still waiting.
    """
    return not lua.run(runtime.redis, _DRAINED, [INBOX.key(key), DUE.key()], [key])


def take(runtime: Runtime, key: str, lock: Lock) -> tuple[Found, bytes | None]:
    """Take the conversation's ``lock`` with its inbox's head, in one call (see :func:`connector.locks.take_head`:
    an empty inbox leaves the work list at once)."""
    return take_head(lock, INBOX.key(key), DUE.key(), key)


def next_message(runtime: Runtime, key: str, lock: Lock) -> tuple[Found, bytes | None]:
    """After a turn: the next message with the lock extended, or the lock let go and the conversation off
    the work list (see :func:`connector.locks.next_head`)."""
    return next_head(lock, INBOX.key(key), DUE.key(), key)


def take_batch(runtime: Runtime, key: str, lock: Lock, count: int) -> tuple[Found, list[bytes]]:
    """Take the ``lock`` of inbox ``key`` with up to ``count`` heads (a channel's intake, read in batches: see
    :func:`connector.locks.take_heads`)."""
    return take_heads(lock, INBOX.key(key), DUE.key(), key, count)


def next_batch(runtime: Runtime, key: str, lock: Lock, handled: Sequence[bytes], count: int) -> tuple[Found, list[bytes]]:
    """After a batch: pop the ``handled`` items and forget their failed tries, then the next ``count`` heads,
    in one call (see :func:`connector.locks.next_heads`: ``count`` 0 only pops)."""
    return next_heads(lock, INBOX.key(key), DUE.key(), key, handled=handled, attempts=ATTEMPTS.key(key), count=count)


def release_and_finish(runtime: Runtime, key: str, lock: Lock) -> bool:
    """A drain that ends: let go of the conversation's lock, drop the conversation from the work list if its
    inbox is empty, or else make it ready again (messages arrived as the drain ended), in one call.

    Returns:
        True when messages are still waiting.
    """
    return not lua.run(runtime.redis, _RELEASE_AND_FINISH, keys=[lock.key, INBOX.key(key), DUE.key(), READY.key()],
                       args=[lock.token, key, time.time() + runtime.config.delivery.lost_job_seconds])


def upgrade(runtime: Runtime) -> int:
    """Turn an earlier version's work list (a set) into this one's (a sorted set by due time), every
    conversation due at once; the worker does it when it starts. Returns how many were carried over."""
    return int(lua.run(runtime.redis, _UPGRADE, [DUE.key()], [time.time()]))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
