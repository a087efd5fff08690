"""The whole loop with HubSpot's conversations inbox, over real HTTP: the relay, real Redis, rq workers, the
WhatsApp emulator (with its status webhooks) and the HubSpot emulator with the relay's app installed by OAuth
and its custom channel connected, as the demo and a clinic's admin set them up.

A patient talks to the bot and asks for a person; the thread opens in HubSpot's inbox with the bot's part;
an agent answers there (text, then a file); the reply reaches the patient from the clinic's number and its
status comes back to the thread; the patient's answer lands in the same thread without a bot turn; the agent
closes the thread and the bot answers the patient's next message. HubSpot's redeliveries send nothing twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import redis
import requests
from click.testing import CliRunner

from connector import conversations, inbox
from connector.app import create_app
from connector.cli import main
from connector.conversations import CONVERSATION
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from core.models import utcnow
from demo.stack import hubspot_app_environment, install_crm_app, prepare_crm, start_crm
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.e2e.conftest import crm_environment, write_config
from tests.paths import MAPPINGS

PATIENT = "905321112233"


@dataclass
class Loop:
    runtime: Runtime
    whatsapp: Any
    hubspot: Any
    relay_url: str
    #: the environment of the relay's processes (for its commands)
    env: dict[str, str]

    def work(self) -> None:
        run_worker(self.runtime, burst=True)
        run_worker(self.runtime, burst=True)

    def until(self, check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Run the workers until ``check`` holds: webhooks from the emulators arrive on their own threads."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"never: {what}"
            self.hubspot.wait_for_deliveries(1.0)
            with contextlib.suppress(TimeoutError):  # still posting on a loaded machine: this loop's deadline rules
                self.whatsapp.wait_for_webhooks(1.0)
            self.work()

    def thread(self) -> dict[str, Any]:
        (thread,) = self.hubspot.inbox_view()
        return dict(thread)

    def sent_to_patient(self) -> list[dict[str, Any]]:
        return [s.payload for s in self.whatsapp.messages_to(PATIENT)]


class _Late:
    """A WSGI app set after the server is up: the relay must know its own public URL before it is built."""

    app: Any = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def fresh(redis_url: str, redis_client: redis.Redis, whatsapp_emulator: Any, telegram_emulator: Any,
          tmp_path: Path) -> Iterator[Loop]:
    """The relay and HubSpot with the relay's app, before the admin's set-up and install."""
    env = {**crm_environment(), **hubspot_app_environment()}
    running = start_crm("hubspot", env, webhook_retry_delay=0.05, webhook_timeout=3.0)
    late = _Late()
    relay = ServedApp(late).start()
    config = write_config(tmp_path, crm="hubspot", mapping=str(MAPPINGS / "hubspot.yaml"),
                          **{"delivery.backoff_base_seconds": 0.05, "delivery.backoff_max_seconds": 0.5})
    env |= {**running.environment, "REDIS_URL": redis_url, "PUBLIC_BASE_URL": relay.url, "CHAT2CRM_CONFIG": str(config),
            "WHATSAPP_API_BASE": whatsapp_emulator.url, "TELEGRAM_API_BASE": telegram_emulator.url}
    settings = make_settings(redis_url, chat2crm_config=config, whatsapp_api_base=whatsapp_emulator.url,
                             telegram_api_base=telegram_emulator.url, public_base_url=relay.url,
                             **{k.lower(): v for k, v in env.items() if k.startswith(("HUBSPOT_", "TOKEN_"))})
    runtime = Runtime(settings, redis_client=redis_client)
    set_current_runtime(runtime)
    late.app = create_app({"TESTING": True}, runtime=runtime)
    whatsapp_emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
    whatsapp_emulator.status_webhooks = True
    try:
        yield Loop(runtime, whatsapp_emulator, running.emulator, relay.url, env)
    finally:
        relay.stop()
        running.stop()
        set_current_runtime(None)
    assert not running.emulator.violations, running.emulator.violations


@pytest.fixture
def loop(fresh: Loop) -> Loop:
    """As the admin leaves it: set-up (the channel), the install page, set-up again (the channel account)."""
    assert any(line.startswith("registered the custom channel") for line in prepare_crm("hubspot", fresh.env))
    assert install_crm_app(fresh.relay_url, "hubspot").startswith("Installed")
    assert prepare_crm("hubspot", fresh.env)[-1].startswith("connected channel account")
    fresh.hubspot.calls.clear()
    return fresh


def test_setup_and_doctor_walk_the_admin_through_the_install(fresh: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in fresh.env.items():
        monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["crm", *args])
        return result.exit_code, result.output

    code, said = run("doctor")
    assert code == 1 and "inbox: MISSING the HubSpot app is not installed" in said
    assert f"{fresh.relay_url}/crm/hubspot/install" in said
    code, said = run("setup")
    assert code == 0 and "registered the custom channel" in said
    assert f"MISSING the HubSpot app is not installed in the portal: open {fresh.relay_url}/crm/hubspot/install" in said
    install_crm_app(fresh.relay_url, "hubspot")
    code, said = run("setup")
    assert code == 0 and "connected channel account" in said, said
    code, said = run("doctor")
    assert code == 0, said
    assert f"inbox: app installed in portal {fresh.hubspot.portal_id}" in said
    assert "inbox: channel account" in said and "MISSING" not in said


def _texts(payloads: list[dict[str, Any]]) -> list[str]:
    out = []
    for payload in payloads:
        if payload["type"] == "text":
            out.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            out.append(payload["interactive"]["body"]["text"])
    return out


def test_an_agent_answers_in_hubspot_and_the_patient_answers_back_until_the_thread_is_closed(loop: Loop) -> None:
    patient = loop.whatsapp.patient(PATIENT, "Ayşe Yılmaz")
    patient.send_text("Merhaba, burun estetiği hakkında bilgi almak istiyorum")
    loop.work()
    patient.send_text("temsilci")  # the flow's word for a person
    loop.until(lambda: bool(loop.hubspot.inbox_view()), "the thread opens in HubSpot's inbox")
    loop.until(lambda: len(loop.thread()["messages"]) >= 3, "the bot's part is in the thread")
    thread = loop.thread()
    assert thread["status"] == "OPEN" and thread["contact"]["phone"] == f"+{PATIENT}"
    history = [m for m in thread["messages"] if m["type"] == "MESSAGE"]
    assert history[0]["direction"] == "INCOMING" and "burun estetiği" in history[0]["text"]
    assert any(m["direction"] == "OUTGOING" for m in history)  # the bot's answers, as the clinic's side
    assert loop.hubspot.count("contacts") == 1 and loop.hubspot.count("deals") == 1
    before = len(loop.sent_to_patient())

    # the agent answers in HubSpot: the reply goes out from the clinic's number, once, and HubSpot shows it sent
    reply = loop.hubspot.agent_reply(thread["id"], "Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?")
    reply_id = reply["message"]["id"]
    loop.until(lambda: len(loop.sent_to_patient()) > before, "the agent's reply reaches the patient")
    assert _texts(loop.sent_to_patient()[before:]) == ["Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?"]

    def status(message_id: str) -> str | None:
        return next(m["status"] for m in loop.thread()["messages"] if m["id"] == message_id)

    loop.until(lambda: status(reply_id) == "SENT", "HubSpot shows the reply sent")
    patient.read_all()  # the patient reads it: HubSpot takes READ
    loop.until(lambda: status(reply_id) == "READ", "HubSpot shows the reply read")

    # HubSpot delivers the same webhook again: nothing is sent twice
    loop.hubspot.redeliver_next(1)
    loop.hubspot.wait_for_deliveries(3.0)
    loop.work()
    assert len(loop.sent_to_patient()) == before + 1

    # the patient answers: the answer is in the thread, and the bot says nothing
    patient.send_text("Fiyat ve tarihler hakkında bilgi alabilir miyim?")
    loop.until(lambda: any("Fiyat ve tarihler" in m["text"] for m in loop.thread()["messages"]),
               "the patient's answer lands in the thread")
    assert len(loop.sent_to_patient()) == before + 1

    # the patient sends a photo: fetched from WhatsApp in a job, stored in HubSpot's files, attached in the thread
    photo = b"\xff\xd8\xff\xe0 a photo of the nose, profile \xff\xd9"
    patient.send_image("Profilden", content=photo)
    loop.until(lambda: any(m["attachments"] for m in loop.thread()["messages"]), "the photo lands in the thread")
    shown = next(m for m in loop.thread()["messages"] if m["attachments"])
    assert shown["direction"] == "INCOMING" and shown["text"] == "Profilden"
    assert loop.hubspot.file_content(shown["attachments"][0]["fileId"]) == photo
    assert len(loop.sent_to_patient()) == before + 1  # still no bot turn

    # the agent sends a file: the patient gets it as a document from the same number
    price_list = loop.hubspot.add_file("fiyat-listesi.pdf", b"%PDF-1.4 price list\n%%EOF\n", "application/pdf")
    loop.hubspot.agent_reply(thread["id"], "Fiyat listemiz ekte.", [price_list["id"]])
    loop.until(lambda: any(p["type"] == "document" for p in loop.sent_to_patient()), "the file reaches the patient")
    document = next(p for p in loop.sent_to_patient() if p["type"] == "document")
    assert document["document"]["filename"] == "fiyat-listesi.pdf"
    assert document["document"]["caption"] == "Fiyat listemiz ekte."
    # the link is HubSpot's short-lived signed URL of the agent's file: WhatsApp fetches these bytes
    assert requests.get(document["document"]["link"], timeout=5).content == b"%PDF-1.4 price list\n%%EOF\n"

    # the agent closes the thread: the bot answers the patient's next message again
    loop.hubspot.close_thread(thread["id"])
    loop.hubspot.wait_for_deliveries(3.0)
    loop.work()
    count = len(loop.sent_to_patient())
    patient.send_text("Merhaba, yeni bir sorum var")
    loop.until(lambda: len(loop.sent_to_patient()) > count, "the bot answers after the thread was closed")
    assert loop.hubspot.count("contacts") == 1
    assert all(m["text"] != "Merhaba, yeni bir sorum var" for m in loop.thread()["messages"])


def test_a_reply_whatsapp_would_refuse_shows_failed_in_hubspot_with_the_reason(loop: Loop) -> None:
    patient = loop.whatsapp.patient(PATIENT, "Hans Müller")
    patient.send_text("Hello, I would like to talk to a person")
    loop.work()
    patient.send_text("human")
    loop.whatsapp.wait_for_webhooks(5.0)
    key = f"whatsapp:{loop.runtime.settings.whatsapp_phone_number_id}:{PATIENT}"
    # the patient's last message handled before they fall silent (its turn would move the 24 hours on)
    loop.until(lambda: bool(loop.hubspot.inbox_view()) and not inbox.messages(loop.runtime, key),
               "the thread opens in HubSpot's inbox, the patient's messages handled")
    thread = loop.thread()
    conversation = conversations.load(loop.runtime, key)
    assert conversation is not None
    # the patient last wrote 25 hours ago, and no template is configured for English
    conversation.last_inbound_at = utcnow() - timedelta(hours=25)
    loop.runtime.redis.set(CONVERSATION.key(key), conversation.model_dump_json(), keepttl=True)
    before = len(loop.sent_to_patient())
    reply_id = loop.hubspot.agent_reply(thread["id"], "Are you still interested?")["message"]["id"]

    def shown() -> dict[str, Any]:
        return next(m for m in loop.thread()["messages"] if m["id"] == reply_id)

    loop.until(lambda: shown()["status"] == "FAILED", "HubSpot shows the reply failed")
    assert "24 hours" in shown()["failure"] and len(loop.sent_to_patient()) == before
