"""Delivery tracking on WhatsApp: the status webhooks the emulator sends after a message it accepted, over
real HTTP, signed as Meta signs them, each echoing the ``biz_opaque_callback_data`` the relay sent; and the
relay's parser reading them back (``StatusUpdate.tracking``, the failure's error), then its web app
recording them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connector import received
from connector.channels import delivery_status
from connector.channels.base import StatusUpdate
from connector.channels.whatsapp import WhatsAppClient, parse_payload, verify_signature
from connector.inbox import INBOX
from connector.runtime import Runtime
from core.models import Attachment, Conversation, Reply, utcnow
from emulators.server import ServedApp
from emulators.whatsapp import WhatsAppEmulator
from tests.conftest import TEST_SECRETS, make_settings
from tests.intake import kept, read
from tests.integration.channel_servers import Receiver

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]
PATIENT = "905321112233"
CONVERSATION = Conversation(key=f"whatsapp:{ACCOUNT}:{PATIENT}", channel="whatsapp", account=ACCOUNT,
                            sender_id=PATIENT, last_inbound_at=utcnow())


@pytest.fixture
def emulator() -> Iterator[WhatsAppEmulator]:
    """The WhatsApp emulator with its status webhooks on (statuses held back 0.5 s by ``status_delay``)."""
    emulator = WhatsAppEmulator(access_token=TEST_SECRETS["whatsapp_access_token"], phone_number_id=ACCOUNT,
                                app_secret=TEST_SECRETS["whatsapp_app_secret"], status_webhooks=True,
                                status_delay_seconds=0.5)
    with ServedApp(emulator.app) as served:
        emulator.url = served.url  # type: ignore[attr-defined]
        yield emulator
    emulator.statuses.sender.close()
    assert not emulator.violations, f"requests or webhooks WhatsApp would not make: {emulator.violations}"


@pytest.fixture
def receiver(emulator: WhatsAppEmulator) -> Iterator[Receiver]:
    with Receiver() as started:
        emulator.relay_url = started.url
        yield started


@pytest.fixture
def client(emulator: WhatsAppEmulator) -> WhatsAppClient:
    return WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=emulator.url))  # type: ignore[attr-defined]


def _statuses(receiver: Receiver) -> list[StatusUpdate]:
    found = []
    for webhook in receiver.received:
        verify_signature(webhook.raw, webhook.headers.get("X-Hub-Signature-256"), TEST_SECRETS["whatsapp_app_secret"])
        found.extend(parse_payload(webhook.body).statuses)
    return found


def test_sent_delivered_then_read_each_echo_the_tracking_value(client: WhatsAppClient, emulator: WhatsAppEmulator,
                                                               receiver: Receiver) -> None:
    ids = client.send(CONVERSATION, [Reply(text="Sonuçlar ekte", attachments=[
        Attachment(url="https://files.example/r.pdf", mime_type="application/pdf")]), Reply(text="Geçmiş olsun")],
        tracking="agent-reply:hs-981")
    emulator.wait_for_webhooks()
    for message_id in ids:  # each message's statuses in order (two messages' may interleave, as Meta's do)
        assert [s.status for s in _statuses(receiver) if s.message_id == message_id] == ["sent", "delivered"]
    assert len(_statuses(receiver)) == 4
    assert emulator.patient(PATIENT).read_all() == 2
    emulator.wait_for_webhooks()
    statuses = _statuses(receiver)
    assert [s.status for s in statuses[4:]] == ["read", "read"]
    assert {s.tracking for s in statuses} == {"agent-reply:hs-981"}
    assert {s.recipient for s in statuses} == {PATIENT} and all(not s.errors for s in statuses)
    assert emulator.patient(PATIENT).read_all() == 0  # nothing left unread
    client.send(CONVERSATION, [Reply(text="izlenmeyen")])
    emulator.wait_for_webhooks()
    assert _statuses(receiver)[-1].tracking is None


def test_an_undeliverable_message_ends_in_a_failed_status_with_metas_error(
        client: WhatsAppClient, emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    emulator.fail_next(1, "131026")
    (message_id,) = client.send(CONVERSATION, [Reply(text="Merhaba")], tracking="agent-reply:7")
    emulator.wait_for_webhooks()
    (failed,) = _statuses(receiver)
    assert (failed.message_id, failed.status, failed.tracking) == (message_id, "failed", "agent-reply:7")
    (error,) = failed.errors
    assert (error["code"], error["title"], error["message"]) == (131026, "Message undeliverable",
                                                                 "Message undeliverable")
    assert error["error_data"] == {"details": "Message Undeliverable."}
    assert emulator.patient(PATIENT).read_all() == 0


def test_a_link_to_a_type_meta_does_not_take_fails_afterwards(emulator: WhatsAppEmulator, receiver: Receiver) -> None:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PATIENT, "type": "image",
            "image": {"link": "https://files.example/animation.gif"}, "biz_opaque_callback_data": "agent-reply:8"}
    answer = requests.post(f"{emulator.url}/v23.0/{ACCOUNT}/messages", json=body, timeout=5,  # type: ignore[attr-defined]
                           headers={"Authorization": f"Bearer {TEST_SECRETS['whatsapp_access_token']}"})
    assert answer.status_code == 200  # Meta takes the message, then fails to fetch a file it can use
    emulator.wait_for_webhooks()
    (failed,) = _statuses(receiver)
    assert failed.status == "failed" and failed.errors[0]["code"] == 131053 and failed.tracking == "agent-reply:8"
    assert "image/gif" in failed.errors[0]["error_data"]["details"]


def test_a_delayed_status_comes_after_the_answer_and_the_wait_sees_it(client: WhatsAppClient,
                                                                      emulator: WhatsAppEmulator,
                                                                      receiver: Receiver) -> None:
    emulator.fail_next(1, "status_delay")
    (message_id,) = client.send(CONVERSATION, [Reply(text="Merhaba")], tracking="agent-reply:9")
    assert receiver.received == [] and emulator.statuses.sender.pending == 2  # answered 200, nothing reported yet
    with pytest.raises(TimeoutError):
        emulator.wait_for_webhooks(timeout=0.05)
    emulator.wait_for_webhooks()
    assert [(s.message_id, s.status) for s in _statuses(receiver)] == [(message_id, "sent"),
                                                                       (message_id, "delivered")]


def test_the_relay_records_the_statuses_it_is_sent(emulator: WhatsAppEmulator, runtime: Runtime) -> None:
    from connector.app import create_app

    with ServedApp(create_app({"TESTING": True}, runtime=runtime)) as relay:
        emulator.relay_url = f"{relay.url}/webhooks/whatsapp"
        client = WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=emulator.url))  # type: ignore[attr-defined]
        (message_id,) = client.send(CONVERSATION, [Reply(text="Merhaba")], tracking="agent-reply:10")
        emulator.wait_for_webhooks()
        read(runtime)  # as a job process reads what the webhook kept
        assert delivery_status(runtime.redis, "whatsapp", message_id) == "delivered"
        emulator.patient(PATIENT).read_all()
        emulator.wait_for_webhooks()
        read(runtime)
        assert delivery_status(runtime.redis, "whatsapp", message_id) == "read"
    assert [p["http_status"] for p in emulator.statuses.posted] == [200, 200, 200]


def test_status_webhooks_are_off_unless_asked_for(whatsapp_emulator: Any) -> None:
    client = WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url))
    client.send(CONVERSATION, [Reply(text="Merhaba")], tracking="agent-reply:11")
    whatsapp_emulator.wait_for_webhooks(timeout=0.5)
    assert whatsapp_emulator.statuses.posted == [] and whatsapp_emulator.messages_to(PATIENT)[0].tracking == (
        "agent-reply:11")


def test_a_status_webhook_is_kept_counted_and_looked_up_in_one_redis_call(runtime: Runtime,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Statuses are two thirds of the webhooks a clinic receives (sent, delivered, read for every reply): each
    costs one round trip at the door and one when read, and a late "sent" never overwrites "read"."""
    import json

    from connector.app import create_app
    from connector.channels.whatsapp import sign
    from core import metrics

    app = create_app({"TESTING": True}, runtime=runtime).test_client()
    calls: list[str] = []
    original = type(runtime.redis).execute_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        return original(self, *args, **kwargs)

    def post(status: str) -> None:
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
                "display_phone_number": "1", "phone_number_id": ACCOUNT}, "statuses": [{
                    "id": "wamid.OUT7", "status": status, "timestamp": "1763800000", "recipient_id": PATIENT}]}}]}]})
        answer = app.post("/webhooks/whatsapp", data=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body.encode(), TEST_SECRETS["whatsapp_app_secret"])})
        assert kept(answer)

    post("delivered")  # the first calls also load the scripts into Redis
    assert read(runtime)["statuses"] == 1
    monkeypatch.setattr(type(runtime.redis), "execute_command", counted)
    post("read")
    post("sent")  # late: kept out
    assert calls == ["EVALSHA", "EVALSHA"]  # the door: one call a webhook
    bodies = runtime.redis.lrange(INBOX.key(received.intake_key("whatsapp")), 0, -1)
    calls.clear()
    assert [received.handle(runtime, body)["statuses"] for body in bodies] == [1, 1]
    assert calls == ["EVALSHA", "EVALSHA"]  # reading: one call a status
    monkeypatch.undo()
    assert delivery_status(runtime.redis, "whatsapp", "wamid.OUT7") == "read"
    assert metrics.read(runtime.redis, "statuses") == {
        ("whatsapp", "delivered"): 1.0, ("whatsapp", "read"): 1.0, ("whatsapp", "sent"): 1.0}
