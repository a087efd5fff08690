"""The inbox for HubSpot accounts without custom channels: the conversation on the contact's timeline.

Custom channels need Sales Hub or Service Hub Professional (or higher). On lower tiers the conversation
after the bot lives on the contact's record instead:

- each message is a note on the contact (and on the lead's record, when the relay wrote one), its text
  HTML-escaped, written once: its id is kept in the adapter's id cache under a marker made from the
  message id; a note whose create went unanswered is looked for among the contact's notes (an associations
  read, strongly consistent; never a search) before it is written again, as the adapter does for a lead's note;
- an agent answers by writing the reply in the contact's ``chat2crm_reply`` property (a multi-line text
  property ``crm setup`` creates); HubSpot sends ``contact.propertyChange`` for it to the app's webhook (a
  private app can subscribe, in its settings; the request is v3-signed with that app's client secret,
  HUBSPOT_CLIENT_SECRET). The event names the contact, not the conversation: the reply carries
  ``crm_contact_id`` and the relay maps it back to the conversation it published there;
- what became of a reply is a note on the contact (sent, or not sent and why), and the property is cleared
  so the next reply starts blank.

Exactly once: a reply's id is ``{contactId}:{occurredAt}`` (HubSpot sends the same event again with the same
values when it redelivers, and two edits never share a millisecond on one contact), so the relay's de-duplication
on ``crm_message_id`` sends each edit once. A patient's message becomes one note per message id (the id cache and
the associations read above). A delivery note is keyed by reply and status the same way.

The bot's part of the conversation is not written again: the lead's note carries its summary and the
transcript link.

Calls per message: 1 (the note; 2 more only after a lost answer). Per reply: 2 (the note, the property cleared)
once sent; delivered and read add nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

from adapters.base import Ref
from adapters.hubspot import files
from adapters.hubspot.inbox import event_time, fields_edited
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.signature import verify
from adapters.inbox import CRMInbox, InboxLimits, Published, WebhookRequest
from core import strictjson
from core.errors import FatalError, WebhookRejectedError
from core.inbox import AgentReply, DeliveryReport, FileRef, InboxEvent, ThreadMessage

if TYPE_CHECKING:
    from adapters.hubspot.records import HubSpotRecords

#: the contact property an agent writes a reply in
REPLY_PROPERTY = "chat2crm_reply"
#: the records a lead may have been written as (the id cache knows them by lead reference)
RECORD_OBJECTS = ("deals", "tickets", "leads")
_CHANNELS = {"whatsapp": "WhatsApp", "telegram": "Telegram"}


def marker(kind: str, key: str) -> str:
    """The idempotency marker of one note: opaque (a message id can name a patient's number)."""
    return f"chat2crm:{kind}:{hashlib.sha256(key.encode()).hexdigest()[:24]}"


class HubSpotTimelineInbox(CRMInbox):
    """The conversation as notes on the contact; replies through a contact property.

    Args:
        adapter: the HubSpot adapter (its client, id cache and note writing).
        rest: the session for the files API (the private app's token).
        credentials: the adapter's credentials (the client secret that signs webhooks).
        options: the adapter's options (file folder).
        limits: the files the inbox takes.
    """

    name = "hubspot"
    local_history = True  # history lines go nowhere: the lead's note has them

    def __init__(self, adapter: HubSpotRecords, rest: HubSpotRest, *, credentials: HubSpotCredentials,
                 options: HubSpotOptions, limits: InboxLimits) -> None:
        self.adapter = adapter
        self.rest = rest
        self.credentials = credentials
        self.options = options
        self.limits = limits

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, message: ThreadMessage) -> Published:
        if not message.contact_id:
            raise FatalError("hubspot: a timeline message needs the patient's contact (the lead is not written yet)",
                             field="contact_id")
        if message.history:
            # the bot's part of the conversation is on the lead's note already (summary, transcript link):
            # a note per line would bury it
            return Published(crm_message_id="lead-note", crm_thread_id=None)
        contact = Ref(object="contacts", id=message.contact_id)
        targets = [t for t in [self._record(message.reference)] if t is not None] + [contact]
        body = _message_html(message)
        properties = {"hs_note_body": body, "hs_timestamp": str(int(message.at.timestamp() * 1000))}
        attached = [f.crm_file_id for f in message.attachments if f.crm_file_id]
        if attached:
            properties["hs_attachment_ids"] = ";".join(attached)
        note = self.adapter._engagement("notes", marker("msg", message.id), properties, targets)
        return Published(crm_message_id=note.id, crm_thread_id=None)

    def _record(self, reference: str | None) -> Ref | None:
        """The lead's record, when the id cache still knows it (no call is made to find it)."""
        if not reference:
            return None
        for obj in RECORD_OBJECTS:
            found = self.adapter.cache.get("record", obj, reference)
            if found:
                return Ref(object=obj, id=found)
        return None

    def report(self, report: DeliveryReport) -> None:
        if report.status not in ("sent", "failed"):
            return  # delivered and read: a note each would bury the conversation
        contact_id, _, written = report.crm_message_id.partition(":")
        if not contact_id.isdigit():
            raise FatalError(f"hubspot: {report.crm_message_id!r} is not a timeline reply's id", field="crm_message_id")
        when = event_time(int(written)) if written.isdigit() else None
        at = f" (written {when:%Y-%m-%d %H:%M} UTC)" if when else ""
        if report.status == "sent":
            text = f"<p>✅ The reply{at} was sent to the patient.</p>"
        else:
            reason = html.escape(report.reason or "not sent") + (f" ({html.escape(report.code)})" if report.code else "")
            text = f"<p>❌ The reply{at} was NOT sent to the patient: {reason}</p>"
        contact = Ref(object="contacts", id=contact_id)
        self.adapter._engagement("notes", marker(f"report-{report.status}", report.crm_message_id),
                                 {"hs_note_body": text, "hs_timestamp": str(int(time.time() * 1000))}, [contact])
        self._clear(contact_id)

    def _clear(self, contact_id: str) -> None:
        from hubspot.crm.objects import SimplePublicObjectInput

        self.adapter._call("contact_update", self.adapter.client.crm.objects.basic_api.update, "contacts", contact_id,
                           SimplePublicObjectInput(properties={REPLY_PROPERTY: ""}))

    # -- files ---------------------------------------------------------------------------------
    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        return files.upload(self.rest, "private", folder=self.options.file_folder, name=name, mime_type=mime_type,
                            content=content, limits=self.limits)

    def file_url(self, file: FileRef) -> str:
        return files.signed_url(self.rest, "private", file)

    # -- HubSpot's webhooks --------------------------------------------------------------------
    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        secret = self.credentials.client_secret.get_secret_value() if self.credentials.client_secret else ""
        verify(secret, method=request.method, url=request.url, headers=request.headers, body=request.body,
               now=request.received_at)
        try:
            payload = strictjson.loads(request.body)
        except (ValueError, RecursionError):
            raise WebhookRejectedError(400, "hubspot: the body is not JSON") from None
        if isinstance(payload, dict) and isinstance(payload.get("type"), str):
            return []  # a custom channel's event: not this inbox's
        if not isinstance(payload, list):
            raise WebhookRejectedError(400, "hubspot: the body is not a list of events")
        return [found for event in payload if (found := reply_of(event) or fields_edited(event)) is not None]

    # -- set-up and diagnosis ------------------------------------------------------------------
    def setup(self, *, apply: bool) -> list[str]:
        """Create the reply property on contacts (idempotent)."""
        from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

        from adapters.hubspot.session import ConflictError

        have = self.adapter.describe(["contacts"]).objects["contacts"].fields
        if REPLY_PROPERTY in have:
            return [f"ok contacts.{REPLY_PROPERTY} (agents' replies)"]
        if not apply:
            return [f"would create contacts.{REPLY_PROPERTY} (multi-line text: agents write replies in it)"]
        group = self.options.property_group
        with contextlib.suppress(ConflictError):  # made by the mapping's properties already, or by an admin
            self.adapter._call("groups", self.adapter.client.crm.properties.groups_api.create, "contacts",
                               PropertyGroupCreate(name=group, label="chat2crm"))
        with contextlib.suppress(ConflictError):
            self.adapter._call("properties", self.adapter.client.crm.properties.core_api.create, "contacts",
                               PropertyCreate(name=REPLY_PROPERTY, label="Reply to patient (chat2crm)", type="string",
                                              field_type="textarea", group_name=group,
                                              description="Write a reply here: it is sent to the patient over "
                                                          "WhatsApp or Telegram, then cleared."))
        return [f"created contacts.{REPLY_PROPERTY} (agents' replies)",
                f"to do in HubSpot: subscribe the private app's webhooks to contact.propertyChange of {REPLY_PROPERTY}"]

    def check(self) -> list[str]:
        # without the secret the timeline still logs the patients' messages: only the replies wait for it
        replies = ("agents' replies on: HubSpot's webhooks are checked with HUBSPOT_CLIENT_SECRET"
                   if self.credentials.client_secret else
                   "agents' replies off until HUBSPOT_CLIENT_SECRET is set (the private app's client secret, which "
                   "signs its webhooks); patients' messages are logged as notes meanwhile")
        return ["inbox: timeline (notes on the contact; replies in the contact's chat2crm_reply property)",
                f"inbox: {replies}"]


def reply_of(event: Any) -> AgentReply | None:
    """An agent's reply out of one event of the batch (None: any other event, or the property cleared).

    Raises:
        WebhookRejectedError: 400, the event is not an object.
    """
    if not isinstance(event, dict):
        raise WebhookRejectedError(400, "hubspot: a webhook batch holds something that is not an event")
    if event.get("subscriptionType") != "contact.propertyChange" or event.get("propertyName") != REPLY_PROPERTY:
        return None
    text = str(event.get("propertyValue") or "").strip()
    contact, occurred = event.get("objectId"), event.get("occurredAt")
    if not text or contact is None or occurred is None:
        return None  # cleared (by us after sending), or not an edit
    return AgentReply(crm_message_id=f"{contact}:{occurred}", crm_contact_id=str(contact), text=text,
                      agent=str(event["sourceId"]) if event.get("sourceId") else None, at=event_time(occurred))


def _message_html(message: ThreadMessage) -> str:
    """A message as a note: who wrote it, on which channel, when, and its text (escaped: it is HTML)."""
    channel = _CHANNELS.get(message.channel, str(message.channel))
    who = html.escape(message.name or "Patient") if message.direction == "incoming" else "Assistant (bot)"
    arrow = "→ clinic" if message.direction == "incoming" else "→ patient"
    at = message.at if message.at.tzinfo else message.at.replace(tzinfo=UTC)
    lines = [f"<p><strong>{who}</strong> {arrow} · {channel} · {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC</p>"]
    if message.text:
        lines.append("<p>" + html.escape(message.text).replace("\n", "<br>") + "</p>")
    for file in message.attachments:
        if not file.crm_file_id:
            lines.append(f"<p>[file not stored: {html.escape(file.name or file.mime_type or 'attachment')}]</p>")
    return "".join(lines) + f"\n<!-- {marker('msg', message.id)} -->"
