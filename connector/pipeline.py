"""The names of the former ``connector.pipeline``, kept for jobs queued before an upgrade and for older
imports. New code imports the modules that own each noun (``docs/architecture.md`` has the map)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from connector import conversations, inbox, leads
from connector.conversations import load as load_conversation
from connector.conversations import new_conversation
from connector.conversations import ttl as conversation_ttl
from connector.inbox import enqueue_inbound, enqueue_opt_out
from connector.inbox import messages as inbox_messages
from connector.jobs import process_conversation, replay_message, sync_lead, sync_opt_out
from connector.leads import lead_key
from connector.leads import load as load_lead
from connector.queues import drop_abandoned_jobs, release_due_retries
from connector.sweeper import sweep

if TYPE_CHECKING:
    from connector.runtime import Runtime
    from core.models import Lead

#: the work list of conversations with messages waiting (a sorted set: conversation → due time)
INBOXES = inbox.DUE.key()
#: the leads not yet in the CRM (a sorted set: reference → due time)
LEADS_PENDING = leads.PENDING.key()


def inbox_key(key: str) -> str:
    """The Redis key of conversation ``key``'s inbox."""
    return inbox.INBOX.key(key)


def conversation_redis_key(key: str) -> str:
    """The Redis key of conversation ``key``'s state."""
    return conversations.CONVERSATION.key(key)


def _lead_effect(runtime: Runtime, lead: Lead) -> Callable[[redis.client.Pipeline], None]:
    """Store a lead, mark it pending and enqueue its CRM write on a transaction (``bench/_common.py``)."""
    return lambda pipe: leads.stage(runtime, pipe, lead)


__all__ = [
    "INBOXES", "LEADS_PENDING", "conversation_redis_key", "conversation_ttl", "drop_abandoned_jobs",
    "enqueue_inbound", "enqueue_opt_out", "inbox_key", "inbox_messages", "lead_key", "load_conversation",
    "load_lead", "new_conversation", "process_conversation", "release_due_retries", "replay_message", "sweep",
    "sync_lead", "sync_opt_out",
]
