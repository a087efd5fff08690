"""HubSpot's inbox, end to end against the HubSpot emulator over HTTP: the app installed by OAuth and its
token refreshed, the custom channel registered and connected, patients' messages published once, agents'
replies arriving as signed webhooks at a receiver standing in for the relay, statuses and files; and the
timeline inbox of lower tiers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import redis
import requests
from flask import Flask, request
from pydantic import SecretStr

from adapters.base import Deployment
from adapters.hubspot import HubSpotAdapter
from adapters.hubspot.inbox import HubSpotInbox
from adapters.hubspot.keys import INSTALLS
from adapters.hubspot.oauth import SCOPES
from adapters.hubspot.timeline import REPLY_PROPERTY, HubSpotTimelineInbox
from adapters.inbox import WebhookRequest
from core.errors import AuthError
from core.inbox import AgentReply, DeliveryReport, FileRef, ThreadClosed, ThreadMessage, thread_id
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings

FERNET_KEY = SecretStr("q5Zu6Wqf0lB0n5Qe2Ny3PnwEYMsx7nqJmzA3DXdWsU8=")
PRIVATE_TOKEN = "pat-inbox-test"
INBOX_ID = "147959634"  # the emulated account's conversations inbox (it also has a help desk)
CONVERSATION = "whatsapp:106540352242922:905321112233"
FAST = {"timeout_seconds": 2.0, "connect_timeout_seconds": 1.0}


@dataclass
class Relay:
    """A stand-in for the relay's web side: it records what HubSpot sends to ``/crm/hubspot/webhooks``."""

    url: str = ""
    received: list[WebhookRequest] = field(default_factory=list)

    def app(self) -> Flask:
        app = Flask("relay")

        @app.post("/crm/hubspot/webhooks")
        def webhooks() -> tuple[str, int]:
            # the URL HubSpot signed: the public base URL, the path and the query, as the relay rebuilds it
            self.received.append(WebhookRequest(method=request.method, url=self.url + request.full_path.rstrip("?"),
                                                headers=dict(request.headers), body=request.get_data(),
                                                received_at=time.time()))
            return "", 200

        return app


@dataclass
class Env:
    emulator: HubSpotEmulator
    api: str
    relay: Relay
    redis: redis.Redis

    def adapter(self, *, app: bool = True, **options: Any) -> HubSpotAdapter:
        """An adapter as a worker process builds one (several share the Redis)."""
        values: dict[str, Any] = {"hubspot_access_token": PRIVATE_TOKEN, "hubspot_api_base": self.api,
                                  "hubspot_app_base": self.api, "hubspot_client_secret": self.emulator.client_secret}
        if app:
            values |= {"hubspot_client_id": self.emulator.client_id, "hubspot_app_id": str(self.emulator.app_id),
                       "hubspot_developer_api_key": self.emulator.developer_api_key}
        made = HubSpotAdapter.from_settings(make_settings("unix:///unused", **values),
                                            options={**FAST, **options}, redis=self.redis)
        made.deployment = Deployment(public_base_url=self.relay.url, encryption_key=FERNET_KEY)
        return made

    def install(self, adapter: HubSpotAdapter) -> str:
        """The admin opens the install page, consents, and comes back with a code."""
        installer = adapter.installer()
        assert installer is not None
        callback = self.relay.url + "/crm/hubspot/oauth/callback"
        consent = requests.get(installer.authorize_url(state="st-1", redirect_uri=callback), allow_redirects=False,
                               timeout=5)
        assert consent.status_code == 302, consent.text
        back = parse_qs(urlparse(consent.headers["Location"]).query)
        assert back["state"] == ["st-1"]
        return installer.complete(code=back["code"][0], redirect_uri=callback)

    def contact(self, name: str = "Ayşe") -> str:
        """A contact, as the relay's lead sync writes one."""
        made = requests.post(f"{self.api}/crm/v3/objects/contacts", json={"properties": {"firstname": name}, "associations": []},
                             headers={"Authorization": f"Bearer {PRIVATE_TOKEN}"}, timeout=5)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def wait(self) -> list[WebhookRequest]:
        assert self.emulator.wait_for_deliveries(5.0)
        return self.relay.received


@pytest.fixture
def env(redis_client: redis.Redis) -> Iterator[Env]:
    emulator = HubSpotEmulator(PRIVATE_TOKEN, app_scopes=SCOPES, webhook_attempts=3, webhook_retry_delay=0.05,
                               webhook_timeout=2.0)
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


def message(mid: str, text: str, *, contact: str | None, direction: str = "incoming", **extra: Any) -> ThreadMessage:
    return ThreadMessage(id=mid, thread=thread_id(CONVERSATION), conversation=CONVERSATION, channel="whatsapp",
                         direction=direction, text=text, at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
                         identity="whatsapp:905321112233", name="Ayşe Yılmaz", contact_id=contact, **extra)


# -- the install and the token -----------------------------------------------------------------
def test_install_keeps_the_tokens_encrypted_for_every_worker(env: Env) -> None:
    adapter = env.adapter()
    assert env.install(adapter) == str(env.emulator.portal_id)
    sealed = env.redis.hget(INSTALLS.key(str(env.emulator.portal_id)), "tokens")
    assert sealed and b"emu-" not in sealed and b"na1-" not in sealed  # neither token readable in Redis
    other = env.adapter().installer()  # another worker, after a restart
    assert other is not None and other.access_token() in env.emulator.access_tokens  # type: ignore[attr-defined]
    assert len(env.emulator.access_tokens) == 1  # a fresh token is not refreshed


def test_a_token_about_to_expire_is_refreshed_once_for_every_worker(env: Env) -> None:
    first = env.adapter()
    env.install(first)
    workers = [env.adapter().app.oauth for _ in range(3)]
    start = time.time()
    for oauth in workers:
        assert oauth is not None
        oauth.clock = lambda: time.time() + 1400  # 400 s left: more than the 5-minute margin
    assert len({o.access_token() for o in workers if o}) == 1 and len(env.emulator.access_tokens) == 1
    for oauth in workers:
        assert oauth is not None
        oauth.clock = lambda: time.time() + 1600  # 200 s left: refreshed first
    barrier = threading.Barrier(len(workers))
    got: list[str] = []

    def use(oauth: Any) -> None:
        barrier.wait()
        got.append(oauth.access_token())

    threads = [threading.Thread(target=use, args=(o,)) for o in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 3 and len(set(got)) == 1  # every worker uses the one new token
    assert len(env.emulator.access_tokens) == 2  # one refresh, not three
    assert time.time() - start < 5


def test_a_token_expired_under_us_is_refreshed_and_the_call_sent_again(env: Env) -> None:
    adapter = env.adapter(inbox_id=INBOX_ID)
    env.install(adapter)
    before = adapter.app.store.load()
    env.emulator.expire_access_tokens()  # HubSpot says it expired; our clock says it has minutes left
    calls = adapter.app.rest.calls
    lines = adapter.app.setup(apply=True)
    assert "connected channel account" in lines[-1]
    after = adapter.app.store.load()
    assert before and after and after.access_token != before.access_token and after.refresh_token == before.refresh_token
    # the channel listed and registered, the app's webhook settings read and set and its subscriptions listed and
    # made (developer key); the accounts listed: 401, refresh, again; the inboxes listed and the account made with
    # the new token
    assert adapter.app.rest.calls - calls == 2 + 4 + 3 + 2


def test_a_revoked_refresh_token_asks_the_admin_to_install_again(env: Env) -> None:
    adapter = env.adapter()
    env.install(adapter)
    tokens = adapter.app.store.load()
    assert tokens is not None
    requests.delete(f"{env.api}/oauth/v1/refresh-tokens/{tokens.refresh_token}", timeout=5)  # the app uninstalled
    env.emulator.expire_access_tokens()
    inbox = adapter.inbox()
    assert isinstance(inbox, HubSpotInbox)
    with pytest.raises(AuthError) as caught:
        inbox.upload("x.jpg", "image/jpeg", b"\xff\xd8\xff")
    assert f"{env.relay.url}/crm/hubspot/install" in caught.value.message
    assert "BAD_REFRESH_TOKEN" in caught.value.message


def test_a_refused_code_is_an_auth_error_naming_the_install_page(env: Env) -> None:
    installer = env.adapter().installer()
    assert installer is not None
    with pytest.raises(AuthError) as caught:
        installer.complete(code="used-or-forged", redirect_uri=env.relay.url + "/crm/hubspot/oauth/callback")
    assert "BAD_AUTH_CODE" in caught.value.message and "/crm/hubspot/install" in caught.value.message


# -- the channel -----------------------------------------------------------------------------
def test_setup_registers_the_channel_and_connects_its_account_once(env: Env) -> None:
    adapter = env.adapter()
    assert adapter.app.setup(apply=False)[0].startswith("would register the custom channel")
    assert not env.emulator.channels
    lines = adapter.app.setup(apply=True)
    assert lines[0].startswith("registered the custom channel") and "not installed" in lines[-1]
    assert lines[1:3] == [f"set the app's webhook URL to {env.relay.url}/crm/hubspot/webhooks",
                          "subscribed the app's webhooks to conversation.propertyChange of status"]
    [channel] = env.emulator.channels.values()
    assert channel["webhookUrl"] == env.relay.url + "/crm/hubspot/webhooks"
    assert channel["capabilities"]["threadingModel"] == "INTEGRATION_THREAD_ID"
    env.install(adapter)
    second = {**env.emulator.inboxes[0], "id": "147959699", "name": "Second clinic"}
    env.emulator.inboxes.append(second)
    assert adapter.app.setup(apply=True)[-1].startswith("CHOOSE an inbox")  # two conversations inboxes, no option
    env.emulator.inboxes.remove(second)
    chosen = env.adapter()  # the conversations inbox beside a help desk is the one agents expect
    lines = chosen.app.setup(apply=True)
    assert lines[2].startswith(f"ok inbox {INBOX_ID} (Patient conversations)")
    assert lines[-1] == f"connected channel account 3300000001 to inbox {INBOX_ID}"
    again = env.adapter(inbox_id=INBOX_ID).app.setup(apply=True)
    assert again == [f"ok custom channel {channel['id']}", "ok webhook subscription conversation.propertyChange of status",
                     f"ok channel account 3300000001 in inbox {INBOX_ID}"]
    assert env.emulator.webhook_target_url == env.relay.url + "/crm/hubspot/webhooks"
    assert len(env.emulator.channels) == 1 and len(env.emulator.channel_accounts) == 1
    assert chosen.inbox().check() == [  # type: ignore[union-attr]
        f"inbox: app installed in portal {env.emulator.portal_id}; access token good for 29 more minutes",
        f"inbox: custom channel {channel['id']} registered", "inbox: channel account 3300000001 connected"]


@pytest.fixture
def ready(env: Env) -> tuple[Env, HubSpotInbox]:
    adapter = env.adapter(inbox_id=INBOX_ID)
    env.install(adapter)
    adapter.app.setup(apply=True)
    env.emulator.subscribe(env.relay.url + "/crm/hubspot/webhooks", ("conversation.propertyChange", "status"))
    inbox = env.adapter(inbox_id=INBOX_ID).inbox()  # a worker's
    assert isinstance(inbox, HubSpotInbox)
    return env, inbox


def test_publishing_is_idempotent_and_keeps_one_thread_on_the_contact(ready: tuple[Env, HubSpotInbox]) -> None:
    env, inbox = ready
    contact = env.contact()
    history = inbox.publish(message("line-1", "Which treatment?", contact=contact, direction="outgoing"))
    first = inbox.publish(message("wamid.A1", "Dental implants, please", contact=contact))
    again = inbox.publish(message("wamid.A1", "Dental implants, please", contact=contact))
    assert again == first and first.crm_thread_id == history.crm_thread_id is not None
    [thread] = env.emulator.inbox_view()
    assert thread["contact"]["id"] == contact and thread["integrationThreadId"] == thread_id(CONVERSATION)
    assert [(m["direction"], m["text"]) for m in thread["messages"]] == [
        ("OUTGOING", "Which treatment?"), ("INCOMING", "Dental implants, please")]
    # the thread's own events reach the relay, but nothing of what was published comes back as a reply to send
    assert [e for r in env.wait() for e in inbox.parse_webhook(r)] == []


def test_an_agents_reply_arrives_signed_once_per_message_and_its_status_is_written(
        ready: tuple[Env, HubSpotInbox]) -> None:
    env, inbox = ready
    published = inbox.publish(message("wamid.B1", "Can I come on Monday?", contact=env.contact()))
    env.emulator.redeliver_next()  # HubSpot delivers at least once
    sent = env.emulator.agent_reply(str(published.crm_thread_id), "Yes, 10:00 suits.")["message"]
    replies = [e for r in env.wait() for e in inbox.parse_webhook(r)]
    assert len(replies) == 2 and replies[0] == replies[1]  # the same reply twice: the relay's dedupe key is its id
    reply = replies[0]
    assert isinstance(reply, AgentReply)
    assert (reply.crm_message_id, reply.conversation, reply.text) == (sent["id"], CONVERSATION, "Yes, 10:00 suits.")
    assert reply.thread == thread_id(CONVERSATION) and reply.agent == "Deniz Koordinatör"

    def status() -> tuple[str | None, str | None]:
        shown = next(m for t in env.emulator.inbox_view() for m in t["messages"] if m["id"] == sent["id"])
        return shown["status"], shown["failure"]

    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="sent", channel_message_ids=["wamid.X"]))
    assert status() == ("SENT", None)
    calls = inbox.rest.calls
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="delivered"))
    assert inbox.rest.calls == calls  # HubSpot has no "delivered": nothing is written
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="read"))
    assert status() == ("READ", None)
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="failed", code="131047",
                                reason="More than 24 hours have passed since the patient last wrote"))
    assert status() == ("FAILED", "More than 24 hours have passed since the patient last wrote (131047)")


def test_closing_the_thread_hands_the_conversation_back(ready: tuple[Env, HubSpotInbox]) -> None:
    env, inbox = ready
    published = inbox.publish(message("wamid.C1", "Thanks!", contact=env.contact()))
    env.emulator.close_thread(str(published.crm_thread_id))
    [closed] = [e for r in env.wait() for e in inbox.parse_webhook(r)]
    assert isinstance(closed, ThreadClosed) and closed.crm_thread_id == str(published.crm_thread_id)


def test_files_go_up_privately_once_and_come_back_by_signed_url(ready: tuple[Env, HubSpotInbox]) -> None:
    env, inbox = ready
    xray = b"\xff\xd8\xff\xe0" + b"x-ray" * 200
    stored = inbox.upload("xray.jpg", "image/jpeg", xray)
    assert stored.crm_file_id and stored.size == len(xray)
    record = env.emulator.files[stored.crm_file_id]
    assert record["access"] == "PRIVATE" and record["path"].startswith("/chat2crm/")
    published = inbox.publish(message("wamid.D1", "", contact=env.contact(), attachments=[stored]))
    [thread] = env.emulator.inbox_view()
    assert thread["messages"][-1]["attachments"][0]["fileId"] == stored.crm_file_id
    assert requests.get(inbox.file_url(stored), timeout=5).content == xray
    leaflet = env.emulator.add_file("aftercare.pdf", b"%PDF-1.4 aftercare", "application/pdf")
    env.emulator.agent_reply(str(published.crm_thread_id), "Aftercare leaflet attached", [leaflet["id"]])
    [reply] = [e for r in env.wait() for e in inbox.parse_webhook(r)]
    assert isinstance(reply, AgentReply)
    [file] = reply.attachments
    assert (file.crm_file_id, file.mime_type) == (leaflet["id"], "application/pdf")
    assert requests.get(inbox.file_url(file), timeout=5).content == b"%PDF-1.4 aftercare"
    with pytest.raises(Exception, match="does not take"):
        inbox.upload("virus.exe", "application/x-msdownload", b"MZ")


# -- lower tiers: the timeline ---------------------------------------------------------------------
def test_the_timeline_keeps_the_conversation_on_the_contact(env: Env) -> None:
    adapter = env.adapter(app=False)
    inbox = adapter.inbox()
    assert isinstance(inbox, HubSpotTimelineInbox) and adapter.installer() is None
    assert adapter.app.setup(apply=True)[0] == f"created contacts.{REPLY_PROPERTY} (agents' replies)"
    assert env.adapter(app=False).app.setup(apply=True) == [f"ok contacts.{REPLY_PROPERTY} (agents' replies)"]
    if "hs_attachment_ids" not in env.emulator.properties["notes"]:  # HubSpot's notes have it; the emulator may not
        env.emulator.add_property("notes", "hs_attachment_ids")
    contact = env.contact()
    deal = requests.post(f"{env.api}/crm/v3/objects/deals", json={"properties": {"dealname": "#1042"},
                                                                   "associations": []},
                         headers={"Authorization": f"Bearer {PRIVATE_TOKEN}"}, timeout=5).json()["id"]
    adapter.cache.set("record", str(deal), "deals", "#1042")  # as the lead's sync left it
    file = inbox.upload("xray.png", "image/png", b"\x89PNG\r\n")
    sent = message("wamid.E1", "<b>Hello</b> & thanks", contact=contact, attachments=[file], reference="#1042")
    first = inbox.publish(sent)
    assert env.adapter(app=False).inbox().publish(sent) == first  # type: ignore[union-attr]  # another worker, same note
    [note] = env.emulator.records("notes")
    body = note["properties"]["hs_note_body"]
    assert "&lt;b&gt;Hello&lt;/b&gt; &amp; thanks" in body and "Ayşe Yılmaz" in body and "<b>Hello" not in body
    assert note["properties"]["hs_attachment_ids"] == file.crm_file_id
    assert env.emulator.associated("notes", note["id"], "contacts") == [contact]
    assert env.emulator.associated("notes", note["id"], "deals") == [str(deal)]

    env.emulator.subscribe(env.relay.url + "/crm/hubspot/webhooks", ("contact.propertyChange", REPLY_PROPERTY))
    env.emulator.edit_contact(contact, {REPLY_PROPERTY: "Please bring your X-ray."})
    [reply] = [e for r in env.wait() for e in inbox.parse_webhook(r)]
    assert isinstance(reply, AgentReply) and reply.crm_contact_id == contact and reply.conversation is None
    assert reply.text == "Please bring your X-ray." and reply.crm_message_id.startswith(f"{contact}:")
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="sent"))
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="sent"))  # a retried report
    inbox.report(DeliveryReport(crm_message_id=reply.crm_message_id, status="read"))
    notes = env.emulator.records("notes")
    assert len(notes) == 2 and "was sent to the patient" in notes[-1]["properties"]["hs_note_body"]
    [shown] = [c for c in env.emulator.records("contacts") if c["id"] == contact]
    assert not shown["properties"].get(REPLY_PROPERTY)  # cleared for the next reply
    assert requests.get(inbox.file_url(FileRef(crm_file_id=file.crm_file_id)), timeout=5).content == b"\x89PNG\r\n"
