"""WhatsApp's Cloud API and Telegram's Bot API pass the channels' contract (tests/channel_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.channels import plugin as plugins
from connector.runtime import Runtime
from core.errors import AuthError, SkippableError
from core.models import Conversation, utcnow
from tests.channel_contract import (
    Capture,
    ChannelContract,
    ChannelEnv,
    style_of_telegram,
    style_of_whatsapp,
)
from tests.conftest import TEST_SECRETS
from tests.integration.channel_servers import Receiver

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def whatsapp_kinds(emulator: Any) -> dict[str, Any]:
    """One action per message kind a WhatsApp patient sends."""
    patient = emulator.patient("905321112233", "Ayşe")
    return {
        "text": lambda: patient.send_text("Merhaba"),
        "choice": lambda: patient.press_button("yes", "Evet"),
        "location": lambda: patient.share_location(41.0082, 28.9784, "Klinik"),
        "media": lambda: patient.send_image("ön"),
        "contact": lambda: patient.share_contact("Mehmet Kaya", "+90 532 999 88 77", "905329998877"),
        "reaction": lambda: patient.react("wamid.HBgLOTA1MzIxMTEyMjMzFQIAERgSQUJDREVGMDEyMzQ1Njc4OQA="),
    }


def whatsapp_env(plugin_name: str, runtime: Runtime, app: Any, emulator: Any, receiver: Receiver,
                 known_answers: list[tuple[bytes, str]], faults: dict[str, type[Exception]]) -> ChannelEnv:
    """The contract's view of a Cloud-API-shaped channel served by ``emulator``."""
    plugin = plugins.load(plugin_name)
    start = len(emulator.sent)
    client = plugin.client(plugins.context(plugin, runtime.settings))
    return ChannelEnv(
        plugin=plugin, runtime=runtime, relay=app.test_client(), capture=Capture(receiver),
        kinds=whatsapp_kinds(emulator), known_answers=known_answers, client=client,
        conversation=Conversation(key=f"whatsapp:{ACCOUNT}:905321112233", channel="whatsapp", account=ACCOUNT,
                                  sender_id="905321112233", last_inbound_at=utcnow()),
        styles=lambda: [style_of_whatsapp(m.payload) for m in emulator.sent[start:]],
        fail_next=emulator.fail_next, faults=faults)


class TestWhatsApp(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, whatsapp_emulator: Any, receiver: Receiver) -> ChannelEnv:
        runtime.settings.whatsapp_api_base = whatsapp_emulator.url
        whatsapp_emulator.relay_url = receiver.url
        # ``printf '%s' BODY | openssl dgst -sha256 -hmac 'test-app-secret-0123456789'`` (not the relay's code)
        vectors = [(b'{"object":"whatsapp_business_account","entry":[]}',
                    "sha256=d575c15ad5363595dcbce767752cec51e6f84d031a61d9cf7db37b6564129131"),
                   (b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[]}]}',
                    "sha256=84ffe3e3b6ccae4e9936c951617bf07240c7565e042ce70b54a9aba88b551d93")]
        return whatsapp_env("whatsapp", runtime, app, whatsapp_emulator, receiver, vectors,
                            {"190": AuthError, "131047": SkippableError})


class TestTelegram(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, telegram_emulator: Any, receiver: Receiver) -> ChannelEnv:
        runtime.settings.telegram_api_base = telegram_emulator.url
        telegram_emulator.relay_url = receiver.url
        user = telegram_emulator.user(5550001, "Ayşe")
        plugin = plugins.load("telegram")
        chat = str(user.user_id)
        return ChannelEnv(
            plugin=plugin, runtime=runtime, relay=app.test_client(), capture=Capture(receiver),
            kinds={"text": lambda: user.send_text("Merhaba"), "start": lambda: user.start("hair-tr"),
                   "choice": lambda: user.press("yes"), "location": lambda: user.share_location(41.0, 28.9),
                   "media": lambda: user.send_photo("ön"), "contact": lambda: user.share_contact("+905321112233")},
            # the proof is the secret token itself, as given to setWebhook
            known_answers=[(b'{"update_id":1}', TEST_SECRETS["telegram_secret_token"])],
            client=plugin.client(plugins.context(plugin, runtime.settings)),
            conversation=Conversation(key=f"telegram:123456789:{chat}", channel="telegram", account="123456789",
                                      sender_id=chat, last_inbound_at=utcnow()),
            styles=lambda: [style_of_telegram(m) for m in telegram_emulator.messages_to(chat)],
            fail_next=telegram_emulator.fail_next, faults={}, make_unreachable=user.block)
