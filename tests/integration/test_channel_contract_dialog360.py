"""WhatsApp through 360dialog passes the channels' contract, and its own differences: the key header, the
paths, the webhook set with ``/v1/configs/webhook`` and proved by its custom header, files from its host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connector.channels import plugin as plugins
from connector.channels.dialog360 import TOKEN_HEADER
from connector.runtime import Runtime
from core.errors import AuthError, SkippableError
from core.models import InboundMessage, utcnow
from core.settings import Settings
from tests.channel_contract import ChannelContract, ChannelEnv
from tests.conftest import TEST_SECRETS, make_settings
from tests.integration.channel_servers import Receiver
from tests.integration.test_channel_contract_whatsapp import whatsapp_env

API_KEY = "d360-test-api-key-0123456789"
TOKEN = "d360-webhook-token-0123456789"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Only 360dialog is served: WhatsApp's messages come through it."""
    return make_settings(redis_url, chat2crm_channels="dialog360")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from emulators.dialog360 import Dialog360Emulator
    from emulators.server import ServedApp

    emulator = Dialog360Emulator(access_token=API_KEY, phone_number_id=TEST_SECRETS["whatsapp_phone_number_id"],
                                 app_secret="unused", timeout_seconds=2.0)
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    monkeypatch.setenv("DIALOG360_API_KEY", API_KEY)
    monkeypatch.setenv("DIALOG360_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("DIALOG360_API_BASE", served.url)
    try:
        yield emulator
    finally:
        served.stop()
    assert not emulator.violations, f"requests 360dialog would reject: {emulator.violations}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest.fixture
def registered(runtime: Runtime, emulator: Any, receiver: Receiver) -> Any:
    """The number's webhook pointed at the receiver, as the relay registers it."""
    plugin = plugins.load("dialog360")
    answer = plugin.register_webhook(plugins.context(plugin, runtime.settings), receiver.url)  # type: ignore[attr-defined]
    assert answer == {"url": receiver.url}
    return emulator


class TestDialog360(ChannelContract):
    @pytest.fixture
    def env(self, runtime: Runtime, app: Any, registered: Any, receiver: Receiver) -> ChannelEnv:
        # the proof is the token the relay registered, sent back as given
        vectors = [(b'{"object":"whatsapp_business_account","entry":[]}', TOKEN)]
        return whatsapp_env("dialog360", runtime, app, registered, receiver, vectors,
                            {"190": AuthError, "131047": SkippableError})


def test_the_webhook_carries_the_registered_header(registered: Any, receiver: Receiver) -> None:
    registered.patient("905321112233").send_text("Merhaba")
    headers = {name.lower(): value for name, value in receiver.received[-1].headers.items()}
    assert headers.get(TOKEN_HEADER.lower()) == TOKEN and "x-hub-signature-256" not in headers
    assert requests.get(f"{registered.url}/v1/configs/webhook", headers={"D360-API-KEY": API_KEY},
                        timeout=5).json() == {"url": receiver.url}


def test_meta_paths_and_a_wrong_key_are_refused(registered: Any) -> None:
    body = {"messaging_product": "whatsapp", "to": "905321112233", "type": "text", "text": {"body": "x"}}
    meta = requests.post(f"{registered.url}/v23.0/{TEST_SECRETS['whatsapp_phone_number_id']}/messages", json=body,
                         headers={"D360-API-KEY": API_KEY}, timeout=5)
    wrong = requests.post(f"{registered.url}/messages", json=body, headers={"D360-API-KEY": "nope"}, timeout=5)
    bearer = requests.post(f"{registered.url}/messages", json=body, timeout=5,
                           headers={"Authorization": f"Bearer {API_KEY}"})
    assert (meta.status_code, wrong.status_code, bearer.status_code) == (404, 401, 401)


def test_a_patients_file_is_downloaded_from_360dialogs_host(runtime: Runtime, registered: Any) -> None:
    patient = registered.patient("905321112233")
    patient.send_image("ön")
    plugin = plugins.load("dialog360")
    client = plugin.client(plugins.context(plugin, runtime.settings))
    file = client.fetch_media(patient.last_media_id, max_bytes=1_000_000)
    assert file.mime_type == "image/jpeg" and file.content == registered.media.get(patient.last_media_id).content
    client.mark_read(InboundMessage(channel="whatsapp", account=TEST_SECRETS["whatsapp_phone_number_id"],
                                    sender_id="905321112233", message_id=patient.last_message_id,
                                    timestamp=utcnow(), kind="media"))
    assert registered.read == [patient.last_message_id]


def test_whatsapps_own_webhook_is_not_served_when_only_360dialog_is(app: Any) -> None:
    assert app.test_client().post("/webhooks/whatsapp", data=b"{}").status_code == 404
    assert app.test_client().get("/webhooks/whatsapp?hub.mode=subscribe").status_code in (404, 405)


def test_check_names_what_360dialog_lacks(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIALOG360_API_KEY", raising=False)
    monkeypatch.delenv("DIALOG360_WEBHOOK_TOKEN", raising=False)
    plugin = plugins.load("dialog360")
    problems = plugin.problems(plugins.context(plugin, runtime.settings))
    assert {p.path for p in problems} == {"DIALOG360_API_KEY", "DIALOG360_WEBHOOK_TOKEN"}


def test_chat2crm_check_validates_the_enabled_channels_only(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.checks import check_configuration

    monkeypatch.delenv("DIALOG360_API_KEY", raising=False)
    monkeypatch.setenv("DIALOG360_API_BASE", "not a url")
    paths = {p.path for p in check_configuration(runtime)}
    assert "DIALOG360_API_BASE" in paths  # its settings' own validation
    runtime.settings.chat2crm_channels = "whatsapp,telegram"
    assert not {p for p in (p.path for p in check_configuration(runtime)) if p.startswith("DIALOG360")}
    runtime.settings.chat2crm_channels = "whatsapp,nosuch"
    assert "unknown channel 'nosuch'" in [p.message for p in check_configuration(runtime)]
