"""Messenger and Instagram pass the channels' contract (tests/channel_contract.py) against the Messenger Platform
emulator, through the relay's own webhook routes and Meta's subscription handshake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.channels import plugin as plugins
from connector.channels.plugin import UnreachableError
from connector.runtime import Runtime
from core.errors import AuthError, RetryableError
from core.models import Conversation, utcnow
from core.settings import Settings
from emulators.meta_messaging import MetaMessagingEmulator
from emulators.server import ServedApp
from tests.channel_contract import Capture, ChannelContract, ChannelEnv
from tests.conftest import make_settings
from tests.integration.channel_servers import Receiver

PAGE_TOKEN, SECRET, VERIFY = "EAAContractPageToken0123", "kat-meta-secret-9Zp", "contract-verify-token"
PSID, IGSID = "6543210987654321", "1133557799"
# ``printf '%s' BODY | openssl dgst -sha256 -hmac 'kat-meta-secret-9Zp'`` (not the relay's code)
VECTORS = {
    "messenger": [(b'{"object":"page","entry":[]}',
                   "sha256=84ef897d3577fd26e713abd42fb58a604208d741906b8199df34aaccf6825957")],
    "instagram": [('{"object":"instagram","entry":[{"id":"17841405822304914","time":1700000000000,"messaging":[{'
                   '"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1700000000000,"message":{"mid":"m_1",'
                   '"text":"Saç ekimi 👋"}}]}]}'.encode(),
                   "sha256=8f0dfbf00dd799d73d8d0bb3cb0edd55a0d4d542e99d74f96cd02f732d43d017")],
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest.fixture
def meta(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetaMessagingEmulator]:
    emulator = MetaMessagingEmulator(page_access_token=PAGE_TOKEN, app_secret=SECRET, relay_url=receiver.url,
                                     timeout_seconds=2.0)
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    for name, value in {"APP_SECRET": SECRET, "VERIFY_TOKEN": VERIFY, "PAGE_ACCESS_TOKEN": PAGE_TOKEN,
                        "PAGE_ID": emulator.page_id, "INSTAGRAM_ID": emulator.instagram_id,
                        "API_BASE": served.url}.items():
        monkeypatch.setenv(f"META_MESSAGING_{name}", value)
    try:
        yield emulator
    finally:
        served.stop()
    assert not emulator.violations, f"requests Meta would reject: {emulator.violations}"


@pytest.fixture
def settings(redis_url: str, meta: MetaMessagingEmulator) -> Settings:
    """Messenger and Instagram are served (beside WhatsApp)."""
    return make_settings(redis_url, chat2crm_channels="whatsapp,messenger,instagram")


def style_of_meta(payload: dict[str, Any]) -> str:
    """How a Send API body shows options."""
    message = payload.get("message", {})
    if message.get("attachment", {}).get("type") == "template":
        return "buttons"
    if message.get("quick_replies"):
        return "list"
    return "numbered" if "\n1. " in str(message.get("text", "")) else "text"


def meta_env(name: str, runtime: Runtime, app: Any, meta: MetaMessagingEmulator, receiver: Receiver) -> ChannelEnv:
    """The contract's view of the Messenger or the Instagram plug-in."""
    plugin = plugins.load(name)
    user = PSID if name == "messenger" else IGSID
    patient = meta.patient(user, name)
    patient.send_text("Merhaba")  # the person wrote: the window is open (this webhook is not the contract's)
    start = len(meta.sent)
    account = meta.page_id if name == "messenger" else meta.instagram_id
    kinds: dict[str, Any] = {
        "text": lambda: patient.send_text("Merhaba"),
        "choice": lambda: patient.tap_quick_reply("hair", "Saç ekimi"),
        "location": lambda: patient.share_location(41.0082, 28.9784),
        "media": lambda: patient.send_file("image", f"{meta.url}/cdn/a.jpg"),  # type: ignore[attr-defined]
        "start": lambda: patient.get_started(ref="K7QX2M"),
        "reaction": lambda: patient.react("m_ours"),
    }
    return ChannelEnv(
        plugin=plugin, runtime=runtime, relay=app.test_client(), capture=Capture(receiver), kinds=kinds,
        known_answers=VECTORS[name], client=plugin.client(plugins.context(plugin, runtime.settings)),
        conversation=Conversation(key=f"{name}:{account}:{user}", channel=name, account=account, sender_id=user,
                                  last_inbound_at=utcnow()),
        styles=lambda: [style_of_meta(m.payload) for m in meta.sent[start:]],
        fail_next=meta.fail_next,
        faults={"190": AuthError, "551": UnreachableError, "613": RetryableError, "4": RetryableError},
        make_unreachable=lambda: meta.block(user))


class TestMessenger(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, meta: MetaMessagingEmulator, receiver: Receiver) -> ChannelEnv:
        return meta_env("messenger", runtime, app, meta, receiver)


class TestInstagram(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, meta: MetaMessagingEmulator, receiver: Receiver) -> ChannelEnv:
        return meta_env("instagram", runtime, app, meta, receiver)


def test_the_subscription_handshake_on_both_routes(app: Any) -> None:
    client = app.test_client()
    for name in ("messenger", "instagram"):
        ok = client.get(f"/webhooks/{name}?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444")
        wrong = client.get(f"/webhooks/{name}?hub.mode=subscribe&hub.verify_token=no&hub.challenge=1158201444")
        assert (ok.status_code, ok.get_data(as_text=True), wrong.status_code) == (200, "1158201444", 403)
