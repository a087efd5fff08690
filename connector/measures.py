"""The clinic's figures: requests by flow, language and campaign, hand-offs and their reasons, the question
patients stop at, and how long agents take to answer.

Counted where they happen, each through a one-line hook: a committed turn (:func:`record_turn`, from
:func:`connector.turn.report`), an agent's reply sent (:func:`agent_replied`, from :mod:`connector.agent`) and
the sweep (:func:`sweep`, from :mod:`connector.sweeper`). Every label is bounded by the configuration: a flow,
language, campaign or question the configuration does not name is counted as ``other`` (no campaign:
``none``), so neither a patient nor a changed file can grow ``/metrics`` without bound. Leads, hand-offs and
drop-offs also carry the conversation's rollout level and split group (``rollout``, ``group``:
:func:`rollout_labels`), so the levels and the split's groups can be compared (docs/rollout.md).

A drop-off is a conversation left at a question for longer than ``bot.resume_window_minutes`` (the bot starts
again after that). Each turn that leaves a conversation at a question lists it in :data:`IDLE` with that
deadline and keeps the question in :data:`STEP`; the elected sweeper counts the conversations past their
deadline, and a turn counts one whose patient came back before the sweep did. A claim in one script makes
each drop-off counted once.

Nothing here may hold up a patient: every hook logs and carries on when Redis or the configuration fails.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from connector import rollout
from connector.bot.engine import LANGUAGE_STEP, HandedOver, LeadReady
from connector.config import ROLLOUT_LEVELS
from core import lua, metrics
from core.keys import family
from core.models import Conversation

if TYPE_CHECKING:
    from connector.runtime import Runtime
    from connector.transaction import Transaction
    from connector.turn import Decision

log = logging.getLogger("chat2crm.measures")

#: conversations left at a question, by when they count as dropped off (the end of the resume window)
IDLE = family("metrics-idle", "", ttl=None, holds_pii=True, owner=__name__,
              bounded_by="a member per conversation waiting at a question, removed when it moves on or is counted")
#: the flow and question a conversation listed in :data:`IDLE` waits at
STEP = family("metrics-step", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
#: a request whose first agent reply was measured (each request's first reply is measured once)
FIRST_REPLY = family("metrics-first-reply", "{reference}", ttl="retention.transcript_days", holds_pii=False,
                     owner=__name__)

#: the most drop-offs one sweep counts (the rest wait for the next sweep, 5 s later)
SWEEP_BATCH = 500
#: a label value outside the configuration, and a conversation with no campaign
OTHER, NONE = "other", "none"

# Take a due conversation off the list and return the question it waited at; nothing when it is not due
# (it moved on, or another process counted it already).
_CLAIM = """
local score = redis.call('zscore', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('zrem', KEYS[1], ARGV[1])
local step = redis.call('get', KEYS[2])
redis.call('del', KEYS[2])
return step or ''
"""

# A committed turn: claim the drop-off as _CLAIM does (returned: the waiting record, '' when none was kept,
# nil when nothing was due), then record where the conversation now waits (ARGV[3]: its record, '' when it
# waits for no answer). KEYS: the waiting list, the conversation's record. ARGV: key, now, record, TTL, deadline.
_CLAIM_AND_MARK = """
local claimed = false
local score = redis.call('zscore', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then claimed = redis.call('get', KEYS[2]) or '' end
if ARGV[3] ~= '' then
  redis.call('set', KEYS[2], ARGV[3], 'EX', ARGV[4])
  redis.call('zadd', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('zrem', KEYS[1], ARGV[1])
  redis.call('del', KEYS[2])
end
return claimed
"""


def flow_label(runtime: Runtime, flow: str | None) -> str:
    """``flow`` when the configuration has it, else ``other``."""
    return flow if flow and flow in runtime.flows else OTHER


def language_label(runtime: Runtime, language: str | None) -> str:
    """``language`` when the bot speaks it (``languages:``), ``none`` when not known yet, else ``other``."""
    if not language:
        return NONE
    return language if language in runtime.config.languages else OTHER


def campaign_label(runtime: Runtime, campaign: str | None) -> str:
    """The campaign's slug when the registry has it, ``none`` without a campaign, else ``other``."""
    if not campaign:
        return NONE
    return campaign if runtime.campaigns.get(campaign) is not None else OTHER


def step_label(runtime: Runtime, flow: str | None, step: str | None) -> str:
    """The question (a step's field) when the flow has it, ``language`` for the language question, else ``other``."""
    if step == LANGUAGE_STEP:
        return "language"
    found = runtime.flows.get(flow or "")
    return step if step and found is not None and found.step(step) is not None else OTHER


def reason_label(runtime: Runtime, flow: str | None, reason: str) -> str:
    """A hand-off reason: the engine's own (``patient_request``, ``too_many_attempts``…), ``option:<id>`` for
    an option of the flow that hands over, else ``other``."""
    kind, _, option = reason.partition(":")
    if not option:
        return reason if kind.replace("_", "").isalpha() and len(kind) <= 40 else OTHER
    found = runtime.flows.get(flow or "")
    if kind == "option" and found is not None and any(o.id == option and o.handoff for s in found.steps
                                                      for o in s.options):
        return reason
    return OTHER


def rollout_labels(runtime: Runtime, level: str | None, group: str | None) -> dict[str, str]:
    """The ``rollout`` and ``group`` labels (docs/rollout.md): a level of the scheme (``none`` for a lead made
    before levels were recorded), and a split group the configuration names (``none`` outside a split, ``other``
    for a group the configuration no longer names)."""
    named = group if group in runtime.config.rollout.groups() else OTHER
    return {"rollout": level if level in ROLLOUT_LEVELS else NONE, "group": named if group else NONE}


#: the claim-and-mark of :data:`_CLAIM_AND_MARK` as a step of the turn's commit (:meth:`Transaction.then`)
_CLAIM_AND_MARK_STEP = "function(KEYS, ARGV)" + _CLAIM_AND_MARK + "end"


def stage_turn(runtime: Runtime, tx: Transaction, key: str, conversation: Conversation) -> int:
    """Where the conversation now waits (and its drop-off claimed, when it had gone quiet past its deadline
    and is back before the sweep counted it), recorded in the turn's commit itself. Returns the index of the
    step's answer, for :func:`record_turn`."""
    kept = rollout.current(conversation) or rollout.Assignment(NONE)  # as decided when the conversation started
    if conversation.status == "bot" and conversation.step and not conversation.opted_out:
        deadline = conversation.updated_at.timestamp() + runtime.config.bot.resume_window_minutes * 60
        waiting = json.dumps({"flow": conversation.flow, "step": conversation.step, "rollout": kept.level,
                              "group": kept.group})
    else:
        deadline, waiting = 0.0, ""
    return tx.then(_CLAIM_AND_MARK_STEP, [IDLE.key(), STEP.key(key)],
                   [key, time.time(), waiting, runtime.config.retention.conversation_hours * 3600, deadline])


def record_turn(runtime: Runtime, key: str, decision: Decision, claimed: object = None) -> None:
    """Count what a committed turn did: requests finished, hand-offs, and the drop-off its commit claimed
    (``claimed``, the answer of :func:`stage_turn`'s step)."""
    try:
        _record_turn(runtime, key, decision, claimed)
    except Exception as exc:  # a figure is never worth a failed turn
        log.warning("figures not recorded", extra={"error": type(exc).__name__})


def _record_turn(runtime: Runtime, key: str, decision: Decision, claimed: object) -> None:
    client, conversation = runtime.redis, decision.conversation
    kept = rollout.current(conversation) or rollout.Assignment(NONE)  # as decided when the conversation started
    level, group = rollout_labels(runtime, kept.level, kept.group).values()
    if isinstance(claimed, bytes | str):
        _count_dropoff(runtime, claimed)
    for event in decision.events:
        if isinstance(event, LeadReady):
            lead = event.lead
            lead_level, lead_group = rollout_labels(runtime, lead.rollout, lead.rollout_group).values()
            metrics.incr(client, "leads", flow=flow_label(runtime, lead.flow),
                         language=language_label(runtime, lead.language),
                         campaign=campaign_label(runtime, lead.last_touch.campaign),
                         outcome="completed" if event.reason == "completed" else "handed_over",
                         rollout=lead_level, group=lead_group)
        elif isinstance(event, HandedOver):
            metrics.incr(client, "handoffs", flow=flow_label(runtime, conversation.flow),
                         reason=reason_label(runtime, conversation.flow, event.reason), rollout=level, group=group)


def _claim(runtime: Runtime, key: str, now: float) -> bool:
    """Count the drop-off of ``key`` if it is due and not counted yet. Returns whether it was counted."""
    waiting = lua.run(runtime.redis, _CLAIM, [IDLE.key(), STEP.key(key)], [key, now])
    return _count_dropoff(runtime, waiting)


def _count_dropoff(runtime: Runtime, waiting: bytes | str | None) -> bool:
    """Count a claimed drop-off (its waiting record; '' for one listed before the record was kept)."""
    if not waiting:
        return False
    where = json.loads(waiting)
    # a conversation listed before the rollout labels has none: its drop-off is of no known level
    level, group = rollout_labels(runtime, where.get("rollout"), where.get("group")).values()
    metrics.incr(runtime.redis, "dropoffs", flow=flow_label(runtime, where.get("flow")),
                 step=step_label(runtime, where.get("flow"), where.get("step")), rollout=level, group=group)
    return True


def sweep(runtime: Runtime, now: float | None = None) -> int:
    """Count the conversations left at a question past the resume window (the elected sweeper calls this).
    Returns how many were counted."""
    moment = time.time() if now is None else now
    try:
        due = runtime.redis.zrangebyscore(IDLE.key(), "-inf", moment, start=0, num=SWEEP_BATCH)
        return sum(_claim(runtime, member.decode() if isinstance(member, bytes) else str(member), moment)
                   for member in due)
    except Exception as exc:
        log.warning("drop-offs not counted", extra={"error": type(exc).__name__})
        return 0


def agent_replied(runtime: Runtime, conversation: Conversation | None) -> None:
    """Measure the time from the request's completion or hand-off to its first agent reply sent (once per
    request: a later reply on the same request is not measured)."""
    try:
        if conversation is None or not conversation.reference:
            return
        if conversation.status == "handoff" and "handoff_at" in conversation.pending:
            since = _timestamp(conversation.pending["handoff_at"])
        elif conversation.status == "closed" and conversation.completed_at is not None:
            since = conversation.completed_at.timestamp()
        else:
            return
        ttl = runtime.config.retention.transcript_days * 86400
        if since is not None and runtime.redis.set(FIRST_REPLY.key(conversation.reference), 1, nx=True, ex=ttl):
            metrics.observe(runtime.redis, "agent_reply_seconds", max(time.time() - since, 0.0))
    except Exception as exc:
        log.warning("agent reply time not recorded", extra={"error": type(exc).__name__})


def _timestamp(value: object) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
