"""Change Data Capture in the emulated org: every committed change of an object selected for change
notifications becomes a change event on its channel (``/data/<Object>ChangeEvent``, for a custom object
``/data/<Name>__ChangeEvent``), as the Pub/Sub API delivers it.

- The event's payload is Avro binary, written with the channel's schema (:func:`change_event_schema`: the
  ``ChangeEventHeader`` record, then each field of the object but ``Id`` and ``IsDeleted`` as a nullable
  union; datetimes as epoch milliseconds), identified by a schema id (a fingerprint of the schema).
- A CREATE carries the fields the record was created with; an UPDATE only the fields the update changed
  (every other field null, as Salesforce sends them), with ``changedFields`` (and ``nulledFields``) as
  bitmaps: ``["0x…"]``, bit *n* set for the schema's field at position *n* (``LastModifiedDate`` is always
  among an update's changed fields). ``changedFields`` is empty on a create.
- The changes of one request form one transaction (``transactionKey``, ``sequenceNumber`` 1, 2…); a
  composite request with ``allOrNone`` that was rolled back publishes nothing.
- Any object can be selected (:meth:`OrgChanges.enable_changes`, ``POST /_emulator/changes/select``); a field
  added to a selected object afterwards changes the channel's schema (a new schema id), as Salesforce's does.
- A person's edit in the UI (:meth:`OrgChanges.edit_as_person`, ``POST /_emulator/edit/<Object>/<id>``) is its
  own transaction, committed by that person's user id with an empty ``changeOrigin``; the REST API's saves are
  committed by the integration user with ``changeOrigin`` ``com/salesforce/api/rest/<version>``. An automation
  that runs on its own (a scheduled flow, a platform-event-triggered flow) commits as the org's Automated Process
  user (:data:`AUTOMATION_ID`, ``UserType`` ``AutomatedProcess``): the same endpoint with ``"user"`` naming it.
- Each event gets a replay id (8 bytes, increasing, not contiguous from the subscriber's point of view) and is
  kept for ``retention_seconds`` (72 hours, as Salesforce keeps change events); :meth:`OrgChanges.purge_events`
  forgets every event so far, as time does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, Response, request

from emulators.salesforce.common import COORDINATOR_ID, Failed, json_response
from emulators.salesforce.files import OrgFiles
from emulators.salesforce.schema import SField, field_label

#: the org's Automated Process user: the user scheduled and platform-event-triggered flows commit as
AUTOMATION_ID = "005000000000003AAA"

#: the ChangeEventHeader record of every change event's schema
HEADER_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "ChangeEventHeader", "namespace": "com.sforce.eventbus", "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "namespace": "com.sforce.eventbus",
                                        "symbols": ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE",
                                                    "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW",
                                                    "SNAPSHOT"]}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ]}
#: describe types → Avro types of a change event's fields
_AVRO_TYPES = {"boolean": "boolean", "int": "int", "double": "double", "currency": "double", "percent": "double",
               "datetime": "long", "date": "int"}
#: fields a change event never carries
_LEFT_OUT = {"Id", "IsDeleted", "SystemModstamp"}
#: how long the event bus keeps change events
RETENTION_SECONDS = 72 * 3600
#: the first replay id of the org's event bus (the tip before any event)
FIRST_REPLAY = 1000


def change_channel(sobject: str) -> str:
    """The change event channel of an object: ``/data/AccountChangeEvent``, ``/data/Thing__ChangeEvent``."""
    return f"/data/{sobject[:-1] if sobject.endswith('__c') else sobject}ChangeEvent"


def change_event_schema(sobject: str, fields: dict[str, SField]) -> dict[str, Any]:
    """The Avro schema of an object's change events."""
    name = (sobject[:-1] if sobject.endswith("__c") else sobject) + "ChangeEvent"
    out: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": HEADER_SCHEMA, "doc": "Data:ComplexValueType"}]
    for spec in fields.values():
        if spec.name in _LEFT_OUT:
            continue
        out.append({"name": spec.name, "type": ["null", _AVRO_TYPES.get(spec.type, "string")], "default": None,
                    "doc": f"Data:{spec.type}"})
    return {"type": "record", "name": name, "namespace": "com.sforce.eventbus", "fields": out}


def schema_id(schema: dict[str, Any]) -> str:
    """A schema's id: a fingerprint of its canonical JSON (22 characters, as Salesforce's look)."""
    digest = hashlib.md5(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def bitmap(positions: list[int]) -> list[str]:
    """A bitmap field's value: ``["0x…"]`` with bit *n* set for each position *n* (empty: none)."""
    if not positions:
        return []
    value = sum(1 << n for n in set(positions))
    digits = format(value, "X")
    return ["0x" + ("0" * (len(digits) % 2)) + digits]


def replay_bytes(number: int) -> bytes:
    """A replay id as the Pub/Sub API carries it: opaque bytes (here 8, big-endian)."""
    return number.to_bytes(8, "big")


def replay_number(value: bytes) -> int | None:
    """The replay id's number, or None when the bytes are not one of this org's replay ids."""
    return int.from_bytes(value, "big") if len(value) == 8 else None


@dataclass
class ChangeEvent:
    """One change event as the event bus keeps it."""

    replay: int
    at: float
    schema_id: str
    payload: bytes
    #: the decoded content, for tests and the control endpoints
    header: dict[str, Any]
    fields: dict[str, Any]


@dataclass
class Channel:
    """A change event channel: its object, schema, and the events it keeps."""

    name: str
    sobject: str
    schema: dict[str, Any]
    schema_id: str
    events: list[ChangeEvent] = field(default_factory=list)


class OrgChanges(OrgFiles):
    """The Change Data Capture layer of the emulated org (the Pub/Sub API serves its channels:
    :mod:`emulators.salesforce.pubsub_server`)."""

    #: channel name → channel
    channels: dict[str, Channel]
    #: changes saved by the request being served, not yet committed: (object, change, record, values)
    _uncommitted: list[tuple[str, str, dict[str, Any], dict[str, Any]]]
    #: the last replay id issued, and every one up to this was purged
    last_replay: int
    purged_through: int
    retention_seconds: float
    #: woken when events are published (the Pub/Sub streams wait on it)
    published: threading.Condition

    def _init_changes(self, retention_seconds: float = RETENTION_SECONDS) -> None:
        self.channels = {}
        self._uncommitted = []
        self.last_replay = FIRST_REPLAY
        self.purged_through = FIRST_REPLAY - 1
        self.retention_seconds = retention_seconds
        self.published = threading.Condition(self.lock)
        self._commits = 0
        # every org has the Automated Process user, told apart by its UserType
        if "User" in self.schema:
            self.schema["User"].setdefault("UserType", SField(name="UserType", type="picklist", length=40,
                                                              label=field_label("UserType"), createable=False,
                                                              updateable=False,
                                                              picklist=["Standard", "AutomatedProcess"]))
            self.objects["User"][AUTOMATION_ID] = self._stamp("User", AUTOMATION_ID, {
                "Name": "Automated Process", "Username": "autoproc@clinic.example", "IsActive": True,
                "UserType": "AutomatedProcess"})

    def enable_changes(self, sobject: str) -> Channel:
        """Select ``sobject`` for change notifications (its channel in the standard ChangeEvents channel)."""
        with self.lock:
            if (selected := self._channel_of(sobject)) is not None:
                return selected
            schema = change_event_schema(sobject, self.schema[sobject])
            channel = Channel(change_channel(sobject), sobject, schema, schema_id(schema))
            self.channels[channel.name] = channel
            return channel

    def _channel_of(self, sobject: str) -> Channel | None:
        return next((c for c in self.channels.values() if c.sobject == sobject), None)

    def _saved(self, sobject: str, record: dict[str, Any], change: str, values: dict[str, Any]) -> None:
        super()._saved(sobject, record, change, values)
        if self._channel_of(sobject) is not None:
            self._uncommitted.append((sobject, change, dict(record), dict(values)))

    def api_origin(self, version: str) -> str:
        """The ``changeOrigin`` of a REST API save: the API and its version, and ``;client=<id>`` when the
        request named a client id in its ``Sforce-Call-Options`` header."""
        client = getattr(self, "call_client", "")
        return f"com/salesforce/api/rest/{version}" + (f";client={client}" if client else "")

    def _commit_changes(self, user: str, origin: str = "") -> None:
        """Publish the changes saved since the last commit as one transaction (``user`` made them)."""
        with self.lock:
            pending, self._uncommitted = self._uncommitted, []
            if not pending:
                return
            self._commits += 1
            key, now = str(uuid.uuid4()), time.time()
            for sequence, (sobject, change, record, values) in enumerate(pending, start=1):
                channel = self._channel_of(sobject)
                if channel is not None:
                    self._publish(channel, change, record, values, key=key, sequence=sequence, user=user,
                                  origin=origin, now=now)
            self.published.notify_all()

    def _discard_changes(self, mark: int) -> None:
        """Forget the changes saved after ``mark`` (a rolled-back transaction)."""
        with self.lock:
            del self._uncommitted[mark:]

    def _publish(self, channel: Channel, change: str, record: dict[str, Any], values: dict[str, Any], *,
                 key: str, sequence: int, user: str, origin: str, now: float) -> None:
        import fastavro

        current = change_event_schema(channel.sobject, self.schema[channel.sobject])
        if current != channel.schema:  # a field was added since: the channel's schema (and its id) changes
            channel.schema, channel.schema_id = current, schema_id(current)
        names = [f["name"] for f in channel.schema["fields"]]
        specs = self.schema[channel.sobject]
        carried: dict[str, Any] = {}
        if change == "CREATE":
            carried = {k: v for k, v in record.items() if k in names and v is not None}
        elif change == "UPDATE":
            carried = {k: v for k, v in values.items() if k in names}
            carried["LastModifiedDate"] = record.get("LastModifiedDate")
            if "LastModifiedById" in names:
                carried["LastModifiedById"] = record.get("LastModifiedById")
        header = {"entityName": channel.sobject, "recordIds": [record["Id"]], "changeType": change,
                  "changeOrigin": origin, "transactionKey": key, "sequenceNumber": sequence,
                  "commitTimestamp": int(now * 1000), "commitNumber": 10_000_000 + self._commits, "commitUser": user,
                  "nulledFields": bitmap([names.index(k) for k, v in carried.items() if v is None]),
                  "diffFields": [],
                  "changedFields": bitmap([names.index(k) for k in carried]) if change == "UPDATE" else []}
        body = {"ChangeEventHeader": header}
        for name, value in carried.items():
            body[name] = _avro_value(specs.get(name), value)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(channel.schema), body)
        self.last_replay += 7  # not contiguous: subscribers must not compute replay ids
        channel.events.append(ChangeEvent(self.last_replay, now, channel.schema_id, out.getvalue(), header,
                                          {k: v for k, v in body.items() if k != "ChangeEventHeader"}))

    def _purge(self) -> None:
        """Forget the events older than the retention period. Hold ``lock``."""
        horizon = time.time() - self.retention_seconds
        for channel in self.channels.values():
            while channel.events and channel.events[0].at < horizon:
                self.purged_through = max(self.purged_through, channel.events.pop(0).replay)

    def purge_events(self) -> None:
        """Forget every event published so far, as 72 hours would (a stored replay id becomes invalid)."""
        with self.lock:
            for channel in self.channels.values():
                channel.events.clear()
            self.purged_through = self.last_replay

    def edit_as_person(self, sobject: str, record_id: str, values: dict[str, Any], *,
                       user: str = COORDINATOR_ID) -> dict[str, Any]:
        """A person edits a record in Salesforce's UI (one save, its own transaction); the record after it.

        Raises:
            KeyError: no such record.
            Failed: a value Salesforce would refuse.
        """
        with self.lock:
            record = self.objects[sobject][record_id]
            self._update(sobject, record, dict(values), None)
            self._commit_changes(user)
            return dict(record)

    def _add_change_routes(self, app: Flask) -> None:
        """``POST /_emulator/changes/select`` (``{"object"}``: select it for change notifications) and
        ``POST /_emulator/edit/<Object>/<id>`` (``{"fields", "user"?}``: a person's edit in the UI)."""

        @app.post("/_emulator/changes/select")
        def select() -> Response:
            sobject = str((request.get_json(silent=True) or {}).get("object", ""))
            if sobject not in self.schema:
                return json_response(404, {"error": f"no object {sobject!r}"})
            return json_response(200, {"channel": self.enable_changes(sobject).name})

        @app.post("/_emulator/edit/<sobject>/<record_id>")
        def edit(sobject: str, record_id: str) -> Response:
            data = request.get_json(silent=True) or {}
            if not isinstance(data.get("fields"), dict):
                return json_response(400, {"error": "give the fields to change"})
            try:
                return json_response(200, self.edit_as_person(sobject, record_id, data["fields"],
                                                              user=str(data.get("user") or COORDINATOR_ID)))
            except KeyError:
                return json_response(404, {"error": f"no {sobject} {record_id}"})
            except Failed as exc:
                return json_response(exc.status, exc.errors)

    def change_events(self, channel: str) -> list[ChangeEvent]:
        """The events a channel keeps, oldest first (tests and the control endpoints)."""
        with self.lock:
            self._purge()
            return list(self.channels[channel].events) if channel in self.channels else []


def _avro_value(spec: SField | None, value: Any) -> Any:
    """A record's value as a change event carries it (datetimes as epoch milliseconds)."""
    if value is None or spec is None:
        return value
    if spec.type == "datetime" and isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00")).timestamp() * 1000)
    if spec.type == "date" and isinstance(value, str):
        return (datetime.fromisoformat(value) - datetime(1970, 1, 1)).days
    if spec.type in ("boolean",):
        return bool(value) if not isinstance(value, str) else value.lower() == "true"
    if spec.type in _AVRO_TYPES and spec.type not in ("boolean",):
        return value
    return str(value)
