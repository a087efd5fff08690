"""The emulated custom channels API (v3, and the same routes under the dated ``2026-03`` paths).

- Channels: registered with the developer API key and the app's id (``POST
  /conversations/v3/custom-channels?hapikey=…&appId=…``), read, listed, updated (``PATCH``), archived. The
  ``capabilities`` are checked against the guide's keys and values (HubSpot's
  ``CustomChannelsError.INVALID_CHANNEL_CAPABILITY_VALUES``).
- Channel accounts: a channel connected to an inbox (``…/{channelId}/channel-accounts``), with the
  account's own delivery identifier; ``authorized: false`` disables it.
- Messages (``…/{channelId}/messages``): INCOMING (a visitor's) and OUTGOING (sent by the integration);
  ``integrationThreadId`` groups them into one HubSpot thread per channel account (the
  ``INTEGRATION_THREAD_ID`` threading model; ``DELIVERY_IDENTIFIER`` threads by the visitor's identifier);
  ``integrationIdempotencyId`` makes a republish answer the message already published and create nothing;
  ``associateWithContactId`` associates the thread with a contact; a ``FILE`` attachment names a file of
  the file manager. ``PATCH …/messages/{messageId}`` sets an outgoing message's status (SENT, FAILED with
  ``errorMessage``, READ).

Every route but the channel's own needs an OAuth access token of the app with the custom channels scopes.
"""

from __future__ import annotations

import html
import itertools
from datetime import datetime
from typing import Any

from flask import g, jsonify, request

from emulators.hubspot.oauth import Route
from emulators.hubspot.shapes import capability_problems, shape_errors
from emulators.hubspot.state import timestamp
from emulators.hubspot.threads import HubSpotThreads, message_id, public

_READ = ("conversations.custom_channels.read", "conversations.custom_channels.write")
_WRITE = ("conversations.custom_channels.write",)
#: the channel routes' prefixes: v3, and the dated version (same bodies)
PREFIXES = ("/conversations/v3/custom-channels", "/conversations/custom-channels/2026-03")


def _url_problems(body: dict[str, Any]) -> list[str]:
    """A channel's URLs must be URLs (HubSpot calls ``webhookUrl``, sends admins to the redirect URL)."""
    return [f"{key}: {body[key]!r} is not a valid URL" for key in ("webhookUrl", "channelAccountConnectionRedirectUrl",
                                                                  "channelLogoUrl")
            if key in body and not str(body[key]).startswith(("https://", "http://"))]


def usage_type(mime_type: str) -> str:
    """A file attachment's ``fileUsageType`` when the integration names none."""
    return "IMAGE" if mime_type.startswith("image/") else "AUDIO" if mime_type.startswith("audio/") else "OTHER"


class HubSpotChannels(HubSpotThreads):
    """Custom channels, their accounts, and the messages published over them."""

    #: channel id → the channel (the API's fields, and ``_appId``, ``_archived``)
    channels: dict[str, dict[str, Any]]
    #: channel account id → the account as the API shows it
    channel_accounts: dict[str, dict[str, Any]]
    #: (channel id, integrationIdempotencyId) → the message published with it
    idempotency: dict[tuple[str, str], str]
    channel_ids: itertools.count[int]
    account_ids: itertools.count[int]

    def _init_channels(self) -> None:
        self.channels, self.channel_accounts, self.idempotency = {}, {}, {}
        self.channel_ids, self.account_ids = itertools.count(1_048_001), itertools.count(3_300_000_001)

    def _extra_routes(self) -> list[Route]:
        routes: list[Route] = [*super()._extra_routes(),
                               (("GET", "POST"), "/conversations/custom-channels/v3", self._serve_channels)]
        for base in PREFIXES:
            routes += [(("GET", "POST"), base, self._serve_channels),
                       (("GET", "POST"), f"{base}/", self._serve_channels),
                       (("GET", "PATCH", "DELETE"), f"{base}/<int:channel_id>", self._serve_channel),
                       (("GET", "POST"), f"{base}/<int:channel_id>/channel-accounts", self._serve_accounts),
                       (("GET", "PATCH"), f"{base}/<int:channel_id>/channel-accounts/<int:account_id>",
                        self._serve_account),
                       (("POST",), f"{base}/<int:channel_id>/messages", self._serve_publish),
                       (("GET", "PATCH"), f"{base}/<int:channel_id>/messages/<msg_id>", self._serve_message)]
        return routes

    # -- channels (developer API key) ------------------------------------------------------------
    def _serve_channels(self) -> Any:
        """Register a channel for the app, or list the app's channels."""
        if early := self._before("developer"):
            return early
        if request.method == "GET":
            with self.lock:
                results = [public(c) for c in self.channels.values() if not c["_archived"]]
            return jsonify({"total": len(results), "results": results}), 200
        if not request.args.get("appId"):
            return self._error(400, "appId is required to create a custom channel", "VALIDATION_ERROR")
        if request.args["appId"] != str(self.app_id):
            return self._error(403, f"The developer API key does not own app {request.args['appId']}", "FORBIDDEN")
        body: Any = request.get_json(silent=True)
        if problems := shape_errors("ChannelCreate", body) or _url_problems(body):
            return self._refuse(problems)
        if early := self._capabilities(body["capabilities"], creating=True):
            return early
        with self.lock:
            channel = {"id": str(next(self.channel_ids)), "createdAt": timestamp(), **body, "_appId": self.app_id,
                       "_archived": False}
            self.channels[channel["id"]] = channel
        return jsonify(public(channel)), 201

    def _serve_channel(self, channel_id: int) -> Any:
        """Read, update (capabilities, webhook URL…) or archive a channel."""
        if early := self._before("developer"):
            return early
        with self.lock:
            channel = self.channels.get(str(channel_id))
        if channel is None or channel["_archived"]:
            return self._error(404, f"Channel {channel_id} not found", "OBJECT_NOT_FOUND")
        if request.method == "DELETE":
            with self.lock:
                channel["_archived"] = True
            return "", 204
        if request.method == "PATCH":
            body: Any = request.get_json(silent=True)
            if problems := shape_errors("ChannelPatch", body) or _url_problems(body):
                return self._refuse(problems)
            if "capabilities" in body and (early := self._capabilities(body["capabilities"], creating=True)):
                return early
            with self.lock:
                channel.update(body)
        return jsonify(public(channel)), 200

    def _capabilities(self, capabilities: dict[str, Any], *, creating: bool) -> Any:
        unknown, invalid = capability_problems(capabilities, creating=creating)
        if unknown:
            return self._refuse([f"unknown capabilities {', '.join(unknown)}"],
                                "One or more Channel Capabilities specified are not recognized")
        if invalid:
            with self.lock:
                self.violations.append({"path": request.path, "problem": f"capabilities: {', '.join(invalid)}"})
            return self._error(400, "One or more Channel Capabilities specified had invalid values: `"
                               + ", ".join(invalid) + "`", "VALIDATION_ERROR",
                               context={"capabilityKeysAndValues": invalid},
                               subCategory="CustomChannelsError.INVALID_CHANNEL_CAPABILITY_VALUES")
        return None

    def _app_channel(self, channel_id: int) -> dict[str, Any] | None:
        """The caller app's live channel (another app's channel is not found, as on HubSpot)."""
        with self.lock:
            channel = self.channels.get(str(channel_id))
        if channel is None or channel["_archived"] or channel["_appId"] != g.hubspot_app_id:
            return None
        return channel

    # -- channel accounts ------------------------------------------------------------------------
    def _serve_accounts(self, channel_id: int) -> Any:
        """Connect the channel to an inbox (a new channel account), or list its accounts."""
        if early := self._before("channels", _WRITE if request.method == "POST" else _READ):
            return early
        if (channel := self._app_channel(channel_id)) is None:
            return self._error(404, f"Channel {channel_id} not found", "OBJECT_NOT_FOUND")
        if request.method == "GET":
            with self.lock:
                results = [a for a in self.channel_accounts.values() if a["channelId"] == channel["id"]
                           and a["archived"] == (request.args.get("archived") == "true")]
            return jsonify({"total": len(results), "results": results}), 200
        body: Any = request.get_json(silent=True)
        if problems := shape_errors("ChannelAccountEgg", body):
            return self._refuse(problems)
        if not any(i["id"] == body["inboxId"] and not i["archived"] for i in self.inboxes):
            return self._error(404, f"Inbox {body['inboxId']} not found", "OBJECT_NOT_FOUND")
        identifier = body.get("deliveryIdentifier")
        if identifier and (problem := self._identifier_problem(channel, identifier)):
            return self._refuse([problem])
        with self.lock:
            account = {"id": str(next(self.account_ids)), "channelId": channel["id"], "name": body["name"],
                       "inboxId": body["inboxId"], "active": body["authorized"], "authorized": body["authorized"],
                       "archived": False, "createdAt": timestamp()} | (
                {"deliveryIdentifier": identifier} if identifier else {})
            self.channel_accounts[account["id"]] = account
        return jsonify(account), 201

    def _serve_account(self, channel_id: int, account_id: int) -> Any:
        """Read a channel account, or rename / (de)authorize it."""
        if early := self._before("channels", _WRITE if request.method == "PATCH" else _READ):
            return early
        channel = self._app_channel(channel_id)
        with self.lock:
            account = self.channel_accounts.get(str(account_id))
        if channel is None or account is None or account["channelId"] != channel["id"]:
            return self._error(404, f"Channel account {account_id} not found", "OBJECT_NOT_FOUND")
        if request.method == "PATCH":
            body: Any = request.get_json(silent=True)
            if problems := shape_errors("ChannelAccountUpdate", body):
                return self._refuse(problems)
            with self.lock:
                account.update(body)
                account["active"] = account["authorized"]
        return jsonify(account), 200

    @staticmethod
    def _identifier_problem(channel: dict[str, Any], identifier: dict[str, Any]) -> str | None:
        allowed = channel["capabilities"].get("deliveryIdentifierTypes", [])
        if identifier["type"] not in allowed:
            return f"delivery identifier type {identifier['type']} is not one of the channel's {allowed}"
        return None

    # -- messages --------------------------------------------------------------------------------
    def _serve_publish(self, channel_id: int) -> Any:
        """Publish a message over the channel: into its thread, idempotently."""
        if early := self._before("channels", _WRITE):
            return early
        body: Any = request.get_json(silent=True)
        if problems := shape_errors("MessageEgg", body):
            return self._refuse(problems)
        if (channel := self._app_channel(channel_id)) is None:
            return self._error(404, f"Channel {channel_id} not found", "OBJECT_NOT_FOUND")
        with self.lock:
            account = self.channel_accounts.get(body["channelAccountId"])
            replay = self.idempotency.get((channel["id"], body.get("integrationIdempotencyId") or ""))
            if replay is not None:
                return jsonify(self.messages[replay]), 200
        if account is None or account["channelId"] != channel["id"] or account["archived"]:
            return self._error(404, f"Channel account {body['channelAccountId']} not found", "OBJECT_NOT_FOUND")
        if not account["authorized"]:
            return self._error(400, f"Channel account {account['id']} is not authorized", "VALIDATION_ERROR")
        if problems := self._publish_problems(channel, body):
            return self._refuse(problems, "Invalid message")
        incoming = body["messageDirection"] == "INCOMING"
        visitor_side = body["senders"][0] if incoming else body["recipients"][0]
        visitor = {"deliveryIdentifier": visitor_side["deliveryIdentifier"], "name": visitor_side.get("name")}
        threading_model = channel["capabilities"].get("threadingModel", "INTEGRATION_THREAD_ID")
        key = body.get("integrationThreadId") if threading_model == "INTEGRATION_THREAD_ID" else \
            visitor["deliveryIdentifier"]["value"]
        contact = str(body["associateWithContactId"]) if "associateWithContactId" in body else None
        with self.lock:
            thread, events = self._thread_for(account, key, integration_thread_id=body.get("integrationThreadId"),
                                              visitor=visitor, contact_id=contact, at=body["timestamp"])
            message = self._integration_message(channel, account, thread, body)
            events += self._append(thread, message)
            if body.get("integrationIdempotencyId"):
                self.idempotency[(channel["id"], body["integrationIdempotencyId"])] = message["id"]
        self._emit(events)
        return jsonify(message), 201

    def _publish_problems(self, channel: dict[str, Any], body: dict[str, Any]) -> list[str]:
        """Why HubSpot would refuse a message its shape allows (identifiers, thread, contact, files)."""
        problems = [p for side in ("senders", "recipients") for who in body[side]
                    if (p := self._identifier_problem(channel, who["deliveryIdentifier"]))]
        try:
            if datetime.fromisoformat(body["timestamp"]).tzinfo is None:
                problems.append("timestamp: a date-time needs its offset (Z or ±hh:mm)")
        except ValueError:
            problems.append(f"timestamp: {body['timestamp']!r} is not an ISO 8601 date-time")
        side = "senders" if body["messageDirection"] == "INCOMING" else "recipients"
        if not body[side]:
            problems.append(f"{side}: a {body['messageDirection']} message needs the visitor among its {side}")
        if channel["capabilities"].get("threadingModel", "INTEGRATION_THREAD_ID") == "INTEGRATION_THREAD_ID" \
                and not body.get("integrationThreadId"):
            problems.append("integrationThreadId: required by the channel's INTEGRATION_THREAD_ID threading model")
        contact = body.get("associateWithContactId")
        if contact is not None and self._find("contacts", str(contact), None) is None:
            problems.append(f"associateWithContactId: contact {contact} does not exist")
        for attachment in body["attachments"]:
            if attachment["type"] == "FILE" and attachment["fileId"] not in self.files:
                problems.append(f"attachments: file {attachment['fileId']} does not exist")
        if not body["text"] and not body["attachments"]:
            problems.append("text: a message without attachments needs text")
        return problems

    def _integration_message(self, channel: dict[str, Any], account: dict[str, Any], thread: dict[str, Any],
                             body: dict[str, Any]) -> dict[str, Any]:
        """Hold ``lock``. The message the integration published, as HubSpot records it."""
        incoming = body["messageDirection"] == "INCOMING"
        visitor_actor = f"V-{thread['associatedContactId']}"
        integration = f"I-{self.app_id}"

        def actors(people: list[dict[str, Any]], actor: str) -> list[dict[str, Any]]:
            return [{"actorId": actor, **({"name": p["name"]} if p.get("name") else {}),
                     "deliveryIdentifier": p["deliveryIdentifier"]} for p in people]

        message = {"type": "MESSAGE", "id": message_id(), "conversationsThreadId": thread["id"],
                   "createdAt": body["timestamp"], "updatedAt": timestamp(),
                   "createdBy": visitor_actor if incoming else integration,
                   "client": {"clientType": "INTEGRATION", "integrationAppId": self.app_id},
                   "senders": actors(body["senders"], visitor_actor if incoming else integration),
                   "recipients": actors(body["recipients"], integration if incoming else visitor_actor),
                   "archived": False, "text": body["text"],
                   "richText": body.get("richText") or f"<div>{html.escape(body['text'])}</div>",
                   "attachments": [self._attachment(a) for a in body["attachments"]],
                   "truncationStatus": "NOT_TRUNCATED",
                   "status": {"statusType": "RECEIVED" if incoming else "SENT"},
                   "direction": body["messageDirection"], "channelId": channel["id"], "channelAccountId": account["id"]}
        if body.get("inReplyToId"):
            message["inReplyToId"] = body["inReplyToId"]
        return message

    def _attachment(self, attachment: dict[str, Any]) -> dict[str, Any]:
        """An attachment as a message shows it (a file with its name and URL)."""
        if attachment["type"] != "FILE":
            return dict(attachment)
        record = self.files[attachment["fileId"]]
        shown = self.public_file(record)
        name = f"{record['name']}.{record['extension']}" if record["extension"] else record["name"]
        return {"type": "FILE", "fileId": record["id"], "name": name, "url": shown["url"],
                "fileUsageType": attachment.get("fileUsageType") or usage_type(record["_mime"])}

    def _serve_message(self, channel_id: int, msg_id: str) -> Any:
        """Read a message published over the channel, or set an outgoing message's delivery status."""
        if early := self._before("channels", _WRITE if request.method == "PATCH" else _READ):
            return early
        if request.method == "PATCH" and (problems := shape_errors("MessageUpdate", request.get_json(silent=True))):
            return self._refuse(problems)
        channel = self._app_channel(channel_id)
        with self.lock:
            message = self.messages.get(msg_id)
            if channel is None or message is None or message.get("channelId") != channel["id"]:
                return self._error(404, f"Message {msg_id} not found", "OBJECT_NOT_FOUND")
            if request.method == "PATCH":
                body = request.get_json()
                if message["direction"] != "OUTGOING":
                    return self._refuse([f"message {msg_id} is INCOMING: only an outgoing message has a "
                                         "delivery status"], "Invalid status update")
                status: dict[str, Any] = {"statusType": body["statusType"]}
                if body["statusType"] == "FAILED":
                    status["failureDetails"] = {"errorMessageTokens": {},
                                                **({"errorMessage": body["errorMessage"]}
                                                   if body.get("errorMessage") else {})}
                message["status"] = status
                message["updatedAt"] = timestamp()
            shown = dict(message)
        return jsonify(shown), 200
