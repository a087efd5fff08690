"""Leads: reference numbers, the leads waiting for the CRM, and the CRM writes themselves.

A reference (``#1042``) is reserved for the inbound message that completes a request, before the
turn commits, and kept under that message's id: a turn run again after a crash gets the same
reference back, so a patient is never told two numbers for one request. The lead is stored, marked
pending and its CRM job enqueued in the turn's transaction; it stays pending (:data:`PENDING`,
scored by when to look again) until the CRM has it, so a lost job is enqueued again by the sweeper.
Every CRM write is an upsert on the contact key or the reference: writing twice is harmless. An opt-out
is written by its own job, which carries the patient's identifiers and the time, so the CRM marks the
contacts people made for the same person too, with when and on which channel they opted out.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from connector import conversions, queues
from connector.bot.fields import whatsapp_id_to_e164
from connector.locks import Lock
from connector.mapping import opt_out_plan, plan
from core import lua
from core.keys import family
from core.models import Conversation, Lead, utcnow
from core.plan import OptOutMark

if TYPE_CHECKING:
    from adapters.base import SyncResult
    from connector.runtime import Runtime

SEQUENCE = family("seq", "reference", ttl=None, holds_pii=False, owner=__name__,
                  bounded_by="one counter: the last reference number issued")
RESERVED = family("reference", "{message}", ttl="retention.conversation_hours", holds_pii=False, owner=__name__)
LEAD = family("lead", "{reference}", ttl="retention.transcript_days", holds_pii=True, owner=__name__)
SYNCED = family("lead", "{reference}:synced", ttl="retention.transcript_days", holds_pii=True, owner=__name__)
PENDING = family("leads", "pending", ttl=None, holds_pii=False, owner=__name__,
                 bounded_by="one member per lead not yet in the CRM, removed when written, skipped or failed")
WRITER = family("lead-lock", "{reference}", ttl="delivery.job_timeout_seconds", holds_pii=False, owner=__name__)

# The reference kept for a message, or the next number, kept for it: one step.
_RESERVE = """
local kept = redis.call('get', KEYS[1])
if kept then return kept end
local reference = '#' .. (redis.call('incr', KEYS[2]) + 1000)
redis.call('set', KEYS[1], reference, 'EX', ARGV[1])
return reference
"""


def lead_key(reference: str) -> str:
    """The Redis key of the lead ``reference`` (with or without its ``#``)."""
    return LEAD.key(reference.lstrip("#"))


def reserve_reference(runtime: Runtime, message: str) -> str:
    """The reference for the request completed by ``message`` (``channel:message_id:n``): the one kept for
    it, or a new one (``#1001``, ``#1002``…), kept for ``retention.conversation_hours``."""
    value = lua.run(runtime.redis, _RESERVE, keys=[RESERVED.key(message), SEQUENCE.key()],
                                                    args=[runtime.config.retention.conversation_hours * 3600])
    return value.decode() if isinstance(value, bytes) else str(value)


def stage_release(pipe: redis.client.Pipeline, messages: list[str]) -> None:
    """Forget the references kept for ``messages``, as part of the turn that used them."""
    if messages:
        pipe.delete(*(RESERVED.key(m) for m in messages))


def stage(runtime: Runtime, pipe: redis.client.Pipeline, lead: Lead) -> None:
    """Store ``lead``, mark it pending and enqueue its CRM write, as part of the turn's transaction."""
    pipe.set(lead_key(lead.reference), lead.model_dump_json(), ex=LEAD.seconds(runtime.config))
    pipe.zadd(PENDING.key(), {lead.reference: time.time() + runtime.config.delivery.lost_job_seconds})
    enqueue_write(runtime, lead.reference, pipe=pipe)


def enqueue_write(runtime: Runtime, reference: str, pipe: redis.client.Pipeline | None = None) -> None:
    """Enqueue the CRM write of lead ``reference`` (on ``pipe``: when that transaction commits), at the front
    of the CRM queue: a lead never waits behind the threads of conversations that go on."""
    queues.enqueue(runtime, queues.CRM, queues.SYNC_LEAD, reference, pipe=pipe, description=f"lead {reference}",
                   result_ttl=3600, failure_ttl=LEAD.seconds(runtime.config), at_front=True)


def stage_opt_out(runtime: Runtime, pipe: redis.client.Pipeline, conversation: Conversation) -> None:
    """Enqueue the CRM write that records ``conversation``'s patient as opted out, as part of a transaction.

    The job's one argument is the opt-out as JSON (:func:`opt_out_request`): who (the contact key, the phone
    number and e-mail the CRM may know them by), when and on which channel; a retry writes the same time.
    """
    queues.enqueue(runtime, queues.CRM, queues.SYNC_OPT_OUT, opt_out_request(conversation), pipe=pipe,
                   description="opt-out", result_ttl=3600, failure_ttl=LEAD.seconds(runtime.config))


def opt_out_request(conversation: Conversation, at: datetime | None = None) -> str:
    """The opt-out job's argument for ``conversation``'s patient, opted out ``at`` (now)."""
    answers, known = conversation.answers, conversation.known
    phone = answers.get("phone") or known.get("phone") or conversation.phone or (
        whatsapp_id_to_e164(conversation.sender_id) if conversation.channel == "whatsapp" else None)
    email = answers.get("email") or known.get("email")
    return json.dumps({"contact_key": f"{conversation.channel}:{conversation.sender_id}",
                       "conversation": conversation.key, "channel": conversation.channel,
                       "phone": str(phone) if phone else None, "email": str(email).lower() if email else None,
                       "at": (at or utcnow()).isoformat()}, ensure_ascii=False)


def load(runtime: Runtime, reference: str) -> Lead | None:
    """The stored lead, or None when there is none (written long ago, expired, or forgotten)."""
    raw = runtime.redis.get(lead_key(reference))
    return Lead.model_validate_json(raw) if raw else None


def writer(runtime: Runtime, lead: Lead) -> Lock:
    """The lock that makes one worker at a time write ``lead`` (not yet taken)."""
    return Lock(runtime.redis, WRITER.key(lead.reference_number), runtime.config.delivery.job_timeout_seconds)


def write(runtime: Runtime, lead: Lead) -> SyncResult:
    """Write ``lead`` into the CRM (idempotent: an upsert on the contact key and the reference).

    Raises:
        RetryableError, FatalError, AuthError, SkippableError: as the adapter's ``sync``.
    """
    return runtime.adapter.sync(plan(lead, runtime.mapping))


def write_opt_out(runtime: Runtime, request: str) -> bool:
    """Record an opt-out in the CRM: the mapping's flag, when and on which channel, on the patient's contacts
    (found by the contact key, phone number and e-mail). ``request`` is :func:`opt_out_request`'s JSON, or a
    bare contact key (a job queued before an upgrade: opted out now, a WhatsApp id as its phone number).
    Returns False when the mapping names no opt-out property.

    Raises:
        RetryableError, FatalError, AuthError, SkippableError: as the adapter's ``upsert_contact``.
    """
    asked = json.loads(request) if request.startswith("{") else {"contact_key": request}
    contact_key = str(asked["contact_key"])
    contact = opt_out_plan(contact_key, runtime.mapping)
    if contact is None or runtime.mapping.opt_out is None:
        return False
    channel, _, sender = contact_key.partition(":")
    phone = asked.get("phone") if "phone" in asked else (whatsapp_id_to_e164(sender) if channel == "whatsapp" else None)
    mark = OptOutMark(property=runtime.mapping.opt_out.property, value=runtime.mapping.opt_out.value,
                      at=datetime.fromisoformat(asked["at"]) if asked.get("at") else utcnow(),
                      channel=str(asked.get("channel") or channel))
    runtime.adapter.upsert_contact(contact.model_copy(update={"phone": phone, "email": asked.get("email"),
                                                              "opt_out": mark}))
    return True


def mark_synced(runtime: Runtime, lead: Lead, summary: dict[str, Any]) -> None:
    """Record that the CRM has ``lead`` (what was written) and take it off the pending list, in one step
    (the caller then kicks the conversation's thread, which waits for the lead's CRM contact)."""
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.zrem(PENDING.key(), lead.reference)
    pipe.set(SYNCED.key(lead.reference_number), json.dumps(summary, ensure_ascii=False, default=str),
             ex=SYNCED.seconds(runtime.config))
    pipe.execute()
    conversions.lead_written(runtime, lead, summary)  # its events' context, and LeadSubmitted (never raises)


def crm_contact(runtime: Runtime, reference: str) -> tuple[bool, str | None]:
    """``(waiting, contact id)`` of lead ``reference``: the CRM contact its write recorded (``waiting``
    False), or nothing yet while it waits for the CRM (``waiting`` True), or nothing ever (not written, and
    no longer pending: failed for good, skipped, or expired)."""
    # both read at one instant (MULTI): read apart, a write marked synced between the two reads (it leaves the
    # pending list in the same step) would look like a lead that will never be written
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.get(SYNCED.key(reference.lstrip("#")))
    pipe.zscore(PENDING.key(), reference)
    raw, pending = pipe.execute()
    if raw:
        contact = json.loads(raw).get("contact") or {}
        return False, str(contact["id"]) if contact.get("id") else None
    return pending is not None, None


def unpend(runtime: Runtime, reference: str) -> None:
    """Take a lead off the pending list (skipped, or failed for good: `chat2crm failed` has the job)."""
    runtime.redis.zrem(PENDING.key(), reference)


def postpone(runtime: Runtime, reference: str, seconds: float) -> None:
    """Leave a pending lead alone (in the sweeper's eyes) for ``seconds``: its job is on its way."""
    runtime.redis.zadd(PENDING.key(), {reference: time.time() + seconds})


def due(runtime: Runtime, now: float, limit: int = 500) -> list[str]:
    """Pending leads whose job could have been lost by ``now``."""
    return [_text(r) for r in runtime.redis.zrangebyscore(PENDING.key(), "-inf", now, start=0, num=limit)]


def being_written(runtime: Runtime, reference: str) -> bool:
    """Whether a worker holds the lead's write lock right now."""
    return bool(runtime.redis.exists(WRITER.key(reference.lstrip("#"))))


def forget(runtime: Runtime, references: set[str]) -> int:
    """Take the leads ``references`` off the pending list (``chat2crm forget``); returns how many were on it."""
    if not references:
        return 0
    return int(runtime.redis.zrem(PENDING.key(), *references))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
