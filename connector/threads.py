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
   :data:`BY_CONTACT`: agents' replies and closed threads are found through them) and pops the entry.

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

# Pop the head if it is still the entry published, record its CRM id, map the CRM's ids back to the
# conversation, and drop the conversation from the work list once nothing is left: one step.
_ACK = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lpop', KEYS[1])
redis.call('hset', KEYS[2], ARGV[2], ARGV[3])
redis.call('expire', KEYS[2], ARGV[4])
for i = 4, #KEYS do redis.call('set', KEYS[i], ARGV[6], 'EX', ARGV[4]) end
if redis.call('llen', KEYS[1]) == 0 then redis.call('zrem', KEYS[3], ARGV[5]) end
return 1
"""
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
          messages: list[ThreadMessage]) -> None:
    """Append ``messages`` to the conversation's thread, as part of the turn's transaction, note the
    transcript lines now covered, and enqueue the thread's publishing on the CRM queue."""
    if not messages:
        return
    key, seconds = conversation.key, THREAD.seconds(runtime.config) or 0
    pipe.rpush(THREAD.key(key), *(Pending(message=m).model_dump_json() for m in messages))
    pipe.expire(THREAD.key(key), seconds)
    pipe.hset(PUBLISHED.key(key), _COVERED, json.dumps({"first": conversation.transcript[0].at.isoformat(),
                                                        "lines": len(conversation.transcript)}))
    pipe.expire(PUBLISHED.key(key), seconds)
    pipe.zadd(DUE.key(), {key: time.time() + runtime.config.delivery.lost_job_seconds})
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
    A head waiting for its retry stops every job but that retry's own (``retrying``).

    Raises:
        redis.RedisError: Redis failed; the message stays at the head (the sweeper enqueues the thread again).
    """
    held = lock(runtime, key)
    if not held.acquire():
        return 0
    published, stopped = 0, False
    try:
        while (raw := _head(runtime, key)) is not None:
            head = _Head(raw, Pending.model_validate_json(raw))
            if head.entry.not_before > time.time() and not retrying:
                stopped = True
                break
            retrying = False
            try:
                done = _publish_one(runtime, key, head, crm)
            except redis.RedisError:
                raise
            except Exception as exc:  # the CRM or the channel refused: the policy says
                if not on_failure(head.entry, head.raw, exc):
                    stopped = True
                    break
                continue
            if done is None:  # the lead is not in the CRM yet: its write enqueues the thread again
                stopped = True
                break
            published += done
            held.extend()
    finally:
        held.release()
    if not stopped and finish(runtime, key):
        enqueue(runtime, key)  # messages arrived after the loop looked; their job found the lock taken
    return published


@dataclass
class _Head:
    """The thread's head as stored (``raw``) and read; kept up to date as its files are stored."""

    raw: bytes
    entry: Pending


def _publish_one(runtime: Runtime, key: str, head: _Head, crm: CRMInbox) -> int | None:
    """Publish the head entry. Returns 1 when published, 0 when it only had to leave (published before, or
    changed under us), None when it must wait for its lead."""
    raw, entry = head.raw, head.entry
    message = entry.message
    known = runtime.redis.hget(PUBLISHED.key(key), message.id)
    if known is not None:  # published before (a replay, or a crash after the CRM answered): only pop it
        _ack(runtime, key, raw, message, crm_id=_text(known), answer=None)
        return 0
    waiting, contact = leads.crm_contact(runtime, message.reference) if message.reference else (False, None)
    if waiting:
        postpone(runtime, key, runtime.config.delivery.lost_job_seconds)
        log.info("thread waits for its lead", extra={"conversation": short(key), "reference": message.reference})
        return None
    # each file's CRM id is kept in the waiting entry as soon as it is stored: a retry never uploads it twice
    while (stored := _store_next_file(runtime, crm, entry)) is not None:
        new_raw = stored.model_dump_json().encode()
        if not lua.run(runtime.redis, _REPLACE_HEAD, [THREAD.key(key)], [raw, new_raw]):
            return 0  # the head changed under us (set aside by a replay): look again
        raw, entry, message = new_raw, stored, stored.message
        head.raw, head.entry = raw, entry  # a failure from here on is the updated entry's
    message = message.model_copy(update={"contact_id": contact})
    answer = crm.publish(message)
    crash_point("thread-published")
    _ack(runtime, key, raw, message, crm_id=answer.crm_message_id, answer=answer)
    return 1


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


def _ack(runtime: Runtime, key: str, raw: bytes, message: ThreadMessage, *, crm_id: str,
         answer: Published | None) -> bool:
    """Pop the head if it is still ``raw``, record it as published, map the CRM's ids back (one step)."""
    maps = [BY_THREAD.key(message.thread)]
    if answer is not None and answer.crm_thread_id:
        maps.append(BY_THREAD.key(answer.crm_thread_id))
    if message.contact_id:
        maps.append(BY_CONTACT.key(message.contact_id))
    seconds = THREAD.seconds(runtime.config) or 0
    value = json.dumps({"conversation": key})
    return bool(lua.run(runtime.redis, _ACK, [THREAD.key(key), PUBLISHED.key(key), DUE.key(), *maps],
                        [raw, message.id, crm_id, seconds, key, value]))


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


def _head(runtime: Runtime, key: str) -> bytes | None:
    raw = runtime.redis.lindex(THREAD.key(key), 0)
    return None if raw is None else raw if isinstance(raw, bytes) else str(raw).encode()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
