"""The agents of the emulated account, working in HubSpot's inbox: what the tests and the demo page make
them do, and the webhooks it causes.

- Reply in a thread (``POST /_emulator/inbox/threads/<threadId>/reply``, ``{"text", "fileIds"?,
  "actorId"?}``): an OUTGOING message from the agent (the thread's assignee unless another is named; an
  unassigned thread becomes the replying agent's), and HubSpot's ``OUTGOING_CHANNEL_MESSAGE_CREATED`` sent
  to the channel's ``webhookUrl``: ``type``, ``portalId``, ``channelId``, ``channelAccountId``,
  ``channelIntegrationThreadIds`` and the ``message``, signed (v3 and v2) with the app's client secret.
- Close a thread (``POST /_emulator/inbox/threads/<threadId>/close``): ``conversation.propertyChange``
  (``status`` → ``CLOSED``) to the app's subscription.
- Edit a contact (``POST /_emulator/contacts/<contactId>``, ``{"properties": {…}}``):
  ``contact.propertyChange`` for each subscribed property whose value changed (``changeSource`` ``CRM_UI``).
- See the inbox (``GET /_emulator/inbox/threads``): every thread with its contact, assignee and messages.

The account's users as owners: ``GET /crm/v3/owners/{ownerId}`` (``idProperty`` ``id`` or ``userId``,
``archived``; ``crm.objects.owners.read``) reads one; a deactivated user's owner is archived, found only with
``archived=true``, its ``userId`` null (``userIdIncludingInactive`` keeps it), as HubSpot's owners API answers.
Tests add users (:meth:`HubSpotAgents.add_owner`) and deactivate them (:meth:`HubSpotAgents.deactivate_owner`).
"""

from __future__ import annotations

import html
from contextlib import nullcontext
from typing import Any

from flask import Flask, has_app_context, jsonify, request

from emulators.hubspot.channels import HubSpotChannels
from emulators.hubspot.oauth import Route
from emulators.hubspot.state import timestamp
from emulators.hubspot.threads import message_id, public


class AgentActionError(ValueError):
    """What an agent asked for cannot be done (the control endpoint answers 400, or 404 for ``missing``)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class HubSpotAgents(HubSpotChannels):
    """Agents replying, closing threads, editing contacts."""

    app: Flask

    def _extra_routes(self) -> list[Route]:
        return [*super()._extra_routes(),
                (("GET",), "/_emulator/inbox/threads", self._control_threads),
                (("POST",), "/_emulator/inbox/threads/<thread_id>/reply", self._control_reply),
                (("POST",), "/_emulator/inbox/threads/<thread_id>/close", self._control_close),
                (("GET",), "/_emulator/inbox/channels", self._control_channels),
                (("POST",), "/_emulator/contacts/<contact_id>", self._control_edit_contact),
                (("GET",), "/crm/v3/owners/<owner_id>", self._serve_owner)]

    def _context(self) -> Any:
        return nullcontext() if has_app_context() else self.app.app_context()

    # -- what an agent does ----------------------------------------------------------------------
    def agent_reply(self, thread_id: str, text: str, file_ids: list[str] | tuple[str, ...] = (),
                    actor_id: str | None = None) -> dict[str, Any]:
        """An agent's reply in a thread; ``{"message", "deliveryId"}`` (None when the channel has no
        ``webhookUrl``).

        Raises:
            AgentActionError: no such thread, agent or file, or the channel takes no outgoing messages.
        """
        with self._context(), self.lock:
            thread = self.threads.get(thread_id)
            if thread is None:
                raise AgentActionError(f"thread {thread_id} not found", missing=True)
            channel = self.channels[thread["originalChannelId"]]
            account = self.channel_accounts[thread["originalChannelAccountId"]]
            if channel["capabilities"].get("allowOutgoingMessages") is False:
                raise AgentActionError("the channel does not allow outgoing messages")
            missing = [f for f in file_ids if f not in self.files]
            if missing:
                raise AgentActionError(f"file {missing[0]} is not in the file manager")
            actor = actor_id or thread.get("assignedTo") or f"A-{self.owners[0]['userId']}"
            owner = self._agent(actor)
            if owner is None:
                raise AgentActionError(f"{actor} is not an agent of this account")
            client = {"clientType": "HUBSPOT"}
            events = self._set_status(thread, "OPEN", actor, client)
            if not thread.get("assignedTo"):
                events += self._assign(thread, actor)
            visitor = thread["_visitor"]
            sender = {"actorId": actor, "name": f"{owner['firstName']} {owner['lastName']}"} | (
                {"deliveryIdentifier": account["deliveryIdentifier"]} if "deliveryIdentifier" in account else {})
            now = timestamp()
            message = {"type": "MESSAGE", "id": message_id(), "conversationsThreadId": thread_id, "createdAt": now,
                       "updatedAt": now, "createdBy": actor, "client": client, "senders": [sender],
                       "recipients": [{"actorId": f"V-{thread['associatedContactId']}",
                                       "deliveryIdentifier": visitor["deliveryIdentifier"]}
                                      | ({"name": visitor["name"]} if visitor.get("name") else {})],
                       "archived": False, "text": text, "richText": f"<div>{html.escape(text)}</div>",
                       "attachments": [self._attachment({"type": "FILE", "fileId": f}) for f in file_ids],
                       "truncationStatus": "NOT_TRUNCATED", "direction": "OUTGOING", "channelId": channel["id"],
                       "channelAccountId": account["id"]}
            events += self._append(thread, message)
            url = channel.get("webhookUrl")
            body = {"type": "OUTGOING_CHANNEL_MESSAGE_CREATED", "portalId": str(self.portal_id),
                    "channelId": channel["id"], "channelAccountId": account["id"],
                    "channelIntegrationThreadIds": [thread["_integrationThreadId"]]
                    if thread["_integrationThreadId"] else [], "message": message}
        delivery = self._send_to_channel(url, body) if url else None
        self._emit(events)
        return {"message": message, "deliveryId": delivery.id if delivery else None}

    def close_thread(self, thread_id: str, actor_id: str | None = None) -> dict[str, Any]:
        """An agent closes a thread; the thread as the API shows it.

        Raises:
            AgentActionError: no such thread.
        """
        with self._context(), self.lock:
            thread = self.threads.get(thread_id)
            if thread is None:
                raise AgentActionError(f"thread {thread_id} not found", missing=True)
            actor = actor_id or thread.get("assignedTo") or f"A-{self.owners[0]['userId']}"
            events = self._set_status(thread, "CLOSED", actor, {"clientType": "HUBSPOT"})
            shown = public(thread)
        self._emit(events)
        return shown

    def edit_contact(self, contact_id: str, properties: dict[str, str], user_id: int | None = None,
                     ) -> dict[str, Any]:
        """An agent edits a contact in HubSpot; the contact as the API shows it.

        Raises:
            AgentActionError: no such contact, or a property HubSpot would refuse.
        """
        user = user_id or self.installer_user_id()
        with self._context(), self.lock:
            contact = self._find("contacts", contact_id, None)
            if contact is None:
                raise AgentActionError(f"contact {contact_id} not found", missing=True)
            refused = self._validate_properties("contacts", properties, exclude=contact["id"])
            if refused is not None:
                raise AgentActionError(refused[0].get_json()["message"])
            before = {k: contact["properties"].get(k) for k in properties}
            changed = {k: v for k, v in properties.items() if before[k] != v}
            if changed:
                snapshot = {**contact, "properties": dict(contact["properties"])}
                contact["properties"].update(changed)
                contact["updatedAt"] = timestamp()
                self.search_index.written("contacts", contact["id"], contact, before=snapshot)
            shown = self._public(contact)
        self._emit([{"subscriptionType": "contact.propertyChange", "objectId": int(contact_id), "propertyName": k,
                     "propertyValue": v, "changeSource": "CRM_UI", "sourceId": f"userId:{user}"}
                    for k, v in changed.items()])
        return shown

    def add_owner(self, owner_id: str, user_id: int, email: str, first_name: str, last_name: str,
                  ) -> dict[str, Any]:
        """A user of the account (an owner records can be assigned to, an agent threads can be assigned to)."""
        owner = {"id": owner_id, "email": email, "firstName": first_name, "lastName": last_name, "userId": user_id,
                 "userIdIncludingInactive": user_id, "archived": False}
        with self.lock:
            self.owners.append(owner)
        return owner

    def deactivate_owner(self, owner_id: str) -> None:
        """Deactivate an owner's user: the owner is archived and loses its ``userId``, as in HubSpot.

        Raises:
            AgentActionError: no such owner.
        """
        with self.lock:
            owner = next((o for o in self.owners if o["id"] == owner_id), None)
            if owner is None:
                raise AgentActionError(f"owner {owner_id} not found", missing=True)
            owner["userIdIncludingInactive"] = owner.get("userIdIncludingInactive") or owner["userId"]
            owner["userId"], owner["archived"] = None, True

    def _serve_owner(self, owner_id: str) -> Any:
        """One owner, by its id or its user's id; archived ones only when asked for."""
        # "conversations" credentials: the private app token, or an OAuth token with the route's scope
        if early := self._before("conversations", ("crm.objects.owners.read",)):
            return early
        by = request.args.get("idProperty") or "id"
        if by not in ("id", "userId"):
            return self._error(400, f"idProperty must be one of id, userId; got {by}", "VALIDATION_ERROR")
        archived = request.args.get("archived", "false") == "true"
        with self.lock:
            owner = next((o for o in self.owners if o["archived"] == archived and str(
                o["id"] if by == "id" else o.get("userIdIncludingInactive") or o["userId"]) == owner_id), None)
            shown = dict(owner) if owner else None
        if shown is None:
            return self._error(404, f"Owner {owner_id} not found", "OBJECT_NOT_FOUND")
        shown.setdefault("userIdIncludingInactive", shown["userId"])
        return jsonify({"type": "PERSON", **shown, "createdAt": "2026-01-01T00:00:00Z",
                        "updatedAt": "2026-01-01T00:00:00Z", "teams": []}), 200

    def inbox_view(self) -> list[dict[str, Any]]:
        """Every thread as an agent sees it in the inbox: contact, assignee, messages (oldest first)."""
        with self.lock:
            return [self._thread_view(t) for t in sorted(self.threads.values(), key=lambda t: int(t["id"]))]

    def _thread_view(self, thread: dict[str, Any]) -> dict[str, Any]:
        contact = self.objects["contacts"].get(thread["associatedContactId"])
        props = contact["properties"] if contact else {}
        owner = next((o for o in self.owners if f"A-{o['userId']}" == thread.get("assignedTo")), None)
        messages = []
        for mid in thread["_messages"]:
            m = self.messages[mid]
            sender = m["senders"][0] if m["senders"] else {}
            messages.append({"id": m["id"], "type": m["type"], "direction": m.get("direction"),
                             "text": m.get("text", ""), "newStatus": m.get("newStatus"),
                             "sender": {"actorId": sender.get("actorId"), "name": sender.get("name")},
                             "createdAt": m["createdAt"], "status": (m.get("status") or {}).get("statusType"),
                             "failure": ((m.get("status") or {}).get("failureDetails") or {}).get("errorMessage"),
                             "attachments": [{k: a.get(k) for k in ("fileId", "name", "url", "fileUsageType")}
                                             for a in m.get("attachments", [])]})
        return {"id": thread["id"], "status": thread["status"], "inboxId": thread["inboxId"],
                "channelId": thread["originalChannelId"], "channelAccountId": thread["originalChannelAccountId"],
                "integrationThreadId": thread["_integrationThreadId"], "assignedTo": thread.get("assignedTo"),
                "assignee": {"id": owner["id"], "name": f"{owner['firstName']} {owner['lastName']}",
                             "email": owner["email"]} if owner else None,
                "contact": {"id": thread["associatedContactId"],
                            "name": " ".join(v for v in (props.get("firstname"), props.get("lastname")) if v),
                            "phone": props.get("phone"), "email": props.get("email"),
                            "ownerId": props.get("hubspot_owner_id")},
                "visitor": thread["_visitor"], "createdAt": thread["createdAt"], "closedAt": thread.get("closedAt"),
                "messages": messages}

    # -- control endpoints -----------------------------------------------------------------------
    def _control_threads(self) -> Any:
        return jsonify(self.inbox_view()), 200

    def _control_channels(self) -> Any:
        with self.lock:
            return jsonify({"channels": [public(c) | {"archived": c["_archived"]} for c in self.channels.values()],
                            "channelAccounts": list(self.channel_accounts.values()),
                            "inboxes": [public(i) for i in self.inboxes]}), 200

    def _control_reply(self, thread_id: str) -> Any:
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("text"), str) or not (body["text"] or body.get("fileIds")):
            return jsonify({"error": "text (or fileIds) is required"}), 400
        return self._act(lambda: self.agent_reply(thread_id, body["text"], list(body.get("fileIds") or []),
                                                  body.get("actorId")), 201)

    def _control_close(self, thread_id: str) -> Any:
        body = request.get_json(silent=True) or {}
        return self._act(lambda: self.close_thread(thread_id, body.get("actorId")), 200)

    def _control_edit_contact(self, contact_id: str) -> Any:
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("properties"), dict):
            return jsonify({"error": "properties (an object) is required"}), 400
        return self._act(lambda: self.edit_contact(contact_id, body["properties"], body.get("userId")), 200)

    @staticmethod
    def _act(action: Any, status: int) -> Any:
        try:
            return jsonify(action()), status
        except AgentActionError as exc:
            return jsonify({"error": str(exc)}), 404 if exc.missing else 400
