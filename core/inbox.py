"""The conversation after the bot, as the relay and a CRM's inbox exchange it.

Once the bot has completed a request or handed it over, the conversation goes on between the patient
and an agent who works in the CRM. These are the shapes that cross between the relay and a CRM's inbox
(:class:`adapters.inbox.CRMInbox`), whatever the CRM and the channel:

- :class:`ThreadMessage`: one message of the conversation published into the CRM (a patient's message,
  or the bot's history when the thread opens);
- :class:`AgentReply`: a message an agent wrote in the CRM, for the patient;
- :class:`ThreadClosed`: the agent closed the thread (or released it): the bot may speak again;
- :class:`DeliveryReport`: what became of an agent's reply (sent, delivered, read, failed), written back;
- :class:`FieldsEdited`: fields of a record the relay wrote, changed in the CRM afterwards (by a person, or
  by the relay's own write), which tells whether the bot's record reached the CRM complete.

Nothing here is specific to a CRM or a channel beyond their names.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import Channel

Direction = Literal["incoming", "outgoing"]
DeliveryStatus = Literal["sent", "delivered", "read", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def thread_id(conversation_key: str) -> str:
    """The integration thread id of a conversation: stable, opaque (no phone number in it), and short.

    The CRM keeps it; the relay finds the conversation again from the reply's recipient identity, never by
    parsing this id.
    """
    return "c2c-" + hashlib.sha256(conversation_key.encode()).hexdigest()[:32]


class FileRef(_Model):
    """A file attached to a message: as the CRM holds it (``crm_file_id``), or where it can be fetched
    (``url``), or both."""

    name: str | None = None
    mime_type: str | None = None
    size: int | None = Field(default=None, ge=0)
    crm_file_id: str | None = None
    url: str | None = None
    #: the channel's media id of a patient's file not yet stored in the CRM
    media_id: str | None = None


class ThreadMessage(_Model):
    """One message of a conversation, published into the CRM's inbox.

    ``id`` is the idempotency key (the channel's message id for a patient's message; a stable id per
    transcript line for the bot's history): publishing the same message twice never shows it twice.
    """

    id: str
    thread: str
    conversation: str
    channel: Channel
    direction: Direction
    text: str = ""
    at: datetime
    #: the patient's identity on the channel (``whatsapp:905321112233``, ``telegram:12345``)
    identity: str
    #: the patient's display name, when known
    name: str | None = None
    phone: str | None = None
    attachments: list[FileRef] = Field(default_factory=list)
    #: the CRM contact the relay wrote for this patient (the thread is associated with it)
    contact_id: str | None = None
    reference: str | None = None
    #: a line of the conversation with the bot, published when the thread opens (the lead's note already
    #: carries it as the summary and the transcript link: an inbox without threads may leave it out)
    history: bool = False


class AgentReply(_Model):
    """A message an agent wrote in the CRM, to be sent to the patient over the same channel and number.

    ``crm_message_id`` is the CRM's id of the message: the key that keeps it from being sent twice, and
    the one its delivery status is reported against.
    """

    crm_message_id: str
    thread: str | None = None
    #: the conversation key, when the CRM's event carries the patient's identity (it normally does)
    conversation: str | None = None
    #: the CRM contact the reply was written on, when the event names no conversation (the relay maps the
    #: contacts it published threads for back to their conversations)
    crm_contact_id: str | None = None
    text: str = ""
    attachments: list[FileRef] = Field(default_factory=list)
    agent: str | None = None
    at: datetime | None = None


class ThreadClosed(_Model):
    """The agent closed the thread in the CRM (or handed it back): the bot may speak again."""

    event_id: str
    crm_thread_id: str
    conversation: str | None = None


class FieldsEdited(_Model):
    """Fields of a CRM record changed in the CRM (a webhook's or a change stream's event).

    ``crm_object`` is the object as the mapping names it (``contacts``, ``deals``, ``Lead``…), ``fields`` the
    CRM's field names. ``by_person`` tells a person's edit from a write by an integration (the relay's own
    among them), as the CRM reports the change's source.
    """

    crm_object: str
    crm_id: str
    fields: list[str] = Field(default_factory=list)
    by_person: bool = False
    #: who made the change, as the CRM names them (``userId:123``, a user id): never shown to patients
    source: str | None = None
    at: datetime | None = None
    #: the new value of each changed field the event carries (a stage's id or label), by the CRM's field name
    values: dict[str, Any] = Field(default_factory=dict)
    #: the CRM's stable id of the change (the same on every redelivery, retry or replay of it): what a consumer
    #: that acts once per change de-duplicates on; None when the CRM gives none
    event_id: str | None = None


class DeliveryReport(_Model):
    """What became of an agent's reply, written back to the CRM's message."""

    crm_message_id: str
    status: DeliveryStatus
    #: the channel's error code (Meta's ``131047``…) and a reason a person can read
    code: str | None = None
    reason: str | None = None
    channel_message_ids: list[str] = Field(default_factory=list)


InboxEvent = AgentReply | ThreadClosed | FieldsEdited
