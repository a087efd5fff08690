"""After the bot: whether a patient's message is for the clinic's agents rather than for the bot (pure).

With the CRM's inbox on, a conversation whose request the bot completed (status ``closed``) or handed over
(``handoff``) belongs to the agents who answer from the CRM: each later message is published into the
CRM's thread and the bot keeps quiet. The bot takes the conversation back only when:

- the patient asks for it: the restart command, or a new start (``/start``, a start payload);
- an agent hands it back (``chat2crm release``, or the thread closed in the CRM), which marks the
  conversation :data:`RELEASED`;
- the patient was silent longer than ``inbox_idle`` (after a completed request or a handoff alike: a
  conversation with an agent can go on for days).

"stop" still opts the patient out, and "talk to a person" while already with the agents is one more
message for them (never a second lead). With the inbox off, none of this applies: the bot engine behaves
as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.models import Conversation, InboundMessage

#: the key in ``Conversation.pending`` that says an agent handed the conversation back to the bot
RELEASED = "released_at"


@dataclass
class ForAgent:
    """The patient's message is for the agents: no bot turn, no reply; the relay publishes it into the CRM."""

    message_id: str


def with_agents(conversation: Conversation) -> bool:
    """Whether the conversation's request was completed or handed over and no agent has handed it back."""
    return conversation.status in ("closed", "handoff") and RELEASED not in conversation.pending


def for_agents(conversation: Conversation, message: InboundMessage, command: str | None, *, idle: timedelta,
               inbox_idle: timedelta) -> bool:
    """Whether ``message`` goes to the agents (the bot stays silent), for a conversation with the inbox on.

    ``command`` is the bot command the message is (``stop``, ``human``, ``restart``), if any; ``idle`` how
    long the patient had been silent before it.
    """
    if conversation.opted_out or not with_agents(conversation):
        return False
    if command in ("stop", "restart") or message.kind == "start":
        return False
    # the patient's silence counts, not the time since the handoff: a conversation an agent is still having a
    # day later must not be taken back by the bot in the middle (the handoff release window is for the inbox off)
    return idle <= inbox_idle


def hand_back(conversation: Conversation, now: datetime) -> bool:
    """Mark a conversation that is with the agents as handed back: the patient's next message starts the
    bot again (welcome back, keeping what it knew). Returns False when it was not with the agents."""
    if not with_agents(conversation):
        return False
    conversation.status = "closed"
    conversation.pending.pop("handoff_at", None)
    conversation.pending[RELEASED] = now.isoformat()
    return True
