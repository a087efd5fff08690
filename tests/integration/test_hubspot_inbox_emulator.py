"""The HubSpot emulator's conversations inbox over HTTP: custom channels, channel accounts, publishing into
threads, statuses, agents' replies and the signed webhooks they cause, subscriptions, faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from tests.integration._hubspot_emulator_env import (
    PRIVATE,
    Env,
    channel,
    contact,
    env_fixture,  # noqa: F401 - the fixture
    install,
    message,
    refused,
)

CC = "/conversations/v3/custom-channels"
THREADS = "/conversations/v3/conversations/threads"


def test_a_channel_is_registered_with_the_developer_key_and_its_capabilities_are_checked(env: Env) -> None:
    body = {"name": "chat2crm", "capabilities": {"deliveryIdentifierTypes": ["CHANNEL_SPECIFIC_OPAQUE_ID"]}}
    created = env.call("POST", CC, params=env.dev(), json=body)
    assert created.status_code == 201 and set(created.json()) == {"id", "name", "capabilities", "createdAt"}
    refused(env, env.call("POST", CC, params=env.dev(hapikey="wrong"), json=body), 401, "INVALID_AUTHENTICATION")
    refused(env, env.call("POST", CC, params={"hapikey": env.hubspot.developer_api_key}, json=body), 400,
            "VALIDATION_ERROR")
    refused(env, env.call("POST", CC, params=env.dev(appId=1), json=body), 403, "FORBIDDEN")
    unknown = {**body, "capabilities": {**body["capabilities"], "sendsPigeons": True}}
    refused(env, env.call("POST", CC, params=env.dev(), json=unknown), 400, "VALIDATION_ERROR")
    bad = {**body, "capabilities": {"deliveryIdentifierTypes": ["EMAIL"]}}
    answer = refused(env, env.call("POST", CC, params=env.dev(), json=bad), 400, "VALIDATION_ERROR")
    assert answer["subCategory"] == "CustomChannelsError.INVALID_CHANNEL_CAPABILITY_VALUES"
    refused(env, env.call("POST", CC, params=env.dev(), json={**body, "color": "red"}), 400, "VALIDATION_ERROR")
    refused(env, env.call("POST", CC, params=env.dev(), json={**body, "webhookUrl": "relay"}), 400,
            "VALIDATION_ERROR")

    channel_id = created.json()["id"]
    patched = env.call("PATCH", f"{CC}/{channel_id}", params=env.dev(), json={"webhookUrl": "https://relay/hook"})
    assert patched.status_code == 200 and patched.json()["webhookUrl"] == "https://relay/hook"
    dated = env.call("GET", f"/conversations/custom-channels/2026-03/{channel_id}", params=env.dev())
    assert dated.json()["webhookUrl"] == "https://relay/hook"
    listed = env.call("GET", CC, params=env.dev()).json()
    assert listed["total"] == 1 and listed["results"][0]["id"] == channel_id


def test_channel_routes_take_only_the_apps_oauth_token(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    answer = env.call("POST", f"{CC}/{channel_id}/messages", PRIVATE, json=message(account))
    assert refused(env, answer, 403, "MISSING_SCOPES")["errors"][0]["context"]["requiredGranularScopes"]
    refused(env, env.call("POST", f"{CC}/{channel_id}/messages", "nope", json=message(account)), 401,
            "INVALID_AUTHENTICATION")
    # the conversations API also takes the private app token
    assert env.call("GET", "/conversations/v3/conversations/inboxes", PRIVATE).status_code == 200


def test_a_channel_account_connects_the_channel_to_an_inbox(env: Env) -> None:
    token = install(env)["access_token"]
    inboxes = env.call("GET", "/conversations/v3/conversations/inboxes", token).json()
    assert inboxes["total"] == 2 and {i["type"] for i in inboxes["results"]} == {"INBOX", "HELP_DESK"}
    channel_id, account = channel(env, token)
    read = env.call("GET", f"{CC}/{channel_id}/channel-accounts/{account}", token).json()
    assert read["inboxId"] == "147959634" and read["authorized"] and read["deliveryIdentifier"]["value"] == "clinic-1"
    egg = {"name": "x", "inboxId": "1", "authorized": True}
    assert env.call("POST", f"{CC}/{channel_id}/channel-accounts", token, json=egg).status_code == 404
    phone = {**egg, "inboxId": "147959634", "deliveryIdentifier": {"type": "HS_PHONE_NUMBER", "value": "+90"}}
    refused(env, env.call("POST", f"{CC}/{channel_id}/channel-accounts", token, json=phone), 400, "VALIDATION_ERROR")
    off = env.call("PATCH", f"{CC}/{channel_id}/channel-accounts/{account}", token, json={"authorized": False})
    assert off.json()["authorized"] is False and off.json()["active"] is False
    refused(env, env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)), 400,
            "VALIDATION_ERROR")


def test_publishing_is_idempotent_and_threads_by_integration_thread_id(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    owned = contact(env, token)
    first = env.call("POST", f"{CC}/{channel_id}/messages", token,
                     json=message(account, integrationIdempotencyId="wamid.1", associateWithContactId=int(owned)))
    assert first.status_code == 201
    sent = first.json()
    assert (sent["direction"], sent["status"]["statusType"], sent["client"]["clientType"]) == (
        "INCOMING", "RECEIVED", "INTEGRATION")
    again = env.call("POST", f"{CC}/{channel_id}/messages", token,
                     json=message(account, integrationIdempotencyId="wamid.1", associateWithContactId=int(owned)))
    assert again.status_code == 200 and again.json() == sent
    thread = sent["conversationsThreadId"]
    second = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account, text="Fiyat?"))
    assert second.json()["conversationsThreadId"] == thread
    history = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account, direction="OUTGOING"))
    assert history.json()["conversationsThreadId"] == thread and history.json()["status"]["statusType"] == "SENT"
    shown = env.call("GET", f"{THREADS}/{thread}", token).json()
    assert (shown["associatedContactId"], shown["assignedTo"], shown["status"]) == (owned, "A-9001", "OPEN")
    texts = [m["text"] for m in env.call("GET", f"{THREADS}/{thread}/messages", token).json()["results"]]
    assert texts == ["Merhaba", "Fiyat?", "Merhaba"]

    # another integration thread (another patient, with no owner) is another HubSpot thread, not assigned
    unowned = contact(env, token, owner=None)
    other = env.call("POST", f"{CC}/{channel_id}/messages", token,
                     json=message(account, thread="c2c-thread-2", associateWithContactId=int(unowned))).json()
    assert other["conversationsThreadId"] != thread
    assert "assignedTo" not in env.call("GET", f"{THREADS}/{other['conversationsThreadId']}", token).json()
    by_contact = env.call("GET", THREADS, token, params={"associatedContactId": owned}).json()["results"]
    assert [t["id"] for t in by_contact] == [thread]


def test_hubspot_managed_threading_groups_by_the_visitors_identifier(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token, threading_model="DELIVERY_IDENTIFIER")
    path = f"{CC}/{channel_id}/messages"
    first = env.call("POST", path, token, json=message(account, thread=None)).json()
    same = env.call("POST", path, token, json=message(account, thread=None, text="?")).json()
    other = env.call("POST", path, token, json=message(account, thread=None, patient="telegram:42")).json()
    assert first["conversationsThreadId"] == same["conversationsThreadId"] != other["conversationsThreadId"]
    env.hubspot.agent_reply(first["conversationsThreadId"], "Merhaba")
    assert env.hubspot.wait_for_deliveries(5.0)
    [hook] = env.receiver.at("/channel")
    assert json.loads(hook["body"])["channelIntegrationThreadIds"] == []


def test_a_visitor_with_no_contact_named_gets_one(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    before = env.hubspot.count("contacts")
    sent = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).json()
    thread = env.call("GET", f"{THREADS}/{sent['conversationsThreadId']}", token).json()
    assert env.hubspot.count("contacts") == before + 1 and sent["createdBy"] == f"V-{thread['associatedContactId']}"


def test_publishing_refuses_what_hubspot_refuses(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    path = f"{CC}/{channel_id}/messages"
    bodies = [message(account, colour="red"), {k: v for k, v in message(account).items() if k != "messageDirection"},
              message(account, messageDirection="SIDEWAYS"), message(account, thread=None),
              message(account, attachments=[{"type": "FILE", "fileId": "404"}]),
              message(account, associateWithContactId=999), message(account, timestamp="yesterday"),
              message(account, senders=[]), message(account, text="", attachments=[])]
    for body in bodies:
        refused(env, env.call("POST", path, token, json=body), 400, "VALIDATION_ERROR")
    assert env.call("POST", f"{CC}/999/messages", token, json=message(account)).status_code == 404
    assert env.call("POST", path, token, json=message("999")).status_code == 404
    assert not env.hubspot.threads


def test_an_outgoing_messages_status_is_updated(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    incoming = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).json()
    outgoing = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account, direction="OUTGOING")).json()
    path = f"{CC}/{channel_id}/messages/{outgoing['id']}"
    read = env.call("PATCH", path, token, json={"statusType": "READ"})
    assert read.status_code == 200 and read.json()["status"] == {"statusType": "READ"}
    failed = env.call("PATCH", path, token, json={"statusType": "FAILED", "errorMessage": "131047 window closed"})
    assert failed.json()["status"]["failureDetails"]["errorMessage"] == "131047 window closed"
    assert env.call("GET", path, token).json()["status"]["statusType"] == "FAILED"
    refused(env, env.call("PATCH", path, token, json={"statusType": "DELIVERED"}), 400, "VALIDATION_ERROR")
    refused(env, env.call("PATCH", f"{CC}/{channel_id}/messages/{incoming['id']}", token,
                          json={"statusType": "SENT"}), 400, "VALIDATION_ERROR")
    assert env.call("PATCH", f"{CC}/{channel_id}/messages/nope", token, json={"statusType": "SENT"}).status_code == 404


def test_an_agents_reply_reaches_the_channel_webhook_signed(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    sent = env.call("POST", f"{CC}/{channel_id}/messages", token,
                    json=message(account, associateWithContactId=int(contact(env, token)))).json()
    thread = sent["conversationsThreadId"]
    scan = env.http.post(f"{env.url}/_emulator/files", json={"name": "plan.pdf", "mimeType": "application/pdf",
                                                              "contentBase64": base64.b64encode(b"%PDF").decode()})
    reply = env.http.post(f"{env.url}/_emulator/inbox/threads/{thread}/reply",
                          json={"text": "Yarın 10:00 uygun mu?", "fileIds": [scan.json()["id"]]})
    assert reply.status_code == 201
    assert env.hubspot.wait_for_deliveries(5.0)
    [hook] = env.receiver.at("/channel")
    stamp, body = hook["headers"]["X-Hubspot-Request-Timestamp"], hook["body"]
    source = b"POST" + (env.receiver.url + "/channel").encode() + body + stamp.encode()
    expected = base64.b64encode(hmac.new(env.hubspot.client_secret.encode(), source, hashlib.sha256).digest())
    assert hook["headers"]["X-Hubspot-Signature-V3"] == expected.decode()
    event = json.loads(body)
    assert (event["type"], event["portalId"], event["channelId"], event["channelAccountId"]) == (
        "OUTGOING_CHANNEL_MESSAGE_CREATED", str(env.hubspot.portal_id), channel_id, account)
    assert event["channelIntegrationThreadIds"] == ["c2c-thread-1"]
    agent = event["message"]
    assert (agent["id"], agent["direction"], agent["text"], agent["createdBy"], agent["client"]["clientType"]) == (
        reply.json()["message"]["id"], "OUTGOING", "Yarın 10:00 uygun mu?", "A-9001", "HUBSPOT")
    assert agent["recipients"][0]["deliveryIdentifier"]["value"] == "whatsapp:905321112233"
    assert [(a["type"], a["fileId"], a["name"]) for a in agent["attachments"]] == [
        ("FILE", scan.json()["id"], "plan.pdf")]
    # the relay reports the delivery; the agent sees it
    env.call("PATCH", f"{CC}/{channel_id}/messages/{agent['id']}", token, json={"statusType": "SENT"})
    [shown] = env.http.get(f"{env.url}/_emulator/inbox/threads").json()
    assert [(m["direction"], m["status"]) for m in shown["messages"]] == [("INCOMING", "RECEIVED"),
                                                                          ("OUTGOING", "SENT")]
    assert shown["assignee"]["id"] == "75001" and shown["contact"]["phone"] == "+905321112233"


def test_a_refused_webhook_is_retried_and_a_redelivery_fault_sends_it_twice(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    thread = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).json()[
        "conversationsThreadId"]
    env.receiver.answers[:] = [(500, 0.0), (200, 0.5)]  # a failure, then an answer too slow: retried twice
    env.hubspot.agent_reply(thread, "first")
    assert env.hubspot.wait_for_deliveries(5.0)
    [delivery] = env.hubspot.deliveries("channel")
    assert delivery["state"] == "delivered" and [a.get("status", a.get("error")) for a in delivery["attempts"]] == [
        500, "ReadTimeout", 200]
    assert len({r["body"] for r in env.receiver.at("/channel")}) == 1

    assert env.http.post(f"{env.url}/_emulator/webhooks/redeliver", json={"count": 1}).status_code == 200
    env.hubspot.agent_reply(thread, "second")
    assert env.http.post(f"{env.url}/_emulator/webhooks/wait", json={"timeout": 5}).json() == {"done": True}
    copies = [json.loads(r["body"]) for r in env.receiver.at("/channel")[3:]]
    assert len(copies) == 2 and copies[0] == copies[1] and copies[0]["message"]["text"] == "second"


def test_closing_a_thread_sends_the_subscription_its_property_change(env: Env) -> None:
    token = install(env, optional="conversations.write")["access_token"]
    app = env.hubspot.app_id
    settings = env.call("PUT", f"/webhooks/v3/{app}/settings", params={"hapikey": env.hubspot.developer_api_key},
                        json={"targetUrl": env.receiver.url + "/events", "throttling": {"maxConcurrentRequests": 5}})
    assert settings.status_code == 200
    subscribed = env.call("POST", f"/webhooks/v3/{app}/subscriptions", params={"hapikey": env.hubspot.developer_api_key},
                          json={"eventType": "conversation.propertyChange", "propertyName": "status", "active": True})
    assert subscribed.status_code == 201
    key = {"hapikey": env.hubspot.developer_api_key}
    path = f"/webhooks/v3/{app}/subscriptions/{subscribed.json()['id']}"
    assert env.call("PATCH", path, params=key, json={"active": False}).json()["active"] is False
    refused(env, env.call("PATCH", path, params=key, json={"active": "maybe"}), 400, "VALIDATION_ERROR")
    refused(env, env.call("PATCH", path + "0", params=key, json={"active": True}), 404, "OBJECT_NOT_FOUND")
    assert env.call("PATCH", path, params=key, json={"active": True}).json()["active"] is True
    channel_id, account = channel(env, token)
    thread = env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).json()[
        "conversationsThreadId"]
    closed = env.http.post(f"{env.url}/_emulator/inbox/threads/{thread}/close")
    assert closed.json()["status"] == "CLOSED" and closed.json()["closedAt"]
    assert env.hubspot.wait_for_deliveries(5.0)
    [hook] = env.receiver.at("/events")
    [event] = json.loads(hook["body"])
    assert {k: event[k] for k in ("subscriptionType", "objectId", "propertyName", "propertyValue", "portalId", "appId",
                                  "attemptNumber", "subscriptionId")} == {
        "subscriptionType": "conversation.propertyChange", "objectId": int(thread), "propertyName": "status",
        "propertyValue": "CLOSED", "portalId": env.hubspot.portal_id, "appId": app, "attemptNumber": 0,
        "subscriptionId": int(subscribed.json()["id"])}
    assert event["eventId"] and event["occurredAt"]
    secret = env.hubspot.client_secret.encode()
    assert hook["headers"]["X-Hubspot-Signature"] == hashlib.sha256(secret + hook["body"]).hexdigest()
    # a patient's new message reopens it; so does the API
    env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account, text="Bir sorum daha var"))
    assert env.call("GET", f"{THREADS}/{thread}", token).json()["status"] == "OPEN"
    env.call("PATCH", f"{THREADS}/{thread}", token, json={"status": "CLOSED"})
    assert env.hubspot.wait_for_deliveries(5.0)
    values = [json.loads(r["body"])[0]["propertyValue"] for r in env.receiver.at("/events")]
    assert values == ["CLOSED", "OPEN", "CLOSED"]
    kinds = [m["type"] for m in env.call("GET", f"{THREADS}/{thread}/messages", token).json()["results"]]
    assert kinds.count("THREAD_STATUS_CHANGE") == 3


def test_an_agent_editing_a_contact_sends_its_subscribed_property_change(env: Env) -> None:
    token = install(env)["access_token"]
    person = contact(env, token, owner=None)
    env.http.post(f"{env.url}/_emulator/webhooks/settings", json={
        "targetUrl": env.receiver.url + "/events",
        "subscriptions": [{"eventType": "contact.propertyChange", "propertyName": "hubspot_owner_id"}]})
    edited = env.http.post(f"{env.url}/_emulator/contacts/{person}",
                           json={"properties": {"hubspot_owner_id": "75001", "lastname": "Yılmaz"}})
    assert edited.status_code == 200 and edited.json()["properties"]["lastname"] == "Yılmaz"
    env.hubspot.edit_contact(person, {"hubspot_owner_id": "75001"})  # no change, no event
    assert env.hubspot.wait_for_deliveries(5.0)
    [hook] = env.receiver.at("/events")
    [event] = json.loads(hook["body"])
    assert (event["subscriptionType"], event["objectId"], event["propertyName"], event["propertyValue"],
            event["changeSource"]) == ("contact.propertyChange", int(person), "hubspot_owner_id", "75001", "CRM_UI")
    assert env.http.post(f"{env.url}/_emulator/contacts/{person}",
                         json={"properties": {"nope": "1"}}).status_code == 400


def test_injected_faults_apply_to_the_inbox_routes(env: Env) -> None:
    token = install(env)["access_token"]
    channel_id, account = channel(env, token)
    env.hubspot.fail_next(1, "503")
    assert env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).status_code == 503
    env.hubspot.fail_next(1, "429")
    limited = env.call("GET", "/conversations/v3/conversations/inboxes", token)
    assert limited.status_code == 429 and limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert env.call("POST", f"{CC}/{channel_id}/messages", token, json=message(account)).status_code == 201
