"""The webhook endpoints on real Redis: accept, de-duplicate, enqueue; reject forged and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import received
from connector.channels.whatsapp import sign
from connector.inbox import DUE, ready_count
from connector.inbox import messages as inbox_messages
from connector.runtime import Runtime
from core import metrics
from tests.conftest import TEST_SECRETS
from tests.intake import kept, read

APP_SECRET = TEST_SECRETS["whatsapp_app_secret"]
TG_SECRET = TEST_SECRETS["telegram_secret_token"]
BATCH = (Path(__file__).parents[1] / "data" / "whatsapp" / "batch.json").read_bytes()
ACCOUNT = "106540352242922"


def post_wa(client: Any, raw: bytes, signature: str | None = "auto") -> Any:
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        headers["X-Hub-Signature-256"] = sign(raw, APP_SECRET)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post("/webhooks/whatsapp", data=raw, headers=headers)


def post_tg(client: Any, body: Any, secret: str | None = TG_SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/webhooks/telegram", data=raw, headers={**headers, "Content-Type": "application/json"})


def queued(runtime: Runtime) -> int:
    """Messages waiting in conversations' inboxes (a channel's intake, ``@<channel>``, holds bodies not read yet)."""
    return sum(len(inbox_messages(runtime, k.decode())) for k in runtime.redis.zrange(DUE.key(), 0, -1)
               if not received.is_intake(k.decode()))


def test_batch_is_queued_per_conversation_in_order(client: Any, runtime: Runtime) -> None:
    response = post_wa(client, BATCH)
    assert kept(response)
    assert queued(runtime) == 0  # the door only keeps the body: a job process reads it
    assert read(runtime) == {"queued": 14, "duplicates": 0, "statuses": 2, "skipped": 1, "ignored": 0, "rejected": 0}
    ayse = inbox_messages(runtime, f"whatsapp:{ACCOUNT}:905321112233")
    assert [m.message_id for m in ayse][:3] == ["wamid.A1", "wamid.A3", "wamid.A4"]
    assert len(inbox_messages(runtime, f"whatsapp:{ACCOUNT}:4915112345678")) == 2  # a message, and the opt-out
    # each conversation is made ready once, however many of its messages came; no rq job per message
    assert ready_count(runtime) == runtime.redis.zcard(DUE.key()) == 3
    assert runtime.queue("inbound").count == 0
    assert runtime.redis.get("c2c:status:whatsapp:wamid.OUT1") == b"delivered"


def test_redelivery_is_acknowledged_and_dropped(client: Any, runtime: Runtime) -> None:
    assert kept(post_wa(client, BATCH))
    read(runtime)
    before = queued(runtime)
    # the same bytes again (a retry after an answer that was lost): dropped at the door
    again = post_wa(client, BATCH)
    assert again.status_code == 200 and again.json == {"received": True, "duplicate": True}
    assert read(runtime)["queued"] == 0 and queued(runtime) == before
    assert runtime.redis.ttl(runtime.redis.keys("c2c:seen:whatsapp:body:*")[0]) <= 3600
    # the same messages in other bytes (a batch put together again): each message dropped when read
    body = json.loads(BATCH)
    body["entry"][0]["id"] = "other-delivery"
    assert kept(post_wa(client, json.dumps(body).encode()))
    counts = read(runtime)
    assert counts["queued"] == 0 and counts["duplicates"] == 14
    assert queued(runtime) == before + 1  # only the opt-out, which carries no id, travels again
    ttl = runtime.redis.ttl("c2c:seen:whatsapp:wamid.A1")
    assert ttl >= 7 * 86400 - 5


def test_a_body_read_twice_queues_nothing_twice(client: Any, runtime: Runtime) -> None:
    """A job process killed after it queued part of a body reads it again: nothing is queued twice, the
    opt-out (whose id comes from the body) included."""
    assert kept(post_wa(client, BATCH))
    item = runtime.redis.lindex("c2c:inbox:@whatsapp", 0)
    first = received.handle(runtime, item)
    second = received.handle(runtime, item)
    assert first["queued"] == 14 and second["queued"] == 0 and second["duplicates"] == 14
    assert queued(runtime) == 15 and read(runtime)["duplicates"] == 14  # 14 messages and the opt-out, once each


@pytest.mark.parametrize(("signature", "status"), [(None, 401), ("sha256=" + "0" * 64, 403), ("md5=x", 403)])
def test_forged_or_unsigned_webhooks_are_refused(client: Any, runtime: Runtime, signature: str | None,
                                                  status: int) -> None:
    assert post_wa(client, BATCH, signature).status_code == status
    assert queued(runtime) == 0


def test_telegram_secret_is_checked(client: Any, runtime: Runtime) -> None:
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1763800000, "chat": {"id": 5, "type": "private"},
                                          "from": {"id": 5, "is_bot": False, "first_name": "A"}, "text": "hi"}}
    assert post_tg(client, update, secret=None).status_code == 401
    assert post_tg(client, update, secret="wrong").status_code == 403
    assert queued(runtime) == 0
    assert kept(post_tg(client, update))
    assert read(runtime)["queued"] == 1
    assert post_tg(client, update).json == {"received": True, "duplicate": True}
    assert read(runtime)["queued"] == 0


@pytest.mark.parametrize(("raw", "status"), [
    (b"\xff\xfe{\"entry\": []}", 400),
    (b"x" * (300 * 1024), 413),
])
def test_bad_input_gets_a_4xx_at_the_door_and_nothing_is_kept(client: Any, runtime: Runtime, raw: bytes,
                                                              status: int) -> None:
    assert post_wa(client, raw).status_code == status
    assert post_tg(client, raw).status_code == status
    assert runtime.redis.llen("c2c:inbox:@whatsapp") == runtime.redis.llen("c2c:inbox:@telegram") == 0
    assert queued(runtime) == 0


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "body is not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, "body nests too deeply"),
    (b"\"just a string\"", None),
])
def test_a_body_bad_as_a_whole_is_dropped_and_counted_when_read(client: Any, runtime: Runtime, raw: bytes,
                                                                reason: str | None,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The door does not read the body: a signed body that is not the channel's webhook is answered 200 (the
    vendor would only send it again), then dropped when read, logged with its reason, and counted."""
    assert kept(post_wa(client, raw)) and kept(post_tg(client, raw))
    assert read(runtime) == {"queued": 0, "duplicates": 0, "statuses": 0, "skipped": 0, "ignored": 0, "rejected": 2}
    assert queued(runtime) == 0
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("whatsapp", "400"): 1.0, ("telegram", "400"): 1.0}
    assert "webhook dropped" in caplog.text
    if reason:
        assert [r.reason for r in caplog.records if r.getMessage() == "webhook dropped"] == [reason, reason]


def test_a_harmless_unknown_body_is_taken_and_holds_nothing(client: Any, runtime: Runtime) -> None:
    raw = json.dumps({"entry": [{"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}]}).encode()
    assert kept(post_wa(client, raw))
    assert read(runtime) == {"queued": 0, "duplicates": 0, "statuses": 0, "skipped": 0, "ignored": 0, "rejected": 0}


def test_verify_handshake(client: Any) -> None:
    ok = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.challenge": "42",
                                                        "hub.verify_token": TEST_SECRETS["whatsapp_verify_token"]})
    assert (ok.status_code, ok.get_data(as_text=True)) == (200, "42")
    bad = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.challenge": "42",
                                                         "hub.verify_token": "nope"})
    assert bad.status_code == 403


def test_insecure_demo_mode_accepts_unsigned_and_says_so(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    from connector.app import create_app
    from tests.conftest import make_settings

    rt = Runtime(make_settings(runtime.settings.redis_url or "", chat2crm_insecure_demo=True),
                 redis_client=runtime.redis)
    client = create_app({"TESTING": True}, runtime=rt).test_client()
    assert post_wa(client, BATCH, signature=None).status_code == 200
    assert "UNSIGNED WEBHOOK ACCEPTED" in caplog.text
    # a wrong signature is still refused
    assert post_wa(client, BATCH, signature="sha256=" + "1" * 64).status_code == 403


# -- fuzzing: thousands of generated bodies, never a 5xx ------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(["entry", "changes", "value", "messages", "statuses", "from", "id", "type", "text", "body",
                         "metadata", "phone_number_id", "interactive", "button_reply", "referral", "update_id",
                         "message", "callback_query", "chat", "data", "contacts", "wa_id", "location"])
_shaped = st.recursive(
    st.none() | st.integers() | st.text(max_size=12) | st.just("905321112233") | st.just(ACCOUNT),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_json, _shaped))
def test_fuzz_whatsapp_never_5xx_and_read_without_a_fault(client: Any, runtime: Runtime, body: Any) -> None:
    raw = json.dumps(body).encode()
    assert post_wa(client, raw).status_code < 500
    read(runtime)  # the body is read as a job process reads it: dropped or taken, never an unexpected error


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_json, _shaped, st.builds(lambda u, m: {"update_id": u, "message": m},
                                                 st.integers(), _shaped)))
def test_fuzz_telegram_never_5xx_and_read_without_a_fault(client: Any, runtime: Runtime, body: Any) -> None:
    assert post_tg(client, body).status_code < 500
    read(runtime)


def test_a_message_is_remembered_and_queued_in_one_atomic_step(runtime: Runtime) -> None:
    """Remembering the id and queueing the message cannot come apart: were Redis to fail between the
    two, a remembered-but-unqueued message would have its redelivery dropped, and be lost."""
    import redis as redis_lib

    from connector.inbox import enqueue_inbound
    from connector.runtime import rkey
    from core.models import InboundMessage

    message = InboundMessage(channel="whatsapp", account=ACCOUNT, sender_id="905321112233", message_id="wamid.A1",
                             timestamp=1763800000, kind="text", text="Merhaba")
    assert enqueue_inbound(runtime, message, dedup_days=7) is True
    assert enqueue_inbound(runtime, message, dedup_days=7) is False  # the redelivery
    assert queued(runtime) == 1 and ready_count(runtime) == 1
    assert 6 * 86400 < runtime.redis.ttl(rkey("seen", "whatsapp", "wamid.A1")) <= 7 * 86400
    # Redis goes away mid-request: nothing is remembered, so the channel's redelivery is taken later
    broken = Runtime(runtime.settings, redis_client=redis_lib.Redis(unix_socket_path="/nonexistent/redis.sock"))
    other = message.model_copy(update={"message_id": "wamid.A2"})
    with pytest.raises(redis_lib.ConnectionError):
        enqueue_inbound(broken, other, dedup_days=7)
    assert not runtime.redis.exists(rkey("seen", "whatsapp", "wamid.A2"))
    assert enqueue_inbound(runtime, other, dedup_days=7) is True


# -- one bad message in a batch is dropped alone; the rest is queued ------------------------------
def test_a_bad_message_in_a_batch_is_dropped_alone(client: Any, runtime: Runtime,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    raw = (Path(__file__).parents[1] / "data" / "whatsapp" / "batch_with_bad_message.json").read_bytes()
    assert kept(post_wa(client, raw))
    assert read(runtime) == {"queued": 3, "duplicates": 0, "statuses": 0, "skipped": 1, "ignored": 0, "rejected": 0}
    assert [m.kind for m in inbox_messages(runtime, f"whatsapp:{ACCOUNT}:16505551234")] == ["text", "choice"]
    assert [m.kind for m in inbox_messages(runtime, f"whatsapp:{ACCOUNT}:4915112345678")] == ["media"]
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("whatsapp", "part"): 1.0}
    assert "4915112345678" not in caplog.text and "Hans" not in caplog.text


@pytest.mark.parametrize("text", ["gizli\\u0000metin", "yarım \\ud800 karakter"])
def test_text_no_system_can_store_is_dropped_not_a_5xx(client: Any, runtime: Runtime, text: str) -> None:
    """JSON may carry a NUL or an unpaired surrogate ("\\ud800"): valid JSON, but text that Redis and every
    CRM refuse. The message is dropped; its valid neighbour is queued."""
    raw = ('{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", '
           '"value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", '
           f'"phone_number_id": "{ACCOUNT}"}}, "contacts": [{{"profile": {{"name": "A"}}, "wa_id": "905321112233"}}], '
           '"messages": [{"from": "905321112233", "id": "wamid.X1", "timestamp": "1763800000", "type": "text", '
           f'"text": {{"body": "{text}"}}}}, {{"from": "905321112233", "id": "wamid.X2", "timestamp": "1763800001", '
           '"type": "text", "text": {"body": "fine"}}]}}]}]}').encode()
    assert kept(post_wa(client, raw))
    counts = read(runtime)
    assert counts["queued"] == 1 and counts["skipped"] == 1
    assert [m.text for m in inbox_messages(runtime, f"whatsapp:{ACCOUNT}:905321112233")] == ["fine"]
    update = ('{"update_id": 7, "message": {"message_id": 1, "date": 1763800000, "chat": {"id": 5, "type": "private"},'
              f' "from": {{"id": 5, "is_bot": false, "first_name": "A"}}, "text": "{text}"}}}}').encode()
    assert kept(post_tg(client, update))
    assert read(runtime) == {"queued": 0, "duplicates": 0, "statuses": 0, "skipped": 1, "ignored": 0, "rejected": 0}


def test_a_telegram_update_without_its_chat_is_dropped(client: Any, runtime: Runtime) -> None:
    update = {"update_id": 9, "message": {"message_id": 1, "date": 1763800000, "text": "hi",
                                          "from": {"id": 5, "is_bot": False, "first_name": "A"}}}
    assert kept(post_tg(client, update))
    assert read(runtime)["skipped"] == 1 and queued(runtime) == 0


# -- the emulators' own webhooks: every kind fits the vendor's description and is understood ---------
@pytest.fixture
def relay(runtime: Runtime, whatsapp_emulator: Any, telegram_emulator: Any) -> Iterator[str]:
    from connector.app import create_app
    from emulators.server import ServedApp

    served = ServedApp(create_app({"TESTING": True}, runtime=runtime)).start()
    whatsapp_emulator.relay_url = f"{served.url}/webhooks/whatsapp"
    telegram_emulator.relay_url = f"{served.url}/webhooks/telegram"
    try:
        yield served.url
    finally:
        served.stop()


def test_every_webhook_the_whatsapp_emulator_generates_fits_and_is_understood(
        relay: str, runtime: Runtime, whatsapp_emulator: Any) -> None:
    from connector.channels.whatsapp import WhatsAppClient
    from core.models import Conversation, Option, Reply, utcnow
    from tests.conftest import make_settings

    wa_client = WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url))
    conversation = Conversation(key=f"whatsapp:{ACCOUNT}:905321112233", channel="whatsapp", account=ACCOUNT,
                                sender_id="905321112233", last_inbound_at=utcnow())
    wa_client.send(conversation, [  # what the patient then answers: buttons, and a list with descriptions
        Reply(text="?", options=[Option(id="yes", title="Evet"), Option(id="no", title="Hayır")]),
        Reply(text="?", options=[Option(id=f"t{i}", title=f"Tedavi {i}", description="açıklama") for i in range(5)],
              list_button="Tedaviler")])
    patient = whatsapp_emulator.patient("905321112233", "Ayşe Yılmaz")
    ad = {"source_url": "https://fb.me/ad1", "source_id": "120210000000001", "source_type": "ad",
          "headline": "Hair transplant Istanbul", "body": "All inclusive", "media_type": "image",
          "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ"}
    statuses = [patient.send_text("Merhaba"), patient.send_text("Reklamdan geldim", referral=ad),
                patient.press_button("yes", "Evet"), patient.choose_from_list("t2", "Tedavi 2"),
                patient.share_location(41.0082, 28.9784, "Klinik", "İstanbul"), patient.share_location(41.0, 29.0),
                patient.send_image("röntgen"), patient.send_image(), patient.redeliver(),
                whatsapp_emulator.patient(user_id="TR.1234567890", name="Kullanıcı").send_text("telefon yok"),
                patient.stop_marketing_messages()]
    assert statuses == [200] * len(statuses)
    assert whatsapp_emulator.violations == []
    read(runtime)
    assert metrics.read(runtime.redis, "webhooks_rejected") == {}  # nothing dropped, nothing refused
    inbox = inbox_messages(runtime, f"whatsapp:{ACCOUNT}:905321112233")
    assert [(m.kind, m.raw_type) for m in inbox] == [
        ("text", "text"), ("text", "text"), ("choice", "button_reply"), ("choice", "list_reply"),
        ("location", "location"), ("location", "location"), ("media", "image"), ("media", "image"),
        ("unsupported", "opt_out")]
    sent = whatsapp_emulator.messages_to("905321112233")
    assert inbox[2].reply_to == sent[0].id and inbox[3].reply_to == sent[1].id  # the context names the carrier
    assert inbox[1].referral is not None and inbox[1].referral.source_id == "120210000000001"
    assert [m.text for m in inbox_messages(runtime, f"whatsapp:{ACCOUNT}:TR.1234567890")] == ["telefon yok"]


def test_a_webhook_meta_would_never_send_is_a_violation(relay: str, whatsapp_emulator: Any) -> None:
    patient = whatsapp_emulator.patient("905321112233", "Ayşe")
    bad = patient.payload([patient.message("interactive", {"type": "button_reply",
                                                            "button_reply": {"id": "yes", "title": "Evet"}})])
    assert patient.post(bad) == 200  # the relay copes; the emulator says Meta never sends this
    (violation,) = whatsapp_emulator.violations
    assert violation["problems"] == ["entry/0/changes/0/value/messages/0: 'context' is a required property"]
    whatsapp_emulator.violations.clear()  # expected here; the fixture fails on any other


def test_every_update_the_telegram_emulator_generates_fits_and_is_understood(
        relay: str, runtime: Runtime, telegram_emulator: Any) -> None:
    from connector.channels.telegram import TelegramClient, bot_id
    from core import metrics
    from core.models import Conversation, Option, Reply
    from tests.conftest import make_settings

    account = bot_id(TEST_SECRETS["telegram_bot_token"])
    tg_client = TelegramClient(make_settings("unix:///x", telegram_api_base=telegram_emulator.url))
    tg_client.send(Conversation(key=f"telegram:{account}:555001", channel="telegram", account=account,
                                sender_id="555001"),
                   [Reply(text="Какое лечение?", options=[Option(id="dental", title="Стоматология")]),
                    Reply(text="Ваш номер?", request_phone=True)])
    user = telegram_emulator.user(555001, "Мария Иванова", language_code="ru", username="maria")
    statuses = [user.start("K7Q2MX"), user.send_text("Здравствуйте"), user.press("dental"),
                user.share_contact("+79161234567"), user.share_location(55.75, 37.61), user.send_photo("снимок"),
                user.send_photo(), user.edit("исправлено"), user.block()]
    assert statuses == [200] * len(statuses)
    assert telegram_emulator.violations == []
    read(runtime)
    assert metrics.read(runtime.redis, "webhooks_rejected") == {}
    inbox = inbox_messages(runtime, f"telegram:{account}:555001")
    assert [m.kind for m in inbox] == ["start", "text", "choice", "contact", "location", "media", "media", "text",
                                       "unsupported"]  # the block is an opt-out, ordered with the messages
    assert (inbox[2].choice_id, inbox[2].text) == ("dental", "Стоматология") and inbox[-2].edited
    assert (inbox[-1].raw_type, inbox[-2].chat_message_id) == ("opt_out", str(user.last_message["message_id"]))
