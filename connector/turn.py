"""One turn of a conversation: the inbox's head message in, a decision out, committed in one transaction.

:func:`handle` loads the conversation, decides (opt-out, flood control, the CRM look-up of a returning
patient, attribution, the rollout level (:mod:`connector.rollout`: at ``off`` the bot engine does not run), the
bot engine) and commits the decision with :func:`commit`: the new state, the
popped message, the lead with its CRM job, the replies with their delivery job, in one Lua script that
applies only while the message is still the inbox's head and this worker still holds the conversation's
lock. Nothing leaves the relay before that commit; the outbox sends afterwards (:mod:`connector.outbox`).
With the CRM's inbox on, the commit also queues what the CRM's thread is to show (:mod:`connector.threads`):
the conversation so far when a lead is ready, then each message for the agents.
A turn run again after a crash decides again, with the same reference number
(:func:`connector.leads.reserve_reference`), and its earlier run left no trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from adapters.session import spare_budget_only
from connector import conversations, flood, forms, inbox, leads, measures, outbox, rollout, threads
from connector.attribution import attribute
from connector.bot import engine
from connector.bot.engine import (
    EngineContext,
    Event,
    FlowCompleted,
    FlowStarted,
    ForAgent,
    HandedOver,
    LeadReady,
    OptedOut,
)
from connector.crash import crash_point
from connector.locks import Lock
from connector.logs import pii_scope
from connector.transaction import Transaction
from connector.transcripts import transcript_url
from core import metrics
from core.errors import FatalError, RetryableError, SkippableError
from core.inbox import ThreadMessage
from core.models import Conversation, InboundMessage, Lead, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.turn")

#: canonical contact paths whose CRM value the bot can use as a known answer
_PREFILL = {"contact.first_name": "first_name", "contact.last_name": "last_name", "contact.name": "name",
            "contact.email": "email", "organization": "company", "contact.city": "city", "contact.country": "country"}


@dataclass
class Decision:
    """What one message changes: everything :func:`commit` writes, and what is reported after."""

    message: InboundMessage
    conversation: Conversation
    entries: list[outbox.Entry] = field(default_factory=list)
    leads: list[Lead] = field(default_factory=list)
    opt_out: bool = False
    discard_outbox: bool = False
    events: list[Event] = field(default_factory=list)
    replies: int = 0
    flood: flood.Verdict = field(default_factory=flood.Verdict)
    #: the messages whose reserved references this turn used (forgotten when it commits)
    reservations: list[str] = field(default_factory=list)
    #: what the CRM's thread is to show (the conversation so far, or a message for the agents)
    thread: list[ThreadMessage] = field(default_factory=list)
    #: the bot's entries waiting in the outbox that are not to be sent (the patient opted out before them)
    dropped: list[str] = field(default_factory=list)


def handle(runtime: Runtime, key: str, raw: bytes, lock: Lock, *, deliver: Callable[[], object] | None = None) -> bool:
    """Handle the head message ``raw`` of conversation ``key``'s inbox; ``lock`` is the conversation's, held.

    With ``deliver``, the turn's replies are sent by calling it right after the commit, in this job, instead
    of by a delivery job enqueued in the commit: the patient hears back sooner and the queue does less. The
    outbox is still due for the sweeper, so replies of a process that dies in between are sent all the same.

    Returns:
        False when the turn could not commit (the lock was lost: another worker has the conversation).

    Raises:
        RetryableError: something transient failed before the commit (the message stays at the head).
        Exception: anything else (the caller sets the message aside as failed).
    """
    message = InboundMessage.model_validate_json(raw)
    conversation = conversations.load(runtime, key) or conversations.new_conversation(message)
    crash_point("state-loaded")
    with pii_scope(message.profile.name, message.text, message.sender_phone, message.sender_id):
        decision = decide(runtime, conversation, message)
        crash_point("turn-decided")
        if not commit(runtime, key, raw, lock, decision, enqueue_delivery=deliver is None):
            log.warning("turn not committed: the conversation's lock was lost",
                        extra={"conversation": conversations.short(key)})
            return False
        crash_point("turn-committed")
        report(runtime, key, decision)
    if deliver is not None and decision.entries:
        try:
            deliver()
        except Exception:  # the turn is committed: its replies wait in the outbox, due for the sweeper
            log.exception("replies not sent at once", extra={"conversation": conversations.short(key)})
    return True


def decide(runtime: Runtime, conversation: Conversation, message: InboundMessage) -> Decision:
    """What ``message`` changes (the only I/O: flood counters, click look-ups, a CRM look-up, references, and
    how much of the transcript the CRM's thread already has)."""
    config = runtime.config
    if message.raw_type == "opt_out":  # WhatsApp's user_preferences: nothing more is sent, the CRM is told
        # a stop written (or tapped) just before may still have its confirmation waiting: that one is kept
        already = conversation.opted_out
        conversation.opted_out = True
        conversation.status = "closed"
        conversation.updated_at = utcnow()
        return Decision(message, conversation, opt_out=True, events=[OptedOut()],
                        dropped=[] if already else outbox.bot_entries(runtime, conversation.key))
    verdict = flood.check(runtime, message)
    if verdict.limited:
        conversation.updated_at = utcnow()
        # an opted-out patient gets nothing after the stop confirmation, not even the pause notice
        notice = [flood.pause_notice(conversation.language)] if verdict.notify and not conversation.opted_out else []
        return Decision(message, conversation, entries=outbox.entries(conversation, message, notice, courtesy=False),
                        flood=verdict)
    if not conversation.transcript and config.bot.crm_lookup:
        _prefill_from_crm(runtime, conversation)
    touched = conversation.last_touch
    message_read = attribute(runtime, conversation, message)
    _follow_campaign(runtime, conversation, touched)
    if message_read.sender_phone and not conversation.phone:
        conversation.phone = message_read.sender_phone
    was_opted_out = conversation.opted_out
    flow_name = conversation.flow or config.default_flow
    conversation.flow = flow_name
    reservations: list[str] = []

    def new_reference() -> str:
        reservations.append(f"{message.channel}:{message.message_id}:{len(reservations)}")
        return leads.reserve_reference(runtime, reservations[-1])

    ctx = engine_context(runtime, new_reference, channel=conversation.channel)
    flow = runtime.flows[flow_name]
    # the level the bot works at, kept from the conversation's start (docs/rollout.md); `off` never runs the bot
    assignment = rollout.settle(config.rollout, conversation)
    if assignment.level == "off" and not rollout.engine_decides(message_read, flow):
        turn = rollout.off_turn(conversation, message_read, flow=flow, ctx=ctx)
    else:
        turn = engine.handle(conversation, message_read, flow=flow, ctx=ctx)
    ready = [e.lead for e in turn.events if isinstance(e, LeadReady)]
    for lead in ready:
        rollout.stamp(lead, assignment)
    thread: list[ThreadMessage] = []
    if ctx.inbox and (ready or any(isinstance(e, ForAgent) for e in turn.events)):
        thread = threads.build(turn.conversation, message_read, lead_ready=bool(ready),
                               for_agent=not ready, already=threads.covered(runtime, turn.conversation))
    opt_out = any(isinstance(e, OptedOut) for e in turn.events)
    if opt_out:  # the conversation ends: not left in a flow the bot no longer runs
        turn.conversation.status = "closed"
    return Decision(
        message, turn.conversation, entries=outbox.entries(turn.conversation, message, turn.replies),
        leads=ready, opt_out=opt_out, events=list(turn.events),
        replies=len(turn.replies), reservations=reservations, thread=thread,
        # the stop confirmation is the last the patient hears: replies still waiting before it are dropped
        dropped=outbox.bot_entries(runtime, conversation.key) if opt_out and not was_opted_out else [])


def commit(runtime: Runtime, key: str, raw: bytes, lock: Lock, decision: Decision, *,
           enqueue_delivery: bool = True) -> bool:
    """Apply ``decision`` in one transaction, only while ``raw`` is the inbox's head and ``lock`` is held
    (and, with ``enqueue_delivery``, enqueue the job that sends its replies).

    Returns:
        Whether it was applied.

    Raises:
        redis.RedisError: Redis failed; nothing was applied.
    """
    tx = Transaction(runtime.redis)
    inbox.guard(tx, key, raw)
    tx.require_value(lock.key, lock.token)
    pipe = tx.pipe
    conversation = decision.conversation
    conversations.stage_save(runtime, pipe, conversation)
    inbox.stage_pop(pipe, key)
    for lead in decision.leads:
        leads.stage(runtime, pipe, lead)
    leads.stage_release(pipe, decision.reservations)
    if decision.opt_out:
        leads.stage_opt_out(runtime, pipe, conversation)
    if decision.discard_outbox:
        outbox.stage_discard(pipe, key)
    outbox.stage_drop(pipe, key, decision.dropped)
    outbox.stage(runtime, pipe, key, decision.entries, enqueue=enqueue_delivery)
    threads.stage(runtime, pipe, conversation, decision.thread)
    return tx.commit()


def report(runtime: Runtime, key: str, decision: Decision) -> None:
    """Log and count what a committed turn did (once: a turn that did not commit is not reported)."""
    measures.record_turn(runtime, key, decision)
    client = runtime.redis
    short = conversations.short(key)
    message, conversation = decision.message, decision.conversation
    if decision.flood.limited:
        metrics.incr(client, "flood_limited", scope=decision.flood.scope or "sender")
        return
    if message.raw_type == "opt_out":
        log.info("patient opted out", extra={"conversation": short})
        return
    metrics.incr(client, "messages_in", channel=message.channel, kind=message.kind)
    log.info("message received", extra={"conversation": short, "kind": message.kind, "flow": conversation.flow})
    if decision.replies:
        log.info("bot replied", extra={"conversation": short, "replies": decision.replies})
    flow = conversation.flow or ""
    for event in decision.events:
        if isinstance(event, FlowStarted):
            metrics.incr(client, "flows", flow=flow, event="started")
        elif isinstance(event, FlowCompleted):
            metrics.incr(client, "flows", flow=flow, event="completed")
        elif isinstance(event, HandedOver):
            metrics.incr(client, "flows", flow=flow, event="handed_over")
            log.info("handed over to a person", extra={"conversation": short, "reference": conversation.reference,
                                                       "reason": event.reason})
        elif isinstance(event, OptedOut):
            log.info("patient opted out", extra={"conversation": short})
        elif isinstance(event, LeadReady):
            log.info("lead queued for the CRM", extra={"reference": event.lead.reference, "reason": event.reason})
        elif isinstance(event, ForAgent):
            log.info("message for the agents", extra={"conversation": short, "reference": conversation.reference})


def engine_context(runtime: Runtime, new_reference: Callable[[], str], *, channel: str = "") -> EngineContext:
    """The bot engine's context for one turn (clock, zone, languages, references, transcript links, and on
    WhatsApp the published forms)."""
    config = runtime.config
    return EngineContext(
        now=utcnow(), timezone=config.zone, languages=list(config.languages),
        fallback_language=config.fallback_language,
        resume_window=timedelta(minutes=config.bot.resume_window_minutes),
        handoff_release=timedelta(hours=config.bot.handoff_release_hours),
        new_reference=new_reference,
        transcript_url=lambda conversation: transcript_url(runtime, conversation),
        clinic_name=config.clinic_name,
        inbox=runtime.inbox is not None,
        inbox_idle=timedelta(hours=config.inbox.idle_hours),
        # forms are WhatsApp Flows, published to the clinic's WhatsApp Business Account
        form_id=forms.published(runtime).form_id if channel == "whatsapp" else _no_form,
    )


def _no_form(flow: str, language: str) -> None:
    """A channel without forms: every step is a question."""
    return None


def _prefill_from_crm(runtime: Runtime, conversation: Conversation) -> None:
    """A returning patient: what the CRM already holds (name, e-mail, company, city and country when the
    mapping writes them) is not asked again.

    Never holds the patient up: any CRM error is logged and the bot simply asks. The look-up uses only the CRM
    budget nobody needs (:func:`~adapters.session.spare_budget_only`): in a campaign spike it is skipped rather
    than waited for, and the lead writes keep the budget.
    """
    mapping = runtime.mapping
    wanted = {crm: _PREFILL[spec.source] for crm, spec in mapping.contact.fields.items() if spec.source in _PREFILL}
    if not wanted:
        return
    try:
        with spare_budget_only():
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
    for known in ("email", "company"):
        if values.get(known):
            conversation.known.setdefault(known, values[known])
    if values.get("city"):  # where they live, with its country (a country alone may be a phone number's guess)
        conversation.known.setdefault("city", values["city"])
        if values.get("country"):
            conversation.known.setdefault("country", values["country"])


def _follow_campaign(runtime: Runtime, conversation: Conversation, before: object) -> None:
    """A campaign link or ad in the middle of a request: the conversation takes the campaign's flow, and the
    bot starts a new request in it (:mod:`connector.bot.returning`). A conversation not under way took it
    already (:mod:`connector.attribution`)."""
    touch = conversation.last_touch
    if touch is before or touch is None or not touch.campaign or conversation.step is None:
        return
    campaign = runtime.campaigns.get(touch.campaign)
    if campaign is not None and campaign.flow in runtime.flows:
        conversation.flow = campaign.flow
