"""HubSpot's conversations inbox as the relay's CRM inbox, through the app's custom channel.

Each conversation is one HubSpot thread: every message is published with ``integrationThreadId`` = the
conversation's thread id (:func:`core.inbox.thread_id`, opaque: no phone number in it) and
``integrationIdempotencyId`` = the message's id, so HubSpot itself makes a republished message a no-op (it
answers with the message it already has). The patient is identified to HubSpot by a
``CHANNEL_SPECIFIC_OPAQUE_ID`` whose value is the relay's conversation key: an agent's reply names it as its
recipient, so the relay knows which conversation (channel, number, patient) it answers without a look-up.

Calls per message: 1 (publish); once per thread, up to 4 more to assign it to the contact's owner where the
inbox did not (:mod:`adapters.hubspot.routing`; 1 when the inbox routed it). Per agent reply: 1 PATCH of its
status once sent (and one more when the patient reads it), plus 1 signed-URL read per attachment. Per patient
file: 1 upload.

HubSpot's message statuses are SENT, FAILED and READ: a reply delivered to the patient's phone has no status
of its own there (it stays SENT); a failure carries the reason, which the agent sees under the message.
"""

from __future__ import annotations

import logging
import mimetypes
from datetime import UTC, datetime
from typing import Any

from adapters.hubspot import files
from adapters.hubspot.oauth import HubSpotOAuth
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.routing import ThreadRouter
from adapters.hubspot.signature import verify
from adapters.hubspot.tokens import TokenStore
from adapters.inbox import CRMInbox, InboxLimits, Published, WebhookRequest
from core import strictjson
from core.errors import AuthError, ConfigurationError, FatalError, WebhookRejectedError
from core.inbox import AgentReply, DeliveryReport, FieldsEdited, FileRef, InboxEvent, ThreadClosed, ThreadMessage

log = logging.getLogger("chat2crm.hubspot.inbox")

OPAQUE_ID = "CHANNEL_SPECIFIC_OPAQUE_ID"
#: the custom channel event an agent's message in HubSpot's inbox arrives as
OUTGOING_MESSAGE = "OUTGOING_CHANNEL_MESSAGE_CREATED"
#: the name the clinic's side of a thread is shown under for the bot's lines
BOT_NAME = "chat2crm bot"
#: HubSpot's statuses for our report's; ``delivered`` has none (the message stays SENT)
STATUS_TYPES = {"sent": "SENT", "read": "READ", "failed": "FAILED"}
#: the longest failure reason written under an agent's message
MAX_REASON = 500


#: the properties that hold a record's pipeline stage (deals, tickets): their new value is carried on
STAGE_PROPERTIES = frozenset({"dealstage", "hs_pipeline_stage"})


def clinic_identifier(inbox_id: str) -> str:
    """The delivery identifier of the clinic's channel account connected to ``inbox_id``."""
    return f"chat2crm-{inbox_id}"


class HubSpotInbox(CRMInbox):
    """HubSpot's conversations inbox, through the app's custom channel.

    Args:
        rest: the session its calls go through (the app's OAuth token).
        oauth: the app's OAuth (token expiry for ``doctor``).
        store: the installation in Redis (channel and channel account ids).
        credentials: the adapter's credentials (client secret, channel overrides).
        options: the adapter's options (file folder, routing to the contact's owner).
        limits: the files the channel was registered to take.
    """

    name = "hubspot"

    def __init__(self, rest: HubSpotRest, oauth: HubSpotOAuth, store: TokenStore, *, credentials: HubSpotCredentials,
                 options: HubSpotOptions, limits: InboxLimits) -> None:
        self.rest = rest
        self.oauth = oauth
        self.store = store
        self.credentials = credentials
        self.options = options
        self.limits = limits
        self.router = ThreadRouter(rest, store, hint=oauth.reinstall_hint)

    # -- where messages go ---------------------------------------------------------------------
    def channel_id(self) -> str | None:
        """The registered channel: HUBSPOT_CHANNEL_ID, else what ``crm setup`` kept."""
        return self.credentials.channel_id or self.store.app_value("channel_id")

    def channel_account_id(self) -> str | None:
        """The channel account: HUBSPOT_CHANNEL_ACCOUNT_ID, else what ``crm setup`` kept for the portal."""
        if self.credentials.channel_account_id:
            return self.credentials.channel_account_id
        portal = self.store.portal()
        return self.store.install_value(portal, "channel_account_id") if portal else None

    def _route(self) -> tuple[str, str, str]:
        """Channel id, channel account id and the account's delivery identifier.

        Raises:
            FatalError: the channel or its account is not set up.
        """
        channel, account = self.channel_id(), self.channel_account_id()
        if not channel or not account:
            raise FatalError("hubspot: the custom channel is not set up; run `chat2crm crm setup` (or set "
                             "HUBSPOT_CHANNEL_ID and HUBSPOT_CHANNEL_ACCOUNT_ID)", setting="HUBSPOT_CHANNEL_ID")
        portal = self.store.portal() or ""
        identifier = self.store.install_value(portal, "account_identifier") if portal else None
        if identifier is None:
            # an account named by the settings: read its identifier once, and keep it
            found = self.rest.send("channel_account_read", "GET",
                                   f"/conversations/v3/custom-channels/{channel}/channel-accounts/{account}")
            identifier = str((found.get("deliveryIdentifier") or {}).get("value") or clinic_identifier(account))
            if portal:
                self.store.set_install_value(portal, "account_identifier", identifier)
        return channel, account, identifier

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, message: ThreadMessage) -> Published:
        channel, account, clinic = self._route()
        patient = {"deliveryIdentifier": {"type": OPAQUE_ID, "value": message.conversation},
                   **({"name": message.name} if message.name else {})}
        clinic_side = {"deliveryIdentifier": {"type": OPAQUE_ID, "value": clinic}, "name": BOT_NAME}
        incoming = message.direction == "incoming"
        body: dict[str, Any] = {
            "messageDirection": "INCOMING" if incoming else "OUTGOING",
            "integrationThreadId": message.thread,
            "integrationIdempotencyId": message.id,
            "channelAccountId": account,
            "text": message.text,
            "senders": [patient if incoming else clinic_side],
            "recipients": [clinic_side if incoming else patient],
            "timestamp": _iso(message.at),
            # a file not stored in HubSpot (too large, refused) is not attached: the relay says so in the text
            "attachments": [_attachment(f) for f in message.attachments if f.crm_file_id],
        }
        if message.contact_id:
            if not message.contact_id.isdigit():
                raise FatalError(f"hubspot: {message.contact_id!r} is not a contact id", field="contact_id")
            body["associateWithContactId"] = int(message.contact_id)
        answer = self.rest.send("thread_publish", "POST", f"/conversations/v3/custom-channels/{channel}/messages",
                                json_body=body)
        thread = answer.get("conversationsThreadId")
        if thread and self.options.route_to_owner:
            # the thread's first message from the relay: agents see it as theirs only once it is assigned
            self.router.opened(str(thread), message.contact_id)
        return Published(crm_message_id=str(answer["id"]), crm_thread_id=str(thread) if thread else None)

    def report(self, report: DeliveryReport) -> None:
        status = STATUS_TYPES.get(report.status)
        if status is None:
            return  # delivered: HubSpot has no such status; the message stays SENT
        channel = self.channel_id()
        if not channel:
            raise FatalError("hubspot: the custom channel is not set up; run `chat2crm crm setup`",
                             setting="HUBSPOT_CHANNEL_ID")
        body: dict[str, Any] = {"statusType": status}
        if status == "FAILED":
            reason = report.reason or "not sent"
            body["errorMessage"] = (f"{reason} ({report.code})" if report.code else reason)[:MAX_REASON]
        self.rest.send("message_status", "PATCH",
                       f"/conversations/v3/custom-channels/{channel}/messages/{report.crm_message_id}", json_body=body)

    # -- files ---------------------------------------------------------------------------------
    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        return files.upload(self.rest, "oauth", folder=self.options.file_folder, name=name, mime_type=mime_type,
                            content=content, limits=self.limits)

    def file_url(self, file: FileRef) -> str:
        return files.signed_url(self.rest, "oauth", file)

    # -- HubSpot's webhooks --------------------------------------------------------------------
    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        secret = self.credentials.client_secret.get_secret_value() if self.credentials.client_secret else ""
        verify(secret, method=request.method, url=request.url, headers=request.headers, body=request.body,
               now=request.received_at)
        payload = _json(request.body)
        if isinstance(payload, dict):
            if not isinstance(payload.get("type"), str):
                raise WebhookRejectedError(400, "hubspot: an event with no type")
            return [reply] if (reply := agent_reply(payload)) is not None else []
        if isinstance(payload, list):
            return [found for event in payload if (found := thread_closed(event) or fields_edited(event)) is not None]
        raise WebhookRejectedError(400, "hubspot: the body is neither an event nor a list of events")

    # -- a record's stage, as the relay's mapping names it -------------------------------------
    def stage_names(self, crm_object: str, stage_id: str) -> list[str]:
        """The id and label of the stage ``stage_id`` of ``crm_object`` (a ``propertyChange`` of ``dealstage``
        or ``hs_pipeline_stage`` carries the id; a mapping may name the stage by label). The object's pipelines
        are read once and again for an id not seen; empty when HubSpot has no such stage."""
        known: dict[str, dict[str, str]] = self.__dict__.setdefault("_stage_labels", {})
        if stage_id not in known.get(crm_object, {}):
            found = self.rest.send("pipelines_read", "GET", f"/crm/v3/pipelines/{crm_object}")
            known[crm_object] = {str(s["id"]): str(s.get("label") or "") for p in found.get("results") or []
                                 for s in p.get("stages") or []}
        label = known[crm_object].get(stage_id)
        return [stage_id, label] if label is not None else []

    # -- diagnosis -----------------------------------------------------------------------------
    def check(self) -> list[str]:
        lines: list[str] = []
        portal = self.store.portal()
        try:
            tokens = self.store.load() if portal else None
        except (ConfigurationError, AuthError) as exc:
            return [f"inbox: MISSING the app's tokens cannot be read: {exc.message.splitlines()[-1].strip()}"]
        if tokens is None:
            return [f"inbox: MISSING the HubSpot app is not installed: {self.oauth.reinstall_hint()}"]
        left = tokens.expires_at - self.oauth.clock()
        lines.append(f"inbox: app installed in portal {portal}; access token "
                     + (f"good for {int(left // 60)} more minutes" if left > 0 else "expired (refreshed on next use)"))
        channel = self.channel_id()
        lines.append(f"inbox: custom channel {channel} registered" if channel
                     else "inbox: MISSING custom channel: run `chat2crm crm setup`")
        account = self.channel_account_id()
        lines.append(f"inbox: channel account {account} connected" if account
                     else "inbox: MISSING channel account: run `chat2crm crm setup`")
        return lines


# -- reading HubSpot's events (no I/O) ----------------------------------------------------------------
def agent_reply(event: dict[str, Any]) -> AgentReply | None:
    """An agent's message out of a custom channel event (None: another event, or not an agent's message).

    Raises:
        WebhookRejectedError: 400, the event does not have the documented shape.
    """
    if event.get("type") != OUTGOING_MESSAGE:
        return None
    message = event.get("message")
    if not isinstance(message, dict) or not message.get("id"):
        raise WebhookRejectedError(400, f"hubspot: {OUTGOING_MESSAGE} without a message")
    client = message.get("client")
    if isinstance(client, dict) and client.get("clientType") == "INTEGRATION":
        return None  # a message an integration published (ours among them): not an agent's, nothing to send
    recipients = [r for r in message.get("recipients") or [] if isinstance(r, dict)]
    conversation = next((_identifier(r) for r in recipients if _identifier(r)), None)
    threads = event.get("channelIntegrationThreadIds") or []
    senders = [s for s in message.get("senders") or [] if isinstance(s, dict)]
    agent = next((str(s.get("name") or s.get("actorId")) for s in senders if s.get("name") or s.get("actorId")),
                 None) or (str(message["createdBy"]) if message.get("createdBy") else None)
    attachments = [FileRef(crm_file_id=str(a["fileId"]) if a.get("fileId") else None, url=a.get("url"),
                           name=a.get("name"), mime_type=_guess_type(a.get("name")))
                   for a in message.get("attachments") or []
                   if isinstance(a, dict) and a.get("type") == "FILE" and (a.get("fileId") or a.get("url"))]
    return AgentReply(crm_message_id=str(message["id"]), thread=str(threads[0]) if threads else None,
                      conversation=conversation, text=str(message.get("text") or ""), attachments=attachments,
                      agent=agent, at=event_time(message.get("createdAt")))


def thread_closed(event: Any) -> ThreadClosed | None:
    """A thread closed, out of one event of the app's webhook batch (None: any other event).

    Raises:
        WebhookRejectedError: 400, the event is not an object.
    """
    if not isinstance(event, dict):
        raise WebhookRejectedError(400, "hubspot: a webhook batch holds something that is not an event")
    if (event.get("subscriptionType") != "conversation.propertyChange" or event.get("propertyName") != "status"
            or event.get("propertyValue") != "CLOSED" or event.get("objectId") is None):
        return None
    return ThreadClosed(event_id=str(event.get("eventId") or f"{event['objectId']}-{event.get('occurredAt')}"),
                        crm_thread_id=str(event["objectId"]))


#: a CRM object's property change event → the object as the mapping names it
EDITED_OBJECTS = {"contact.propertyChange": "contacts", "deal.propertyChange": "deals",
                  "ticket.propertyChange": "tickets"}
#: the change sources of a person's own hand (HubSpot's property history source types); an app's write is
#: ``INTEGRATION`` (or ``API``) with the app's id as its ``sourceId``, a workflow's ``AUTOMATION_PLATFORM``
PERSON_SOURCES = frozenset({"CRM_UI", "MOBILE_IOS", "MOBILE_ANDROID", "CRM_UI_BULK_ACTION"})
#: properties the relay's inbox itself reads, which are no detail of the lead
_INBOX_PROPERTIES = frozenset({"chat2crm_reply"})


def fields_edited(event: Any) -> FieldsEdited | None:
    """A property of a contact, deal or ticket changed, out of one event of the app's webhook batch (None: any
    other event). A person's edit is one whose ``changeSource`` is a person's (:data:`PERSON_SOURCES`) or whose
    ``sourceId`` names a user (``userId:123``); anything else (the relay's own writes, imports, workflows,
    other integrations) is not.

    Raises:
        WebhookRejectedError: 400, the event is not an object.
    """
    if not isinstance(event, dict):
        raise WebhookRejectedError(400, "hubspot: a webhook batch holds something that is not an event")
    crm_object = EDITED_OBJECTS.get(str(event.get("subscriptionType")))
    name = event.get("propertyName")
    if crm_object is None or not isinstance(name, str) or not name or name in _INBOX_PROPERTIES \
            or event.get("objectId") is None:
        return None
    source, source_id = str(event.get("changeSource") or ""), str(event.get("sourceId") or "")
    by_person = source in PERSON_SOURCES or (source_id.startswith("userId:") and source not in ("INTEGRATION", "API"))
    return FieldsEdited(crm_object=crm_object, crm_id=str(event["objectId"]), fields=[name], by_person=by_person,
                        source=source_id or source or None, at=event_time(event.get("occurredAt")),
                        event_id=str(event["eventId"]) if event.get("eventId") is not None else None,
                        # only a stage's value travels: any other property's may be what a patient wrote
                        values={name: event["propertyValue"]}
                        if name in STAGE_PROPERTIES and event.get("propertyValue") is not None else {})


def _json(body: bytes) -> Any:
    try:
        return strictjson.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejectedError(400, "hubspot: the body is not JSON") from None


def _identifier(party: dict[str, Any]) -> str | None:
    """The opaque identifier a sender or recipient carries (an object, or a bare string in some events)."""
    found = party.get("deliveryIdentifier")
    if isinstance(found, dict):
        return str(found["value"]) if found.get("type") == OPAQUE_ID and found.get("value") else None
    return str(found) if isinstance(found, str) and found else None


def _attachment(file: FileRef) -> dict[str, Any]:
    kind = (file.mime_type or "").split("/")[0]
    usage = {"image": "IMAGE", "audio": "AUDIO"}.get(kind, "OTHER")
    return {"type": "FILE", "fileId": file.crm_file_id, "fileUsageType": usage}


def _guess_type(name: Any) -> str | None:
    return mimetypes.guess_type(str(name))[0] if name else None


def _iso(at: datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def event_time(value: Any) -> datetime | None:
    """A time in one of HubSpot's events: milliseconds since the epoch, or ISO 8601 (None: neither)."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
