"""The chat2crm package's message object as the relay writes and reads it: its names (fixed by the package's
contract, ``crm/salesforce``), and the REST subrequests of a published message and of a delivery report.

A message the relay publishes (a patient's, or a line of the bot's history) is upserted on
``External_Id__c`` = the message's id, with ``Status__c`` = ``Received``, the conversation's opaque thread
id in ``Conversation_Key__c`` and the lookups to the patient's Lead or Contact (and the lead's Case when
the mapping writes Cases); its files, stored before as ContentVersions, are linked to it in the same
composite request. An agent's reply is a record the package's component inserts (``Outbound``,
``New``); the relay writes its fate back: ``Status__c``, ``Error__c``, ``Sent_At__c``. Nothing here calls
Salesforce.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from adapters.salesforce.soql import _quote, _select
from core.inbox import DeliveryReport, ThreadMessage

OBJECT = "Chat2CRM_Message__c"
#: the object's Change Data Capture channel (selected by the package in the standard ChangeEvents channel)
TOPIC = "/data/Chat2CRM_Message__ChangeEvent"
EXTERNAL_ID = "External_Id__c"
#: every field the relay writes or reads, as the package defines them
FIELDS = ("Direction__c", "Type__c", "Channel__c", "Body__c", "Status__c", "Error__c", "External_Id__c",
          "Conversation_Key__c", "Agent_Name__c", "Lead__c", "Contact__c", "Case__c", "Sent_At__c")
#: the permission sets the package deploys: the agents', and the integration user's
AGENT_SET = "Chat2CRM_Agent"
INTEGRATION_SET = "Chat2CRM_Integration"
#: the command that deploys the package (from the repository's root)
DEPLOY = "sf project deploy start --source-dir crm/salesforce/force-app"
#: Salesforce's statuses for the relay's delivery reports
STATUSES = {"sent": "Sent", "delivered": "Delivered", "read": "Read", "failed": "Failed"}
#: the longest text Body__c holds (a Long Text Area of 32,768) and Error__c (255)
MAX_BODY = 32768
MAX_ERROR = 255
#: the fields a reply's record is read with when its change event did not carry them
REPLY_FIELDS = ("Direction__c", "Type__c", "Status__c", "Body__c", "Channel__c", "Conversation_Key__c",
                "Agent_Name__c", "Lead__c", "Contact__c", "CreatedDate")


def lookups(contact_id: str | None, reference: str | None, case_field: str | None) -> dict[str, Any]:
    """The lookups a published message carries: the patient's Lead (``00Q…``) or Contact (``003…``) as the
    lead's CRM write recorded it, and the lead's Case by its reference field (an External ID) when the
    mapping writes Cases."""
    out: dict[str, Any] = {}
    if contact_id and contact_id.startswith("00Q"):
        out["Lead__c"] = contact_id
    elif contact_id and contact_id.startswith("003"):
        out["Contact__c"] = contact_id
        if case_field and reference:
            out["Case__r"] = {case_field: reference.lstrip("#")}
    return out


def message_body(message: ThreadMessage, case_field: str | None) -> dict[str, Any]:
    """The fields of a published message (its External ID is in the upsert's URL, not here)."""
    return {"Direction__c": "Inbound" if message.direction == "incoming" else "Outbound", "Type__c": "Message",
            "Channel__c": message.channel, "Body__c": message.text[:MAX_BODY], "Status__c": "Received",
            "Conversation_Key__c": message.thread,
            **lookups(message.contact_id, message.reference, case_field)}


def publish_subrequests(message: ThreadMessage, path: Callable[[str], str],
                        case_field: str | None) -> list[dict[str, Any]]:
    """One composite request's subrequests: the message upserted on its External ID, then each stored file
    linked to it (the version's document read, then linked: a link that exists answers ``DUPLICATE_VALUE``,
    which a republish takes as done)."""
    subs: list[dict[str, Any]] = [{
        "method": "PATCH", "referenceId": "message", "body": message_body(message, case_field),
        "url": path(f"sobjects/{OBJECT}/{EXTERNAL_ID}/{quote(message.id, safe='')}")}]
    files = [f for f in message.attachments if f.crm_file_id]
    for n, file in enumerate(files[:12]):  # 25 subrequests at most: 1 + 2 per file
        subs.append({"method": "GET", "referenceId": f"version{n}",
                     "url": path(f"sobjects/ContentVersion/{file.crm_file_id}?fields=ContentDocumentId")})
        subs.append({"method": "POST", "referenceId": f"link{n}", "url": path("sobjects/ContentDocumentLink"),
                     "body": {"ContentDocumentId": f"@{{version{n}.ContentDocumentId}}",
                              "LinkedEntityId": "@{message.id}", "ShareType": "V", "Visibility": "AllUsers"}})
    return subs


def report_body(report: DeliveryReport, *, at: datetime | None = None) -> dict[str, Any]:
    """The reply's fields a delivery report writes: its status, the failure's reason (with the channel's
    code) or none, and when the channel took it (on ``sent``)."""
    body: dict[str, Any] = {"Status__c": STATUSES[report.status]}
    if report.status == "failed":
        reason = report.reason or "not sent"
        body["Error__c"] = (f"{reason} ({report.code})" if report.code else reason)[:MAX_ERROR]
    else:
        body["Error__c"] = None
    if report.status == "sent":
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        body["Sent_At__c"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return body


def reply_subrequests(record_ids: list[str], path: Callable[[str], str]) -> list[dict[str, Any]]:
    """The reads that complete replies whose change events carried only what changed: each record's
    fields, and the files linked to it (at most 5 records per composite request: a query each)."""
    subs = []
    for n, record_id in enumerate(record_ids):
        subs.append({"method": "GET", "referenceId": f"record{n}",
                     "url": path(f"sobjects/{OBJECT}/{record_id}?fields={','.join(REPLY_FIELDS)}")})
        files = _select(["ContentDocumentId", "ContentDocument.Title", "ContentDocument.FileExtension",
                         "ContentDocument.ContentSize", "ContentDocument.LatestPublishedVersionId"],
                        "ContentDocumentLink", f"LinkedEntityId = {_quote(record_id)}")
        subs.append({"method": "GET", "referenceId": f"files{n}", "url": path("query/?q=" + quote(files))})
    return subs
