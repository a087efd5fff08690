"""Handing a conversation back to the bot: what ``chat2crm release`` and a thread closed in the CRM both do.

After a handoff the bot stays silent until the handoff window passes; with the CRM's inbox on, a
completed request's conversation is the agents' too (:mod:`connector.bot.after`). An agent who has
finished hands it back earlier: the patient's next message starts the bot again (welcome back, keeping
what it knew). Each conversation is changed under its lock, so a message being handled at the same
moment is neither lost nor overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from connector import conversations
from connector.bot.after import RELEASED, hand_back
from connector.transaction import Transaction
from core.errors import ConfigurationError, RetryableError
from core.models import Conversation, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime


class ConversationBusy(RetryableError):
    """The conversation stayed locked (a turn in progress) for longer than the caller would wait."""


def releasable(conversation: Conversation, *, inbox: bool) -> bool:
    """Whether an agent can hand ``conversation`` back: handed over (and not yet released), or, with the
    inbox on, a completed request whose conversation is with the agents."""
    if RELEASED in conversation.pending:
        return False
    return conversation.status == "handoff" or (inbox and conversation.status == "closed")


def release_one(runtime: Runtime, key: str, *, wait_seconds: float = 2.0) -> bool:
    """Hand conversation ``key`` back to the bot. Returns False when there was nothing to hand back (no
    such conversation, or not with an agent).

    Raises:
        ConversationBusy: the conversation stayed locked for ``wait_seconds``.
        redis.RedisError: Redis failed; nothing changed.
    """
    lock = conversations.lock(runtime, key)
    deadline = time.monotonic() + wait_seconds
    while not lock.acquire():
        if time.monotonic() > deadline:
            raise ConversationBusy("the conversation is busy; try again in a moment")
        time.sleep(0.05)
    try:
        conversation = conversations.load(runtime, key)
        if conversation is None or not releasable(conversation, inbox=_inbox_on(runtime)):
            return False
        hand_back(conversation, utcnow())
        tx = Transaction(runtime.redis).require_value(lock.key, lock.token)
        conversations.stage_save(runtime, tx.pipe, conversation)
        return tx.commit()
    finally:
        lock.release()


def release(runtime: Runtime, identities: Iterable[str], *, wait_seconds: float = 10.0) -> int:
    """Hand back every conversation of the person known by ``identities`` (sender ids) that an agent has;
    returns how many were.

    Raises:
        ConversationBusy: a conversation stayed locked for ``wait_seconds``.
    """
    ids = set(identities)
    inbox = _inbox_on(runtime)
    released = 0
    for found in conversations.stored(runtime):
        if found.sender_id in ids and releasable(found, inbox=inbox):
            released += int(release_one(runtime, found.key, wait_seconds=wait_seconds))
    return released


def _inbox_on(runtime: Runtime) -> bool:
    """Whether the CRM's inbox takes conversations after the bot (a CRM that cannot be set up has none:
    handing a handed-over conversation back must work all the same)."""
    try:
        return runtime.inbox is not None
    except ConfigurationError:
        return False
