"""People's edits of the records the relay wrote, read from Salesforce's Change Data Capture: one Pub/Sub API
subscription per mapped object (the contact object, Lead or Contact, and the record object, Lead, Case or
Opportunity), each on the object's standard change channel (``/data/LeadChangeEvent``…), read by
``chat2crm listen salesforce`` beside the message object's channel (:class:`EditStream`).

An UPDATE's ``changedFields`` bitmap is read back into field names (a compound field's part, ``Name.FirstName``,
as the part's own field, ``FirstName``; system fields left out) and becomes one
:class:`~core.inbox.FieldsEdited` per record. Who made it, from the ``ChangeEventHeader``:

- ``commitUser`` is the id of the user whose transaction made the change: the relay writes as its integration
  user (its id is the last part of the identity URL the login returns), so a change committed by that user is
  the relay's own write (or another tool running as that user), never a person's;
- ``changeOrigin`` is ``com/salesforce/api/<api>/<version>;client=<client id>`` for a change made through an
  API with a client id set in the ``Sforce-Call-Options`` header: one naming the relay's client
  (:data:`RELAY_CLIENT`) is the relay's own write too, whoever the user.

Every other UPDATE is a person's edit (``by_person``), but one committed by the org's Automated Process user
(``UserType`` ``AutomatedProcess``: scheduled and platform-event-triggered flows run as it; read once per stream):
an automation's change, not a person's, still read (a flow moving a record's stage is a stage change), with
``source`` its user id. A record-triggered flow or a process commits in the transaction of the save that triggered
it, so its changes come with that save's user. Creates, deletes and gap events are not edits of a field.

The listener leaves the relay's own writes out altogether (nothing is measured or sent for them). An event carries
the new values of the fields the stream is asked to carry (the record object's stage field, ``Status`` or
``StageName``: a picklist value as its API name) in ``values``, and a stable id, ``<transactionKey>:<sequenceNumber>:
<record id>``, the same when the event is delivered again after a restart (``event_id``).

The objects must be selected for Change Data Capture (Setup → Integrations → Change Data Capture, or the
``PlatformEventChannelMember`` metadata of the ``ChangeEvents`` channel): :func:`setup_lines` says which.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.inbox import StreamBatch
from adapters.salesforce.changes import Schemas, bitmap_fields, decode
from adapters.salesforce.session import CALL_CLIENT
from adapters.salesforce.stream import ChangeStream
from core.errors import AuthError, FatalError, RetryableError
from core.inbox import FieldsEdited, InboxEvent

if TYPE_CHECKING:
    from adapters.salesforce.session import SalesforceSession

log = logging.getLogger("chat2crm.salesforce.edits")

#: the client id the relay names in ``Sforce-Call-Options`` (``changeOrigin`` ends with ``;client=`` it)
RELAY_CLIENT = CALL_CLIENT
#: fields every save changes: no person edited them
SYSTEM_FIELDS = frozenset({"LastModifiedDate", "LastModifiedById", "SystemModstamp", "LastReferencedDate",
                           "LastViewedDate"})
#: the org's automation users: scheduled and platform-event-triggered flows commit as the Automated Process user
AUTOMATION_QUERY = "SELECT Id FROM User WHERE UserType = 'AutomatedProcess'"


def change_channel(sobject: str) -> str:
    """An object's standard change channel: ``/data/LeadChangeEvent``, ``/data/Thing__ChangeEvent``."""
    return f"/data/{sobject[:-1] if sobject.endswith('__c') else sobject}ChangeEvent"


def edited(schema: dict[str, Any], parsed: Any, payload: bytes, *, integration_user: str | None,
           client: str = RELAY_CLIENT, automations: frozenset[str] = frozenset(), carry: tuple[str, ...] = (),
           own: bool = True) -> list[FieldsEdited]:
    """The fields an UPDATE change event changed, one :class:`FieldsEdited` per record (empty: not an update,
    or only system fields changed).

    Args:
        automations: user ids that are automations, not people (the Automated Process user).
        carry: the fields whose new values the events carry (``values``), when changed.
        own: also return the relay's own writes (``by_person`` False); False leaves them out.

    Raises:
        ValueError: the payload does not decode, or has no ChangeEventHeader.
    """
    record = decode(parsed, payload)
    header = record.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise ValueError("the event has no ChangeEventHeader: not a change event")
    if header.get("changeType") != "UPDATE":
        return []
    names = [name.rpartition(".")[2] for name in bitmap_fields(schema, list(header.get("changedFields") or []))]
    fields = [name for name in dict.fromkeys(names) if name not in SYSTEM_FIELDS]
    if not fields:
        return []
    user = str(header.get("commitUser") or "")
    origin = str(header.get("changeOrigin") or "")
    ours = bool(integration_user) and _same_user(user, str(integration_user))
    ours = ours or f";client={client}" in origin
    if ours and not own:
        return []
    automated = any(_same_user(user, other) for other in automations)
    entity = str(header.get("entityName") or "")
    at = header.get("commitTimestamp")
    moment = datetime.fromtimestamp(at / 1000, tz=UTC) if isinstance(at, int) else None
    values = {name: record.get(name) for name in carry if name in fields}
    transaction = str(header.get("transactionKey") or "")
    sequence = header.get("sequenceNumber")
    return [FieldsEdited(crm_object=entity, crm_id=str(record_id), fields=fields, by_person=not (ours or automated),
                         source=user or None, at=moment, values=values,
                         event_id=f"{transaction}:{sequence}:{record_id}" if transaction else None)
            for record_id in header.get("recordIds") or []]


def _same_user(one: str, other: str) -> bool:
    """Two user ids are the same user (a 15-character id is the 18-character one without its suffix)."""
    return one[:15] == other[:15] and len(one) >= 15 and len(other) >= 15


class EditSchemas(Schemas):
    """Avro schemas by id, read for edits (the header's ``changeOrigin`` and ``commitTimestamp`` too)."""

    def edits(self, schema_id: str, payload: bytes, *, integration_user: str | None, **options: Any
              ) -> list[FieldsEdited]:
        """Decode one event's payload with its schema, as :func:`edited` reads it (``options``: its keywords).

        Raises:
            KeyError: the schema was never added.
            ValueError: the payload does not decode with it.
        """
        schema, parsed = self._parsed[schema_id]
        return edited(schema, parsed, payload, integration_user=integration_user, **options)


class EditStream(ChangeStream):
    """One mapped object's change events, as people's edits of the records the relay wrote.

    Args:
        session: the adapter's session.
        endpoint: the Pub/Sub API, ``host:port``.
        sobject: the object (``Lead``, ``Contact``, ``Case``, ``Opportunity``).
        carry: the fields whose new values the events carry (the record object's stage field).
    """

    def __init__(self, session: SalesforceSession, *, endpoint: str, sobject: str, carry: tuple[str, ...] = ()) -> None:
        super().__init__(session, endpoint=endpoint, complete=lambda reads: {}, topic=change_channel(sobject))
        self.sobject = sobject
        self.carry = carry
        self.edit_schemas = EditSchemas()
        self.schemas = self.edit_schemas
        self._integration_user: str | None = None
        self._automations: frozenset[str] | None = None

    def automation_users(self) -> frozenset[str]:
        """The org's Automated Process user(s), read once (one query); none while the query fails (their changes
        are then taken for a person's, and the query is tried again with the next batch)."""
        if self._automations is None:
            try:
                found = self.session.request("automation_users", "GET", "query",
                                             params={"q": AUTOMATION_QUERY}) or {}
            except (AuthError, RetryableError, FatalError) as exc:
                log.warning("automation users not known: their changes count as people's for now",
                            extra={"reason": exc.message})
                return frozenset()
            self._automations = frozenset(str(r["Id"]) for r in found.get("records") or [] if r.get("Id"))
        return self._automations

    def integration_user(self) -> str | None:
        """The integration user's id (from the identity URL of this process's login; one login when there was
        none yet): the user the relay's own writes are committed by."""
        if self._integration_user is None:
            user = self.session.identity()[1]
            if user is None:
                try:
                    self.session.login(fresh=True)
                except (AuthError, RetryableError, FatalError) as exc:
                    log.warning("integration user not known: edits by it are not told apart yet",
                                extra={"reason": exc.message})
                    return None
                user = self.session.identity()[1]
            self._integration_user = user
        return self._integration_user

    def _batch(self, stub: Any, response: Any) -> StreamBatch:
        """A FetchResponse as edits of the object's records, in the stream's order."""
        events: list[InboxEvent] = []
        user = self.integration_user() if response.events else None
        automations = self.automation_users() if response.events else frozenset()
        for consumer in response.events:
            self._schema(stub, consumer.event.schema_id)
            try:
                events += self.edit_schemas.edits(consumer.event.schema_id, consumer.event.payload, integration_user=user,
                                                  automations=automations, carry=self.carry, own=False)
            except ValueError as exc:
                log.error("change event skipped: it does not decode",
                          extra={"replay_id": consumer.replay_id.hex(), "reason": str(exc)})
        if response.events:
            self._count("pubsub_events", "delivered", len(response.events))
        position = response.events[-1].replay_id if response.events else response.latest_replay_id
        return StreamBatch(events=events, position=bytes(position), received=len(response.events))

    def _error(self, exc: Any) -> Exception:
        found = super()._error(exc)
        if isinstance(found, FatalError) and "does not exist" in found.message:
            return FatalError(f"salesforce: {self.sobject} is not selected for Change Data Capture (no channel "
                              f"{self.topic}): select it in Setup → Change Data Capture", details=found.details)
        return found


def edited_objects(contact: str, record: str | None) -> list[str]:
    """The objects whose edits are read: the mapping's contact and record objects, once each."""
    return list(dict.fromkeys([contact] + ([record] if record else [])))


def edit_streams(session: SalesforceSession, *, endpoint: str, objects: list[str],
                 carry: dict[str, tuple[str, ...]] | None = None) -> dict[str, EditStream]:
    """One stream per object (object → stream), each carrying the new values of ``carry``'s fields of its object
    (the record object's stage field)."""
    return {sobject: EditStream(session, endpoint=endpoint, sobject=sobject, carry=(carry or {}).get(sobject, ()))
            for sobject in objects}


def setup_lines(objects: list[str]) -> list[str]:
    """What ``crm setup`` says about people's edits: the objects to select for Change Data Capture."""
    channels = ", ".join(f"{o} ({change_channel(o)})" for o in objects)
    return [f"to do in Salesforce: select {', '.join(objects)} for Change Data Capture (Setup → Change Data Capture, "
            f"or PlatformEventChannelMember metadata on ChangeEvents) so `chat2crm listen salesforce` reads people's "
            f"edits: {channels}"]


def check_lines(session: SalesforceSession, *, endpoint: str, objects: list[str]) -> list[str]:
    """``crm doctor``: whether each object's change channel can be subscribed to."""
    lines = []
    for sobject, stream in edit_streams(session, endpoint=endpoint, objects=objects).items():
        try:
            stream.topic_info()
            lines.append(f"edits: ok change events of {sobject} reachable ({stream.topic})")
        except (AuthError, RetryableError, FatalError) as exc:
            lines.append(f"edits: TO DO {sobject} is not selected for Change Data Capture ({stream.topic}): "
                         f"{exc.message}")
    return lines
