"""The staged rollout of the bot's authority: what the bot may do in one conversation, and the turn of a
conversation whose bot is ``off``.

A clinic lets the bot do more step by step (``rollout:`` in chat2crm.yaml, docs/rollout.md):

- ``off``: every conversation goes to an agent at its first message (hand-off reason ``rollout_off``); the
  bot says nothing, and the CRM still gets the contact, a note with the transcript and a task;
- ``collect``: the bot asks its questions; the CRM gets the contact, a note and a task, no record;
- ``create``: it also writes the record, in the first status, with no priority and no owner hint;
- ``full``: it also sets priority and status and hands over by the owner hints (the behaviour of a
  deployment without a ``rollout:`` section).

The level is decided once, when a conversation starts (:func:`settle`): the campaign it starts from, else
its channel, else the split (a stable hash of the conversation key puts a share of conversations in a
group for good), else the default. It is kept with the conversation (in ``Conversation.known``, which
outlives a restart of the flow), so a changed configuration never moves a running conversation, and
every lead carries it (``Lead.rollout``, ``Lead.rollout_group``) into the CRM and the metrics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connector.bot import kinds
from connector.bot.after import ForAgent, for_agents
from connector.bot.engine import FlowStarted, HandedOver, LeadReady, Turn
from connector.bot.lead import build_lead, describe
from connector.config import ROLLOUT_LEVELS, RolloutSettings
from core.models import Conversation, InboundMessage, Lead, TranscriptEntry

if TYPE_CHECKING:
    from connector.bot.engine import EngineContext
    from connector.bot.flows import Flow

#: the keys of ``Conversation.known`` that keep the conversation's level and split group (no question of a
#: flow is named with a leading underscore, so the bot never takes them for an answer)
LEVEL_KEY, GROUP_KEY = "_rollout", "_rollout_group"
#: the hand-off reason of a conversation whose bot is ``off``
OFF_REASON = "rollout_off"
#: the hand-off reason a ``collect`` request's task gives when the bot completed it (an agent creates the record)
COLLECT_REASON = "rollout_collect"
#: the level of a deployment without a ``rollout:`` section
FULL = "full"


@dataclass(frozen=True)
class Assignment:
    """The level in force for a conversation, and the split group it fell in (None: the split did not decide)."""

    level: str
    group: str | None = None


def bucket(key: str) -> float:
    """Where conversation ``key`` falls in [0, 1): a stable hash (the same on every process and every
    version), so a conversation is in the same split group for good."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(settings: RolloutSettings, *, key: str, channel: str, campaign: str | None) -> Assignment:
    """The level of a conversation that starts now: its campaign's, else its channel's, else the split's (the
    share below ``split.share``, by :func:`bucket`), else the default (the split's other group)."""
    if campaign and campaign in settings.campaigns:
        return Assignment(settings.campaigns[campaign])
    if channel in settings.channels:
        return Assignment(settings.channels[channel])
    split = settings.split
    if split is not None:
        if bucket(key) < split.share:
            return Assignment(split.level, split.group)
        return Assignment(settings.default, split.others)
    return Assignment(settings.default)


def current(conversation: Conversation) -> Assignment | None:
    """The assignment kept with ``conversation`` (None when it has none yet)."""
    level = conversation.known.get(LEVEL_KEY)
    if level not in ROLLOUT_LEVELS:
        return None
    group = conversation.known.get(GROUP_KEY)
    return Assignment(str(level), str(group) if group else None)


def settle(settings: RolloutSettings, conversation: Conversation) -> Assignment:
    """The level of ``conversation``: the one kept with it, or, for a conversation that starts now, the one
    :func:`assign` gives (from the campaign attribution found for its first message), kept with it."""
    kept = current(conversation)
    if kept is not None:
        return kept
    touch = conversation.last_touch or conversation.first_touch
    found = assign(settings, key=conversation.key, channel=conversation.channel,
                   campaign=touch.campaign if touch is not None else None)
    conversation.known[LEVEL_KEY] = found.level
    if found.group:
        conversation.known[GROUP_KEY] = found.group
    return found


def stamp(lead: Lead, assignment: Assignment) -> None:
    """Record on ``lead`` what the bot was allowed to do when it was made. A ``collect`` request the bot
    completed is handed to an agent all the same (they create the record): its task says so
    (:data:`COLLECT_REASON`)."""
    lead.rollout = assignment.level
    lead.rollout_group = assignment.group
    if assignment.level == "collect" and not lead.handoff_reason:
        lead.handoff_reason = COLLECT_REASON


def engine_decides(message: InboundMessage, flow: Flow) -> bool:
    """Whether a message of an ``off`` conversation still goes to the bot engine: a stop (the patient hears it
    was taken, and is opted out as at any level), WhatsApp's system notices, edits and reactions (none of
    them is a request, and the engine answers none of them)."""
    return (_command(message, flow) == "stop" or message.raw_type in kinds.SYSTEM_NOTICES or message.edited
            or kinds.quiet(message))


def _command(message: InboundMessage, flow: Flow) -> str | None:
    """The bot command ``message`` is, read as the engine reads it (a text, or a template's button)."""
    if message.kind == "text" and message.text:
        return flow.commands.intents().find(message.text)
    if message.kind == "choice" and message.raw_type == "button":
        return flow.commands.intents().find(message.choice_title or message.text, message.choice_id)
    return None


def off_turn(conversation: Conversation, message: InboundMessage, *, flow: Flow, ctx: EngineContext) -> Turn:
    """A turn of a conversation whose bot is ``off``: the message is recorded, and the conversation goes to an
    agent (a lead with hand-off reason ``rollout_off``, the transcript so far) unless it is with them already;
    the bot says nothing. Pure, like the engine."""
    conv = conversation.deep_copy()
    turn = Turn(conv)
    now = ctx.now
    idle = now - conv.updated_at if conv.transcript else now - now
    conv.transcript.append(TranscriptEntry(direction="in", at=now, text=describe(message), kind=message.kind))
    conv.last_inbound_at = conv.updated_at = now
    conv.media.extend(m for m in message.media if m not in conv.media)
    if message.sender_phone and not conv.phone:
        conv.phone = message.sender_phone
    if message.profile.name and not conv.profile_name:
        conv.profile_name = message.profile.name
    if conv.opted_out:
        if not (message.kind == "start" or _command(message, flow) == "restart"):
            return turn  # the patient stopped: nothing is sent, nobody is asked to call
        conv.opted_out = False
    if ctx.inbox and for_agents(conv, message, None, idle=idle, inbox_idle=ctx.inbox_idle):
        turn.events.append(ForAgent(message.message_id))
        return turn
    if not ctx.inbox and conv.status == "handoff" and now - _handed_at(conv, now) < ctx.handoff_release:
        return turn  # an agent has it (the engine keeps quiet the same way)
    conv.reference = ctx.new_reference()
    conv.status, conv.handoff_reason, conv.step = "handoff", OFF_REASON, None
    conv.answers, conv.attempts, conv.pending = {}, {}, {"handoff_at": now.isoformat()}
    conv.started_at = now
    conv.lead_count += 1
    lead = build_lead(conv, flow, now=now, clinic_name=ctx.clinic_name, transcript_url=ctx.transcript_url(conv))
    turn.events += [FlowStarted(flow.name), HandedOver(OFF_REASON), LeadReady(lead, "handoff")]
    return turn


def _handed_at(conversation: Conversation, now: datetime) -> datetime:
    return datetime.fromisoformat(conversation.pending.get("handoff_at", now.isoformat()))
