"""The emulated conversations inbox: inboxes, threads and their messages, and the conversations API that
reads and updates them (``/conversations/v3/conversations/inboxes``, ``…/threads``, ``…/threads/{id}``,
``…/threads/{id}/messages``).

A thread belongs to one channel account and one visitor. It opens on the first message published for it
(:mod:`emulators.hubspot.channels`), associated with a contact (the one named by
``associateWithContactId``, or the contact the visitor's phone number or email finds, or a new one); the
inbox's routing rule then assigns it, as HubSpot's inbox routing can: the first inbox assigns a new thread
to the contact's owner (``hubspot_owner_id`` → the owner's agent actor ``A-{userId}``). Closing a thread
(the API's PATCH, or an agent) adds a ``THREAD_STATUS_CHANGE`` message; a patient's new message reopens it.
The assignee is set or removed with ``PUT``/``DELETE /conversations/conversations/2026-09-beta/threads/{id}/assignee``
(``{"actorId": "A-{userId}"}``, an active owner's user; ``conversations.write``). Each change is sent to the
app's ``conversation.*`` subscriptions (:mod:`emulators.hubspot.webhooks`), an assignment as the
``conversation.propertyChange`` of ``assignedTo``.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from flask import g, jsonify, request

from emulators.hubspot.oauth import Route
from emulators.hubspot.shapes import shape_errors
from emulators.hubspot.state import timestamp
from emulators.hubspot.webhooks import HubSpotWebhooks

_READ = ("conversations.read",)
_WRITE = ("conversations.write",)
_BASE = "/conversations/v3/conversations"
#: the thread assignee endpoint (only in the dated conversations API)
_ASSIGNEE = "/conversations/conversations/2026-09-beta/threads/<thread_id>/assignee"


def message_id() -> str:
    """A new message id, as HubSpot writes them (32 hex digits)."""
    return uuid.uuid4().hex


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it (the emulator's own ``_``-prefixed keys left out)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


class HubSpotThreads(HubSpotWebhooks):
    """Inboxes, threads, messages."""

    #: inbox: id, name, type (INBOX or HELP_DESK), timestamps, ``_routing`` (``contact_owner`` or None)
    inboxes: list[dict[str, Any]]
    #: thread id → the thread (the API's fields, and ``_key``, ``_integrationThreadId``, ``_visitor``, ``_messages``)
    threads: dict[str, dict[str, Any]]
    #: (channel account id, integration thread id or visitor identifier) → thread id
    thread_keys: dict[tuple[str, str], str]
    #: message id → the message as the API shows it
    messages: dict[str, dict[str, Any]]
    thread_ids: itertools.count[int]

    def _init_threads(self) -> None:
        created = "2026-01-05T09:00:00.000Z"
        self.inboxes = [
            {"id": "147959634", "name": "Patient conversations", "type": "INBOX", "createdAt": created,
             "updatedAt": created, "archived": False, "_routing": "contact_owner"},
            {"id": "147959635", "name": "Help desk", "type": "HELP_DESK", "createdAt": created,
             "updatedAt": created, "archived": False, "_routing": None},
        ]
        self.threads, self.thread_keys, self.messages = {}, {}, {}
        self.thread_ids = itertools.count(9_100_000_001)

    # -- what a thread does (hold ``lock``; the returned events go to :meth:`_emit` afterwards) -----
    def _thread_for(self, account: dict[str, Any], key: str, *, integration_thread_id: str | None,
                    visitor: dict[str, Any], contact_id: str | None, at: str) -> tuple[dict[str, Any], list[Any]]:
        """The thread of ``key`` on a channel account, opened (associated, routed) if it has none yet."""
        existing = self.thread_keys.get((account["id"], key))
        if existing is not None:
            thread = self.threads[existing]
            if contact_id is not None and contact_id != thread["associatedContactId"]:
                thread["associatedContactId"] = contact_id
            return thread, []
        thread_id = str(next(self.thread_ids))
        thread = {"id": thread_id, "createdAt": at, "status": "OPEN", "originalChannelId": account["channelId"],
                  "originalChannelAccountId": account["id"], "inboxId": account["inboxId"], "spam": False,
                  "associatedContactId": contact_id or self._visitor_contact(visitor), "archived": False,
                  "latestMessageTimestamp": at, "_key": key, "_integrationThreadId": integration_thread_id,
                  "_visitor": visitor, "_messages": []}
        self.threads[thread_id] = thread
        self.thread_keys[(account["id"], key)] = thread_id
        events: list[Any] = [{"subscriptionType": "conversation.creation", "objectId": int(thread_id),
                              "changeFlag": "CREATED"}]
        assignee = self._routed_to(thread)
        if assignee:
            events += self._assign(thread, assignee)
        return thread, events

    def _visitor_contact(self, visitor: dict[str, Any]) -> str:
        """The contact a visitor's phone number or email finds, or a new one (as HubSpot creates for a
        visitor it cannot match)."""
        identifier = visitor.get("deliveryIdentifier") or {}
        value = identifier.get("value", "")
        fields = {"HS_PHONE_NUMBER": ("phone", "mobilephone"), "HS_EMAIL_ADDRESS": ("email",)}.get(
            identifier.get("type", ""), ())
        for contact in self.objects["contacts"].values():
            if not contact["archived"] and any(value and contact["properties"].get(f) == value for f in fields):
                return str(contact["id"])
        properties = {fields[0]: value} if fields else {}
        if visitor.get("name"):
            properties["firstname"] = visitor["name"]
        created = self._create("contacts", properties, [])
        self.search_index.written("contacts", created["id"], created)
        return str(created["id"])

    def _routed_to(self, thread: dict[str, Any]) -> str | None:
        """The actor the inbox's routing rule assigns a new thread to (the contact's owner), if any."""
        inbox = next((i for i in self.inboxes if i["id"] == thread["inboxId"]), None)
        if inbox is None or inbox["_routing"] != "contact_owner":
            return None
        contact = self.objects["contacts"].get(thread["associatedContactId"])
        owner_id = contact["properties"].get("hubspot_owner_id") if contact else None
        owner = next((o for o in self.owners if o["id"] == str(owner_id)), None)
        # a deactivated user's owner keeps its id but has no user: the rule skips it, as HubSpot's does
        return f"A-{owner['userId']}" if owner and not owner["archived"] and owner["userId"] else None

    def _agent(self, actor: str) -> dict[str, Any] | None:
        """The active owner whose user is the agent actor ``A-{userId}`` (None: no such active user)."""
        return next((o for o in self.owners if not o["archived"] and o["userId"] and f"A-{o['userId']}" == actor),
                    None)

    def _assign(self, thread: dict[str, Any], actor: str | None) -> list[Any]:
        """Set (or, with None, remove) a thread's assignee; its ``assignedTo`` change event, if it changed."""
        if thread.get("assignedTo") == actor:
            return []
        if actor is None:
            thread.pop("assignedTo", None)
        else:
            thread["assignedTo"] = actor
        return [{"subscriptionType": "conversation.propertyChange", "objectId": int(thread["id"]),
                 "propertyName": "assignedTo", "propertyValue": actor or ""}]

    def _append(self, thread: dict[str, Any], message: dict[str, Any]) -> list[Any]:
        """Add a message to its thread (a patient's reopens a closed one)."""
        self.messages[message["id"]] = message
        thread["_messages"].append(message["id"])
        events: list[Any] = []
        if message.get("type") == "MESSAGE":
            at = message["createdAt"]
            thread["latestMessageTimestamp"] = at
            direction = "latestMessageReceivedTimestamp" if message["direction"] == "INCOMING" else \
                "latestMessageSentTimestamp"
            thread[direction] = at
            if message["direction"] == "INCOMING" and thread["status"] == "CLOSED":
                events += self._set_status(thread, "OPEN", message["createdBy"], message["client"])
            events.append({"subscriptionType": "conversation.newMessage", "objectId": int(thread["id"]),
                           "messageId": message["id"], "messageType": "MESSAGE", "changeFlag": "NEW_MESSAGE"})
        return events

    def _set_status(self, thread: dict[str, Any], status: str, actor: str, client: dict[str, Any]) -> list[Any]:
        """Open or close a thread: its status, a ``THREAD_STATUS_CHANGE`` message, the event."""
        if thread["status"] == status:
            return []
        now = timestamp()
        thread["status"] = status
        if status == "CLOSED":
            thread["closedAt"] = now
        else:
            thread.pop("closedAt", None)
        change = {"type": "THREAD_STATUS_CHANGE", "id": message_id(), "conversationsThreadId": thread["id"],
                  "createdAt": now, "createdBy": actor, "client": client, "senders": [{"actorId": actor}],
                  "recipients": [], "archived": False, "newStatus": status}
        self.messages[change["id"]] = change
        thread["_messages"].append(change["id"])
        return [{"subscriptionType": "conversation.propertyChange", "objectId": int(thread["id"]),
                 "propertyName": "status", "propertyValue": status}]

    # -- the conversations API -------------------------------------------------------------------
    def _extra_routes(self) -> list[Route]:
        return [*super()._extra_routes(),
                (("GET",), f"{_BASE}/inboxes", self._serve_inboxes),
                (("GET",), f"{_BASE}/inboxes/<inbox_id>", self._serve_inbox),
                (("GET",), f"{_BASE}/threads", self._serve_threads),
                (("GET", "PATCH", "DELETE"), f"{_BASE}/threads/<thread_id>", self._serve_thread),
                (("GET",), f"{_BASE}/threads/<thread_id>/messages", self._serve_thread_messages),
                (("GET",), f"{_BASE}/threads/<thread_id>/messages/<msg_id>", self._serve_thread_message),
                (("PUT", "DELETE"), _ASSIGNEE, self._serve_assignee)]

    def _serve_inboxes(self) -> Any:
        """The account's inboxes."""
        if early := self._before("conversations", _READ):
            return early
        results = [public(i) for i in self.inboxes if not i["archived"]]
        return jsonify({"total": len(results), "results": results}), 200

    def _serve_inbox(self, inbox_id: str) -> Any:
        if early := self._before("conversations", _READ):
            return early
        inbox = next((i for i in self.inboxes if i["id"] == inbox_id), None)
        if inbox is None:
            return self._error(404, f"Inbox {inbox_id} not found", "OBJECT_NOT_FOUND")
        return jsonify(public(inbox)), 200

    def _serve_threads(self) -> Any:
        """Threads, filtered (inbox, contact, status, archived) and paged by id."""
        if early := self._before("conversations", _READ):
            return early
        args = request.args
        try:
            limit = min(int(args.get("limit") or 100), 500)
            after = int(args.get("after") or 0)
        except ValueError:
            return self._error(400, "limit and after must be integers", "VALIDATION_ERROR")
        with self.lock:
            found = [t for t in self.threads.values()
                     if int(t["id"]) > after and t["archived"] == (args.get("archived") == "true")
                     and args.get("inboxId") in (None, t["inboxId"])
                     and args.get("associatedContactId") in (None, t["associatedContactId"])
                     and args.get("threadStatus") in (None, t["status"])]
            found.sort(key=lambda t: int(t["id"]))
            page = [public(t) for t in found[:limit]]
        answer: dict[str, Any] = {"results": page}
        if len(found) > limit:
            answer["paging"] = {"next": {"after": page[-1]["id"], "link": None}}
        return jsonify(answer), 200

    def _serve_thread(self, thread_id: str) -> Any:
        """Read a thread, update its status (or archive it), or archive it."""
        writing = request.method != "GET"
        if early := self._before("conversations", _WRITE if writing else _READ):
            return early
        if request.method == "PATCH" and (problems := shape_errors("ThreadUpdate", request.get_json(silent=True))):
            return self._refuse(problems)
        with self.lock:
            thread = self.threads.get(thread_id)
            if thread is None:
                return self._error(404, f"Thread {thread_id} not found", "OBJECT_NOT_FOUND")
            events: list[Any] = []
            if request.method == "DELETE":
                thread["archived"] = True
                return "", 204
            if request.method == "PATCH":
                body = request.get_json()
                if "archived" in body:
                    thread["archived"] = body["archived"]
                if "status" in body:
                    app = g.hubspot_app_id or self.app_id
                    events = self._set_status(thread, body["status"], f"I-{app}",
                                              {"clientType": "INTEGRATION", "integrationAppId": app})
            shown = public(thread)
        self._emit(events)
        return jsonify(shown), 200

    def _serve_assignee(self, thread_id: str) -> Any:
        """Assign a thread to an agent (``{"actorId": "A-{userId}"}``: an active user of the account), or
        unassign it (DELETE, 204)."""
        if early := self._before("conversations", _WRITE):
            return early
        body: Any = request.get_json(silent=True)
        if request.method == "PUT" and (problems := _assignee_problems(body)):
            return self._refuse(problems)
        with self.lock:
            thread = self.threads.get(thread_id)
            if thread is None:
                return self._error(404, f"Thread {thread_id} not found", "OBJECT_NOT_FOUND")
            if request.method == "DELETE":
                events = self._assign(thread, None)
                shown = None
            else:
                actor = body["actorId"]
                if self._agent(actor) is None:
                    return self._error(400, f"Cannot assign thread {thread_id} to {actor}: not an active user of "
                                            "this account", "VALIDATION_ERROR")
                events = self._assign(thread, actor)
                shown = public(thread)
        self._emit(events)
        return (jsonify(shown), 200) if shown is not None else ("", 204)

    def _serve_thread_messages(self, thread_id: str) -> Any:
        """A thread's messages, oldest first."""
        if early := self._before("conversations", _READ):
            return early
        with self.lock:
            thread = self.threads.get(thread_id)
            if thread is None:
                return self._error(404, f"Thread {thread_id} not found", "OBJECT_NOT_FOUND")
            results = [dict(self.messages[m]) for m in thread["_messages"]]
        return jsonify({"results": results}), 200

    def _serve_thread_message(self, thread_id: str, msg_id: str) -> Any:
        if early := self._before("conversations", _READ):
            return early
        with self.lock:
            message = self.messages.get(msg_id)
        if message is None or message["conversationsThreadId"] != thread_id:
            return self._error(404, f"Message {msg_id} not found", "OBJECT_NOT_FOUND")
        return jsonify(message), 200

    def _refuse(self, problems: list[str], message: str = "Invalid input JSON") -> Any:
        """HubSpot's 400 for a body it cannot read, recorded as a request HubSpot would reject."""
        with self.lock:
            self.violations.append({"path": request.path, "problem": "; ".join(problems)})
        return self._error(400, f"{message}: {'; '.join(problems)}", "VALIDATION_ERROR")


def _assignee_problems(body: Any) -> list[str]:
    """What HubSpot's deserializer refuses in an assignee body (an object with exactly a string ``actorId``)."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = [f"unknown field {k!r}" for k in body if k != "actorId"]
    if not isinstance(body.get("actorId"), str) or not body["actorId"]:
        problems.append("actorId (a string) is required")
    return problems
