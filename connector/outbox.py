"""A conversation's outbox: what the relay has decided to send the patient, sent after the decision is safe.

A turn (:mod:`connector.turn`) puts its replies here in the same transaction that saves its state and
its lead; only then does a delivery job (:func:`connector.jobs.deliver_outbox`) send them, one at a
time, in order, under the outbox's lock. So a channel that fails never blocks, loses or repeats a
lead, and a crash never re-runs a turn whose replies went out.

Each entry has a stable id. Before sending, its mark (:data:`SENT`) says ``sending``; once the channel
took it, one atomic step pops it and records the channel's message ids. A worker killed between the
channel's answer and that step leaves ``sending``: the next delivery sends the entry again, the one
window in which a patient can get a reply twice (neither WhatsApp nor Telegram take an idempotency
key); it is logged and counted (``messages_out{outcome="resent"}``). Read receipts and button
acknowledgements are courtesy: tried once, never retried, never blocking a reply. An agent's reply from
the CRM (kind ``agent``) waits in the same order and is sent by :func:`connector.agent.send`, which
closes that window where the channel echoes a tracking id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import redis
from pydantic import BaseModel, ConfigDict, Field

from connector import queues
from connector.channels import client_for, identities
from connector.coalesce import coalesce
from connector.conversations import short
from connector.crash import crash_point
from connector.locks import Found, Lock, next_head, take_head
from core import lua, metrics
from core.errors import RetryableError, SyncError
from core.inbox import FileRef
from core.keys import family
from core.models import Channel, Conversation, InboundMessage, Reply, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime
    from connector.transaction import Transaction

log = logging.getLogger("chat2crm.outbox")

OUTBOX = family("outbox", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
DUE = family("outboxes", ttl=None, holds_pii=True, owner=__name__,
             bounded_by="one member per conversation with replies waiting, removed when its outbox is empty")
SENT = family("sent", "{entry}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
LOCK = family("outbox-lock", "{conversation}", ttl="delivery.job_timeout_seconds", holds_pii=True, owner=__name__)

SENDING = b"sending"

# Pop the head if it is still the entry sent, record the channel's ids, and drop the conversation from the
# work list when nothing is left: one step, so an entry is never popped unrecorded nor recorded unpopped.
_ACK = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lpop', KEYS[1])
if ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[3], ARGV[4]) end
return 1
"""
# _ACK and the next head in one call: the next entry with the lock extended; or, the outbox empty, the lock let
# go and the conversation off the work list ({2}); or the lock lost ({0}: its new holder goes on).
# KEYS: the outbox, the entry's sent mark, the work list, the lock. ARGV: the entry, the channel's ids ('' for
# none), the mark's TTL, the conversation, the lock's token and TTL (ms).
_ACK_NEXT = """
if redis.call('lindex', KEYS[1], 0) == ARGV[1] then
  redis.call('lpop', KEYS[1])
  if ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
end
if redis.call('get', KEYS[4]) ~= ARGV[5] then
  if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[3], ARGV[4]) end
  return {0}
end
local head = redis.call('lindex', KEYS[1], 0)
if head then
  redis.call('pexpire', KEYS[4], ARGV[6])
  return {1, head}
end
redis.call('del', KEYS[4])
redis.call('zrem', KEYS[3], ARGV[4])
return {2}
"""
# A step of the turn's commit (:meth:`Transaction.then`) for the delivery that follows it in the same job: the
# outbox's lock with its head; when the head is the turn's first entry and a reply, its sending mark read and set
# as _MARK_SENDING does; and the patient's record in the identity book (where they can be reached now).
# K: the lock, the outbox, the first entry's sent mark, the person's record. A: token, lock TTL (ms), the first
# entry, '1' when it is a reply, the sending mark, its TTL.
_TAKE_STEP = """function(K, A)
  if not redis.call('set', K[1], A[1], 'NX', 'PX', A[2]) then return {0} end
  local head = redis.call('lindex', K[2], 0)
  if not head then
    redis.call('del', K[1])
    return {0}
  end
  local marked, mark = 0, false
  if head == A[3] and A[4] == '1' then
    marked = 1
    mark = redis.call('get', K[3])
    if mark == false or mark == A[5] then redis.call('set', K[3], A[5], 'EX', A[6]) end
  end
  return {1, head, marked, mark, redis.call('get', K[4]) or ''}
end"""
_REPLACE_HEAD = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lset', KEYS[1], 0, ARGV[2])
return 1
"""
_DRAINED = """
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[2], ARGV[1]) return 1 end
return 0
"""

# Mark a reply as being sent unless it was sent and recorded before; returns what the mark was.
# KEYS: the sent mark. ARGV: the sending mark, its TTL.
_MARK_SENDING = """
local mark = redis.call('get', KEYS[1])
if mark == false or mark == ARGV[1] then redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return mark
"""


class Entry(BaseModel):
    """One thing to send: a reply, an agent's reply from the CRM, or a courtesy (``read`` receipt,
    ``callback`` acknowledgement)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["reply", "read", "callback", "agent"]
    conversation: str
    channel: Channel
    account: str
    sender_id: str
    language: str | None = None
    last_inbound_at: datetime | None = None
    reply: Reply | None = None
    message_id: str | None = None
    callback_id: str | None = None
    #: an agent's reply: its text, its files as the CRM holds them, and the CRM's id of the message
    text: str | None = None
    files: list[FileRef] = Field(default_factory=list)
    crm_message_id: str | None = None
    attempts: int = 0
    not_before: float = 0.0

    @property
    def courtesy(self) -> bool:
        """Whether the entry is a courtesy, sent once at most and never retried."""
        return self.kind not in ("reply", "agent")

    def recipient(self) -> Conversation:
        """What the channel client needs to address the patient (and check WhatsApp's 24-hour window)."""
        return Conversation(key=self.conversation, channel=self.channel, account=self.account,
                            sender_id=self.sender_id, language=self.language, last_inbound_at=self.last_inbound_at)

    def message(self) -> InboundMessage:
        """The patient's message a courtesy answers."""
        return InboundMessage(channel=self.channel, account=self.account, sender_id=self.sender_id,
                              message_id=self.message_id or "", timestamp=utcnow(), kind="text",
                              callback_id=self.callback_id)


def entries(conversation: Conversation, message: InboundMessage, replies: list[Reply], *,
            courtesy: bool = True) -> list[Entry]:
    """The outbox entries of one turn, each with an id stable for that message and position: with
    ``courtesy``, the button acknowledgement owed to ``message`` first (Telegram shows a spinner until it
    comes), then the replies, joined into as few messages as the channel takes
    (:func:`connector.coalesce.coalesce`), and, on WhatsApp, the read receipt when no reply goes out."""
    def make(n: int, kind: Literal["reply", "read", "callback"], **fields: object) -> Entry:
        digest = hashlib.sha256(f"{conversation.key}|{message.message_id}|{n}".encode()).hexdigest()[:24]
        return Entry(id=digest, kind=kind, conversation=conversation.key, channel=conversation.channel,
                     account=conversation.account, sender_id=conversation.sender_id, language=conversation.language,
                     last_inbound_at=conversation.last_inbound_at or message.timestamp, **fields)

    made: list[Entry] = []
    if courtesy and message.callback_id:
        made.append(make(len(made), "callback", message_id=message.message_id, callback_id=message.callback_id))
    sent = coalesce(conversation.channel, replies)
    for reply in sent:
        made.append(make(len(made), "reply", reply=reply))
    # A reply within seconds already tells the patient their message arrived; the blue ticks only say
    # so when nothing else will (handed to a person, the bot waiting), and cost a call otherwise.
    if courtesy and not sent and message.channel == "whatsapp" and message.message_id.startswith("wamid"):
        made.append(make(len(made), "read", message_id=message.message_id))
    return made


def stage(runtime: Runtime, pipe: redis.client.Pipeline, key: str, new: list[Entry], *,
          enqueue: bool = True) -> list[str]:
    """Append ``new`` to the outbox, as part of the turn's transaction, and enqueue its delivery (unless the
    caller delivers it itself right after the commit: the outbox is due for the sweeper either way). Returns
    the entries as stored."""
    if not new:
        return []
    raws = [e.model_dump_json() for e in new]
    pipe.rpush(OUTBOX.key(key), *raws)
    pipe.expire(OUTBOX.key(key), runtime.config.retention.conversation_hours * 3600)
    pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    if enqueue:
        queues.enqueue(runtime, queues.OUTBOUND, queues.DELIVER_OUTBOX, key, pipe=pipe, description="replies")
    return raws


@dataclass
class Taken:
    """The outbox's lock, taken in a turn's commit, with what the commit read for the delivery that follows."""

    lock: Lock
    #: the outbox's head
    head: bytes
    #: the head's sending mark as it was before the commit set it (``(None,)``: none), when the commit read it
    mark: tuple[bytes | None] | None
    #: the patient's record in the identity book (where they can be reached)
    person: dict[str, Any]


class TakeStep(NamedTuple):
    """A :func:`stage_take` staged in a transaction: the lock it takes and where its answer lands."""

    lock: Lock
    slot: int

    def taken(self, tx: Transaction) -> Taken | None:
        """What the committed step took (None: another delivery holds the outbox, or it was emptied)."""
        answer = tx.answers[self.slot]
        if not answer or int(answer[0]) != 1:
            return None
        _, head, marked, mark, person = answer
        return Taken(self.lock, head, (mark or None,) if int(marked) else None, identities.record(person))


def stage_take(runtime: Runtime, tx: Transaction, key: str, first: Entry, raw: str) -> TakeStep:
    """Take the outbox's lock in the turn's commit, for the delivery that follows in the same job (``first``, stored
    as ``raw``, is the turn's first entry): see :func:`deliver`'s ``taken``."""
    held = lock(runtime, key)
    index = tx.then(_TAKE_STEP, [held.key, OUTBOX.key(key), SENT.key(first.id),
                                 identities.PERSON.key(first.channel, first.sender_id)],
                    [held.token, held.ttl_ms, raw, "1" if first.kind == "reply" else "0", SENDING, _sent_ttl(runtime)])
    return TakeStep(held, index)


def stage_discard(pipe: redis.client.Pipeline, key: str) -> None:
    """Drop everything not yet sent (the patient opted out), as part of a transaction."""
    pipe.delete(OUTBOX.key(key))
    pipe.zrem(DUE.key(), key)


def bot_entries(runtime: Runtime, key: str) -> list[str]:
    """The bot's own entries waiting in a conversation's outbox (replies, courtesies), as stored: what a
    patient who opts out must not get after the confirmation. Agents' replies are not among them: they stay,
    for :func:`connector.agent.send` to refuse and report back to the CRM."""
    raws = [_text(raw) for raw in runtime.redis.lrange(OUTBOX.key(key), 0, -1)]
    return [raw for raw in raws if Entry.model_validate_json(raw).kind != "agent"]


def stage_drop(pipe: redis.client.Pipeline, key: str, raws: list[str]) -> None:
    """Take ``raws`` (from :func:`bot_entries`) out of the outbox, as part of a transaction: those already
    sent meanwhile are simply gone."""
    for raw in raws:
        pipe.lrem(OUTBOX.key(key), 1, raw)


def pending(runtime: Runtime, key: str) -> list[Entry]:
    """The entries waiting in a conversation's outbox, in order (tests and diagnosis)."""
    return [Entry.model_validate_json(raw) for raw in runtime.redis.lrange(OUTBOX.key(key), 0, -1)]


def push_front(runtime: Runtime, raw: str) -> None:
    """Put an entry back at the head of its outbox and enqueue its delivery (a replayed failure)."""
    entry = Entry.model_validate_json(raw).model_copy(update={"attempts": 0, "not_before": 0.0})
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise run its commands at once
    pipe.delete(SENT.key(entry.id))
    pipe.lpush(OUTBOX.key(entry.conversation), entry.model_dump_json())
    pipe.expire(OUTBOX.key(entry.conversation), runtime.config.retention.conversation_hours * 3600)
    pipe.zadd(DUE.key(), {entry.conversation: time.time() + runtime.config.delivery.lost_job_seconds})
    queues.enqueue(runtime, queues.OUTBOUND, queues.DELIVER_OUTBOX, entry.conversation, pipe=pipe,
                   description="replies")
    pipe.execute()


def due(runtime: Runtime, now: float, limit: int = 500) -> list[str]:
    """Conversations whose delivery job could have been lost by ``now``."""
    return [_text(k) for k in runtime.redis.zrangebyscore(DUE.key(), "-inf", now, start=0, num=limit)]


def postpone(runtime: Runtime, key: str, seconds: float) -> None:
    """Leave the outbox alone (in the sweeper's eyes) for ``seconds``: a delivery job is on its way."""
    runtime.redis.zadd(DUE.key(), {key: time.time() + seconds})


def finish(runtime: Runtime, key: str) -> bool:
    """Drop the conversation from the work list if its outbox is empty. Returns True when entries wait."""
    return not lua.run(runtime.redis, _DRAINED, [OUTBOX.key(key), DUE.key()], [key])


def lock(runtime: Runtime, key: str) -> Lock:
    """The delivery lock of conversation ``key`` (not yet taken)."""
    return Lock(runtime.redis, LOCK.key(key), runtime.config.delivery.job_timeout_seconds)


#: what the delivery does with an entry that could not be sent: True to go on with the next entry (the
#: entry was set aside), False to stop (a retry is scheduled)
OnFailure = Callable[[Entry, bytes, Exception], bool]
#: what sends an agent's entry and records it (:func:`connector.agent.send`); returns 1 when a message went out
AgentSender = Callable[["Runtime", str, bytes, Entry], int]


def deliver(runtime: Runtime, key: str, on_failure: OnFailure, *, retrying: bool = False,
            agent_sender: AgentSender | None = None, taken: Taken | None = None) -> int:
    """Send the outbox of conversation ``key``, in order, under its lock; returns how many entries were sent.

    If another worker holds the lock, return at once: that worker sends what is queued, entries that arrive
    meanwhile included (it looks for the next entry and lets go of the lock in one step). An entry the
    channel refuses goes to ``on_failure`` (with the lock held), which either schedules a retry (delivery
    stops: the order is kept) or sets it aside. A head
    waiting for its retry stops every delivery but that retry's own (``retrying``; rq may start it up to a
    second early, as it schedules by whole seconds). Agents' entries are sent by ``agent_sender``. With
    ``taken``, the lock is already held (a turn's commit took it, :func:`stage_take`), with what it read.

    Raises:
        redis.RedisError: Redis failed; the entry stays at the head (the sweeper enqueues the outbox again).
    """
    found: Found
    raw: bytes | None
    if taken is None:
        held = lock(runtime, key)
        found, raw = take_head(held, OUTBOX.key(key), DUE.key(), key)  # the lock and the head, in one call
        mark, person = None, None
    else:
        held, found, raw, mark, person = taken.lock, "head", taken.head, taken.mark, taken.person
    sent = 0
    try:
        while found == "head" and raw is not None:
            entry = Entry.model_validate_json(raw)
            if entry.not_before > time.time() and not retrying:
                break  # its retry is scheduled; the entries after it wait, in order
            retrying = False  # only the head it was scheduled for
            after: tuple[Found, bytes | None] | None = None
            try:
                if entry.kind == "agent":
                    sent += _send_agent(runtime, key, raw, entry, agent_sender)
                else:
                    count, after = _send(runtime, key, raw, entry, held, mark=mark, person=person)
                    sent += count
            except redis.RedisError:
                raise
            except Exception as exc:  # the channel refused it (or it cannot be rendered): the policy says
                if not on_failure(entry, raw, exc):
                    break
            mark = None  # read with the first entry only
            # the next entry with the lock extended; or, the outbox empty, the lock let go and the work list
            # without it; or the lock lost (its new holder goes on): with the entry's acknowledgement, or else here
            found, raw = after if after is not None else next_head(held, OUTBOX.key(key), DUE.key(), key)
    finally:
        if found == "head":  # stopped at an entry (its retry is scheduled), or failed: the lock is let go
            held.release()
    return sent


def _send_agent(runtime: Runtime, key: str, raw: bytes, entry: Entry, agent_sender: AgentSender | None) -> int:
    """Send an agent's entry by ``agent_sender``. Returns 1 when a message went out, else 0."""
    if agent_sender is None:
        raise ValueError(f"entry {entry.id} is an agent's reply and no agent sender was given")
    return agent_sender(runtime, key, raw, entry)


def _send(runtime: Runtime, key: str, raw: bytes, entry: Entry, held: Lock, *,
          mark: tuple[bytes | None] | None = None, person: dict[str, Any] | None = None,
          ) -> tuple[int, tuple[Found, bytes | None]]:
    """Send one entry, record it, and go on to the next (:data:`_ACK_NEXT`). Returns 1 when a reply went out
    (else 0), and what comes next. ``mark`` is the entry's sending mark when a turn's commit read (and set) it,
    ``person`` the patient's record when it read that.

    Raises:
        SyncError: the channel refused a reply (a courtesy's failure is only logged).
        Exception: the reply could not be sent otherwise (the channel client failed).
    """
    client = runtime.redis
    channel = client_for(runtime, entry.channel)
    if entry.courtesy:
        try:
            if entry.kind == "callback":
                channel.answer_callback(entry.message())
            else:
                channel.mark_read(entry.message())
        except SyncError as exc:
            log.warning("read receipt not sent" if entry.kind == "read" else "button acknowledgement not sent",
                        extra={"conversation": short(key), "error": type(exc).__name__})
        return 0, _ack_next(runtime, key, raw, entry, held, ids="")
    if entry.reply is None:
        raise ValueError(f"entry {entry.id} is a reply without a reply")
    # read the mark and set it to "sending" in one call, unless it says the reply went out before
    was = mark[0] if mark is not None else lua.run(client, _MARK_SENDING, keys=[SENT.key(entry.id)],
                                                   args=[SENDING, _sent_ttl(runtime)])
    if was is not None and was != SENDING:  # sent before and recorded: it only has to leave the outbox
        return 0, _ack_next(runtime, key, raw, entry, held, ids="")
    if was == SENDING:
        log.warning("reply sent again: an earlier send's outcome is unknown (the patient may see it twice)",
                    extra={"conversation": short(key), "entry": entry.id})
    crash_point("reply-sending")
    try:
        ids = channel.send(entry.recipient(), [entry.reply], person=person)
    except Exception as exc:
        if not isinstance(exc, RetryableError) or "status" in exc.details:
            client.delete(SENT.key(entry.id))  # the channel answered: nothing went out (a time-out keeps the mark)
        raise
    crash_point("reply-sent")
    after = _ack_next(runtime, key, raw, entry, held, ids=",".join(ids) or "sent")
    crash_point("reply-marked")
    metrics.incr(client, "messages_out", channel=entry.channel, outcome="resent" if was == SENDING else "sent")
    return 1, after


def _ack_next(runtime: Runtime, key: str, raw: bytes, entry: Entry, held: Lock, *, ids: str) -> tuple[Found, bytes | None]:
    answer = lua.run(runtime.redis, _ACK_NEXT, keys=[OUTBOX.key(key), SENT.key(entry.id), DUE.key(), held.key],
                     args=[raw, ids, _sent_ttl(runtime), key, held.token, held.ttl_ms])
    found: Found = ("locked", "head", "done")[int(answer[0])]
    return found, answer[1] if len(answer) > 1 else None


def _ack(runtime: Runtime, key: str, raw: bytes, entry: Entry, ids: str) -> bool:
    return bool(lua.run(runtime.redis, _ACK, keys=[OUTBOX.key(key), SENT.key(entry.id), DUE.key()],
                                                    args=[raw, ids, _sent_ttl(runtime), key]))


def _sent_ttl(runtime: Runtime) -> int:
    return runtime.config.retention.dedup_days * 86400


def retry_later(runtime: Runtime, key: str, raw: bytes, entry: Entry, delay: float) -> bool:
    """Count a failed try of the head entry and hold it (and the entries after it) for ``delay`` seconds.
    Returns False when the head changed meanwhile."""
    later = entry.model_copy(update={"attempts": entry.attempts + 1, "not_before": time.time() + delay})
    postpone(runtime, key, delay + runtime.config.delivery.lost_job_seconds)
    return bool(lua.run(runtime.redis, _REPLACE_HEAD, [OUTBOX.key(key)], [raw, later.model_dump_json()]))


def set_aside(runtime: Runtime, key: str, raw: bytes, entry: Entry) -> bool:
    """Take the head entry out of the outbox (it was recorded as failed). Returns False when it had changed."""
    return _ack(runtime, key, raw, entry, "")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
