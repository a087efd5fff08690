"""LINE passes the channels' contract: signed webhooks from the LINE emulator through the relay's app on real
Redis, the client against the emulator over real HTTP, LINE's errors in the error tree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.channels import plugin as plugins
from connector.runtime import Runtime
from core.errors import FatalError, RetryableError
from core.models import Conversation
from core.settings import Settings
from emulators.line import LineEmulator
from tests.channel_contract import Capture, ChannelContract, ChannelEnv
from tests.conftest import make_settings
from tests.integration.channel_servers import Receiver

SECRET = "test-line-channel-secret"
TOKEN = "test-line-access-token-0123456789"
# `printf '<body>' | openssl dgst -sha256 -hmac test-line-channel-secret -binary | base64`
VECTORS = [(b'{"destination":"U55555555555555555555555555555555","events":[]}',
            "8HtMHrO/i3/a3rkzy69EZmwXLEQyW33xfBr/SbFuVao=")]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url, chat2crm_channels="whatsapp,telegram,line")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LineEmulator]:
    from emulators.server import ServedApp

    emulator = LineEmulator(channel_secret=SECRET, access_token=TOKEN, timeout_seconds=1.0)
    with ServedApp(emulator.app) as served:
        emulator.url = served.url  # type: ignore[attr-defined]
        for name, value in (("LINE_CHANNEL_SECRET", SECRET), ("LINE_CHANNEL_ACCESS_TOKEN", TOKEN),
                            ("LINE_API_BASE", served.url), ("LINE_DATA_API_BASE", served.url)):
            monkeypatch.setenv(name, value)
        yield emulator
    assert not emulator.violations, f"requests or webhooks LINE would refuse: {emulator.violations}"


def _style(message: dict[str, Any]) -> str:
    items = (message.get("quickReply") or {}).get("items", [])
    if any(item["action"]["type"] == "postback" for item in items):
        return "buttons"
    return "numbered" if "\n1. " in str(message.get("text", "")) else "text"


class TestLine(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, emulator: LineEmulator) -> Iterator[ChannelEnv]:
        plugin = plugins.load("line")
        user = emulator.user()
        with Receiver() as receiver:
            emulator.relay_url = receiver.url
            kinds = {"text": lambda: emulator.post_events(user.text("Merhaba")),
                     "location": lambda: emulator.post_events(user.location(41.0, 29.0, title="Clinic")),
                     "media": lambda: emulator.post_events(user.file("image", b"\xff\xd8jpeg", "image/jpeg")),
                     "choice": lambda: emulator.post_events(user.postback("implant")),
                     "start": lambda: emulator.post_events(user.text("/start spring24"))}
            conversation = Conversation(key=f"line:{emulator.bot_user_id}:{user.user_id}", channel="line",
                                        account=emulator.bot_user_id, sender_id=user.user_id)
            yield ChannelEnv(
                plugin=plugin, runtime=runtime, relay=app.test_client(), capture=Capture(receiver), kinds=kinds,
                known_answers=VECTORS, client=plugin.client(plugins.context(plugin, runtime.settings)),
                conversation=conversation,
                styles=lambda: [_style(s.message) for s in emulator.messages_to(user.user_id)],
                fail_next=emulator.fail_next,
                faults={"429": RetryableError, "quota": FatalError, "403": FatalError},
                make_unreachable=lambda: setattr(user, "friend", False))
