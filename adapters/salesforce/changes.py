"""Change Data Capture events of the chat2crm message object, read: Avro payloads decoded with the channel's
schema, the ``changedFields`` bitmaps turned back into field names, and each change turned into what the
relay does with it (the package's contract, ``crm/salesforce``). Pure: no I/O.

The Pub/Sub API delivers a change event as raw Avro binary; its schema comes from ``GetSchema`` by the
event's schema id. In the decoded event, ``ChangeEventHeader.changedFields`` (and ``nulledFields``,
``diffFields``) are bitmaps, not names: a list whose first element (``0x…``) is a hexadecimal number
whose bit *n* is set when the field at position *n* of the schema's top-level fields changed, and whose
further elements (``<p>-0x…``) do the same for the fields of the compound field at position *p*. An update
carries the fields it changed; every other field is null.

What the relay acts on:

- a CREATE of an ``Outbound`` ``Message`` with ``Status__c`` = ``New``: an agent's reply without files,
  complete in the event (:class:`~core.inbox.AgentReply`, its id the record's);
- an UPDATE whose changed fields include ``Status__c`` with the new value ``New`` (a reply whose files were
  attached while it was a ``Draft``), and a gap event (Salesforce could not send the change itself): the
  event does not hold the reply, so the record and its files are read (:class:`ReadRecord`);
- a CREATE of a ``Close`` message: the agent closed the conversation (:class:`~core.inbox.ThreadClosed`);
- anything else (the relay's own writes: ``Inbound`` messages, statuses it reports) is not for it.
"""

from __future__ import annotations

import io
import json
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.inbox import AgentReply, FileRef, ThreadClosed

#: the change types whose event carries no fields: the record is read instead
GAPS = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_UNDELETE"})


@dataclass(frozen=True)
class Change:
    """One change event of a record (or of several records changed alike), decoded."""

    entity: str
    record_ids: list[str]
    change_type: str
    #: the user who made the change (a user id)
    commit_user: str
    #: the record's fields the event carries (nulls left out)
    fields: dict[str, Any]
    #: the fields an update changed, and those it set to null (decoded bitmaps)
    changed: list[str]
    nulled: list[str]


@dataclass(frozen=True)
class ReadRecord:
    """A change that may be an agent's reply the event does not hold: read the record (and its files)."""

    record_id: str
    commit_user: str


Action = AgentReply | ThreadClosed | ReadRecord


class Schemas:
    """Avro schemas by schema id, parsed once (``GetSchema`` is called once per id a process sees)."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[dict[str, Any], Any]] = {}

    def __contains__(self, schema_id: str) -> bool:
        return schema_id in self._parsed

    def add(self, schema_id: str, schema_json: str) -> None:
        """Keep a schema (its JSON as ``GetSchema`` returned it).

        Raises:
            ValueError: it is not an Avro record schema.
        """
        import fastavro

        schema = json.loads(schema_json)
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError(f"schema {schema_id} is not an Avro record schema")
        self._parsed[schema_id] = (schema, fastavro.parse_schema(schema))

    def read(self, schema_id: str, payload: bytes) -> Change:
        """Decode one event's payload with its schema.

        Raises:
            KeyError: the schema was never added.
            ValueError: the payload does not decode with it.
        """
        schema, parsed = self._parsed[schema_id]
        return read_change(schema, parsed, payload)


def decode(parsed: Any, payload: bytes) -> dict[str, Any]:
    """An Avro binary payload (no container, as the Pub/Sub API sends it) decoded with a parsed schema.

    Raises:
        ValueError: the payload does not decode with the schema.
    """
    import fastavro

    try:
        record = fastavro.schemaless_reader(io.BytesIO(payload), parsed)
    except (EOFError, IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the event does not decode with its schema ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise ValueError("the event is not an Avro record")
    return record


def bitmap_fields(schema: dict[str, Any], bitmaps: list[str]) -> list[str]:
    """The names a bitmap field (``changedFields``…) stands for, in schema order; a compound field's parts
    as ``Parent.Part``.

    Raises:
        ValueError: an element is not a bitmap, or names a position the schema does not have.
    """
    fields = schema.get("fields") or []
    out: list[str] = []
    for element in bitmaps:
        parent, _, bits = element.rpartition("-")
        if parent:
            position = _int(parent, element)
            if position >= len(fields):
                raise ValueError(f"bitmap {element!r} names field {position}, the schema has {len(fields)}")
            nested = _record_of(fields[position].get("type"))
            names = [str(f["name"]) for f in (nested or {}).get("fields") or []]
            out += [f"{fields[position]['name']}.{name}" for name in _set_bits(bits, names, element)]
        else:
            out += _set_bits(bits, [str(f["name"]) for f in fields], element)
    return out


def _set_bits(bits: str, names: list[str], element: str) -> list[str]:
    if not bits.lower().startswith("0x"):
        raise ValueError(f"bitmap {element!r} is not hexadecimal")
    value = _int(bits, element, base=16)
    if value >> len(names):
        raise ValueError(f"bitmap {element!r} names a field past the schema's {len(names)}")
    return [name for n, name in enumerate(names) if value >> n & 1]


def _int(text: str, element: str, base: int = 10) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise ValueError(f"bitmap {element!r} is not a bitmap") from None


def _record_of(avro_type: Any) -> dict[str, Any] | None:
    """The record schema of a field's type (a nullable union's record branch)."""
    if isinstance(avro_type, dict) and avro_type.get("type") == "record":
        return avro_type
    if isinstance(avro_type, list):
        return next((t for t in avro_type if isinstance(t, dict) and t.get("type") == "record"), None)
    return None


def read_change(schema: dict[str, Any], parsed: Any, payload: bytes) -> Change:
    """One change event, decoded and its bitmaps read.

    Raises:
        ValueError: the payload does not decode, or has no ChangeEventHeader.
    """
    record = decode(parsed, payload)
    header = record.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise ValueError("the event has no ChangeEventHeader: not a change event")
    return Change(entity=str(header.get("entityName") or ""), record_ids=[str(i) for i in header.get("recordIds") or []],
                  change_type=str(header.get("changeType") or ""), commit_user=str(header.get("commitUser") or ""),
                  fields={k: v for k, v in record.items() if k != "ChangeEventHeader" and v is not None},
                  changed=bitmap_fields(schema, list(header.get("changedFields") or [])),
                  nulled=bitmap_fields(schema, list(header.get("nulledFields") or [])))


# -- what the relay does with a change ------------------------------------------------------------
def actions(change: Change) -> list[Action]:
    """What the relay does with one change of the message object (see the module); empty: not for it."""
    fields = change.fields
    if change.change_type in GAPS:
        return [ReadRecord(record_id, change.commit_user) for record_id in change.record_ids]
    if change.change_type == "UPDATE":
        if "Status__c" in change.changed and fields.get("Status__c") == "New":
            return [ReadRecord(record_id, change.commit_user) for record_id in change.record_ids]
        return []
    if change.change_type != "CREATE" or fields.get("Direction__c") != "Outbound":
        return []
    if fields.get("Type__c") == "Close":
        key = fields.get("Conversation_Key__c")
        return [ThreadClosed(event_id=record_id, crm_thread_id=str(key)) for record_id in change.record_ids] if key \
            else []
    out: list[Action] = []
    for record_id in change.record_ids:
        reply = reply_from_record(record_id, fields, [], change.commit_user)
        if reply is not None:
            out.append(reply)
    return out


def reply_from_record(record_id: str, record: dict[str, Any], files: list[dict[str, Any]],
                      commit_user: str) -> AgentReply | None:
    """An agent's reply out of its record's fields (a change event's, or a read's) and the files linked to it
    (``ContentDocumentLink`` rows with their ``ContentDocument``); None when the record is not a reply ready to
    send (not ``Outbound``, not a ``Message``, not ``New``)."""
    if (record.get("Direction__c") != "Outbound" or (record.get("Type__c") or "Message") != "Message"
            or record.get("Status__c") != "New"):
        return None
    return AgentReply(crm_message_id=record_id, thread=record.get("Conversation_Key__c") or None,
                      crm_contact_id=record.get("Contact__c") or record.get("Lead__c") or None,
                      text=str(record.get("Body__c") or ""), attachments=[f for f in map(_file, files) if f],
                      agent=str(record.get("Agent_Name__c") or commit_user) or None, at=_moment(record.get("CreatedDate")))


def _file(row: dict[str, Any]) -> FileRef | None:
    """A file linked to a reply (its latest version is what the patient gets)."""
    document = row.get("ContentDocument") or {}
    version = document.get("LatestPublishedVersionId")
    if not version:
        return None
    title, extension = str(document.get("Title") or "file"), str(document.get("FileExtension") or "")
    name = title if not extension or title.lower().endswith(f".{extension.lower()}") else f"{title}.{extension}"
    size = document.get("ContentSize")
    return FileRef(crm_file_id=str(version), name=name, mime_type=mimetypes.guess_type(name)[0],
                   size=int(size) if isinstance(size, int) and size >= 0 else None)


def _moment(value: Any) -> datetime | None:
    """A datetime as a change event (epoch milliseconds) or a REST read (ISO 8601) carries it."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
        except ValueError:
            return None
    return None
