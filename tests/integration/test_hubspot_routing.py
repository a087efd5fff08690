"""Threads the relay opens in HubSpot follow the contact's owner, against the HubSpot emulator over HTTP: an
inbox whose routing rule assigned the thread costs one read and no assignment; a help desk's thread is assigned
by the relay to the owner's user; a contact without an owner is looked at again later; a refusal or a failure
never fails the publish; an install without the routing's scopes leaves threads as they are, warning once. And
the emulator's side: the assignee endpoint and the owner read, with HubSpot's scopes and error bodies.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests

from adapters.hubspot.inbox import HubSpotInbox
from adapters.hubspot.keys import ROUTED_THREADS
from adapters.hubspot.oauth import SCOPES
from core.inbox import AgentReply, ThreadMessage, thread_id
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.integration.test_hubspot_inbox import PRIVATE_TOKEN, Env, Relay

ROUTING_INBOX = "147959634"  # the emulated conversations inbox: its rule assigns new threads to the contact's owner
HELP_DESK = "147959635"  # the emulated help desk: it does not route
ASSIGNEE = "/conversations/conversations/2026-09-beta/threads/{}/assignee"
PATIENT_NAME = "Ayşe Yılmaz"
PATIENT_TEXT = "Can I come on Monday?"


@pytest.fixture
def env(redis_client: redis.Redis) -> Iterator[Env]:
    emulator = HubSpotEmulator(PRIVATE_TOKEN, app_scopes=SCOPES, webhook_attempts=3, webhook_retry_delay=0.05,
                               webhook_timeout=2.0)
    emulator.add_owner("75002", 9002, "elif@clinic.example", "Elif", "Doktor")
    served = ServedApp(emulator.app).start()
    relay = Relay()
    receiver = ServedApp(relay.app()).start()
    relay.url = receiver.url
    try:
        yield Env(emulator, served.url, relay, redis_client)
    finally:
        receiver.stop()
        served.stop()
    assert not emulator.violations, emulator.violations


def connect(env: Env, inbox_id: str, **options: Any) -> HubSpotInbox:
    """The app installed, the channel connected to ``inbox_id``, assignments subscribed to; a worker's inbox."""
    adapter = env.adapter(inbox_id=inbox_id, **options)
    env.install(adapter)
    assert adapter.app.setup(apply=True)[-1].endswith(f"to inbox {inbox_id}")
    env.emulator.subscribe(env.relay.url + "/crm/hubspot/webhooks", ("conversation.propertyChange", "assignedTo"))
    inbox = env.adapter(inbox_id=inbox_id, **options).inbox()
    assert isinstance(inbox, HubSpotInbox)
    env.emulator.calls.clear()
    return inbox


def contact(env: Env, owner: str | None = None) -> str:
    """A contact as the lead's sync wrote it, owned by ``owner`` (an assignment rule, or a coordinator)."""
    properties = {"firstname": "Ayşe", "phone": "+905321112233"} | ({"hubspot_owner_id": owner} if owner else {})
    made = requests.post(f"{env.api}/crm/v3/objects/contacts", json={"properties": properties, "associations": []},
                         headers={"Authorization": f"Bearer {PRIVATE_TOKEN}"}, timeout=5)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def publish(inbox: HubSpotInbox, mid: str, contact_id: str, patient: str = "905321112233") -> str:
    """A patient's message published; the HubSpot thread it landed in."""
    conversation = f"whatsapp:106540352242922:{patient}"
    published = inbox.publish(ThreadMessage(
        id=mid, thread=thread_id(conversation), conversation=conversation, channel="whatsapp", direction="incoming",
        text=PATIENT_TEXT, at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC), identity=f"whatsapp:{patient}",
        name=PATIENT_NAME, contact_id=contact_id))
    assert published.crm_thread_id
    return published.crm_thread_id


def routing_calls(env: Env) -> list[tuple[str, str, int | None]]:
    """The calls since the last look, but the publishes and the test's own contacts (method, path, status); forgets
    them."""
    calls = [(c["method"], c["path"], c["status"]) for c in env.emulator.calls
             if "/custom-channels/" not in c["path"] and (c["method"], c["path"]) != ("POST", "/crm/v3/objects/contacts")]
    env.emulator.calls.clear()
    return calls


def assignee(env: Env, thread: str) -> str | None:
    return next(t["assignedTo"] for t in env.emulator.inbox_view() if t["id"] == thread)


def assignment_events(env: Env) -> list[tuple[int, str]]:
    """The ``assignedTo`` changes the app's subscription received (thread, value)."""
    env.wait()
    events = [e for r in env.relay.received if isinstance(body := json.loads(r.body), list) for e in body]
    return [(e["objectId"], e["propertyValue"]) for e in events if e.get("propertyName") == "assignedTo"]


# -- the relay's side ----------------------------------------------------------------------------
def test_a_thread_the_inbox_routed_costs_one_read_and_no_assignment(env: Env) -> None:
    inbox = connect(env, ROUTING_INBOX)
    thread = publish(inbox, "wamid.R1", contact(env, owner="75001"))
    assert assignee(env, thread) == "A-9001"  # the inbox's rule
    assert routing_calls(env) == [("GET", f"/conversations/v3/conversations/threads/{thread}", 200)]
    assert env.redis.get(ROUTED_THREADS.key(thread)) == b"inbox"
    assert env.redis.ttl(ROUTED_THREADS.key(thread)) > 80 * 86400
    publish(inbox, "wamid.R2", "")  # the thread's next message: nothing more to look at
    assert routing_calls(env) == []
    assert assignment_events(env) == [(int(thread), "A-9001")]


def test_the_relay_assigns_a_help_desk_thread_to_the_contacts_owner(env: Env) -> None:
    inbox = connect(env, HELP_DESK)
    owned = contact(env, owner="75002")
    thread = publish(inbox, "wamid.H1", owned)
    assert routing_calls(env) == [
        ("GET", f"/conversations/v3/conversations/threads/{thread}", 200),
        ("GET", f"/crm/v3/objects/contacts/{owned}", 200),
        ("GET", "/crm/v3/owners/75002", 200),
        ("PUT", ASSIGNEE.format(thread), 200)]
    assert assignee(env, thread) == "A-9002"
    assert assignment_events(env) == [(int(thread), "A-9002")]
    publish(inbox, "wamid.H2", owned)
    assert routing_calls(env) == []  # once per thread
    # the owner answers from the thread that is now theirs
    env.emulator.agent_reply(thread, "See you on Monday.")
    replies = [e for r in env.wait() for e in inbox.parse_webhook(r) if isinstance(e, AgentReply)]
    assert [r.agent for r in replies] == ["Elif Doktor"]


def test_routing_can_be_turned_off(env: Env) -> None:
    inbox = connect(env, HELP_DESK, route_to_owner=False)
    thread = publish(inbox, "wamid.O1", contact(env, owner="75002"))
    assert routing_calls(env) == [] and assignee(env, thread) is None


def test_a_contact_without_an_owner_is_looked_at_again_on_a_later_message(env: Env) -> None:
    inbox = connect(env, HELP_DESK)
    inbox.router.recheck_seconds = 0.2
    patient = contact(env)
    thread = publish(inbox, "wamid.N1", patient)
    assert [c[:2] for c in routing_calls(env)] == [("GET", f"/conversations/v3/conversations/threads/{thread}"),
                                                   ("GET", f"/crm/v3/objects/contacts/{patient}")]
    assert assignee(env, thread) is None
    publish(inbox, "wamid.N2", patient)
    assert routing_calls(env) == []  # not again at once
    env.emulator.edit_contact(patient, {"hubspot_owner_id": "75001"})  # a coordinator sets the owner
    time.sleep(0.25)
    publish(inbox, "wamid.N3", patient)
    assert routing_calls(env)[-1] == ("PUT", ASSIGNEE.format(thread), 200)
    assert assignee(env, thread) == "A-9001"


def test_refusals_and_failures_never_fail_the_publish(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    inbox = connect(env, HELP_DESK)
    caplog.set_level(logging.INFO, logger="chat2crm.hubspot.routing")
    # the owner's user was deactivated: HubSpot finds no such owner
    env.emulator.deactivate_owner("75002")
    first = publish(inbox, "wamid.F1", contact(env, owner="75002"), patient="905321110001")
    assert routing_calls(env)[-1] == ("GET", "/crm/v3/owners/75002", 404)
    assert assignee(env, first) is None and env.redis.get(ROUTED_THREADS.key(first)) == b"refused"
    # HubSpot refuses the assignment itself (publish, thread, contact, owner, then the assignment)
    owned = contact(env, owner="75001")
    env.emulator.fail_next(1, "400", after=4)
    second = publish(inbox, "wamid.F2", owned, patient="905321110002")
    assert routing_calls(env)[-1] == ("PUT", ASSIGNEE.format(second), 400)
    assert assignee(env, second) is None
    # HubSpot does not answer: nothing is kept, and the thread's next message routes it
    owned = contact(env, owner="75001")
    env.emulator.fail_next(1, "503", after=1)
    third = publish(inbox, "wamid.F3", owned, patient="905321110003")
    assert routing_calls(env) == [("GET", f"/conversations/v3/conversations/threads/{third}", 503)]
    assert env.redis.get(ROUTED_THREADS.key(third)) is None
    publish(inbox, "wamid.F4", owned, patient="905321110003")
    assert routing_calls(env)[-1] == ("PUT", ASSIGNEE.format(third), 200) and assignee(env, third) == "A-9001"
    records = [r for r in caplog.records if r.name == "chat2crm.hubspot.routing"]
    assert len([r for r in records if r.levelno == logging.WARNING]) == 3
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert PATIENT_NAME not in logged and PATIENT_TEXT not in logged and "5321112233" not in logged
    assert "905321110" not in logged and "Ayşe" not in logged


def test_without_the_routing_scopes_threads_stay_as_they_are_with_one_warning(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.emulator.withhold_scopes("conversations.write")  # the portal does not grant it
    inbox = connect(env, HELP_DESK)
    tokens = inbox.store.load()
    assert tokens is not None and "crm.objects.owners.read" in tokens.scopes
    assert "conversations.write" not in tokens.scopes
    caplog.set_level(logging.WARNING, logger="chat2crm.hubspot.routing")
    first = publish(inbox, "wamid.S1", contact(env, owner="75001"), patient="905321110011")
    second = publish(inbox, "wamid.S2", contact(env, owner="75001"), patient="905321110012")
    assert routing_calls(env) == []  # skipped without a call
    assert assignee(env, first) is None and assignee(env, second) is None
    [warning] = [r.getMessage() for r in caplog.records if r.name == "chat2crm.hubspot.routing"]
    assert "conversations.write" in warning and "/crm/hubspot/install" in warning


def test_a_grant_not_known_is_learnt_from_hubspots_refusal(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.emulator.withhold_scopes("conversations.write")
    inbox = connect(env, HELP_DESK)
    tokens = inbox.store.load()
    assert tokens is not None
    inbox.store.save(replace(tokens, scopes=()))  # an install whose token answer named no scopes
    caplog.set_level(logging.WARNING, logger="chat2crm.hubspot.routing")
    first = publish(inbox, "wamid.U1", contact(env, owner="75001"), patient="905321110031")
    assert routing_calls(env)[-1] == ("PUT", ASSIGNEE.format(first), 403)
    publish(inbox, "wamid.U2", contact(env, owner="75001"), patient="905321110032")
    publish(inbox, "wamid.U3", "", patient="905321110031")
    assert routing_calls(env) == []  # the process does not try again
    [warning] = [r.getMessage() for r in caplog.records if r.name == "chat2crm.hubspot.routing"]
    assert "conversations.write" in warning


# -- the emulator's side -------------------------------------------------------------------------
def oauth_token(env: Env, *withheld: str) -> str:
    """An access token of the app installed while the portal withholds ``withheld``."""
    env.emulator.withhold_scopes(*withheld)
    adapter = env.adapter()
    env.install(adapter)
    oauth = adapter.app.oauth
    assert oauth is not None
    return oauth.access_token()


def test_the_assignee_endpoint_checks_the_scope_the_body_and_the_agent(env: Env) -> None:
    full = {"Authorization": f"Bearer {oauth_token(env)}"}
    inbox = connect(env, HELP_DESK)
    thread = publish(inbox, "wamid.E1", contact(env), patient="905321110021")  # no owner: left unassigned
    url = env.api + ASSIGNEE.format(thread)
    read_only = {"Authorization": f"Bearer {oauth_token(env, 'conversations.write')}"}
    refused = requests.put(url, json={"actorId": "A-9002"}, headers=read_only, timeout=5)
    assert refused.status_code == 403 and refused.json()["category"] == "MISSING_SCOPES"
    assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == ["conversations.write"]
    unknown = requests.put(url, json={"actorId": "A-424242"}, headers=full, timeout=5)
    assert unknown.status_code == 400 and unknown.json()["category"] == "VALIDATION_ERROR"
    assert requests.put(env.api + ASSIGNEE.format("1"), json={"actorId": "A-9002"}, headers=full,
                        timeout=5).status_code == 404
    done = requests.put(url, json={"actorId": "A-9002"}, headers=full, timeout=5)
    assert done.status_code == 200 and done.json()["assignedTo"] == "A-9002" and done.json()["id"] == thread
    assert requests.delete(url, headers=full, timeout=5).status_code == 204
    assert assignee(env, thread) is None
    assert assignment_events(env) == [(int(thread), "A-9002"), (int(thread), "")]
    bad = requests.put(url, json={"assignedTo": "A-9002"}, headers=full, timeout=5)
    assert bad.status_code == 400 and env.emulator.violations  # a body HubSpot would refuse is recorded
    env.emulator.violations.clear()


def test_an_owner_is_read_with_its_scope_and_a_deactivated_one_only_as_archived(env: Env) -> None:
    full = {"Authorization": f"Bearer {oauth_token(env)}"}
    owner = requests.get(f"{env.api}/crm/v3/owners/75002", headers=full, timeout=5)
    assert owner.status_code == 200
    assert {k: owner.json()[k] for k in ("id", "userId", "userIdIncludingInactive", "archived", "type")} == {
        "id": "75002", "userId": 9002, "userIdIncludingInactive": 9002, "archived": False, "type": "PERSON"}
    by_user = requests.get(f"{env.api}/crm/v3/owners/9001", params={"idProperty": "userId"}, headers=full, timeout=5)
    assert by_user.json()["id"] == "75001"
    without = {"Authorization": f"Bearer {oauth_token(env, 'crm.objects.owners.read')}"}
    refused = requests.get(f"{env.api}/crm/v3/owners/75002", headers=without, timeout=5)
    assert refused.status_code == 403 and refused.json()["category"] == "MISSING_SCOPES"
    env.emulator.deactivate_owner("75002")
    gone = requests.get(f"{env.api}/crm/v3/owners/75002", headers=full, timeout=5)
    assert gone.status_code == 404 and gone.json()["category"] == "OBJECT_NOT_FOUND"
    archived = requests.get(f"{env.api}/crm/v3/owners/75002", params={"archived": "true"}, headers=full, timeout=5)
    assert archived.json()["userId"] is None and archived.json()["userIdIncludingInactive"] == 9002
