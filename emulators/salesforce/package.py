"""The chat2crm Salesforce package in the emulated org, and the agents who use it.

:meth:`OrgPackage.install_package` does what deploying the package (``crm/salesforce``) does to an org: the
custom object ``Chat2CRM_Message__c`` with its fields (as the package's contract fixes them), its Change
Data Capture selection (channel ``/data/Chat2CRM_Message__ChangeEvent``), and the permission sets
``Chat2CRM_Agent`` and ``Chat2CRM_Integration`` (the latter assigned to the integration user, as the admin
does after deploying).

Agents act as the package's Lightning component lets them, on a Lead, Contact or Case page, each step its
own save (and so its own change event): :meth:`OrgPackage.add_agent_reply` copies the channel, the
conversation key and the lookups from the record's latest message and inserts a reply, ``New`` at once,
or with files ``Draft`` first, the files uploaded onto it, then ``New``; :meth:`OrgPackage.close_thread`
inserts a ``Close`` message. The same through ``/_emulator/chat2crm/...`` for the demo page.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Flask, Response, request

from emulators.salesforce.changes import OrgChanges
from emulators.salesforce.common import API_USER_ID, COORDINATOR_ID, json_response, sf_id
from emulators.salesforce.schema import SField

MESSAGE = "Chat2CRM_Message__c"
AGENT_SET = "Chat2CRM_Agent"
INTEGRATION_SET = "Chat2CRM_Integration"
STATUSES = ["Draft", "New", "Sent", "Delivered", "Read", "Failed", "Received"]
#: the lookups of a message, by the object each points to
LOOKUPS = {"Lead": "Lead__c", "Contact": "Contact__c", "Case": "Case__c"}


def message_fields() -> list[SField]:
    """The message object's fields as ``describe`` reports them (the package's contract)."""
    def custom(name: str, kind: str = "string", length: int = 255, **kw: Any) -> SField:
        return SField(name=name, type=kind, length=length, label=name.removesuffix("__c").replace("_", " "),
                      custom=True, **kw)

    return [
        SField(name="Name", length=80, label="Message Number", createable=False, updateable=False),
        custom("Direction__c", "picklist", picklist=["Inbound", "Outbound"], restricted=True),
        custom("Type__c", "picklist", picklist=["Message", "Close"], default="Message", restricted=True),
        custom("Channel__c", "picklist", picklist=["whatsapp", "telegram"], restricted=True),
        custom("Body__c", "textarea", 32768),
        custom("Status__c", "picklist", picklist=list(STATUSES), restricted=True),
        custom("Error__c"),
        custom("External_Id__c", external_id=True, unique=True, case_sensitive=True),
        custom("Conversation_Key__c", length=80),
        custom("Agent_Name__c", length=121),
        custom("Lead__c", "reference", 18, reference_to=["Lead"]),
        custom("Contact__c", "reference", 18, reference_to=["Contact"]),
        custom("Case__c", "reference", 18, reference_to=["Case"]),
        custom("Sent_At__c", "datetime", 0),
        SField(name="OwnerId", type="reference", length=18, reference_to=["User"], default="005"),
        SField(name="CreatedById", type="reference", length=18, createable=False, updateable=False,
               reference_to=["User"]),
        SField(name="LastModifiedById", type="reference", length=18, createable=False, updateable=False,
               reference_to=["User"]),
    ]


class OrgPackage(OrgChanges):
    """The chat2crm package's layer of the emulated org: its object, permission sets and agents."""

    #: who the request being served acts as (the integration user for API calls, an agent in the UI)
    acting_user: str = API_USER_ID
    #: the last message number given (the object's name field is an Auto Number)
    message_number: int = 0

    def install_package(self, *, assign_integration: bool = True) -> None:
        """Deploy the package: the message object, its change events and the permission sets (assigned to the
        integration user unless ``assign_integration`` is False, a step the admin can forget)."""
        from emulators.salesforce.schema import standard_objects

        with self.lock:
            if MESSAGE in self.schema:
                return
            system = {k: v for k, v in standard_objects()["Note"][1].items()
                      if k in ("Id", "CreatedDate", "LastModifiedDate", "IsDeleted")}
            self.schema[MESSAGE] = {**system, **{f.name: f for f in message_fields()}}
            self.prefixes[MESSAGE] = "a0M"
            self.objects[MESSAGE] = {}
            self.enable_changes(MESSAGE)
            sets = {}
            for name, label in ((AGENT_SET, "Chat2CRM Agent"), (INTEGRATION_SET, "Chat2CRM Integration")):
                sets[name] = self._put("PermissionSet", {"Name": name, "Label": label})
            self._put("PermissionSetAssignment", {"AssigneeId": COORDINATOR_ID, "PermissionSetId": sets[AGENT_SET]})
            if assign_integration:
                self._put("PermissionSetAssignment", {"AssigneeId": API_USER_ID, "PermissionSetId": sets[INTEGRATION_SET]})

    def _put(self, sobject: str, values: dict[str, Any]) -> str:
        """Store a record the org makes itself (no checks, no change event); returns its id."""
        record_id = sf_id(self.prefixes[sobject], next(self.counter))
        self.objects[sobject][record_id] = self._stamp(sobject, record_id, dict(values))
        return record_id

    # -- what a save of a message does ----------------------------------------------------------
    def _saving(self, sobject: str, record: dict[str, Any]) -> None:
        super()._saving(sobject, record)
        if sobject == MESSAGE:
            self.message_number += 1
            record.update({"Name": f"MSG-{self.message_number:07d}", "CreatedById": self.acting_user,
                           "LastModifiedById": self.acting_user})

    def _saved(self, sobject: str, record: dict[str, Any], change: str, values: dict[str, Any]) -> None:
        if sobject == MESSAGE and change == "UPDATE":
            record["LastModifiedById"] = self.acting_user
        if change == "DELETE" and sobject in LOOKUPS and MESSAGE in self.objects:
            # the lookups' delete constraint is SetNull
            for message in self.objects[MESSAGE].values():
                if message.get(LOOKUPS[sobject]) == record["Id"]:
                    message[LOOKUPS[sobject]] = None
        super()._saved(sobject, record, change, values)

    # -- agents ---------------------------------------------------------------------------------
    def messages(self, record_id: str | None = None) -> list[dict[str, Any]]:
        """The messages of a Lead, Contact or Case (every message when None), oldest first, each with the names
        of its files."""
        with self.lock:
            out = []
            for message in self.objects.get(MESSAGE, {}).values():
                if record_id is not None and record_id not in (message.get(f) for f in LOOKUPS.values()):
                    continue
                documents = [link["ContentDocumentId"] for link in self.objects["ContentDocumentLink"].values()
                             if link.get("LinkedEntityId") == message["Id"]]
                files = [self.objects["ContentDocument"][d].get("Title") for d in documents
                         if d in self.objects["ContentDocument"]]
                out.append({**message, "files": files})
            return out

    def _latest(self, record_id: str) -> dict[str, Any]:
        found = self.messages(record_id)
        if not found:
            raise ValueError(f"no chat2crm message is linked to {record_id}")
        return found[-1]

    def _as_agent(self, agent: str, values: dict[str, Any], record_id: str | None = None) -> str:
        """One save by an agent in the UI (its own transaction): insert a message, or update ``record_id``."""
        with self.lock:
            self.acting_user = agent
            try:
                if record_id is None:
                    record = self._create(MESSAGE, values, None)
                else:
                    self._update(MESSAGE, self.objects[MESSAGE][record_id], values, None)
                    record = self.objects[MESSAGE][record_id]
                self._commit_changes(agent)
            finally:
                self.acting_user = API_USER_ID
            return str(record["Id"])

    def add_agent_reply(self, record_id: str, text: str, *, files: list[tuple[str, bytes]] | None = None,
                        agent: str = COORDINATOR_ID, agent_name: str | None = "Deniz Koordinatör") -> str:
        """An agent's reply written with the package's component on ``record_id``'s page; returns its id."""
        latest = self._latest(record_id)
        values: dict[str, Any] = {"Direction__c": "Outbound", "Type__c": "Message", "Body__c": text,
                                  "Status__c": "Draft" if files else "New", "Channel__c": latest.get("Channel__c"),
                                  "Conversation_Key__c": latest.get("Conversation_Key__c")}
        values.update({f: latest[f] for f in LOOKUPS.values() if latest.get(f)})
        if agent_name:
            values["Agent_Name__c"] = agent_name
        reply = self._as_agent(agent, values)
        if files:
            for name, content in files:
                self.add_file(name, content, link_to=reply, owner=agent)
            self._as_agent(agent, {"Status__c": "New"}, reply)
        return reply

    def close_thread(self, record_id: str, *, agent: str = COORDINATOR_ID) -> str:
        """The component's "Close conversation" on ``record_id``'s page; returns the Close message's id."""
        latest = self._latest(record_id)
        values: dict[str, Any] = {"Direction__c": "Outbound", "Type__c": "Close", "Body__c": "Conversation closed",
                                  "Channel__c": latest.get("Channel__c"),
                                  "Conversation_Key__c": latest.get("Conversation_Key__c")}
        values.update({f: latest[f] for f in LOOKUPS.values() if latest.get(f)})
        return self._as_agent(agent, values)

    def set_message(self, message_id: str, values: dict[str, Any], *, agent: str = COORDINATOR_ID) -> None:
        """Edit a message as a person would in a list view (its own save and change event)."""
        self._as_agent(agent, values, message_id)

    # -- the control endpoints ------------------------------------------------------------------
    def _add_package_routes(self, app: Flask) -> None:
        @app.get("/_emulator/chat2crm/messages/<record_id>")
        def thread(record_id: str) -> Response:
            return json_response(200, self.messages(record_id))

        @app.post("/_emulator/chat2crm/reply")
        def reply() -> Response:
            data = request.get_json(silent=True) or {}
            files = [(str(f["name"]), base64.b64decode(str(f["content_base64"]))) for f in data.get("files") or []]
            try:
                made = self.add_agent_reply(str(data.get("record", "")), str(data.get("text", "")), files=files)
            except ValueError as exc:
                return json_response(400, {"error": str(exc)})
            return json_response(200, {"id": made})

        @app.post("/_emulator/chat2crm/close")
        def close() -> Response:
            data = request.get_json(silent=True) or {}
            try:
                return json_response(200, {"id": self.close_thread(str(data.get("record", "")))})
            except ValueError as exc:
                return json_response(400, {"error": str(exc)})

        @app.get("/_emulator/changes")
        def changes() -> Response:
            events = self.change_events(request.args.get("channel", ""))
            return json_response(200, [{"replay_id": e.replay, "header": e.header, "fields": e.fields}
                                       for e in events])

        @app.post("/_emulator/changes/purge")
        def purge() -> Response:
            self.purge_events()
            return json_response(200, {"ok": True})

