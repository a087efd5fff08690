"""Conversation state and the conversation lock: one turn at a time per patient.

The bot's state for one patient on one channel account (:class:`~core.models.Conversation`)
is one JSON value that lives ``retention.conversation_hours`` after the last message. Its lock
makes the turns of a conversation run one at a time; it expires after ``delivery.job_timeout_seconds``
(rq stops a job by then), so a killed worker's lock frees itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis

from connector.locks import Lock
from core.keys import family
from core.models import Conversation, InboundMessage

if TYPE_CHECKING:
    from connector.runtime import Runtime

CONVERSATION = family("conv", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
LOCK = family("lock", "{conversation}", ttl="delivery.job_timeout_seconds", holds_pii=True, owner=__name__)


def ttl(runtime: Runtime) -> int:
    """Seconds a conversation's state lives after its last change."""
    return runtime.config.retention.conversation_hours * 3600


def load(runtime: Runtime, key: str) -> Conversation | None:
    """The stored conversation, or None when there is none (or it expired)."""
    raw = runtime.redis.get(CONVERSATION.key(key))
    return Conversation.model_validate_json(raw) if raw else None


def new_conversation(message: InboundMessage) -> Conversation:
    """A fresh conversation for the message's sender, in the flow of the business number written to (a
    campaign the message came from still picks its own)."""
    return Conversation(
        key=message.conversation_key, channel=message.channel, account=message.account,
        sender_id=message.sender_id, phone=message.sender_phone, user_id=message.sender_user_id,
        profile_name=message.profile.name, flow=message.number_flow,
    )


def stage_save(runtime: Runtime, pipe: redis.client.Pipeline, conversation: Conversation) -> None:
    """Save ``conversation`` as part of a transaction (its TTL starts again)."""
    pipe.set(CONVERSATION.key(conversation.key), conversation.model_dump_json(), ex=ttl(runtime))


def lock(runtime: Runtime, key: str) -> Lock:
    """The lock of conversation ``key`` (not yet taken)."""
    return Lock(runtime.redis, LOCK.key(key), runtime.config.delivery.job_timeout_seconds)


def stored(runtime: Runtime) -> Iterator[Conversation]:
    """Every stored conversation (a scan: for commands, never for the message path)."""
    for raw_key in runtime.redis.scan_iter(match=CONVERSATION.pattern, count=500):
        raw = runtime.redis.get(raw_key)
        if raw:
            yield Conversation.model_validate_json(raw)


def identities(conversation: Conversation) -> set[str]:
    """The ids the patient of ``conversation`` is known by: the sender id (the first id the relay saw them
    with, which keys the conversation and the CRM contact), the phone number's digits and the business-scoped
    user id WhatsApp may give for the same person (:mod:`connector.channels.identities` links them)."""
    found = {conversation.sender_id, (conversation.phone or "").lstrip("+"), conversation.user_id or ""}
    return {value for value in found if value}


def short(key: str) -> str:
    """A conversation key safe for logs: channel and account, the sender masked."""
    channel, _, rest = key.partition(":")
    account, _, _sender = rest.partition(":")
    return f"{channel}:{account}:…"
