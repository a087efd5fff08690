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
import time
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
from connector.locks import Found, Lock
from connector.logs import pii_scope
from connector.transaction import Transaction
from connector.transcripts import transcript_url
from core import lua, metrics
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


# What both scripts below do: count a message in a flood counter, its TTL set when the counter starts (a fixed
# window), answering the count; and, the inbox empty, let the lock go and take the conversation off the work list.
_COUNT = """local function count(key, ttl)
  local n = redis.call('incr', key)
  if n == 1 then redis.call('expire', key, ttl) end
  return n
end
local function let_go(lock, work, member)
  redis.call('del', lock)
  redis.call('zrem', work, member)
  return {2}
end
"""
# The lock with the inbox's head and what its turn reads (the conversation as stored, the flood counters with
# the message counted), in one call; an empty inbox leaves the work list and lets the lock go at once.
# KEYS: lock, inbox, work list, conversation, the patient's and the relay's flood counters. ARGV: token, lock
# TTL (ms), the conversation, the counters' TTLs. Answers {0} (locked), {2} (empty) or {1, head, state, counts}.
_TAKE = _COUNT + """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local head = redis.call('lindex', KEYS[2], 0)
if not head then return let_go(KEYS[1], KEYS[3], ARGV[3]) end
return {1, head, redis.call('get', KEYS[4]) or '', count(KEYS[5], ARGV[4]), count(KEYS[6], ARGV[5])}
"""
# A step of the turn's commit, after its pop: the next head with the lock extended and the flood counters with
# it counted, or, the inbox empty, the lock let go and the conversation off the work list ({2}).
# K: lock, inbox, work list, the two flood counters. A: token, lock TTL (ms), the conversation, the counters' TTLs.
# (A step is an expression in the commit's script: the function is made inside one, with _COUNT's in its scope.)
_NEXT_STEP = "(function()\n" + _COUNT + """return function(K, A)
  local head = redis.call('lindex', K[2], 0)
  if not head then return let_go(K[1], K[3], A[3]) end
  redis.call('pexpire', K[1], A[2])
  return {1, head, count(K[4], A[4]), count(K[5], A[5])}
end
end)()"""


@dataclass
class Head:
    """An inbox's head message, with what its turn needs when it was read in the same call."""

    raw: bytes
    #: whether :attr:`conversation` was read with it (otherwise the turn reads it)
    loaded: bool = False
    #: the conversation as stored (None: none yet)
    conversation: Conversation | None = None
    #: the flood counters (the patient's minute, the relay's second) with this message counted, when counted
    counts: tuple[int, int] | None = None


@dataclass
class Outcome:
    """What :func:`handle` did: whether the turn committed, and the inbox's next head (with the lock extended)
    when there is one (None after a commit: the inbox was empty and the commit let the lock go)."""

    committed: bool
    next: Head | None = None


def take(runtime: Runtime, key: str, lock: Lock) -> tuple[Found, Head | None]:
    """Take the conversation's ``lock`` with its inbox's head, the stored conversation and the message counted
    against the flood limits, in one call (an empty inbox leaves the work list at once)."""
    sender, relay = flood.keys(key, time.time())
    answer = lua.run(runtime.redis, _TAKE, keys=[lock.key, inbox.INBOX.key(key), inbox.DUE.key(),
                                                 conversations.CONVERSATION.key(key), sender, relay],
                     args=[lock.token, lock.ttl_ms, key, *flood.ttls()])
    found: Found = ("locked", "head", "done")[int(answer[0])]
    if found != "head":
        return found, None
    _, raw, state, sender_count, relay_count = answer
    conversation = Conversation.model_validate_json(state) if state else None
    return found, Head(raw, loaded=True, conversation=conversation, counts=(int(sender_count), int(relay_count)))


def handle(runtime: Runtime, key: str, head: Head, lock: Lock, *,
           deliver: Callable[[outbox.Taken], object] | None = None) -> Outcome:
    """Handle the head message of conversation ``key``'s inbox; ``lock`` is the conversation's, held.

    The commit also brings the inbox's next head (with the lock extended, and the message counted against the
    flood limits), or lets the lock go when the inbox is empty (:attr:`Outcome.next` None). With ``deliver``, the
    turn's replies are sent by calling it right after the commit, in this job, instead of by a delivery job
    enqueued in the commit: the patient hears back sooner and the queue does less; the commit takes the outbox's
    lock for it (given to ``deliver``, not called when another delivery has the outbox: that one sends these
    replies too, as it lets go of the lock only once the outbox is empty). The outbox is still due for
    the sweeper, so replies of a process that dies in between are sent all the same.

    Returns:
        ``committed`` False when the turn could not commit (the lock was lost: another worker has the
        conversation).

    Raises:
        RetryableError: something transient failed before the commit (the message stays at the head).
        Exception: anything else (the caller sets the message aside as failed).
    """
    raw = head.raw
    message = InboundMessage.model_validate_json(raw)
    conversation = head.conversation if head.loaded else conversations.load(runtime, key)
    conversation = conversation or conversations.new_conversation(message)
    crash_point("state-loaded")
    with pii_scope(message.profile.name, message.text, message.sender_phone, message.sender_id):
        decision = decide(runtime, conversation, message, counts=head.counts)
        crash_point("turn-decided")
        committed = commit(runtime, key, raw, lock, decision, enqueue_delivery=deliver is None)
        if committed is None:
            log.warning("turn not committed: the conversation's lock was lost",
                        extra={"conversation": conversations.short(key)})
            return Outcome(False)
        crash_point("turn-committed")
        report(runtime, key, decision, claimed=committed.claimed)
    # without the outbox's lock, the delivery that holds it sends these entries too (it lets go only once empty)
    if deliver is not None and committed.outbox is not None:
        try:
            deliver(committed.outbox)
        except Exception:  # the turn is committed: its replies wait in the outbox, due for the sweeper
            log.exception("replies not sent at once", extra={"conversation": conversations.short(key)})
    if committed.next is None:
        return Outcome(True)
    # the next turn starts from the conversation as this one saved it (no need to read it back)
    return Outcome(True, next=Head(committed.next[0], loaded=True, conversation=decision.conversation,
                                   counts=committed.next[1]))


def decide(runtime: Runtime, conversation: Conversation, message: InboundMessage, *,
           counts: tuple[int, int] | None = None) -> Decision:
    """What ``message`` changes (the only I/O: flood counters, click look-ups, a CRM look-up, references, and
    how much of the transcript the CRM's thread already has). ``counts``: the flood counters with the message
    counted, when they were read with it (:func:`take`)."""
    config = runtime.config
    if message.raw_type == "opt_out":  # WhatsApp's user_preferences: nothing more is sent, the CRM is told
        # a stop written (or tapped) just before may still have its confirmation waiting: that one is kept
        already = conversation.opted_out
        conversation.opted_out = True
        conversation.status = "closed"
        conversation.updated_at = utcnow()
        return Decision(message, conversation, opt_out=True, events=[OptedOut()],
                        dropped=[] if already else outbox.bot_entries(runtime, conversation.key))
    verdict = flood.judge(runtime, *counts) if counts is not None else flood.check(runtime, message)
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


@dataclass
class Committed:
    """What a committed turn's commit read for what follows it."""

    #: the drop-off the commit claimed (:func:`connector.measures.stage_turn`)
    claimed: object = None
    #: the outbox's lock, when the commit took it for the delivery that follows
    outbox: outbox.Taken | None = None
    #: the inbox's next head and its flood counts (None: the inbox was empty and the lock let go)
    next: tuple[bytes, tuple[int, int]] | None = None


def commit(runtime: Runtime, key: str, raw: bytes, lock: Lock, decision: Decision, *,
           enqueue_delivery: bool = True) -> Committed | None:
    """Apply ``decision`` in one transaction, only while ``raw`` is the inbox's head and ``lock`` is held
    (and, with ``enqueue_delivery``, enqueue the job that sends its replies; without, take the outbox's lock
    for the caller's delivery). The same call brings the inbox's next head, or lets the lock go when there
    is none.

    Returns:
        What the commit read, or None when it was not applied.

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
    stored = outbox.stage(runtime, pipe, key, decision.entries, enqueue=enqueue_delivery)
    threads.stage(runtime, pipe, conversation, decision.thread, lead_staged=bool(decision.leads))
    measured = measures.stage_turn(runtime, tx, key, conversation)
    taking = outbox.stage_take(runtime, tx, key, decision.entries[0], stored[0]) \
        if stored and not enqueue_delivery else None
    sender, relay = flood.keys(key, time.time())
    following = tx.then(_NEXT_STEP, [lock.key, inbox.INBOX.key(key), inbox.DUE.key(), sender, relay],
                        [lock.token, lock.ttl_ms, key, *flood.ttls()])
    if not tx.commit():
        return None
    result = Committed(claimed=tx.answers[measured], outbox=taking.taken(tx) if taking is not None else None)
    answer = tx.answers[following]
    if int(answer[0]) == 1:
        result.next = (answer[1], (int(answer[2]), int(answer[3])))
    return result


def report(runtime: Runtime, key: str, decision: Decision, *, claimed: object = None) -> None:
    """Log and count what a committed turn did (once: a turn that did not commit is not reported); ``claimed``
    is the drop-off its commit claimed."""
    measures.record_turn(runtime, key, decision, claimed)
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
