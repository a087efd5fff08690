"""Reading the chat2crm message object's change events: Avro payloads with their schema, the bitmap fields
(``changedFields``) against Salesforce's documented example, and each change turned into what the relay does
(the package's contract)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from adapters.salesforce.changes import (
    Change,
    ReadRecord,
    Schemas,
    actions,
    bitmap_fields,
    reply_from_record,
)
from adapters.salesforce.messages import publish_subrequests, report_body
from core.inbox import AgentReply, DeliveryReport, FileRef, ThreadClosed, ThreadMessage

HEADER = {"type": "record", "name": "ChangeEventHeader", "namespace": "com.sforce.eventbus", "fields": [
    {"name": "entityName", "type": "string"},
    {"name": "recordIds", "type": {"type": "array", "items": "string"}},
    {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": [
        "CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE",
        "GAP_OVERFLOW", "SNAPSHOT"]}},
    {"name": "changeOrigin", "type": "string"}, {"name": "transactionKey", "type": "string"},
    {"name": "sequenceNumber", "type": "int"}, {"name": "commitTimestamp", "type": "long"},
    {"name": "commitNumber", "type": "long"}, {"name": "commitUser", "type": "string"},
    {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
    {"name": "diffFields", "type": {"type": "array", "items": "string"}},
    {"name": "changedFields", "type": {"type": "array", "items": "string"}}]}
MESSAGE_FIELDS = ["Name", "Direction__c", "Type__c", "Channel__c", "Body__c", "Status__c", "Error__c", "External_Id__c",
                  "Conversation_Key__c", "Agent_Name__c", "Lead__c", "Contact__c", "Case__c", "Sent_At__c", "OwnerId",
                  "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"]
SCHEMA = {"type": "record", "name": "Chat2CRM_Message__ChangeEvent", "namespace": "com.sforce.eventbus", "fields": [
    {"name": "ChangeEventHeader", "type": HEADER},
    *({"name": n, "type": ["null", "long" if n.endswith(("Date", "At__c")) else "string"], "default": None}
      for n in MESSAGE_FIELDS)]}
RECORD = "a0M000000000011EAA"
KEY = "c2c-" + "0123456789abcdef" * 2


def bitmap(*names: str) -> list[str]:
    positions = [[f["name"] for f in SCHEMA["fields"]].index(n) for n in names]
    return [f"0x{sum(1 << p for p in positions):X}"]


def event(change_type: str, fields: dict[str, Any], *, changed: list[str] | None = None,
          records: list[str] | None = None) -> bytes:
    header = {"entityName": "Chat2CRM_Message__c", "recordIds": records or [RECORD], "changeType": change_type,
              "changeOrigin": "", "transactionKey": "7f2e-…", "sequenceNumber": 1, "commitTimestamp": 1764752400000,
              "commitNumber": 11_000_000_001, "commitUser": "005000000000002AAA", "nulledFields": [],
              "diffFields": [], "changedFields": changed or []}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), {"ChangeEventHeader": header, **fields})
    return out.getvalue()


def read(payload: bytes) -> Change:
    schemas = Schemas()
    schemas.add("sch-1", json.dumps(SCHEMA))
    return schemas.read("sch-1", payload)


# -- bitmaps --------------------------------------------------------------------------------------------------
def test_the_documented_bitmap_example_decodes_to_its_fields() -> None:
    """``['0x650004E0','4-0x10','7-0x06']``: bits 5, 6, 7, 10, 24, 26, 29, 30 of the top level; the fifth part
    of the compound field at position 4; the second and third parts of the one at position 7."""
    name = {"type": "record", "name": "Name", "fields": [{"name": n, "type": ["null", "string"]} for n in
                                                          ("Salutation", "FirstName", "LastName", "MiddleName",
                                                           "Suffix")]}
    address = {"type": "record", "name": "Address", "fields": [{"name": n, "type": ["null", "string"]} for n in
                                                                ("Street", "City", "State", "PostalCode")]}
    fields: list[dict[str, Any]] = [{"name": f"F{n}", "type": ["null", "string"]} for n in range(32)]
    fields[4] = {"name": "Name", "type": ["null", name]}
    fields[7] = {"name": "BillingAddress", "type": ["null", address]}
    schema = {"type": "record", "name": "AccountChangeEvent", "fields": fields}
    assert bitmap_fields(schema, ["0x650004E0"]) == ["F5", "F6", "BillingAddress", "F10", "F24", "F26", "F29", "F30"]
    assert bitmap_fields(schema, ["0x650004E0", "4-0x10", "7-0x06"])[-3:] == [
        "Name.Suffix", "BillingAddress.City", "BillingAddress.State"]
    assert bitmap_fields(schema, []) == []
    for bad in (["650004E0"], ["0xZZ"], ["0x100000000"], ["40-0x01"], ["x-0x01"]):
        with pytest.raises(ValueError):
            bitmap_fields(schema, bad)


def test_an_update_says_which_fields_changed_and_carries_only_them() -> None:
    change = read(event("UPDATE", {"Status__c": "New", "LastModifiedDate": 1764752400000},
                       changed=bitmap("Status__c", "LastModifiedDate")))
    assert change.changed == ["Status__c", "LastModifiedDate"]
    assert change.fields == {"Status__c": "New", "LastModifiedDate": 1764752400000}  # unchanged fields are null
    assert change.commit_user == "005000000000002AAA" and change.record_ids == [RECORD]


def test_a_payload_that_is_not_the_schemas_is_refused() -> None:
    with pytest.raises(ValueError):
        read(b"\x01\x02")
    with pytest.raises(ValueError, match="not an Avro record schema"):
        Schemas().add("x", json.dumps({"type": "string"}))


# -- what the relay does with a change ----------------------------------------------------------------------
REPLY = {"Direction__c": "Outbound", "Type__c": "Message", "Status__c": "New", "Body__c": "Merhaba Ayşe Hanım",
         "Channel__c": "whatsapp", "Conversation_Key__c": KEY, "Lead__c": "00Q000000000005EAA",
         "Agent_Name__c": "Deniz Koordinatör", "CreatedDate": 1764752400000}


def test_a_reply_created_new_is_an_agent_reply() -> None:
    (reply,) = actions(read(event("CREATE", REPLY)))
    assert reply == AgentReply(crm_message_id=RECORD, thread=KEY, crm_contact_id="00Q000000000005EAA",
                               text="Merhaba Ayşe Hanım", agent="Deniz Koordinatör",
                               at=datetime(2025, 12, 3, 9, 0, tzinfo=UTC))
    # no agent name: the committing user
    (unnamed,) = actions(read(event("CREATE", {**REPLY, "Agent_Name__c": None})))
    assert isinstance(unnamed, AgentReply) and unnamed.agent == "005000000000002AAA"


def test_merged_records_are_one_reply_each() -> None:
    replies = actions(read(event("CREATE", REPLY, records=[RECORD, "a0M000000000012EAA"])))
    assert [r.crm_message_id for r in replies if isinstance(r, AgentReply)] == [RECORD, "a0M000000000012EAA"]


def test_the_relays_own_writes_and_drafts_are_not_for_it() -> None:
    assert actions(read(event("CREATE", {**REPLY, "Direction__c": "Inbound", "Status__c": "Received"}))) == []
    assert actions(read(event("CREATE", {**REPLY, "Direction__c": "Outbound", "Status__c": "Received"}))) == []
    assert actions(read(event("CREATE", {**REPLY, "Status__c": "Draft"}))) == []
    sent = read(event("UPDATE", {"Status__c": "Sent", "Sent_At__c": 1764752400000},
                      changed=bitmap("Status__c", "Sent_At__c", "LastModifiedDate")))
    assert actions(sent) == []
    other = read(event("UPDATE", {"Body__c": "New"}, changed=bitmap("Body__c")))
    assert actions(other) == []
    assert actions(read(event("DELETE", {}))) == []


def test_a_draft_made_new_and_a_gap_are_read_from_the_record() -> None:
    made_new = read(event("UPDATE", {"Status__c": "New"}, changed=bitmap("Status__c", "LastModifiedDate")))
    assert actions(made_new) == [ReadRecord(RECORD, "005000000000002AAA")]
    assert actions(read(event("GAP_CREATE", {}))) == [ReadRecord(RECORD, "005000000000002AAA")]


def test_a_close_message_closes_the_thread() -> None:
    assert actions(read(event("CREATE", {**REPLY, "Type__c": "Close", "Status__c": None}))) == [
        ThreadClosed(event_id=RECORD, crm_thread_id=KEY)]
    assert actions(read(event("CREATE", {**REPLY, "Type__c": "Close", "Conversation_Key__c": None}))) == []


def test_a_reply_read_with_its_files() -> None:
    rows = [{"ContentDocumentId": "069000000000007AAA", "ContentDocument": {
        "Title": "fiyat-listesi", "FileExtension": "pdf", "ContentSize": 27,
        "LatestPublishedVersionId": "068000000000006AAA"}},
        {"ContentDocument": {"Title": "photo.JPG", "FileExtension": "jpg", "LatestPublishedVersionId": "068B"}},
        {"ContentDocument": None}]
    record = {**REPLY, "CreatedDate": "2025-12-03T09:00:00.000+0000"}
    reply = reply_from_record(RECORD, record, rows, "005000000000002AAA")
    assert reply is not None and reply.at == datetime(2025, 12, 3, 9, 0, tzinfo=UTC)
    assert reply.attachments == [
        FileRef(crm_file_id="068000000000006AAA", name="fiyat-listesi.pdf", mime_type="application/pdf", size=27),
        FileRef(crm_file_id="068B", name="photo.JPG", mime_type="image/jpeg")]
    assert reply_from_record(RECORD, {**record, "Status__c": "Sent"}, rows, "005") is None


# -- what the relay writes ----------------------------------------------------------------------------------
def test_a_published_message_and_its_files_are_one_composite_request() -> None:
    message = ThreadMessage(id="wamid.HBg/1", thread=KEY, conversation="whatsapp:1:905321112233", channel="whatsapp",
                            direction="incoming", text="Profilden", at=datetime.now(UTC), identity="whatsapp:1",
                            contact_id="003000000000004AAA", reference="#1042",
                            attachments=[FileRef(crm_file_id="068X"), FileRef(media_id="not-stored")])
    subs = publish_subrequests(message, lambda rest: f"/services/data/v62.0/{rest}", "Chat2CRM_Reference__c")
    assert [s["referenceId"] for s in subs] == ["message", "version0", "link0"]
    assert subs[0]["url"].endswith("/sobjects/Chat2CRM_Message__c/External_Id__c/wamid.HBg%2F1")
    assert subs[0]["body"]["Case__r"] == {"Chat2CRM_Reference__c": "1042"}
    assert "905321112233" not in json.dumps(subs[0]["body"])
    assert subs[2]["body"]["ContentDocumentId"] == "@{version0.ContentDocumentId}"


def test_reports_write_status_reason_and_time() -> None:
    at = datetime(2025, 12, 3, 9, 0, 1, 500000, tzinfo=UTC)
    assert report_body(DeliveryReport(crm_message_id=RECORD, status="sent"), at=at) == {
        "Status__c": "Sent", "Error__c": None, "Sent_At__c": "2025-12-03T09:00:01.500Z"}
    assert report_body(DeliveryReport(crm_message_id=RECORD, status="delivered")) == {"Status__c": "Delivered",
                                                                                        "Error__c": None}
    failed = report_body(DeliveryReport(crm_message_id=RECORD, status="failed", code="131047", reason="x" * 300))
    assert failed["Status__c"] == "Failed" and len(failed["Error__c"]) == 255
