"""The whole loop with Salesforce and the chat2crm package, over real HTTP(S) and gRPC: the relay (web app, rq
workers, real Redis), the WhatsApp emulator (with its status webhooks), and the Salesforce emulator with the
package deployed, its REST API over HTTPS and its Pub/Sub API over gRPC with TLS, the listener
(``chat2crm listen salesforce``) on its own thread.

A patient talks to the bot and asks for a person; the Lead is written and the conversation appears as chat
messages on it; an agent answers with the package's component (text, then a file); the listener takes each
reply from the change events, the patient gets it from the clinic's number and its status comes back to the
record; the patient's answer and photo land on the Lead without a bot turn; a reply outside WhatsApp's
24-hour window shows failed with the reason; the agent closes the conversation and the bot answers the
patient's next message. A listener that reads the stream again sends nothing twice.
"""

from __future__ import annotations

import contextlib
import threading
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

from connector import conversations, inbox
from connector.app import create_app
from connector.bot.after import RELEASED
from connector.conversations import CONVERSATION
from connector.listen import CHECKPOINT, Backoff, Listener
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from core.models import utcnow
from demo.stack import prepare_crm
from emulators.salesforce.changes import replay_bytes
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.e2e.conftest import crm_environment, write_config
from tests.integration.test_salesforce_inbox_org import Org, running_org
from tests.paths import MAPPINGS

PATIENT = "905321112233"
MESSAGE = "Chat2CRM_Message__c"


@dataclass
class Loop:
    runtime: Runtime
    whatsapp: Any
    org: Org
    listener: Listener
    relay_url: str

    @property
    def salesforce(self) -> Any:
        return self.org.emulator

    def work(self) -> None:
        run_worker(self.runtime, burst=True)
        run_worker(self.runtime, burst=True)

    def until(self, check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Run the workers until ``check`` holds: webhooks and change events arrive on their own threads."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"never: {what}"
            with contextlib.suppress(TimeoutError):  # still posting on a loaded machine: this loop's deadline rules
                self.whatsapp.wait_for_webhooks(0.2)
            self.work()

    def lead(self) -> str:
        (lead,) = self.salesforce.records("Lead")
        return str(lead["Id"])

    def thread(self) -> list[dict[str, Any]]:
        return list(self.salesforce.messages(self.lead())) if self.salesforce.records("Lead") else []

    def record(self, message_id: str) -> dict[str, Any]:
        return dict(self.salesforce.objects[MESSAGE][message_id])

    def sent_to_patient(self) -> list[dict[str, Any]]:
        return [s.payload for s in self.whatsapp.messages_to(PATIENT)]


class _Late:
    """A WSGI app set after the server is up: the relay must know its own public URL before it is built."""

    app: Any = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        return self.app(environ, start_response)


def _listen(runtime: Runtime) -> tuple[Listener, threading.Thread]:
    """A listener on its own thread, with its own runtime and connections, as its own process has them."""
    own = Runtime(runtime.settings, redis_client=redis.Redis.from_url(runtime.settings.redis_url or ""))
    listener = Listener(own, "salesforce", lease_seconds=2.0, backoff=Backoff(base=0.05, ceiling=0.3))
    thread = threading.Thread(target=listener.run, name="listener", daemon=True)
    thread.start()
    return listener, thread


@pytest.fixture
def loop(redis_url: str, redis_client: redis.Redis, whatsapp_emulator: Any, telegram_emulator: Any,
         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loop]:
    with running_org(tmp_path / "tls", keepalive_seconds=0.3) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.tls.ca_bundle))
        env = {**crm_environment(), **{k.upper(): v for k, v in org.settings.items()},
               "REQUESTS_CA_BUNDLE": str(org.tls.ca_bundle)}
        lines = prepare_crm("salesforce", env, MAPPINGS / "salesforce.yaml")  # the admin's `crm setup`
        assert "inbox: ok Chat2CRM_Message__c and its 13 fields" in lines, lines
        late = _Late()
        relay = ServedApp(late).start()
        config = write_config(tmp_path, crm="salesforce", mapping=str(MAPPINGS / "salesforce.yaml"),
                              **{"delivery.backoff_base_seconds": 0.05, "delivery.backoff_max_seconds": 0.5})
        settings = make_settings(redis_url, chat2crm_config=config, whatsapp_api_base=whatsapp_emulator.url,
                                 telegram_api_base=telegram_emulator.url, public_base_url=relay.url, **org.settings)
        runtime = Runtime(settings, redis_client=redis_client)
        set_current_runtime(runtime)
        late.app = create_app({"TESTING": True}, runtime=runtime)
        whatsapp_emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
        whatsapp_emulator.status_webhooks = True
        org.emulator.calls.clear()
        listener, thread = _listen(runtime)
        try:
            yield Loop(runtime, whatsapp_emulator, org, listener, relay.url)
        finally:
            listener.stop()
            thread.join(timeout=10)
            relay.stop()
            set_current_runtime(None)
        assert not org.emulator.violations, org.emulator.violations


def _texts(payloads: list[dict[str, Any]]) -> list[str]:
    out = []
    for payload in payloads:
        if payload["type"] == "text":
            out.append(payload["text"]["body"])
        elif payload["type"] == "interactive":
            out.append(payload["interactive"]["body"]["text"])
    return out


def _rest_calls(loop: Loop) -> int:
    return sum(1 for call in loop.salesforce.calls if call["path"].startswith("/services/data/"))


def test_an_agent_answers_in_salesforce_and_the_patient_answers_back_until_the_conversation_is_closed(
        loop: Loop) -> None:
    patient = loop.whatsapp.patient(PATIENT, "Ayşe Yılmaz")
    patient.send_text("Merhaba, burun estetiği hakkında bilgi almak istiyorum")
    loop.work()
    patient.send_text("temsilci")  # the flow's word for a person
    loop.until(lambda: len(loop.thread()) >= 3, "the conversation appears as chat messages on the Lead")
    thread = loop.thread()
    assert thread[0]["Direction__c"] == "Inbound" and "burun estetiği" in thread[0]["Body__c"]
    assert any(m["Direction__c"] == "Outbound" for m in thread)  # the bot's answers, as the clinic's side
    assert all(m["Status__c"] == "Received" and m["Lead__c"] == loop.lead() for m in thread)
    assert {m["Conversation_Key__c"] for m in thread} == {thread[0]["Conversation_Key__c"]}
    assert PATIENT not in thread[0]["Conversation_Key__c"]
    assert loop.salesforce.count("Lead") == 1
    before = len(loop.sent_to_patient())

    # the agent answers on the Lead's page: the listener takes it, the reply goes out from the clinic's number
    calls = _rest_calls(loop)
    reply = loop.salesforce.add_agent_reply(loop.lead(), "Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?")
    loop.until(lambda: len(loop.sent_to_patient()) > before, "the agent's reply reaches the patient")
    assert _texts(loop.sent_to_patient()[before:]) == ["Merhaba Ayşe Hanım, ben Deniz. Size nasıl yardımcı olabilirim?"]
    loop.until(lambda: loop.record(reply)["Status__c"] in ("Sent", "Delivered"), "Salesforce shows the reply sent")
    assert loop.record(reply)["Sent_At__c"]  # WhatsApp's statuses follow: sent, then delivered
    patient.read_all()  # the patient reads it: the record says Read
    loop.until(lambda: loop.record(reply)["Status__c"] == "Read", "Salesforce shows the reply read")
    # taking the reply cost no REST call; each status written back, one PATCH (sent, delivered, read)
    assert _rest_calls(loop) - calls <= 3

    # the patient answers: the answer is on the Lead, one call, and the bot says nothing
    calls = _rest_calls(loop)
    patient.send_text("Fiyat ve tarihler hakkında bilgi alabilir miyim?")
    loop.until(lambda: any("Fiyat ve tarihler" in (m["Body__c"] or "") for m in loop.thread()),
               "the patient's answer lands on the Lead")
    assert _rest_calls(loop) - calls == 1  # one composite call publishes it
    assert len(loop.sent_to_patient()) == before + 1

    # the patient sends a photo: stored in Salesforce Files, linked to its message
    photo = b"\xff\xd8\xff\xe0 a photo of the nose, profile \xff\xd9"
    patient.send_image("Profilden", content=photo)
    loop.until(lambda: any(m["files"] for m in loop.thread()), "the photo lands on the Lead")
    shown = next(m for m in loop.thread() if m["files"])
    assert shown["Direction__c"] == "Inbound" and shown["Body__c"] == "Profilden"
    (version,) = [v for v in loop.salesforce.records("ContentVersion") if loop.salesforce.version_data(v["Id"]) == photo]
    assert version["ContentDocumentId"]
    assert len(loop.sent_to_patient()) == before + 1  # still no bot turn

    # the agent sends a file (a draft, the file uploaded onto it, then New): the patient gets it as a document
    price_list = b"%PDF-1.4 price list\n%%EOF\n"
    loop.salesforce.add_agent_reply(loop.lead(), "Fiyat listemiz ekte.", files=[("fiyat-listesi.pdf", price_list)])
    loop.until(lambda: any(p["type"] == "document" for p in loop.sent_to_patient()), "the file reaches the patient")
    document = next(p for p in loop.sent_to_patient() if p["type"] == "document")
    assert document["document"]["filename"] == "fiyat-listesi.pdf"
    assert document["document"]["caption"] == "Fiyat listemiz ekte."
    # the link is the relay's own short-lived signed link: WhatsApp fetches the file's bytes there
    link = document["document"]["link"]
    assert link.startswith(f"{loop.relay_url}/crm/salesforce/files/")
    assert requests.get(link, timeout=5).content == price_list

    _read_again_then_close(loop, patient)


def _read_again_then_close(loop: Loop, patient: Any) -> None:
    """The stream is read again from an old position (nothing is sent twice); then the agent closes the
    conversation and the bot answers the patient's next message."""
    count = len(loop.sent_to_patient())
    loop.listener.stop()
    loop.runtime.redis.set(CHECKPOINT.key("salesforce"), replay_bytes(loop.salesforce.change_events(
        "/data/Chat2CRM_Message__ChangeEvent")[0].replay))
    again, thread_ = _listen(loop.runtime)
    try:
        loop.until(lambda: loop.runtime.redis.get(CHECKPOINT.key("salesforce")) == replay_bytes(
            loop.salesforce.change_events("/data/Chat2CRM_Message__ChangeEvent")[-1].replay), "the stream is read again")
        loop.work()
        assert len(loop.sent_to_patient()) == count

        # the agent closes the conversation: the bot answers the patient's next message again
        loop.salesforce.close_thread(loop.lead())
        loop.until(lambda: RELEASED in getattr(conversations.load(loop.runtime, _key(loop)), "pending", {}),
                   "the conversation is handed back to the bot")
        patient.send_text("Merhaba, yeni bir sorum var")
        loop.until(lambda: len(loop.sent_to_patient()) > count, "the bot answers after the conversation was closed")
        assert all(m["Body__c"] != "Merhaba, yeni bir sorum var" for m in loop.thread())
        assert loop.salesforce.count("Lead") == 1
    finally:
        again.stop()
        thread_.join(timeout=10)


def _key(loop: Loop) -> str:
    return f"whatsapp:{loop.runtime.settings.whatsapp_phone_number_id}:{PATIENT}"


def test_a_reply_whatsapp_would_refuse_shows_failed_on_the_record_with_the_reason(loop: Loop) -> None:
    patient = loop.whatsapp.patient(PATIENT, "Hans Müller")
    patient.send_text("Hello, I would like to talk to a person")
    loop.work()
    patient.send_text("human")
    loop.whatsapp.wait_for_webhooks(5.0)
    # the patient's last message handled before they fall silent (its turn would move the 24 hours on)
    loop.until(lambda: len(loop.thread()) >= 2 and not inbox.messages(loop.runtime, _key(loop)),
               "the conversation appears on the Lead, the patient's messages handled")
    conversation = conversations.load(loop.runtime, _key(loop))
    assert conversation is not None
    # the patient last wrote 25 hours ago, and no template is configured for English
    conversation.last_inbound_at = utcnow() - timedelta(hours=25)
    loop.runtime.redis.set(CONVERSATION.key(_key(loop)), conversation.model_dump_json(), keepttl=True)
    before = len(loop.sent_to_patient())
    reply = loop.salesforce.add_agent_reply(loop.lead(), "Are you still interested?")
    loop.until(lambda: loop.record(reply)["Status__c"] == "Failed", "Salesforce shows the reply failed")
    assert "24 hours" in loop.record(reply)["Error__c"] and len(loop.sent_to_patient()) == before
