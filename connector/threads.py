"""Threads: the conversation after the bot, published into the CRM's inbox in order, each message once.

When the bot has a lead ready (a completed request, or a handoff), the turn that made it commits, in
its own transaction, the conversation so far as history (each transcript line: the patient's as
incoming, the bot's as outgoing, each with an id stable for that line), and every later turn commits
the patient's message for the agents (its id: the channel's message id; its files as
``FileRef(media_id=...)``). They wait here, in order (:data:`THREAD`), until a ``publish_thread`` job
(:func:`connector.jobs.publish_thread`, on the CRM queue) publishes them under the thread's lock
(:func:`publish`):

1. the thread is associated with the CRM contact of the conversation's lead, as the lead's CRM write
   recorded it (``lead:{reference}:synced``); until the lead is written the thread waits, and the
   lead's write kicks it (:func:`kick`);
2. a patient's file is downloaded from the channel (in the job, never in the webhook), checked against
   ``inbox.max_media_mb`` and the inbox's limits, uploaded, and its CRM file id kept in the waiting entry
   before anything is published, so a retry never uploads it twice; a file that is too large, of a type
   the CRM refuses, or gone from the channel is published as a line saying so;
3. the message is published (idempotent on its id), then one atomic step records the CRM's message id
   (:data:`PUBLISHED`), maps the CRM's thread and contact back to the conversation (:data:`BY_THREAD`,
   :data:`BY_CONTACT`: agents' replies and closed threads are found through them), pops the entry and
   brings the next one with the lock extended (or, none left, lets the lock go). An inbox that keeps the
   bot's history without calling the CRM (``local_history``: it is on the lead's note) has a lead's
   history lines published and recorded together, in that one step.

Failures follow the retry policy (:mod:`connector.retry`) through the job; the work list (:data:`DUE`)
lets the sweeper enqueue a thread whose job was lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import redis
from pydantic import BaseModel, ConfigDict

from connector import leads, queues
from connector.channels import client_for
from connector.conversations import short
from connector.crash import crash_point
from connector.locks import Lock
from core import lua
from core.errors import RetryableError, SyncError
from core.inbox import Direction, FileRef, ThreadMessage, thread_id
from core.keys import family
from core.models import Conversation, InboundMessage

if TYPE_CHECKING:
    from adapters.inbox import CRMInbox, Published
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.threads")

THREAD = family("thread", "{conversation}", ttl="retention.transcript_days", holds_pii=True, owner=__name__)
DUE = family("threads", ttl=None, holds_pii=True, owner=__name__,
             bounded_by="one member per conversation with messages waiting to be published, removed when none is")
LOCK = family("thread-lock", "{conversation}", ttl="delivery.job_timeout_seconds", holds_pii=True, owner=__name__)
PUBLISHED = family("thread-published", "{conversation}", ttl="retention.transcript_days", holds_pii=True,
                   owner=__name__)
BY_THREAD = family("crm-thread", "{thread}", ttl="retention.transcript_days", holds_pii=True, owner=__name__)
BY_CONTACT = family("crm-contact", "{contact}", ttl="retention.transcript_days", holds_pii=True, owner=__name__)

#: the field of :data:`PUBLISHED` that says how many transcript lines are already on their way to the CRM
_COVERED = "_covered"
_MB = 1024 * 1024
#: at most this many history lines are read and published in one step (:func:`_publish_history`)
_HISTORY_RUN = 100

# The thread's head, and the CRM's id of its message when that was published before (a replay, a crash
# after the CRM answered); or, the thread empty, the lock let go and the conversation off the work list.
# KEYS: the lock, the thread, its published ids, the work list. ARGV[3]: the conversation (its member there).
_HEAD = """
local head = redis.call('lindex', KEYS[2], 0)
if head then
  local known = redis.call('hget', KEYS[3], cjson.decode(head)['message']['id'])
  if known then return {1, head, 1, known} end
  return {1, head, 0, ''}
end
redis.call('del', KEYS[1])
redis.call('zrem', KEYS[4], ARGV[3])
return {2}
"""
# The lock taken with the head (ARGV: the lock's token, its TTL in ms, the conversation).
_TAKE = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
""" + _HEAD
# After a step, while the lock is this owner's: the ARGV[6] entries handled popped, if they are still the
# first ones (a replay may have put one in front), each recorded as published (ARGV from 7 on: the entry, its
# message id, its CRM id), and the keys from KEYS[5] on set to map the CRM's ids back (ARGV[5], for ARGV[4]
# seconds); then the next head with the lock extended, as :data:`_HEAD`.
_ACK_NEXT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return {0} end
local n = tonumber(ARGV[6])
if n > 0 then
  local heads = redis.call('lrange', KEYS[2], 0, n - 1)
  local same = #heads == n
  for i = 1, n do
    if same and heads[i] ~= ARGV[4 + 3 * i] then same = false end
  end
  if same then
    redis.call('ltrim', KEYS[2], n, -1)
    for i = 1, n do redis.call('hset', KEYS[3], ARGV[5 + 3 * i], ARGV[6 + 3 * i]) end
    redis.call('expire', KEYS[3], ARGV[4])
    for i = 5, #KEYS do redis.call('set', KEYS[i], ARGV[5], 'EX', ARGV[4]) end
  end
end
redis.call('pexpire', KEYS[1], ARGV[2])
""" + _HEAD
_REPLACE_HEAD = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lset', KEYS[1], 0, ARGV[2])
return 1
"""
_POP_IF_HEAD = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lpop', KEYS[1])
return 1
"""
_DRAINED = """
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[2], ARGV[1]) return 1 end
return 0
"""


class Pending(BaseModel):
    """One message waiting to be published, with its failed tries."""

    model_config = ConfigDict(extra="forbid")

    message: ThreadMessage
    attempts: int = 0
    not_before: float = 0.0


#: what the job does with a message that could not be published: True to go on with the next one (it was
#: set aside), False to stop (a retry is scheduled)
OnFailure = Callable[[Pending, bytes, Exception], bool]


# -- what a turn publishes ------------------------------------------------------------------------
def covered(runtime: Runtime, conversation: Conversation) -> int:
    """How many of the conversation's transcript lines are already published or waiting to be."""
    raw = runtime.redis.hget(PUBLISHED.key(conversation.key), _COVERED)
    if not raw or not conversation.transcript:
        return 0
    data = json.loads(raw)
    # a conversation that expired and started again has a new transcript: nothing of it is covered yet
    return int(data["lines"]) if data.get("first") == conversation.transcript[0].at.isoformat() else 0


def build(conversation: Conversation, message: InboundMessage, *, lead_ready: bool, for_agent: bool,
          already: int) -> list[ThreadMessage]:
    """The thread messages one turn produces (pure): with a lead ready, the transcript lines not yet
    published (``already`` are); for a message for the agents, the lines before it that never were, then
    the message itself, under the channel's id and with its files."""
    if not (lead_ready or for_agent):
        return []
    lines = conversation.transcript
    # a message for the agents is its turn's last line; it goes under its own id, with its files
    upto = len(lines) - 1 if for_agent else len(lines)
    first = lines[0].at.isoformat() if lines else ""
    made = []
    for n in range(min(already, upto), upto):
        line = lines[n]
        digest = hashlib.sha256(f"{conversation.key}|{first}|{n}".encode()).hexdigest()[:32]
        made.append(_message(conversation, f"h-{digest}", direction="incoming" if line.direction == "in" else "outgoing",
                             text=line.text, at=line.at, history=True))
    if for_agent:
        text = lines[-1].text if message.kind != "media" else (message.text or "")
        files = [FileRef(media_id=m.media_id, mime_type=m.mime_type, name=m.filename) for m in message.media]
        made.append(_message(conversation, message.message_id, direction="incoming", text=text, at=lines[-1].at,
                             files=files))
    return made


def _message(conversation: Conversation, message_id: str, *, direction: Direction, text: str, at: datetime,
             files: list[FileRef] | None = None, history: bool = False) -> ThreadMessage:
    name = conversation.answers.get("name") or conversation.known.get("name") or conversation.profile_name
    return ThreadMessage(id=message_id, thread=thread_id(conversation.key), conversation=conversation.key,
                         channel=conversation.channel, direction=direction, text=text, at=at,
                         identity=f"{conversation.channel}:{conversation.sender_id}",
                         name=name if isinstance(name, str) else None, phone=conversation.phone,
                         attachments=files or [], reference=conversation.reference, history=history)


def stage(runtime: Runtime, pipe: redis.client.Pipeline, conversation: Conversation,
          messages: list[ThreadMessage], *, lead_staged: bool = False) -> None:
    """Append ``messages`` to the conversation's thread, as part of the turn's transaction, note the
    transcript lines now covered, and enqueue the thread's publishing on the CRM queue, unless the same
    transaction stages their lead (``lead_staged``): they wait for its CRM contact, and its write kicks
    them (:func:`kick`); a job now would only find them waiting."""
    if not messages:
        return
    key, seconds = conversation.key, THREAD.seconds(runtime.config) or 0
    pipe.rpush(THREAD.key(key), *(Pending(message=m).model_dump_json() for m in messages))
    pipe.expire(THREAD.key(key), seconds)
    pipe.hset(PUBLISHED.key(key), _COVERED, json.dumps({"first": conversation.transcript[0].at.isoformat(),
                                                        "lines": len(conversation.transcript)}))
    pipe.expire(PUBLISHED.key(key), seconds)
    pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    if not lead_staged:
        enqueue(runtime, key, pipe=pipe)


def enqueue(runtime: Runtime, key: str, pipe: redis.client.Pipeline | None = None) -> None:
    """Enqueue the publishing of conversation ``key``'s thread (on ``pipe``: when it commits)."""
    queues.enqueue(runtime, queues.CRM, queues.PUBLISH_THREAD, key, pipe=pipe, description="thread")


def kick(runtime: Runtime, key: str) -> bool:
    """Enqueue the thread's publishing if messages wait (its lead has just reached the CRM)."""
    if not runtime.redis.llen(THREAD.key(key)):
        return False
    enqueue(runtime, key)
    return True


def pending(runtime: Runtime, key: str) -> list[Pending]:
    """The messages waiting to be published, in order (tests and diagnosis)."""
    return [Pending.model_validate_json(raw) for raw in runtime.redis.lrange(THREAD.key(key), 0, -1)]


def conversation_of(runtime: Runtime, *, thread: str | None = None, contact: str | None = None) -> str | None:
    """The conversation a CRM thread id (or the relay's own thread id), or else a CRM contact id, was
    published for; None when the relay published none for them (or has forgotten)."""
    for found in (BY_THREAD.key(thread) if thread else None, BY_CONTACT.key(contact) if contact else None):
        raw = runtime.redis.get(found) if found else None
        if raw:
            value = json.loads(raw).get("conversation")
            if isinstance(value, str):
                return value
    return None


# -- publishing -----------------------------------------------------------------------------------
def lock(runtime: Runtime, key: str) -> Lock:
    """The publishing lock of conversation ``key``'s thread (not yet taken)."""
    return Lock(runtime.redis, LOCK.key(key), runtime.config.delivery.job_timeout_seconds)


def publish(runtime: Runtime, key: str, crm: CRMInbox, on_failure: OnFailure, *, retrying: bool = False) -> int:
    """Publish the thread of conversation ``key``, in order, under its lock; returns how many were published.

    Another worker holding the lock: return at once (it publishes what waits). A message the CRM refuses
    goes to ``on_failure``, which schedules a retry (publishing stops: the order is kept) or sets it aside.
    A head waiting for its retry stops every job but that retry's own (``retrying``). Each message costs one
    call to Redis besides the CRM's (:data:`_ACK_NEXT`), and a run of history lines that the inbox keeps
    without a call (:attr:`~adapters.inbox.CRMInbox.local_history`) one call in all.

    Raises:
        redis.RedisError: Redis failed; the message stays at the head (the sweeper enqueues the thread again).
    """
    held = lock(runtime, key)
    head = _found(lua.run(runtime.redis, _TAKE, _keys(key, held), [held.token, held.ttl_ms, key]))
    if head is None:
        return 0
    published, contacts = 0, _Contacts(runtime)
    try:
        while isinstance(head, _Head):
            if head.entry.not_before > time.time() and not retrying:
                break
            retrying = False
            try:
                done = _publish_run(runtime, key, head, crm, contacts)
            except redis.RedisError:
                raise
            except Exception as exc:  # the CRM or the channel refused: the policy says
                if not on_failure(head.entry, head.raw, exc):
                    break
                done = _Done(0, [], [])  # set aside: on with the next one
            if done.acked is None:  # the lead is not in the CRM yet: its write enqueues the thread again
                break
            published += done.count
            head = _ack_next(runtime, key, held, done)
    finally:
        if isinstance(head, _Head):  # stopped with the lock held (a head stays): let it go
            held.release()
    return published


@dataclass
class _Head:
    """The thread's head as stored (``raw``) and read, and the CRM's id when it was published before."""

    raw: bytes
    entry: Pending
    known: str | None = None


#: the lock was another's (or lost): its holder goes on
_LOCKED = "locked"
#: the thread is empty: the lock let go and the conversation off the work list
_EMPTY = "empty"


def _keys(key: str, held: Lock) -> list[str]:
    return [held.key, THREAD.key(key), PUBLISHED.key(key), DUE.key()]


def _found(answer: list[bytes]) -> _Head | str | None:
    """A :data:`_HEAD` answer: the head, :data:`_EMPTY`, or None when the lock was another's."""
    if int(answer[0]) == 0:
        return None
    if int(answer[0]) == 2:
        return _EMPTY
    raw = answer[1]
    return _Head(raw, Pending.model_validate_json(raw), _text(answer[3]) if int(answer[2]) else None)


@dataclass
class _Done:
    """What one step of the loop did: messages published (``count``), the entries to pop and record
    (``acked``: (raw, message id, CRM id) each; None: nothing, the thread waits for its lead), and the keys that
    lead back to the conversation from the CRM's ids (``maps``)."""

    count: int
    acked: list[tuple[bytes, str, str]] | None
    maps: list[str]


class _Contacts:
    """The CRM contact of each lead the thread's messages name, read once per job."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._known: dict[str, tuple[bool, str | None]] = {}

    def of(self, reference: str | None) -> tuple[bool, str | None]:
        """``(waiting, contact id)`` as :func:`connector.leads.crm_contact` (nothing to wait for without one)."""
        if not reference:
            return False, None
        if reference not in self._known:
            self._known[reference] = leads.crm_contact(self.runtime, reference)
        return self._known[reference]


def _publish_run(runtime: Runtime, key: str, head: _Head, crm: CRMInbox, contacts: _Contacts) -> _Done:
    """Publish the head entry (with the history lines after it, when the inbox keeps them without a call)."""
    raw, entry = head.raw, head.entry
    message = entry.message
    if head.known is not None:  # published before (a replay, or a crash after the CRM answered): only pop it
        return _Done(0, [(raw, message.id, head.known)], [BY_THREAD.key(message.thread)])
    waiting, contact = contacts.of(message.reference)
    if waiting:
        postpone(runtime, key, runtime.config.delivery.lost_job_seconds)
        log.info("thread waits for its lead", extra={"conversation": short(key), "reference": message.reference})
        return _Done(0, None, [])
    if message.history and crm.local_history:
        return _publish_history(runtime, key, head, crm, contact)
    # each file's CRM id is kept in the waiting entry as soon as it is stored: a retry never uploads it twice
    while (stored := _store_next_file(runtime, crm, entry)) is not None:
        new_raw = stored.model_dump_json().encode()
        if not lua.run(runtime.redis, _REPLACE_HEAD, [THREAD.key(key)], [raw, new_raw]):
            return _Done(0, [], [])  # the head changed under us (set aside by a replay): look again
        raw, entry, message = new_raw, stored, stored.message
        head.raw, head.entry = raw, entry  # a failure from here on is the updated entry's
    message = message.model_copy(update={"contact_id": contact})
    answer = crm.publish(message)
    crash_point("thread-published")
    return _Done(1, [(raw, message.id, answer.crm_message_id)], _maps(message, answer))


def _publish_history(runtime: Runtime, key: str, head: _Head, crm: CRMInbox, contact: str | None) -> _Done:
    """The head and the history lines of the same lead right after it, published together: the inbox keeps
    them without calling the CRM, so a lead's dozen lines take one read and one step, not a dozen of each."""
    run = [(head.raw, head.entry)]
    for stored in runtime.redis.lrange(THREAD.key(key), 1, _HISTORY_RUN - 1):
        raw = stored if isinstance(stored, bytes) else str(stored).encode()
        entry = Pending.model_validate_json(raw)
        line = entry.message
        if not line.history or line.reference != head.entry.message.reference or entry.attempts:
            break
        run.append((raw, entry))
    acked: list[tuple[bytes, str, str]] = []
    answer: Published | None = None
    message = head.entry.message
    for raw, entry in run:
        message = entry.message.model_copy(update={"contact_id": contact})
        answer = crm.publish(message)
        acked.append((raw, message.id, answer.crm_message_id))
    crash_point("thread-published")
    return _Done(len(acked), acked, _maps(message, answer))


def _maps(message: ThreadMessage, answer: Published | None) -> list[str]:
    """The keys that lead from the CRM's thread and contact back to the conversation."""
    maps = [BY_THREAD.key(message.thread)]
    if answer is not None and answer.crm_thread_id:
        maps.append(BY_THREAD.key(answer.crm_thread_id))
    if message.contact_id:
        maps.append(BY_CONTACT.key(message.contact_id))
    return maps


def _ack_next(runtime: Runtime, key: str, held: Lock, done: _Done) -> _Head | str:
    """Pop the entries ``done`` acked if they are still the first ones, record them as published, map the
    CRM's ids back, and read the next head with the lock extended (or let the lock go when none is left):
    one call."""
    acked = done.acked or []
    args: list[str | bytes | int] = [held.token, held.ttl_ms, key, THREAD.seconds(runtime.config) or 0,
                                     json.dumps({"conversation": key}), len(acked)]
    for raw, message_id, crm_id in acked:
        args += [raw, message_id, crm_id]
    found = _found(lua.run(runtime.redis, _ACK_NEXT, [*_keys(key, held), *done.maps], args))
    return _LOCKED if found is None else found


def _store_next_file(runtime: Runtime, crm: CRMInbox, entry: Pending) -> Pending | None:
    """The entry with its first patient's file not yet in the CRM stored there (or replaced by a line
    saying why it could not be); None when every file is stored.

    Raises:
        RetryableError: the channel or the CRM did not answer (the file is tried again with the entry).
    """
    message = entry.message
    index = next((i for i, f in enumerate(message.attachments) if f.media_id and not f.crm_file_id), None)
    if index is None:
        return None
    file = message.attachments[index]
    files = list(message.attachments)
    limit = min(runtime.config.inbox.max_media_mb * _MB, crm.limits.max_file_bytes)
    note, mime, size = "", file.mime_type or "", 0
    try:
        media = client_for(runtime, message.channel).fetch_media(file.media_id or "", max_bytes=limit)
    except RetryableError:
        raise
    except SyncError as exc:  # over the limit, or gone from the channel: said in the thread, not retried
        note = f"larger than {_size(limit)}" if "max_bytes" in exc.details else "the channel no longer has it"
    else:
        mime, size = media.mime_type.split(";")[0].strip().lower(), len(media.content)
        if size > limit:
            note = f"larger than {_size(limit)}"
        elif mime not in crm.limits.mime_types:
            note = f"the CRM does not take {mime or 'such'} files"
        else:
            ref = crm.upload(media.name or file.name or "file", mime, media.content)
            files[index] = ref.model_copy(update={"media_id": file.media_id, "size": ref.size or size,
                                                  "mime_type": ref.mime_type or mime})
    text = message.text
    if note:
        del files[index]
        text = "\n".join(t for t in (message.text, f"(a file was not stored: {note})") if t)
        log.warning("patient file not stored", extra={"conversation": short(message.conversation),
                                                      "mime_type": mime, "bytes": size, "reason": note})
    return entry.model_copy(update={"message": message.model_copy(update={"attachments": files, "text": text})})


def _size(limit: int) -> str:
    return f"{limit / _MB:g} MB"


def retry_later(runtime: Runtime, key: str, raw: bytes, entry: Pending, delay: float) -> bool:
    """Count a failed try of the head and hold it (and what follows) for ``delay`` seconds. Returns False
    when the head changed meanwhile."""
    later = entry.model_copy(update={"attempts": entry.attempts + 1, "not_before": time.time() + delay})
    postpone(runtime, key, delay + runtime.config.delivery.lost_job_seconds)
    return bool(lua.run(runtime.redis, _REPLACE_HEAD, [THREAD.key(key)], [raw, later.model_dump_json()]))


def set_aside(runtime: Runtime, key: str, raw: bytes) -> bool:
    """Take the head out of the thread (recorded as failed elsewhere). Returns False when it had changed."""
    return bool(lua.run(runtime.redis, _POP_IF_HEAD, [THREAD.key(key)], [raw]))


def push_front(runtime: Runtime, raw: str) -> None:
    """Put a message set aside back at the head of its thread and enqueue the thread (a replayed failure)."""
    entry = Pending.model_validate_json(raw).model_copy(update={"attempts": 0, "not_before": 0.0})
    key = entry.message.conversation
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise run its commands at once
    pipe.lpush(THREAD.key(key), entry.model_dump_json())
    pipe.expire(THREAD.key(key), THREAD.seconds(runtime.config) or 0)
    pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
    enqueue(runtime, key, pipe=pipe)
    pipe.execute()


def due(runtime: Runtime, now: float, limit: int = 500) -> list[str]:
    """Threads whose publishing job could have been lost by ``now``."""
    return [_text(k) for k in runtime.redis.zrangebyscore(DUE.key(), "-inf", now, start=0, num=limit)]


def postpone(runtime: Runtime, key: str, seconds: float) -> None:
    """Leave the thread alone (in the sweeper's eyes) for ``seconds``: a job is on its way."""
    runtime.redis.zadd(DUE.key(), {key: time.time() + seconds})


def finish(runtime: Runtime, key: str) -> bool:
    """Drop the conversation from the work list if its thread is empty. Returns True when messages wait."""
    return not lua.run(runtime.redis, _DRAINED, [THREAD.key(key), DUE.key()], [key])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
