"""Outbound clients against the channel emulators over real HTTP; the emulators check each request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests

from connector.channels import base as channel_base
from connector.channels.telegram import TelegramClient
from connector.channels.whatsapp import WhatsAppClient
from core.errors import AuthError, FatalError, RetryableError, SkippableError
from core.models import Conversation, InboundMessage, Option, Reply, utcnow
from tests.conftest import TEST_SECRETS, make_settings

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]


def _conversation(channel: str = "whatsapp", sender: str = "905321112233", *, hours_ago: float = 0.1) -> Conversation:
    return Conversation(key=f"{channel}:{ACCOUNT}:{sender}", channel=channel, account=ACCOUNT,  # type: ignore[arg-type]
                        sender_id=sender, last_inbound_at=utcnow() - timedelta(hours=hours_ago), language="tr")


@pytest.fixture
def wa_client(whatsapp_emulator: Any) -> WhatsAppClient:
    return WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url))


@pytest.fixture
def tg_client(telegram_emulator: Any) -> TelegramClient:
    return TelegramClient(make_settings("unix:///x", telegram_api_base=telegram_emulator.url))


def test_whatsapp_text_buttons_list_and_numbered(wa_client: WhatsAppClient, whatsapp_emulator: Any) -> None:
    options = [Option(id=f"t{i}", title=f"Tedavi {i}", description="açıklama") for i in range(1, 12)]
    ids = wa_client.send(_conversation(), [
        Reply(text="Merhaba!"), Reply(text="Seçin", options=options[:3]),
        Reply(text="Seçin", options=options[:7], list_button="Tedaviler"), Reply(text="Seçin", options=options)])
    assert len(ids) == 4 and all(i.startswith("wamid.") for i in ids)
    kinds = [m.payload.get("interactive", {}).get("type", m.payload["type"]) for m in
             whatsapp_emulator.messages_to("905321112233")]
    assert kinds == ["text", "button", "list", "text"]


def test_whatsapp_outside_window_uses_the_template_or_skips(wa_client: WhatsAppClient,
                                                            whatsapp_emulator: Any) -> None:
    stale = _conversation(hours_ago=30)
    wa_client.send(stale, [Reply(text="x", template="follow_up", template_params=["#1042"])])
    sent = whatsapp_emulator.messages_to("905321112233")[-1].payload
    assert sent["type"] == "template" and sent["template"]["language"] == {"code": "tr", "policy": "deterministic"}
    with pytest.raises(SkippableError):
        wa_client.send(stale, [Reply(text="no template")])


def test_whatsapp_mark_read(wa_client: WhatsAppClient, whatsapp_emulator: Any) -> None:
    message = InboundMessage(channel="whatsapp", account=ACCOUNT, sender_id="905321112233", message_id="wamid.IN1",
                             timestamp=utcnow(), kind="text", text="hi")
    wa_client.mark_read(message)
    assert whatsapp_emulator.read == ["wamid.IN1"]


@pytest.mark.parametrize(("kind", "error"), [("429", RetryableError), ("500", RetryableError),
                                             ("190", AuthError), ("timeout", RetryableError)])
def test_whatsapp_errors_map_to_the_error_tree(wa_client: WhatsAppClient, whatsapp_emulator: Any,
                                               monkeypatch: pytest.MonkeyPatch, kind: str, error: type) -> None:
    monkeypatch.setattr(channel_base, "TIMEOUT", (1, 0.5))
    # a 5xx is tried in place first (see below): every try fails here
    whatsapp_emulator.fail_next(channel_base.ATTEMPTS if kind == "500" else 1, kind)
    with pytest.raises(error) as info:
        wa_client.send(_conversation(), [Reply(text="x")])
    if kind == "190":
        assert info.value.setting == "WHATSAPP_ACCESS_TOKEN" and "WHATSAPP_ACCESS_TOKEN" in info.value.message


def test_a_server_error_is_tried_again_in_place_and_a_read_timeout_is_not(
        wa_client: WhatsAppClient, whatsapp_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5xx means Meta did not send: the call is tried again inside the job (tenacity) and the reply goes
    out once. A read time-out may have sent it: never tried again in place (the patient would get it twice)."""
    whatsapp_emulator.fail_next(channel_base.ATTEMPTS - 1, "500")
    before = wa_client.calls
    ids = wa_client.send(_conversation(), [Reply(text="x")])
    assert len(ids) == 1 and wa_client.calls - before == channel_base.ATTEMPTS
    assert [m.payload["text"]["body"] for m in whatsapp_emulator.messages_to("905321112233")][-1:] == ["x"]
    monkeypatch.setattr(channel_base, "TIMEOUT", (1, 0.5))
    whatsapp_emulator.fail_next(1, "timeout")
    before = wa_client.calls
    with pytest.raises(RetryableError):
        wa_client.send(_conversation(), [Reply(text="y")])
    assert wa_client.calls - before == 1


def test_a_channel_that_cannot_be_reached_is_tried_again_then_left_to_the_job() -> None:
    http = channel_base.HttpChannel("whatsapp", "WHATSAPP_ACCESS_TOKEN")
    with pytest.raises(RetryableError, match="connection failed"):
        http.request("POST", "http://127.0.0.1:1/v23.0/1/messages", json={})
    assert http.calls == channel_base.ATTEMPTS


def test_whatsapp_reengagement_is_skippable(wa_client: WhatsAppClient, whatsapp_emulator: Any) -> None:
    whatsapp_emulator.fail_next(1, "131047")
    with pytest.raises(SkippableError):
        wa_client.send(_conversation(), [Reply(text="x")])


def test_emulator_rejects_what_meta_would(whatsapp_emulator: Any) -> None:
    bad = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "905321112233",
           "type": "interactive", "interactive": {"type": "button", "body": {"text": "?"}, "action": {
               "buttons": [{"type": "reply", "reply": {"id": str(i), "title": "x"}} for i in range(4)]}}}
    response = requests.post(f"{whatsapp_emulator.url}/v23.0/{ACCOUNT}/messages", json=bad, timeout=5,
                             headers={"Authorization": f"Bearer {TEST_SECRETS['whatsapp_access_token']}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == 100
    assert whatsapp_emulator.violations
    whatsapp_emulator.violations.clear()  # expected here; the fixture fails on any other


def test_telegram_send_keyboard_and_callback(tg_client: TelegramClient, telegram_emulator: Any) -> None:
    conv = _conversation("telegram", "555001")
    tg_client.send(conv, [Reply(text="Выберите", options=[Option(id="a", title="Да"), Option(id="b", title="Нет")])])
    sent = telegram_emulator.messages_to(555001)
    assert sent[0]["reply_markup"]["inline_keyboard"][0][0] == {"text": "Да", "callback_data": "a"}
    press = InboundMessage(channel="telegram", account="1", sender_id="555001", message_id="update:1",
                           timestamp=utcnow(), kind="choice", choice_id="a", callback_id="cbq-1")
    tg_client.answer_callback(press)
    assert telegram_emulator.answered_callbacks == ["cbq-1"]


def test_telegram_throttling_carries_retry_after(tg_client: TelegramClient, telegram_emulator: Any) -> None:
    telegram_emulator.fail_next(1, "429")
    with pytest.raises(RetryableError) as info:
        tg_client.send(_conversation("telegram", "555001"), [Reply(text="x")])
    assert info.value.retry_after == 3


def test_telegram_wrong_token_names_the_setting(telegram_emulator: Any) -> None:
    client = TelegramClient(make_settings("unix:///x", telegram_api_base=telegram_emulator.url,
                                          telegram_bot_token="1:wrong"))
    with pytest.raises(AuthError) as info:
        client.send(_conversation("telegram", "555001"), [Reply(text="x")])
    assert info.value.setting == "TELEGRAM_BOT_TOKEN"


def test_telegram_emulator_checks_the_bot_api(telegram_emulator: Any) -> None:
    base = f"{telegram_emulator.url}/bot{TEST_SECRETS['telegram_bot_token']}"
    missing = requests.post(f"{base}/sendMessage", json={"chat_id": 1}, timeout=5)
    assert missing.status_code == 400 and "text: required" in missing.json()["description"]
    typed = requests.post(f"{base}/sendMessage", json={"chat_id": 1, "text": "x", "disable_notification": "yes"},
                          timeout=5)
    assert typed.status_code == 400
    assert requests.post(f"{base}/sendMessagez", json={}, timeout=5).status_code == 404
    telegram_emulator.violations.clear()


def test_whatsapp_unknown_phone_number_id_is_fatal(whatsapp_emulator: Any) -> None:
    client = WhatsAppClient(make_settings("unix:///x", whatsapp_api_base=whatsapp_emulator.url,
                                          whatsapp_phone_number_id="999"))
    with pytest.raises(FatalError) as info:  # a conversation on a number the account does not have
        client.send(_conversation().model_copy(update={"account": "999"}), [Reply(text="x")])
    assert "100" in info.value.message
