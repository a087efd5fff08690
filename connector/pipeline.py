"""The work behind a webhook: conversation jobs and CRM jobs, on rq and Redis.

How a message flows (DESIGN.md, "Data flow")::

    webhook ─▶ enqueue_inbound: RPUSH the message onto the conversation's inbox, enqueue
               process_conversation(key)
    worker  ─▶ process_conversation: take the conversation's lock (one worker at a time),
               then for each message at the head of the inbox, in order:
               load state → attribution → bot engine → send replies → in ONE transaction:
               save state, pop the message, store any lead and enqueue its CRM job
    worker  ─▶ sync_lead(reference): mapping → plan → adapter.sync (idempotent writes)

Nothing is lost: a message leaves its inbox only in the transaction that saves what it did; a
lead leaves the pending set only when the CRM has it. A worker killed mid-job leaves its lock
to expire and the sweeper (:func:`sweep`, run by every worker) enqueues the work again.
Nothing is duplicated: redelivered webhooks are dropped at the door, and every CRM write is an
upsert on the contact key or the lead reference.

Retry policy lives here and only here (:func:`_retry_later`): exponential backoff with jitter,
honouring ``retry_after``, up to ``delivery.max_retries``; after that, or on a fatal error, the
job goes to rq's failed-job registry with a readable reason (``chat2crm failed …``).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job

from connector import metrics
from connector.errors import ErrorSummary, FatalError, RetryableError, SkippableError
from connector.logs import pii_scope
from connector.models import Channel, Conversation, InboundMessage, Lead, conversation_key, utcnow
from connector.runtime import QUEUE_CRM, QUEUE_INBOUND, Runtime, current_runtime, rkey

if TYPE_CHECKING:
    from adapters.base import SyncResult

log = logging.getLogger("chat2crm.pipeline")

#: the set of conversation keys whose inbox may hold messages (the sweeper's work list)
INBOXES = rkey("inboxes")
#: sorted set of lead references not yet in the CRM, scored by when to look at them again
LEADS_PENDING = rkey("leads", "pending")
#: grace after a job's due time before the sweeper assumes it was lost
LOST_AFTER_SECONDS = 60.0
#: how late a delayed retry may be before the sweeper assumes its scheduler is gone (a live one is 1 s late)
SCHEDULER_GRACE_SECONDS = 5.0

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


# -- keys ------------------------------------------------------------------------------------------
def inbox_key(key: str) -> str:
    return rkey("inbox", key)


def conversation_redis_key(key: str) -> str:
    return rkey("conv", key)


def lead_key(reference: str) -> str:
    return rkey("lead", reference.lstrip("#"))


# -- the web side ------------------------------------------------------------------------------
def enqueue_inbound(runtime: Runtime, message: InboundMessage, *, dedup_days: int | None = None) -> bool:
    """Queue one patient message for its conversation (called by the webhook).

    The message is appended to the conversation's inbox, so messages are processed in arrival
    order, and a job is enqueued to drain it. With ``dedup_days``, the message id is remembered
    for that long and a message seen before is dropped, in the same atomic step: a redelivery is
    never queued twice, and a message is never marked seen without being queued (were Redis to
    fail between the two, the channel's redelivery would be dropped and the message lost). One
    Redis round trip.

    Returns:
        False when the message was a redelivery (nothing queued).
    """
    key = message.conversation_key
    queue = runtime.queue(QUEUE_INBOUND)
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise start one after our commands
    pipe.rpush(inbox_key(key), message.model_dump_json())
    pipe.sadd(INBOXES, key)
    # A job is on its way: the sweeper leaves this conversation alone until it could have been lost.
    pipe.set(rkey("kick", key), "1", ex=runtime.config.delivery.lost_job_seconds)
    queue.enqueue_call(process_conversation, args=(key,), pipeline=pipe, result_ttl=0,
                       failure_ttl=7 * 86400, description="conversation")
    if dedup_days is None:
        pipe.execute()
        return True
    guard = rkey("seen", message.channel, message.message_id)
    return _execute_if_new(runtime, pipe, guard, dedup_days * 86400)


_IF_NEW = """
if not redis.call('set', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


def _execute_if_new(runtime: Runtime, pipe: redis.client.Pipeline, guard: str, ttl_seconds: int) -> bool:
    """Run the commands buffered in ``pipe`` only if ``guard`` did not exist (then set it, with a TTL),
    atomically: a Lua script is one transaction, as MULTI/EXEC would be, but with a condition."""
    client = runtime.redis
    flat: list[Any] = [ttl_seconds]
    for args, _options in pipe.command_stack:
        flat.append(len(args))
        flat.extend(args)  # encoded once, when the script's arguments are sent
    pipe.reset()
    # sent once, then called by its SHA1
    script = runtime.cached("script:if_new", lambda: client.register_script(_IF_NEW))
    return bool(script(keys=[guard], args=flat))


def enqueue_opt_out(runtime: Runtime, channel: Channel, account: str, sender_id: str) -> None:
    """Record a channel-level opt-out (WhatsApp ``user_preferences``) as a message of its conversation.

    It travels through the same inbox, so it is ordered with the patient's other messages.
    """
    message = InboundMessage(
        channel=channel,
        account=account, sender_id=sender_id, message_id=f"opt-out:{uuid.uuid4().hex}",
        timestamp=utcnow(), kind="unsupported", raw_type="opt_out",
    )
    enqueue_inbound(runtime, message)


def inbox_messages(runtime: Runtime, key: str) -> list[InboundMessage]:
    """The messages waiting in a conversation's inbox, oldest first (tests and diagnosis)."""
    return [InboundMessage.model_validate_json(raw) for raw in runtime.redis.lrange(inbox_key(key), 0, -1)]


# -- conversation state ------------------------------------------------------------------------
def load_conversation(runtime: Runtime, key: str) -> Conversation | None:
    """The stored conversation, or None when there is none (or it expired)."""
    raw = runtime.redis.get(conversation_redis_key(key))
    return Conversation.model_validate_json(raw) if raw else None


def new_conversation(message: InboundMessage) -> Conversation:
    """A fresh conversation for the message's sender."""
    return Conversation(
        key=message.conversation_key, channel=message.channel, account=message.account,
        sender_id=message.sender_id, phone=message.sender_phone, user_id=message.sender_user_id,
        profile_name=message.profile.name,
    )


def conversation_ttl(runtime: Runtime) -> int:
    return runtime.config.retention.conversation_hours * 3600


# -- the conversation job ----------------------------------------------------------------------
class _Lock:
    """A per-conversation lock in Redis with an owner token (released only by its owner)."""

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self.client, self.key, self.ttl_ms = client, rkey("lock", key), ttl_ms
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        return bool(self.client.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, self.key, self.token)


def process_conversation(key: str) -> None:
    """Drain a conversation's inbox, one message at a time, in order, under its lock.

    If another worker holds the lock, return at once: that worker drains the inbox and enqueues
    a new job if messages arrived after it looked.
    """
    runtime = current_runtime()
    client = runtime.redis
    # the lock outlives the job's own time-out a little: a killed worker's lock frees itself soon after
    lock = _Lock(client, key, (runtime.config.delivery.job_timeout_seconds + 5) * 1000)
    if not lock.acquire():
        return
    try:
        while True:
            head = client.lindex(inbox_key(key), 0)
            if head is None:
                break
            raw = _bytes(head)
            message = InboundMessage.model_validate_json(raw)
            try:
                _handle(runtime, key, raw, message)
            except RetryableError as exc:
                _retry_message_later(runtime, key, exc)
                return
            except Exception as exc:
                # Not retryable: move this message aside to the failed registry, go on with the next.
                _fail_message(runtime, key, raw, exc)
            client.delete(rkey("inbox-attempts", key))
            lock.extend()
    finally:
        lock.release()
        if client.llen(inbox_key(key)) and not client.exists(rkey("inbox-wait", key)):
            runtime.queue(QUEUE_INBOUND).enqueue_call(process_conversation, args=(key,), result_ttl=0)
        elif not client.llen(inbox_key(key)):
            client.srem(INBOXES, key)


def _handle(runtime: Runtime, key: str, raw: bytes, message: InboundMessage) -> None:
    """Run one message through attribution, the bot and the channel; commit its effects atomically."""
    from connector.attribution import attribute
    from connector.bot import engine
    from connector.channels import client_for

    client = runtime.redis
    config = runtime.config
    conversation = load_conversation(runtime, key) or new_conversation(message)
    effects: list[Callable[[redis.client.Pipeline], None]] = []

    with pii_scope(message.profile.name, message.text, message.sender_phone, message.sender_id):
        if message.raw_type == "opt_out":
            conversation.opted_out = True
            conversation.updated_at = utcnow()
            effects.append(_opt_out_effect(runtime, conversation))
            _commit(runtime, key, conversation, effects)
            log.info("patient opted out", extra={"conversation": _short(key)})
            return
        if _flood_limited(runtime, message):
            conversation.updated_at = utcnow()
            _commit(runtime, key, conversation, effects)
            return
        metrics.incr(client, "messages_in", channel=message.channel, kind=message.kind)
        if not conversation.transcript and config.bot.crm_lookup:
            _prefill_from_crm(runtime, conversation)
        message = attribute(runtime, conversation, message)
        if message.sender_phone and not conversation.phone:
            conversation.phone = message.sender_phone
        flow_name = conversation.flow or config.default_flow
        flow = runtime.flows[flow_name]
        conversation.flow = flow_name
        turn = engine.handle(conversation, message, flow=flow, ctx=engine_context(runtime))
        conversation = turn.conversation
        channel = client_for(runtime, message.channel)
        if message.callback_id:
            channel.answer_callback(message)
        if turn.replies and not conversation.opted_out:
            channel.send(conversation, turn.replies)
        with _suppress_channel_errors():
            channel.mark_read(message)
        for event in turn.events:
            effects.extend(_effects_of(runtime, conversation, event))
        _commit(runtime, key, conversation, effects)
        # after the commit: a message handled again after a failure is reported once, when it took effect
        log.info("message received", extra={"conversation": _short(key), "kind": message.kind, "flow": flow_name})
        if turn.replies and not conversation.opted_out:
            log.info("bot replied", extra={"conversation": _short(key), "replies": len(turn.replies)})
        for event in turn.events:
            _log_event(key, conversation, event)


def _log_event(key: str, conversation: Conversation, event: Any) -> None:
    """One log line per engine event worth a line of its own (codes and references only)."""
    name = type(event).__name__
    if name == "HandedOver":
        log.info("handed over to a person", extra={"conversation": _short(key), "reference": conversation.reference,
                                                   "reason": event.reason})
    elif name == "OptedOut":
        log.info("patient opted out", extra={"conversation": _short(key)})
    elif name == "LeadReady":
        log.info("lead queued for the CRM", extra={"reference": event.lead.reference, "reason": event.reason})


#: canonical contact paths whose CRM value the bot can use as a known answer
_PREFILL = {"contact.first_name": "first_name", "contact.last_name": "last_name", "contact.name": "name",
            "contact.email": "email", "organization": "company"}


def _prefill_from_crm(runtime: Runtime, conversation: Conversation) -> None:
    """A returning patient: what the CRM already holds (name, e-mail, company) is not asked again.

    Never holds the patient up: any CRM error is logged and the bot simply asks.
    """
    mapping = runtime.mapping
    wanted = {crm: _PREFILL[spec.source] for crm, spec in mapping.contact.fields.items() if spec.source in _PREFILL}
    if not wanted:
        return
    try:
        found = runtime.adapter.find_contact(
            key=(mapping.contact.key_property, f"{conversation.channel}:{conversation.sender_id}"),
            object=mapping.contact.object, properties=sorted(wanted))
    except (RetryableError, FatalError, SkippableError) as exc:
        log.warning("CRM look-up skipped", extra={"error": type(exc).__name__})
        return
    if found is None:
        return
    values = {wanted[k]: v for k, v in found.properties.items() if k in wanted and v}
    name = values.get("name") or " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)
    if name:
        conversation.known.setdefault("name", name)
    for key in ("email", "company"):
        if values.get(key):
            conversation.known.setdefault(key, values[key])


def _commit(runtime: Runtime, key: str, conversation: Conversation,
            effects: list[Callable[[redis.client.Pipeline], None]]) -> None:
    """Save the state, pop the handled message and apply its effects in one transaction."""
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise start one after our commands
    pipe.set(conversation_redis_key(key), conversation.model_dump_json(), ex=conversation_ttl(runtime))
    pipe.lpop(inbox_key(key))
    for effect in effects:
        effect(pipe)
    pipe.execute()


class _suppress_channel_errors:
    """Read receipts are courtesy: never fail a message over one."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, RetryableError | FatalError | SkippableError):
            log.warning("read receipt not sent", extra={"error": type(exc).__name__})
            return True
        return False


def _effects_of(runtime: Runtime, conversation: Conversation, event: Any) -> list[Callable[[Any], None]]:
    """What an engine event changes outside the conversation (leads, CRM jobs, metrics)."""
    name = type(event).__name__
    client = runtime.redis
    flow = conversation.flow or ""
    if name == "FlowStarted":
        metrics.incr(client, "flows", flow=flow, event="started")
    elif name == "FlowCompleted":
        metrics.incr(client, "flows", flow=flow, event="completed")
    elif name == "HandedOver":
        metrics.incr(client, "flows", flow=flow, event="handed_over")
    elif name == "OptedOut":
        return [_opt_out_effect(runtime, conversation)]
    elif name == "LeadReady":
        return [_lead_effect(runtime, event.lead)]
    return []


def _lead_effect(runtime: Runtime, lead: Lead) -> Callable[[Any], None]:
    ttl = runtime.config.retention.transcript_days * 86400

    def apply(pipe: Any) -> None:
        pipe.set(lead_key(lead.reference), lead.model_dump_json(), ex=ttl)
        pipe.zadd(LEADS_PENDING, {lead.reference: time.time() + runtime.config.delivery.lost_job_seconds})
        runtime.queue(QUEUE_CRM).enqueue_call(
            sync_lead, args=(lead.reference,), pipeline=pipe, result_ttl=3600,
            failure_ttl=30 * 86400, description=f"lead {lead.reference}",
        )

    return apply


def _opt_out_effect(runtime: Runtime, conversation: Conversation) -> Callable[[Any], None]:
    contact_key = f"{conversation.channel}:{conversation.sender_id}"

    def apply(pipe: Any) -> None:
        runtime.queue(QUEUE_CRM).enqueue_call(
            sync_opt_out, args=(contact_key,), pipeline=pipe, result_ttl=3600, failure_ttl=30 * 86400,
            description="opt-out",
        )

    return apply


def _flood_limited(runtime: Runtime, message: InboundMessage) -> bool:
    """Per-sender and global limits on inbound messages (fixed one-minute and one-second windows).

    A patient over the limit gets one polite pause message per window, not a reply per message,
    and their extra messages produce no CRM work.
    """
    limits = runtime.config.limits
    client = runtime.redis
    minute = int(time.time() // 60)
    sender_key = rkey("flood", message.conversation_key, minute)
    global_key = rkey("flood", "global", int(time.time()))
    pipe = client.pipeline(transaction=False)
    pipe.incr(sender_key)
    pipe.expire(sender_key, 120)
    pipe.incr(global_key)
    pipe.expire(global_key, 5)
    sender_count, _, global_count, _ = pipe.execute()
    if sender_count <= limits.per_sender_per_minute and global_count <= limits.global_per_second:
        return False
    scope = "sender" if sender_count > limits.per_sender_per_minute else "global"
    metrics.incr(client, "flood_limited", scope=scope)
    if scope == "sender" and sender_count == limits.per_sender_per_minute + 1:
        _send_pause_notice(runtime, message)
    return True


def _send_pause_notice(runtime: Runtime, message: InboundMessage) -> None:
    from connector.channels import client_for
    from connector.models import Reply

    conversation = load_conversation(runtime, message.conversation_key) or new_conversation(message)
    conversation.last_inbound_at = message.timestamp
    texts = {
        "tr": "Çok sayıda mesaj aldık; lütfen bir dakika bekleyin, sonra devam edelim.",
        "de": "Wir haben sehr viele Nachrichten erhalten; bitte warten Sie eine Minute.",
        "ar": "تلقينا رسائل كثيرة؛ يرجى الانتظار دقيقة ثم المتابعة.",
        "ru": "Мы получили слишком много сообщений; пожалуйста, подождите минуту.",
    }
    text = texts.get(conversation.language or "", "We received many messages; please wait a minute, then continue.")
    try:
        client_for(runtime, message.channel).send(conversation, [Reply(text=text)])
    except (RetryableError, FatalError, SkippableError) as exc:
        log.warning("pause notice not sent", extra={"error": type(exc).__name__})


# -- engine context ----------------------------------------------------------------------------
def new_reference(runtime: Runtime) -> str:
    """A short, human, deployment-unique reference (``#1001``, ``#1002`` …) from a Redis counter."""
    return f"#{runtime.redis.incr(rkey('seq', 'reference')) + 1000}"


def engine_context(runtime: Runtime) -> Any:
    """The bot engine's context for this process (clock, zone, languages, references, links)."""
    from connector.bot.engine import EngineContext
    from connector.transcripts import transcript_url

    config = runtime.config
    return EngineContext(
        now=utcnow(), timezone=config.zone, languages=list(config.languages),
        fallback_language=config.fallback_language,
        resume_window=timedelta(minutes=config.bot.resume_window_minutes),
        handoff_release=timedelta(hours=config.bot.handoff_release_hours),
        new_reference=lambda: new_reference(runtime),
        transcript_url=lambda conversation: transcript_url(runtime, conversation),
        clinic_name=config.clinic_name,
    )


# -- CRM jobs ----------------------------------------------------------------------------------
def load_lead(runtime: Runtime, reference: str) -> Lead | None:
    raw = runtime.redis.get(lead_key(reference))
    return Lead.model_validate_json(raw) if raw else None


def sync_lead(reference: str, attempt: int = 0) -> dict[str, Any] | None:
    """Write one lead into the CRM (idempotent). Retries and failures follow the module's policy."""
    runtime = current_runtime()
    lead = load_lead(runtime, reference)
    if lead is None:
        runtime.redis.zrem(LEADS_PENDING, reference)
        log.warning("lead expired before it reached the CRM", extra={"reference": reference})
        return None
    # One writer per lead: a second job for the same lead (a sweep, a replay) steps aside; the lead
    # stays pending, so nothing is lost if the holder dies.
    lock = _Lock(runtime.redis, f"lead:{lead.reference_number}",
                 (runtime.config.delivery.job_timeout_seconds + 5) * 1000)
    if not lock.acquire():
        return None
    try:
        return _sync_locked(runtime, lead, reference, attempt)
    finally:
        lock.release()


def _sync_locked(runtime: Runtime, lead: Lead, reference: str, attempt: int) -> dict[str, Any] | None:
    from connector.mapping import plan

    adapter = runtime.adapter
    with pii_scope(lead.contact.name, lead.contact.email, lead.contact.phone):
        try:
            result: SyncResult = adapter.sync(plan(lead, runtime.mapping))
        except RetryableError as exc:
            _retry_later(runtime, sync_lead, (reference,), attempt, exc, pending_ref=reference)
            return None
        except SkippableError as exc:
            runtime.redis.zrem(LEADS_PENDING, reference)
            log.info("lead skipped", extra={"reference": reference, "reason": exc.message})
            return None
        except Exception as exc:
            runtime.redis.zrem(LEADS_PENDING, reference)
            _record_failure(runtime, exc, QUEUE_CRM)
            raise
    summary = result.model_dump(mode="json")
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise start one after our commands
    pipe.zrem(LEADS_PENDING, reference)
    pipe.set(rkey("lead", lead.reference_number, "synced"), _json(summary),
             ex=runtime.config.retention.transcript_days * 86400)
    pipe.execute()
    metrics.observe(runtime.redis, "lead_seconds", (utcnow() - _first_seen(lead)).total_seconds())
    written: dict[str, Any] = {"reference": reference, "calls": result.calls,
                               "record_created": bool(result.record and result.record.created)}
    if result.record:
        written["record"] = f"{result.record.object}/{result.record.id}"
    log.info("lead in CRM", extra=written)
    return summary


def sync_opt_out(contact_key: str, attempt: int = 0) -> None:
    """Mark the contact as opted out in the CRM (the mapping names the property)."""
    runtime = current_runtime()
    from connector.mapping import opt_out_plan

    try:
        write = opt_out_plan(contact_key, runtime.mapping)
        if write is None:
            return
        runtime.adapter.upsert_contact(write)
    except RetryableError as exc:
        _retry_later(runtime, sync_opt_out, (contact_key,), attempt, exc)
    except SkippableError:
        return
    except Exception as exc:
        _record_failure(runtime, exc, QUEUE_CRM)
        raise


def _first_seen(lead: Lead) -> datetime:
    return lead.transcript[0].at if lead.transcript else lead.created_at


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, default=str)


# -- retry policy (the one place) --------------------------------------------------------------
def backoff_delay(runtime: Runtime, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than what the API asked for."""
    delivery = runtime.config.delivery
    ceiling = min(delivery.backoff_max_seconds, delivery.backoff_base_seconds * (2 ** attempt))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(delivery.backoff_max_seconds, retry_after or 0))


def _retry_later(runtime: Runtime, func: Callable[..., Any], args: tuple[Any, ...], attempt: int,
                 exc: RetryableError, *, pending_ref: str | None = None) -> None:
    max_retries = runtime.config.delivery.max_retries
    queue = runtime.queue(QUEUE_CRM)
    if attempt >= max_retries:
        if pending_ref:
            runtime.redis.zrem(LEADS_PENDING, pending_ref)
        _record_failure(runtime, exc, QUEUE_CRM, note=f"gave up after {attempt + 1} attempts")
        raise exc
    delay = backoff_delay(runtime, attempt, exc.retry_after)
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise start one after our commands
    if pending_ref:
        pipe.zadd(LEADS_PENDING, {pending_ref: time.time() + delay + runtime.config.delivery.lost_job_seconds})
    pipe.execute()
    current = get_current_job()
    # the retry keeps its job's description ("lead #1001"), which `chat2crm failed list` and the logs show
    queue.enqueue_in(timedelta(seconds=delay), func, *args, attempt=attempt + 1,
                     description=current.description if current is not None else None)
    metrics.incr(runtime.redis, "retries", queue=queue.name)
    log.info("retry scheduled", extra={"job": func.__name__, **({"reference": pending_ref} if pending_ref else {}),
                                       "attempt": attempt + 1, "delay_s": round(delay, 2), "error": exc.message})


def _retry_message_later(runtime: Runtime, key: str, exc: RetryableError) -> None:
    """A channel or CRM look-up failed transiently while handling the inbox head: try the
    conversation again later (its order is kept: the message stays at the head)."""
    client = runtime.redis
    attempt = int(client.incr(rkey("inbox-attempts", key))) - 1
    client.expire(rkey("inbox-attempts", key), 86400)
    if attempt >= runtime.config.delivery.max_retries:
        head = client.lindex(inbox_key(key), 0)
        if head is not None:
            _fail_message(runtime, key, _bytes(head), exc)
        client.delete(rkey("inbox-attempts", key))
        runtime.queue(QUEUE_INBOUND).enqueue_call(process_conversation, args=(key,), result_ttl=0)
        return
    delay = backoff_delay(runtime, attempt, exc.retry_after)
    client.set(rkey("inbox-wait", key), "1", px=max(1, int(delay * 1000)))
    runtime.queue(QUEUE_INBOUND).enqueue_in(timedelta(seconds=delay), process_conversation, key)
    metrics.incr(client, "retries", queue=QUEUE_INBOUND)
    log.info("conversation retry scheduled", extra={"conversation": _short(key), "attempt": attempt + 1,
                                                    "delay_s": round(delay, 2), "error": exc.message})


def _fail_message(runtime: Runtime, key: str, raw: bytes, exc: BaseException) -> None:
    """Move the inbox head to the failed registry as a replayable job, then pop it."""
    queue = runtime.queue(QUEUE_INBOUND)
    job = Job.create(replay_message, args=(raw.decode("utf-8"),), connection=runtime.redis,
                     description="conversation message", failure_ttl=30 * 86400)
    summary = ErrorSummary.of(exc)
    job.meta["reason"] = f"{summary.kind}: {summary.message}"
    job.meta["conversation"] = _short(key)
    job.origin = queue.name
    job.save()
    queue.failed_job_registry.add(job, ttl=30 * 86400, exc_string=job.meta["reason"])
    runtime.redis.lpop(inbox_key(key))
    metrics.incr(runtime.redis, "jobs_failed", queue=queue.name)
    log.error("message failed", extra={"conversation": _short(key), "reason": job.meta["reason"]})


def replay_message(raw: str) -> None:
    """Put a failed message back at the head of its conversation's inbox (``chat2crm failed replay``)."""
    runtime = current_runtime()
    message = InboundMessage.model_validate_json(raw)
    key = message.conversation_key
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise start one after our commands
    pipe.lpush(inbox_key(key), raw)
    pipe.sadd(INBOXES, key)
    runtime.queue(QUEUE_INBOUND).enqueue_call(process_conversation, args=(key,), pipeline=pipe, result_ttl=0)
    pipe.execute()


def _record_failure(runtime: Runtime, exc: BaseException, queue_name: str, note: str = "") -> None:
    """Keep a readable reason on the current job (rq moves it to the failed registry when we raise)."""
    summary = ErrorSummary.of(exc)
    reason = f"{summary.kind}: {summary.message}" + (f" ({note})" if note else "")
    job = get_current_job()
    if job is not None:
        job.meta["reason"] = reason
        job.save_meta()
    metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queue_name).name)
    log.error("job failed", extra={**({"job": job.description} if job is not None else {}), "reason": reason,
                                   "details": summary.details})


# -- the sweeper -------------------------------------------------------------------------------
def sweep(runtime: Runtime) -> dict[str, int]:
    """Re-enqueue work a killed worker left behind. Safe to run often, from every worker."""
    client = runtime.redis
    kicked = 0
    for raw_key in client.smembers(INBOXES):
        key = _bytes(raw_key).decode()
        if not client.llen(inbox_key(key)):
            client.srem(INBOXES, key)
            continue
        if client.exists(rkey("lock", key)) or client.exists(rkey("inbox-wait", key)):
            continue
        # One kick per conversation per interval, however many workers sweep; a conversation whose job
        # is merely waiting in a long queue is not kicked again until that job could have been lost.
        if client.set(rkey("kick", key), "1", nx=True, ex=runtime.config.delivery.lost_job_seconds):
            runtime.queue(QUEUE_INBOUND).enqueue_call(process_conversation, args=(key,), result_ttl=0)
            kicked += 1
    leads = 0
    now = time.time()
    for raw_ref in client.zrangebyscore(LEADS_PENDING, "-inf", now):
        reference = _bytes(raw_ref).decode()
        if client.exists(rkey("lock", f"lead:{reference.lstrip('#')}")):
            continue  # being written right now
        client.zadd(LEADS_PENDING, {reference: now + runtime.config.delivery.lost_job_seconds})
        runtime.queue(QUEUE_CRM).enqueue_call(sync_lead, args=(reference,), result_ttl=3600,
                                              failure_ttl=30 * 86400, description=f"lead {reference}")
        leads += 1
    retries = release_due_retries(runtime)
    abandoned = drop_abandoned_jobs(runtime)
    if kicked or leads or retries or abandoned:
        log.info("sweep re-enqueued work", extra={"conversations": kicked, "leads": leads, "retries": retries,
                                                  "abandoned_dropped": abandoned})
    return {"conversations": kicked, "leads": leads, "retries": retries, "abandoned": abandoned}


#: jobs whose work the sweeper recovers by itself when their worker dies (inboxes, pending leads)
_RECOVERED = {"connector.pipeline.process_conversation", "connector.pipeline.sync_lead"}
#: how rq records a job whose process died under it: its worker was killed (found by another worker's
#: clean-up), or its work-horse was (the worker saw it exit: SIGKILL, or Redis gone mid-job)
_DIED = ("AbandonedJobError", "Work-horse terminated unexpectedly")


def drop_abandoned_jobs(runtime: Runtime) -> int:
    """Remove from the failed registries the jobs whose process died under them (rq marks them
    abandoned, or "work-horse terminated") when the sweeper recovers their work anyway: a
    conversation's message stays at the head of its inbox and a lead stays pending until written,
    so such an entry is noise in ``chat2crm failed list``, and replaying it would only repeat what
    is already done. Real failures carry a reason and stay.

    Returns:
        How many entries were removed.
    """
    dropped = 0
    for queue in runtime.queues():
        registry = queue.failed_job_registry
        for job_id in registry.get_job_ids(0, 199):
            try:
                job = Job.fetch(job_id, connection=runtime.redis)
            except NoSuchJobError:
                registry.remove(job_id)
                continue
            if job.func_name not in _RECOVERED or job.meta.get("reason"):
                continue
            result = job.latest_result()
            if result is None or not any(marker in (result.exc_string or "") for marker in _DIED):
                continue
            registry.remove(job, delete_job=True)
            dropped += 1
    return dropped


def release_due_retries(runtime: Runtime, grace_seconds: float = SCHEDULER_GRACE_SECONDS) -> int:
    """Enqueue delayed retries that are overdue: their scheduler is gone.

    rq moves a delayed job to its queue from a scheduler process that one worker holds a lock for.
    When that worker is killed, the lock outlives it by a minute and other workers try to take it
    over only every few minutes, so retries would sit overdue while every worker idles. A live
    scheduler moves due jobs every second; a job overdue by ``grace_seconds`` is moved here. The
    ZREM is the claim: of several sweepers (and the scheduler) only the one that removed the job
    enqueues it.

    Returns:
        How many jobs were moved.
    """
    from rq.registry import ScheduledJobRegistry

    moved = 0
    cutoff = time.time() - grace_seconds
    for queue in runtime.queues():
        registry = ScheduledJobRegistry(queue=queue)
        for raw_id in runtime.redis.zrangebyscore(registry.key, "-inf", cutoff, start=0, num=500):
            job_id = _bytes(raw_id).decode()
            if not runtime.redis.zrem(registry.key, job_id):
                continue  # another sweeper or the scheduler took it
            try:
                job = Job.fetch(job_id, connection=runtime.redis)
            except NoSuchJobError:
                continue
            queue.enqueue_job(job)
            moved += 1
    return moved


def _bytes(value: Any) -> bytes:
    """Redis answers bytes (we never set decode_responses); say so to the type checker."""
    return value if isinstance(value, bytes) else str(value).encode()


def _short(key: str) -> str:
    """A conversation key safe for logs: channel and account, the sender masked."""
    channel, _, rest = key.partition(":")
    account, _, _sender = rest.partition(":")
    return f"{channel}:{account}:…"


__all__ = [
    "Queue", "conversation_key", "enqueue_inbound", "enqueue_opt_out", "inbox_messages",
    "load_conversation", "process_conversation", "sweep", "sync_lead",
]
