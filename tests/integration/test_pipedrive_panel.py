"""The relay's panel routes over HTTP, with the Pipedrive emulator and real Redis: the page and its requests
refused without a valid token or without access to the record, the thread as the relay recorded it, a reply
accepted once however often it is submitted (and its file stored once), the conversation handed back to the
bot, and file links that serve the file and expire."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.pipedrive.inbox import PipedriveInbox
from connector import conversations, outbox, threads
from connector.app import create_app
from connector.bot.after import RELEASED
from connector.runtime import Runtime, set_current_runtime
from core.inbox import ThreadMessage, thread_id
from core.models import Conversation
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.integration._pipedrive_app_env import (  # noqa: F401 - the fixture
    Late,
    PipedriveWorld,
    pipedrive_fixture,
    write_relay_config,
)

KEY = "whatsapp:106540352242922:905321112233"


@dataclass
class Relay:
    url: str
    runtime: Runtime
    world: PipedriveWorld
    person: str

    @property
    def inbox(self) -> PipedriveInbox:
        inbox = self.runtime.inbox
        assert isinstance(inbox, PipedriveInbox)
        return inbox

    def get(self, path: str, bearer: str | None = None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return requests.get(self.url + path, params=params, headers=headers, timeout=10)

    def post(self, path: str, token: str | None, data: dict[str, Any], **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.url + path, data=data, headers=headers, timeout=10, **kwargs)

    def queued(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.runtime.redis.lrange(outbox.OUTBOX.key(KEY), 0, -1)]


@pytest.fixture
def relay(pipedrive: PipedriveWorld, redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Relay]:
    """The relay serving its app, the Pipedrive app installed, and a conversation with a person in the agents'
    hands (as the bot leaves a completed request), its first message published."""
    late = Late()
    served = ServedApp(late).start()
    settings = make_settings(redis_url, chat2crm_config=write_relay_config(tmp_path, inbox="panel"),
                             public_base_url=served.url, **pipedrive.settings())
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    pipedrive.emulator.panel_url = f"{served.url}/crm/pipedrive/panel"
    adapter = runtime.adapter
    assert pipedrive.install(adapter) == "7001"  # type: ignore[arg-type]
    person = pipedrive.person()
    now = datetime.now(UTC)
    state = Conversation(key=KEY, channel="whatsapp", account="106540352242922", sender_id="905321112233",
                         status="closed", language="tr", last_inbound_at=now, completed_at=now)
    pipe = redis_client.pipeline(transaction=True)
    conversations.stage_save(runtime, pipe, state)
    pipe.execute()
    made = Relay(served.url, runtime, pipedrive, person)
    made.inbox.publish(ThreadMessage(id="wamid.1", thread=thread_id(KEY), conversation=KEY, channel="whatsapp",
                                     direction="incoming", text="Fiyat alabilir miyim?", at=now, contact_id=person,
                                     identity="whatsapp:905321112233", name="Ayşe Yılmaz"))
    # the relay maps the person back to the conversation it published for (as the thread's publishing does)
    redis_client.set(threads.BY_CONTACT.key(person), json.dumps({"conversation": KEY}), ex=3600)
    try:
        yield made
    finally:
        served.stop()
        set_current_runtime(None)


def reply_form(relay: Relay, key: str = "0f8fad5b-d9cb-469f-a165-70867728950e", text: str = "Merhaba Ayşe Hanım",
               resource: str = "person", record: str | None = None) -> dict[str, str]:
    return {"resource": resource, "id": record or relay.person, "key": key, "text": text}


# -- refused without a valid token, or without access ---------------------------------------------
def test_the_page_is_shown_only_for_a_valid_token_of_a_user_who_may_see_the_record(relay: Relay) -> None:
    world = relay.world
    page = relay.get("/crm/pipedrive/panel", resource="person", selectedIds=relay.person, token=world.token(1))
    assert page.status_code == 200 and "app-extensions-sdk.umd.js" in page.text, page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and "cdn" not in page.text.lower()
    assert page.headers["Referrer-Policy"] == "no-referrer"
    expired = relay.get("/crm/pipedrive/panel", resource="person", selectedIds=relay.person,
                        token=world.token(1, exp=datetime.now(UTC).timestamp() - 60))
    assert expired.status_code == 401 and "expired" in expired.text
    private = world.person("Hans Müller", visible_to=1)
    agent = world.emulator.add_user("Ece Danışman")
    denied = relay.get("/crm/pipedrive/panel", resource="person", selectedIds=private, token=world.token(agent))
    assert denied.status_code == 403 and "do not have access" in denied.text
    lead = relay.get("/crm/pipedrive/panel", resource="lead", selectedIds="1", token=world.token(1))
    assert lead.status_code == 404
    sdk = relay.get("/crm/pipedrive/panel/static/app-extensions-sdk.umd.js")
    assert sdk.status_code == 200 and "AppExtensionsSDK" in sdk.text
    assert relay.get("/crm/pipedrive/panel/static/panel.html").status_code == 404


def test_the_panels_requests_need_a_valid_token(relay: Relay) -> None:
    world = relay.world
    for token, status in ((None, 401), ("not-a-token", 401), (world.token(1, company=7002), 401),
                          (world.token(1, secret="a-secret-that-is-not-the-panels-0123456789-abcdefghijklmnop"), 401)):
        answer = relay.get("/crm/pipedrive/panel/thread", token, resource="person", id=relay.person)
        assert answer.status_code == status, answer.text
        refused = relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay))
        assert refused.status_code == status
        assert relay.post("/crm/pipedrive/panel/close", token, reply_form(relay)).status_code == status
    assert relay.queued() == []


def test_a_user_without_access_to_the_record_can_neither_read_nor_answer(relay: Relay) -> None:
    world = relay.world
    agent = world.emulator.add_user("Ece Danışman")
    world.call("PATCH", f"/api/v2/persons/{relay.person}", json={"visible_to": 1})  # the owner's alone now
    token = world.token(agent)
    assert relay.get("/crm/pipedrive/panel/thread", token, resource="person", id=relay.person).status_code == 403
    assert relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay)).status_code == 403
    assert relay.post("/crm/pipedrive/panel/close", token, reply_form(relay)).status_code == 403
    assert relay.queued() == [] and conversations.load(relay.runtime, KEY).status == "closed"  # type: ignore[union-attr]


# -- the thread, a reply, closing --------------------------------------------------------------------
def test_the_thread_is_the_conversation_the_relay_recorded(relay: Relay) -> None:
    answer = relay.get("/crm/pipedrive/panel/thread", relay.world.token(1), resource="person", id=relay.person)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert [m["text"] for m in data["messages"]] == ["Fiyat alabilir miyim?"]
    assert data["conversation"] == {"channel": "whatsapp", "status": "closed", "window_open": True,
                                    "template": False, "can_close": True, "window_reason": None}
    deal = relay.world.call("POST", "/api/v2/deals", json={"title": "Enquiry", "person_id": int(relay.person)})
    by_deal = relay.get("/crm/pipedrive/panel/thread", relay.world.token(1), resource="deal",
                        id=str(deal["data"]["id"]))
    assert by_deal.status_code == 200 and by_deal.json()["person"] == relay.person


def test_a_reply_submitted_twice_at_once_is_queued_once_and_its_file_stored_once(relay: Relay) -> None:
    token = relay.world.token(1)
    form = reply_form(relay)
    answers: list[requests.Response] = []

    def submit() -> None:
        answers.append(relay.post("/crm/pipedrive/panel/reply", token, form,
                                  files={"file": ("fiyat.pdf", b"%PDF-1.4 prices", "application/pdf")}))

    clicks = [threading.Thread(target=submit) for _ in range(3)]  # a triple click
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 202], [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"accepted", "duplicate"}
    again = relay.post("/crm/pipedrive/panel/reply", token, form)  # the panel retries after a lost answer
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    (entry,) = relay.queued()
    assert entry["kind"] == "agent" and entry["text"] == "Merhaba Ayşe Hanım"
    assert entry["crm_message_id"] == f"pipedrive-panel:{relay.person}:{form['key']}"
    assert len(entry["files"]) == 1 and relay.world.emulator.count("files") == 1
    shown = relay.get("/crm/pipedrive/panel/thread", token, resource="person", id=relay.person).json()["messages"]
    assert [(m["kind"], m.get("status")) for m in shown] == [("message", None), ("reply", "queued")]
    assert shown[1]["agent"] == "Pipedrive user 1"
    file_url = shown[1]["files"][0]["url"]
    assert requests.get(file_url, timeout=5).content == b"%PDF-1.4 prices"
    forged = file_url[:-3] + ("abc" if not file_url.endswith("abc") else "xyz")
    assert requests.get(forged, timeout=5).status_code == 404


def test_an_empty_reply_or_one_without_a_key_is_refused(relay: Relay) -> None:
    token = relay.world.token(1)
    assert relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay, text=" ")).status_code == 400
    assert relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay, key="x")).status_code == 400
    exe = relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay),
                     files={"file": ("run.exe", b"MZ", "application/x-msdownload")})
    assert exe.status_code == 400 and "not sent to patients" in exe.json()["error"]
    assert relay.queued() == []
    ok = relay.post("/crm/pipedrive/panel/reply", token, reply_form(relay))  # the same key, now fine
    assert ok.status_code == 202


def test_closing_hands_the_conversation_back_to_the_bot(relay: Relay) -> None:
    token = relay.world.token(1)
    closed = relay.post("/crm/pipedrive/panel/close", token, {"resource": "person", "id": relay.person})
    assert closed.status_code == 200 and closed.json() == {"released": True}
    state = conversations.load(relay.runtime, KEY)
    assert state is not None and RELEASED in state.pending
    again = relay.post("/crm/pipedrive/panel/close", token, {"resource": "person", "id": relay.person})
    assert again.json() == {"released": False}
    shown = relay.get("/crm/pipedrive/panel/thread", token, resource="person", id=relay.person).json()
    assert shown["messages"][-1]["kind"] == "event" and shown["conversation"]["can_close"] is False


def test_the_panel_warns_when_whatsapps_window_is_closed(relay: Relay) -> None:
    state = conversations.load(relay.runtime, KEY)
    assert state is not None
    state.last_inbound_at = datetime.now(UTC) - timedelta(hours=25)
    pipe = relay.runtime.redis.pipeline(transaction=True)
    conversations.stage_save(relay.runtime, pipe, state)
    pipe.execute()
    shown = relay.get("/crm/pipedrive/panel/thread", relay.world.token(1), resource="person", id=relay.person).json()
    assert shown["conversation"]["window_open"] is False and "24 hours" in shown["conversation"]["window_reason"]


def test_doctor_says_where_the_panel_is_and_forget_erases_the_panels_log(relay: Relay) -> None:
    lines = relay.inbox.check()
    assert any(line.startswith("inbox: app installed in company 7001") for line in lines)
    assert f"inbox: the custom panel's URL (Developer Hub, person and deal detail views): {relay.url}/crm/pipedrive/panel" \
        in lines and not any("MISSING" in line for line in lines)
    assert relay.post("/crm/pipedrive/panel/reply", relay.world.token(1), reply_form(relay)).status_code == 202
    from connector.commands.forget import erase

    log_key = f"c2c:pipedrive:panel:{relay.person}"
    assert relay.runtime.redis.exists(log_key)
    erase(relay.runtime, "+905321112233")
    assert not relay.runtime.redis.exists(log_key)  # its entries named the conversation
