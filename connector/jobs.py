"""The rq jobs: thin entry points that run one noun's work and carry out the retry policy's decision.

- :func:`process_conversation` drains a conversation's inbox, one turn per message, in order, under
  the conversation's lock (:mod:`connector.turn`);
- :func:`deliver_outbox` sends a conversation's outbox, in order (:mod:`connector.outbox`);
- :func:`sync_lead` and :func:`sync_opt_out` write to the CRM (:mod:`connector.leads`);
- :func:`send_conversion` sends one conversion event to Meta (:mod:`connector.conversions`);
- :func:`publish_thread` publishes a conversation's thread into the CRM's inbox, in order
  (:mod:`connector.threads`), and :func:`report_delivery` writes what became of agents' replies back to
  it (:mod:`connector.agent`);
- :func:`replay_message`, :func:`replay_reply` and :func:`replay_thread_message` are what
  ``chat2crm failed replay`` runs for a message, a reply or a thread message that was set aside.

What a failure means is :func:`connector.retry.decide`'s to say; here it is carried out: a retry
is scheduled (``retry scheduled``), or the work is recorded in the failed registry with a readable
reason (``job failed``), where ``chat2crm failed list`` shows it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis

from connector import (
    agent,
    completeness,
    conversations,
    conversions,
    inbox,
    leads,
    outbox,
    queues,
    received,
    retry,
    threads,
    turn,
)
from connector.conversations import short
from connector.crash import crash_point
from connector.leadforms import intake
from connector.logs import pii_scope
from connector.runtime import Runtime, current_runtime
from core import metrics
from core.errors import Chat2CrmError, ErrorSummary
from core.inbox import DeliveryReport
from core.models import Lead, utcnow

log = logging.getLogger("chat2crm.jobs")


# -- conversations -------------------------------------------------------------------------------
def process_conversation(key: str) -> None:
    """Drain a conversation's inbox, one message at a time, in order, under its lock.

    Run by a job process for a conversation it popped from the ready list (or by rq, for a delayed retry);
    an intake (``@<channel>``, :mod:`connector.received`) is read in batches instead (:func:`_read_intake`).
    If another worker holds the lock, return at once: that worker drains the inbox and makes the
    conversation ready again if messages arrived after it looked. A message whose turn fails transiently (Redis, or a retryable
    error) stays at the head and the conversation is tried again after a backoff; one whose turn fails
    otherwise is set aside in the failed registry (``chat2crm failed list``) and the next goes on. If
    Redis fails for longer, the drain fails and the sweeper makes the conversation ready again.
    """
    runtime = current_runtime()
    if received.is_intake(key):
        _read_intake(runtime, key)
        return
    lock = conversations.lock(runtime, key)
    # the lock, the inbox's head, the conversation and the flood counters, in one call
    found, head = turn.take(runtime, key, lock)
    if found != "head" or head is None:
        return  # another worker drains it, or it was empty (and left the work list)
    crash_point("conversation-locked")
    waiting = ended = False
    try:
        while True:
            try:
                outcome = turn.handle(runtime, key, head, lock,
                                      deliver=lambda taken: deliver_outbox(key, taken=taken))
                if not outcome.committed:
                    return  # the lock was lost: its new holder drains the inbox
                # the commit brought the next message with the lock extended, or let the lock go
                if outcome.next is not None:
                    head = outcome.next
                    continue
                ended = True
                return
            except retry.TRANSIENT as exc:  # the message stays at the head (a slow CRM look-up past the time-out too)
                waiting = _retry_conversation(runtime, key, head.raw, exc)
                if waiting:
                    return
            except Exception as exc:  # not retryable: the message is set aside, the ones after it go on
                set_message_aside(runtime, key, head.raw, exc)
            # the next message with the lock extended; or the lock let go and the conversation done with
            found, raw = inbox.next_message(runtime, key, lock)
            if found != "head" or raw is None:
                ended = True
                return
            head = turn.Head(raw)
    finally:
        if waiting:
            lock.release()
        elif not ended:  # left early: messages that arrived meanwhile make the conversation ready again
            inbox.release_and_finish(runtime, key, lock)


#: webhook bodies read per call to Redis (the ones handled popped with the next ones read)
INTAKE_BATCH = 20


def _read_intake(runtime: Runtime, key: str) -> None:
    """Read a channel's intake (:mod:`connector.received`) under its lock, in order, in batches: one call
    pops the bodies read and brings the next ones. A body that fails as a message's turn would is handled
    as one: the bodies read before it are popped first, then it waits at the head for a retry (Redis, or a
    retryable error) or is set aside (``chat2crm failed``). A job process killed half-way leaves its batch in
    the intake; reading a body twice queues nothing twice."""
    lock = conversations.lock(runtime, key)
    found, items = inbox.take_batch(runtime, key, lock, INTAKE_BATCH)
    if found != "head":
        return
    waiting = ended = False
    try:
        while True:
            handled: list[bytes] = []
            for item in items:
                try:
                    received.handle(runtime, item)
                except Exception as exc:
                    # the bodies read before it go first, so that it is the head its retry or its setting aside needs
                    if inbox.next_batch(runtime, key, lock, handled, 0)[0] != "head":
                        return  # the lock was lost: its new holder reads on
                    if isinstance(exc, retry.TRANSIENT):
                        waiting = _retry_conversation(runtime, key, item, exc)
                        if waiting:
                            return
                    else:
                        set_message_aside(runtime, key, item, exc)
                    handled = []  # set aside (popped): read on from what is now the head
                    break
                handled.append(item)
            found, items = inbox.next_batch(runtime, key, lock, handled, INTAKE_BATCH)
            if found != "head":
                ended = True
                return
    finally:
        if waiting:
            lock.release()
        elif not ended:
            inbox.release_and_finish(runtime, key, lock)


def _retry_conversation(runtime: Runtime, key: str, raw: bytes, exc: Exception) -> bool:
    """The head failed transiently: try the conversation again later (the message stays at the head, so the
    order is kept). Returns False when the retries are spent (the message was set aside instead)."""
    attempt = inbox.failed_try(runtime, key)
    decision = retry.decide(exc, attempt, runtime.config.delivery)
    if not decision.retry:
        set_message_aside(runtime, key, raw, exc)
        return False
    inbox.postpone(runtime, key, decision.delay + runtime.config.delivery.lost_job_seconds)
    queues.enqueue_in(runtime, queues.INBOUND, decision.delay, queues.PROCESS_CONVERSATION, key,
                      description="conversation")
    metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.INBOUND).name)
    log.info("conversation retry scheduled", extra={"conversation": short(key), "attempt": attempt + 1,
                                                    "delay_s": round(decision.delay, 2), "error": _said(exc)})
    return True


def set_message_aside(runtime: Runtime, key: str, raw: bytes, exc: BaseException) -> None:
    """Move the inbox head to the failed registry as a replayable job (kept ``retention.transcript_days``,
    like the transcript it would have joined), then pop it. The head of an intake is a webhook's body."""
    summary = ErrorSummary.of(exc)
    reason = f"{summary.kind}: {summary.message}"
    if received.is_intake(key):
        func, description, meta = queues.REPLAY_WEBHOOK, "webhook body", {"channel": received.channel_of(raw)}
    else:
        func, description, meta = queues.REPLAY_MESSAGE, "conversation message", {"conversation": short(key)}
    queues.set_aside(runtime, queues.INBOUND, func, raw.decode("utf-8"), description=description, reason=reason,
                     meta=meta, ttl=runtime.config.retention.transcript_days * 86400)
    inbox.pop_if_head(runtime, key, raw)
    metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queues.INBOUND).name)
    log.error("message failed", extra={**meta, "reason": reason})


def replay_message(raw: str) -> None:
    """Put a failed message back at the head of its conversation's inbox (``chat2crm failed replay``)."""
    inbox.push_front(current_runtime(), raw)


def replay_webhook(raw: str) -> None:
    """Put a webhook's body that failed back at the head of its channel's intake (``chat2crm failed replay``)."""
    received.replay(raw)


# -- outboxes ------------------------------------------------------------------------------------
def deliver_outbox(key: str, retrying: bool = False, taken: outbox.Taken | None = None) -> int:
    """Send a conversation's outbox, in order. A reply the channel refuses for now is retried with backoff
    (the replies after it wait); one refused for good, or out of retries, is recorded as failed and the
    rest go on. Returns how many replies were sent. ``taken``: the outbox's lock, taken by the turn's commit
    that just ran in this job (:func:`connector.turn.handle`)."""
    runtime = current_runtime()

    def on_failure(entry: outbox.Entry, raw: bytes, exc: Exception) -> bool:
        decision = retry.decide(exc, entry.attempts, runtime.config.delivery)
        if decision.retry:
            if outbox.retry_later(runtime, key, raw, entry, decision.delay):
                queues.enqueue_in(runtime, queues.OUTBOUND, decision.delay, queues.DELIVER_OUTBOX, key,
                                  retrying=True, description="replies")
                metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.OUTBOUND).name)
                log.info("reply retry scheduled", extra={
                    "conversation": short(key), "job": "reply", "attempt": entry.attempts + 1,
                    "delay_s": round(decision.delay, 2), "error": _said(exc)})
            return False
        summary = ErrorSummary.of(exc)
        note = f" (gave up after {entry.attempts + 1} attempts)" if decision.action == "exhausted" else ""
        reason = f"{summary.kind}: {summary.message}{note}"
        if entry.kind == "agent":  # the agent sees in the CRM that it was not sent, and why
            agent.report_failure(runtime, entry, exc)
        queues.set_aside(runtime, queues.OUTBOUND, queues.REPLAY_REPLY, raw.decode("utf-8"), description="reply",
                         reason=reason, meta={"conversation": short(key)},
                         ttl=runtime.config.retention.transcript_days * 86400)
        outbox.set_aside(runtime, key, raw, entry)
        outcome = "skipped" if decision.action == "skip" else "failed"
        metrics.incr(runtime.redis, "messages_out", channel=entry.channel, outcome=outcome)
        metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queues.OUTBOUND).name)
        log.error("reply failed", extra={"conversation": short(key), "reason": reason})
        return True

    try:
        return outbox.deliver(runtime, key, on_failure, retrying=retrying, agent_sender=agent.send, taken=taken)
    except redis.RedisError as exc:  # the entry stays at the head; the sweeper enqueues the outbox again
        log.warning("delivery interrupted", extra={"conversation": short(key), "error": type(exc).__name__})
        return 0


def replay_reply(raw: str) -> None:
    """Put a failed reply back at the head of its conversation's outbox (``chat2crm failed replay``)."""
    outbox.push_front(current_runtime(), raw)


# -- the CRM -------------------------------------------------------------------------------------
def sync_lead(reference: str, attempt: int = 0) -> dict[str, Any] | None:
    """Write one lead into the CRM (idempotent). Returns what was written (None when nothing was).

    A retryable failure schedules the job again after a backoff (the lead stays pending); a skippable one
    ends it; any other, or running out of retries, records the reason and fails the job (rq keeps it in the
    failed registry, ``chat2crm failed replay`` runs it again).

    Raises:
        Exception: the CRM write failed for good.
    """
    runtime = current_runtime()
    lead = leads.load(runtime, reference)
    if lead is None:
        leads.unpend(runtime, reference)
        log.warning("lead expired before it reached the CRM", extra={"reference": reference})
        return None
    # One writer per lead: a second job for the same lead (a sweep, a replay) steps aside; the lead stays
    # pending, so nothing is lost if the holder dies.
    lock = leads.writer(runtime, lead)
    if not lock.acquire():
        return None
    try:
        crash_point("lead-writing")
        with pii_scope(lead.contact.name, lead.contact.email, lead.contact.phone):
            try:
                result = leads.write(runtime, lead)
            except Exception as exc:
                _crm_failed(runtime, exc, attempt, reference, retry_args=(reference,))
                return None
        crash_point("lead-written")
        summary = result.model_dump(mode="json")
        leads.mark_synced(runtime, lead, summary)
        crash_point("lead-synced")
    finally:
        lock.release()
    threads.kick(runtime, lead.conversation_key)  # its thread waited for the lead's CRM contact
    metrics.observe(runtime.redis, "lead_seconds", (utcnow() - _first_seen(lead)).total_seconds())
    completeness.lead_written(runtime, lead, result)
    written: dict[str, Any] = {"reference": reference, "calls": result.calls,
                               "record_created": bool(result.record and result.record.created)}
    if result.record:
        written["record"] = f"{result.record.object}/{result.record.id}"
    log.info("lead in CRM", extra=written)
    return summary


def sync_opt_out(contact_key: str, attempt: int = 0) -> None:
    """Mark the contact as opted out in the CRM (the mapping names the property); failures as :func:`sync_lead`.

    Raises:
        Exception: the CRM write failed for good.
    """
    runtime = current_runtime()
    try:
        leads.write_opt_out(runtime, contact_key)
    except Exception as exc:
        _crm_failed(runtime, exc, attempt, None, retry_args=(contact_key,))


def _crm_failed(runtime: Runtime, exc: Exception, attempt: int, reference: str | None,
                retry_args: tuple[str, ...]) -> None:
    """Carry out the retry policy for a CRM job: schedule the retry (the job keeps its description,
    ``lead #1001``), drop moot work, or record the failure and raise (rq keeps the job as failed).

    Raises:
        Exception: ``exc``, when the work failed for good.
    """
    decision = retry.decide(exc, attempt, runtime.config.delivery)
    func = queues.SYNC_LEAD if reference else queues.SYNC_OPT_OUT
    if decision.retry:
        if reference:
            leads.postpone(runtime, reference, decision.delay + runtime.config.delivery.lost_job_seconds)
        queues.enqueue_in(runtime, queues.CRM, decision.delay, func, *retry_args, attempt=attempt + 1,
                          description=queues.current_description() or ("opt-out" if not reference else
                                                                        f"lead {reference}"),
                          result_ttl=3600, failure_ttl=leads.LEAD.seconds(runtime.config))
        metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.CRM).name)
        log.info("retry scheduled", extra={"job": func.rsplit(".", 1)[1], **({"reference": reference} if reference
                                                                            else {}),
                                           "attempt": attempt + 1, "delay_s": round(decision.delay, 2),
                                           "error": _said(exc)})
        return
    if reference:
        leads.unpend(runtime, reference)
    if decision.action == "skip":
        log.info("lead skipped" if reference else "opt-out skipped",
                 extra={**({"reference": reference} if reference else {}), "reason": getattr(exc, "message", "")})
        return
    note = f"gave up after {attempt + 1} attempts" if decision.action == "exhausted" else ""
    queues.note_failure(runtime, exc, queues.CRM, note=note)
    raise exc


# -- Meta lead forms -----------------------------------------------------------------------------
def read_lead_form(leadgen_id: str, attempt: int = 0, page_id: str | None = None, form_id: str | None = None) -> None:
    """Read a lead form's lead from the Graph API and store it as a lead (:mod:`connector.leadforms.intake`);
    its CRM write is the ``sync_lead`` job it enqueues. Failures as :func:`sync_lead`'s.

    Raises:
        Exception: the lead could not be read for good (a refused token names ``META_PAGE_ACCESS_TOKEN``).
    """
    runtime = current_runtime()
    try:
        _keep_lead_id(runtime, leadgen_id)
        intake.take(runtime, leadgen_id, form_id=form_id)
    except Exception as exc:
        decision = retry.decide(exc, attempt, runtime.config.delivery)
        if decision.retry:
            queues.enqueue_in(runtime, queues.CRM, decision.delay, queues.READ_LEAD_FORM, leadgen_id,
                              attempt=attempt + 1, page_id=page_id, form_id=form_id,
                              description=f"lead form {leadgen_id}",
                              failure_ttl=runtime.config.retention.transcript_days * 86400)
            metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.CRM).name)
            log.info("lead form retry scheduled", extra={"leadgen_id": leadgen_id, "attempt": attempt + 1,
                                                         "delay_s": round(decision.delay, 2), "error": _said(exc)})
            return
        if decision.action == "skip":
            log.info("lead form skipped", extra={"leadgen_id": leadgen_id, "reason": getattr(exc, "message", "")})
            return
        note = f"gave up after {attempt + 1} attempts" if decision.action == "exhausted" else ""
        queues.note_failure(runtime, exc, queues.CRM, note=note)
        raise


def _keep_lead_id(runtime: Runtime, leadgen_id: str) -> None:
    """Before the lead is stored: keep its Meta lead id under the reference it will be stored as (the one
    reserved for it, which ``intake.take`` gets again), so its first CRM write already knows it."""
    if conversions.section(runtime) is None or runtime.redis.exists(intake.TAKEN.key(leadgen_id)):
        return
    reference = leads.reserve_reference(runtime, intake.RESERVATION.format(leadgen_id))
    conversions.lead_form_taken(runtime, reference, leadgen_id)


# -- Meta conversion events ----------------------------------------------------------------------
def send_conversion(payload: str, attempt: int = 0) -> str | None:
    """Send one conversion event to Meta (:mod:`connector.conversions`). Meta's transient errors are retried
    with backoff; a refusal, or running out of retries, fails the job with Meta's reason (``chat2crm failed``).

    Raises:
        Exception: the event was refused for good.
    """
    runtime = current_runtime()
    try:
        return conversions.send(runtime, payload)
    except Exception as exc:
        decision = retry.decide(exc, attempt, runtime.config.delivery)
        if decision.retry:
            queues.enqueue_in(runtime, queues.CRM, decision.delay, queues.SEND_CONVERSION, payload,
                              attempt=attempt + 1, description=queues.current_description() or "conversion",
                              result_ttl=3600, failure_ttl=conversions.WINDOW_SECONDS)
            metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.CRM).name)
            log.info("conversion retry scheduled", extra={"attempt": attempt + 1, "delay_s": round(decision.delay, 2),
                                                          "error": _said(exc)})
            return None
        note = f"gave up after {attempt + 1} attempts" if decision.action == "exhausted" else ""
        conversions.refused(runtime, payload, _said(exc))
        if decision.action == "skip":
            return None
        queues.note_failure(runtime, exc, queues.CRM, note=note)
        raise


# -- the CRM's inbox -----------------------------------------------------------------------------
def publish_thread(key: str, retrying: bool = False) -> int:
    """Publish a conversation's thread into the CRM's inbox, in order, each message once. A message the CRM
    refuses for now is retried with backoff (the ones after it wait); one refused for good, or out of
    retries, is recorded as failed and the rest go on. Returns how many were published."""
    runtime = current_runtime()
    crm = runtime.inbox
    if crm is None:  # turned off since: the messages wait (their TTL bounds them) until it is on again
        log.warning("thread not published: the CRM inbox is off", extra={"conversation": short(key)})
        return 0

    def on_failure(entry: threads.Pending, raw: bytes, exc: Exception) -> bool:
        decision = retry.decide(exc, entry.attempts, runtime.config.delivery)
        if decision.retry:
            if threads.retry_later(runtime, key, raw, entry, decision.delay):
                queues.enqueue_in(runtime, queues.CRM, decision.delay, queues.PUBLISH_THREAD, key, retrying=True,
                                  description="thread")
                metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.CRM).name)
                log.info("thread retry scheduled", extra={
                    "conversation": short(key), "attempt": entry.attempts + 1,
                    "delay_s": round(decision.delay, 2), "error": _said(exc)})
            return False
        summary = ErrorSummary.of(exc)
        note = f" (gave up after {entry.attempts + 1} attempts)" if decision.action == "exhausted" else ""
        reason = f"{summary.kind}: {summary.message}{note}"
        queues.set_aside(runtime, queues.CRM, queues.REPLAY_THREAD, raw.decode("utf-8"), description="thread message",
                         reason=reason, meta={"conversation": short(key)},
                         ttl=runtime.config.retention.transcript_days * 86400)
        threads.set_aside(runtime, key, raw)
        metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queues.CRM).name)
        log.error("thread message failed", extra={"conversation": short(key), "reason": reason})
        return True

    try:
        return threads.publish(runtime, key, crm, on_failure, retrying=retrying)
    except redis.RedisError as exc:  # the message stays at the head; the sweeper enqueues the thread again
        log.warning("thread interrupted", extra={"conversation": short(key), "error": type(exc).__name__})
        return 0


def replay_thread_message(raw: str) -> None:
    """Put a failed thread message back at the head of its thread (``chat2crm failed replay``)."""
    threads.push_front(current_runtime(), raw)


def report_delivery(retrying: bool = False) -> int:
    """Write the waiting delivery reports of agents' replies to the CRM, in order. A report the CRM refuses
    for now is retried with backoff; one refused for good is dropped (and logged). Returns how many were
    written."""
    runtime = current_runtime()
    crm = runtime.inbox
    if crm is None:
        return 0

    def on_failure(report: DeliveryReport, exc: Exception, attempt: int) -> bool:
        decision = retry.decide(exc, attempt, runtime.config.delivery)
        if decision.retry:
            agent.hold_reports(runtime, decision.delay, attempt + 1)
            agent.enqueue_reports(runtime, decision.delay)
            metrics.incr(runtime.redis, "retries", queue=runtime.queue(queues.CRM).name)
            log.info("delivery report retry scheduled", extra={"attempt": attempt + 1, "error": _said(exc),
                                                               "delay_s": round(decision.delay, 2)})
            return False
        metrics.incr(runtime.redis, "jobs_failed", queue=runtime.queue(queues.CRM).name)
        log.error("delivery report dropped", extra={"status": report.status, "error": _said(exc)})
        return True

    try:
        return agent.drain_reports(runtime, crm, on_failure, retrying=retrying)
    except redis.RedisError as exc:  # the report stays at the head; the sweeper enqueues the job again
        log.warning("delivery reports interrupted", extra={"error": type(exc).__name__})
        return 0


def _said(exc: BaseException) -> str:
    """What an error says, for the log (the error tree's message; otherwise its kind)."""
    return exc.message if isinstance(exc, Chat2CrmError) else type(exc).__name__


def _first_seen(lead: Lead) -> datetime:
    return lead.transcript[0].at if lead.transcript else lead.created_at


__all__ = [
    "deliver_outbox",
    "process_conversation",
    "publish_thread",
    "read_lead_form",
    "replay_message",
    "replay_reply",
    "replay_thread_message",
    "report_delivery",
    "send_conversion",
    "sync_lead",
    "sync_opt_out",
]
