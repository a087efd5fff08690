"""Taking the CRM inbox's events, however they arrive: a CRM's webhook (:mod:`connector.crm_web`) or the
stream ``chat2crm listen`` reads (:mod:`connector.listen`) hand them to :func:`take`.

An agent's reply is queued for the patient in one transaction (:func:`connector.agent.accept`: a reply
taken before, redelivered or replayed, changes nothing); a closed thread hands the conversation back to
the bot (:mod:`connector.handback`). An event for no conversation the relay knows is counted and logged,
never retried (its thread expired, or was never the relay's); the listener also tells the agent, by
reporting such a reply failed on the CRM's message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from connector import agent, completeness, conversions, handback, threads
from connector.conversations import short
from core.inbox import AgentReply, DeliveryReport, FieldsEdited, InboxEvent, ThreadClosed

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.crm_events")

#: what the agent reads on a reply the relay cannot send: no conversation for it
UNKNOWN_REASON = ("the relay knows no conversation for this thread (it ended long ago, or was not the relay's): "
                  "the reply was not sent")


def conversation_for(runtime: Runtime, event: AgentReply | ThreadClosed) -> str | None:
    """The conversation an inbox event is about: the one it names, else the one the relay published the
    CRM's thread (or contact) for; None when there is none."""
    if event.conversation and agent.parse_key(event.conversation):
        return event.conversation
    if isinstance(event, AgentReply):
        return threads.conversation_of(runtime, thread=event.thread, contact=event.crm_contact_id)
    return threads.conversation_of(runtime, thread=event.crm_thread_id)


def take(runtime: Runtime, crm: str, events: list[InboxEvent], *, report_unknown: bool = False) -> dict[str, int]:
    """Take ``events`` in order; returns how many were ``accepted``, ``duplicates``, ``closed`` and ``unknown``
    (fields edited in the CRM are handed to :func:`connector.completeness.fields_edited` and not counted here).

    Args:
        runtime: the process's runtime.
        crm: the CRM's name (logs).
        events: the inbox events, in the CRM's order.
        report_unknown: report a reply for no known conversation failed on its CRM message (the agent sees why).

    Raises:
        handback.ConversationBusy: a closed thread's conversation stayed locked; the events before it are
            taken (taking them again changes nothing), the rest are not.
        redis.RedisError: Redis failed; what was taken stays taken.
    """
    counts = {"accepted": 0, "duplicates": 0, "closed": 0, "unknown": 0}
    for event in events:
        if isinstance(event, FieldsEdited):  # a record edited in the CRM: measured, nothing to send or release
            completeness.fields_edited(runtime, event)
            conversions.fields_edited(runtime, event)  # a stage that sends a conversion event to Meta
            continue
        key = conversation_for(runtime, event)
        kind = "reply" if isinstance(event, AgentReply) else "closed"
        if key is None:
            counts["unknown"] += 1
            log.warning("CRM event for no known conversation", extra={"crm": crm, "event": kind})
            if report_unknown and isinstance(event, AgentReply):
                _report_unknown(runtime, event)
        elif isinstance(event, AgentReply):
            fresh = agent.accept(runtime, event, key)
            counts["accepted" if fresh else "duplicates"] += 1
            log.info("agent reply accepted" if fresh else "agent reply redelivered",
                     extra={"conversation": short(key), "entry": agent.entry_id(event.crm_message_id)})
        else:
            released = handback.release_one(runtime, key)
            counts["closed"] += int(released)
            log.info("thread closed in the CRM", extra={"conversation": short(key), "handed_back": released})
    return counts


def _report_unknown(runtime: Runtime, reply: AgentReply) -> None:
    """Queue the ``failed`` report of a reply the relay cannot send (once: a replay finds it reported)."""
    if runtime.redis.exists(agent.SEEN.key(reply.crm_message_id)):
        return
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()
    pipe.set(agent.SEEN.key(reply.crm_message_id), "unknown", ex=runtime.config.retention.dedup_days * 86400)
    agent.stage_report(runtime, pipe, DeliveryReport(crm_message_id=reply.crm_message_id, status="failed",
                                                     reason=UNKNOWN_REASON))
    pipe.execute()
