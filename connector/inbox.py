"""A conversation's inbox: the patient's messages waiting to be handled, oldest first.

The webhook appends each new message to its conversation's inbox and enqueues a job to drain it
(:func:`enqueue_inbound`); the worker handles the head and pops it in the same transaction that
saves what it did (:mod:`connector.turn`), so a message leaves its inbox only once it took effect.
A message id seen before is dropped at the door, in the same atomic step that would queue it.

The work list (:data:`DUE`) scores each conversation with messages waiting by the time its job could
have been lost; the sweeper looks only at the ones due.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import redis

from connector import queues
from connector.transaction import Transaction
from core.keys import family
from core.models import Channel, InboundMessage, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime

INBOX = family("inbox", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
SEEN = family("seen", "{channel}:{message_id}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
DUE = family("inboxes", ttl=None, holds_pii=True, owner=__name__,
             bounded_by="one member per conversation with messages waiting, removed when its inbox is drained")
ATTEMPTS = family("inbox-attempts", "{conversation}", ttl=86400, holds_pii=True, owner=__name__)

# Remove a conversation from the work list only if its inbox is empty, in one step (a message pushed in
# between keeps it listed).
_DRAINED = """
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[2], ARGV[1]) return 1 end
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
    """Queue one patient message for its conversation (called by the webhook).

    The message is appended to the conversation's inbox, so messages are handled in arrival order, and
    a job is enqueued to drain it. With ``dedup_days``, the message id is remembered for that long and a
    message seen before is dropped, in the same atomic step: a redelivery is never queued twice, and a
    message is never marked seen without being queued. One Redis round trip.

    Returns:
        False when the message was a redelivery (nothing queued).

    Raises:
        redis.RedisError: Redis failed; nothing was queued or remembered (the channel redelivers).
    """
    key = message.conversation_key
    tx = Transaction(runtime.redis)
    if dedup_days is not None:
        tx.require_absent(SEEN.key(message.channel, message.message_id), dedup_days * 86400)
    pipe = tx.pipe
    pipe.rpush(INBOX.key(key), message.model_dump_json())
    pipe.expire(INBOX.key(key), runtime.config.retention.conversation_hours * 3600)
    # A job is on its way: the sweeper leaves this conversation alone until it could have been lost.
    pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    queues.enqueue(runtime, queues.INBOUND, queues.PROCESS_CONVERSATION, key, pipe=pipe, description="conversation")
    return tx.commit()


def enqueue_opt_out(runtime: Runtime, channel: Channel, account: str, sender_id: str) -> None:
    """Record a channel-level opt-out (WhatsApp ``user_preferences``) as a message of its conversation.

    It travels through the same inbox, so it is ordered with the patient's other messages.
    """
    message = InboundMessage(
        channel=channel, account=account, sender_id=sender_id, message_id=f"opt-out:{uuid.uuid4().hex}",
        timestamp=utcnow(), kind="unsupported", raw_type="opt_out",
    )
    enqueue_inbound(runtime, message)


def messages(runtime: Runtime, key: str) -> list[InboundMessage]:
    """The messages waiting in a conversation's inbox, oldest first (tests and diagnosis)."""
    return [InboundMessage.model_validate_json(raw) for raw in runtime.redis.lrange(INBOX.key(key), 0, -1)]


def waiting(runtime: Runtime) -> list[str]:
    """The conversations whose inbox may hold messages."""
    return [_text(k) for k in runtime.redis.zrange(DUE.key(), 0, -1)]


def head(runtime: Runtime, key: str) -> bytes | None:
    """The oldest message of the inbox, as stored (None when it is empty)."""
    raw = runtime.redis.lindex(INBOX.key(key), 0)
    return None if raw is None else raw if isinstance(raw, bytes) else str(raw).encode()


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
    return bool(runtime.redis.eval(_POP_IF_HEAD, 1, INBOX.key(key), raw))


def push_front(runtime: Runtime, raw: str) -> None:
    """Put a message back at the head of its inbox and enqueue its conversation (a replayed failure)."""
    key = InboundMessage.model_validate_json(raw).conversation_key
    tx = Transaction(runtime.redis)
    tx.pipe.lpush(INBOX.key(key), raw)
    tx.pipe.expire(INBOX.key(key), runtime.config.retention.conversation_hours * 3600)
    tx.pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    queues.enqueue(runtime, queues.INBOUND, queues.PROCESS_CONVERSATION, key, pipe=tx.pipe,
                   description="conversation")
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
    """After a drain: drop the conversation from the work list if its inbox is empty.

    Returns:
        True when messages are still waiting (they arrived while the drain ended).
    """
    return not runtime.redis.eval(_DRAINED, 2, INBOX.key(key), DUE.key(), key)


def upgrade(runtime: Runtime) -> int:
    """Turn an earlier version's work list (a set) into this one's (a sorted set by due time), every
    conversation due at once; the worker does it when it starts. Returns how many were carried over."""
    return int(runtime.redis.eval(_UPGRADE, 1, DUE.key(), time.time()))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
