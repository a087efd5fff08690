"""``chat2crm channels register dialog360`` against the 360dialog emulator over real HTTP, through the CLI: the
webhook set with its token header, and every failure told in one line with exit status 1. And ``chat2crm
simulate --channel`` taking any installed channel's network, refusing others with the list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from connector.channels.dialog360 import TOKEN_HEADER
from connector.cli import main
from emulators.dialog360 import Dialog360Emulator
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS

API_KEY = "d360-cli-api-key-0123456789"
TOKEN = "d360-cli-webhook-token-0123456789"
HOOK = "https://relay.clinic.example/webhooks/dialog360"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dialog360Emulator]:
    emulator = Dialog360Emulator(access_token=API_KEY, phone_number_id=TEST_SECRETS["whatsapp_phone_number_id"],
                                 app_secret="unused", timeout_seconds=1.0)
    with ServedApp(emulator.app) as served:
        for name, value in (("DIALOG360_API_KEY", API_KEY), ("DIALOG360_WEBHOOK_TOKEN", TOKEN),
                            ("DIALOG360_API_BASE", served.url), ("PUBLIC_BASE_URL", "https://relay.clinic.example")):
            monkeypatch.setenv(name, value)
        yield emulator
    assert not emulator.violations


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["channels", "register", *args])


def _one_line_failure(result: Result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("chat2crm: the ") and all(word in line for word in words), line
    return line


def test_the_webhook_is_registered_with_its_token_header(emulator: Dialog360Emulator) -> None:
    result = _run("dialog360")  # the URL from PUBLIC_BASE_URL
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"dialog360: webhook registered at {HOOK}"
    assert emulator.webhook == {"url": HOOK, "headers": {TOKEN_HEADER: TOKEN}}
    elsewhere = "https://proxy.clinic.example/webhooks/dialog360"
    assert _run("dialog360", "--url", elsewhere).exit_code == 0 and emulator.webhook["url"] == elsewhere


def test_a_refused_key_names_the_setting(emulator: Dialog360Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALOG360_API_KEY", "wrong-key")
    line = _one_line_failure(_run("dialog360"), "DIALOG360_API_KEY", "(401: Invalid api key)")
    assert "wrong-key" not in line and TOKEN not in line and not emulator.webhook


def test_what_is_missing_or_wrong_is_said_in_one_line(emulator: Dialog360Emulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _one_line_failure(_run("nosuch"), "unknown channel 'nosuch'", "dialog360")
    _one_line_failure(_run("twilio"), "console")  # set in Twilio's console, not by an API call
    _one_line_failure(_run("dialog360", "--url", "relay.clinic.example"), "not a URL")
    monkeypatch.delenv("DIALOG360_WEBHOOK_TOKEN")
    _one_line_failure(_run("dialog360"), "DIALOG360_WEBHOOK_TOKEN")
    monkeypatch.setenv("DIALOG360_WEBHOOK_TOKEN", TOKEN)
    with ServedApp(emulator.app) as gone:
        closed = gone.url
    monkeypatch.setenv("DIALOG360_API_BASE", closed)  # nothing listens there any more
    _one_line_failure(_run("dialog360"), "connection failed")
    assert not emulator.webhook


def test_simulate_takes_every_installed_channels_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.commands.simulate import _channel
    from tests.paths import SHIPPED_CONFIG

    monkeypatch.setenv("CHAT2CRM_CONFIG", str(SHIPPED_CONFIG))
    script = "Merhaba, hafta içi bir görüşme ayarlamak istiyorum\n"
    result = CliRunner().invoke(main, ["simulate", "--flow", "meeting_request", "--lang", "tr", "--channel", "twilio"],
                                input=script)
    assert result.exit_code == 0 and "bot> " in result.stdout, result.output
    assert [_channel(name) for name in ("line", "twilio", "dialog360", "telegram")] == [
        "line", "twilio", "whatsapp", "telegram"]  # a provider's name stands for its network
    refused = CliRunner().invoke(main, ["simulate", "--flow", "meeting_request", "--channel", "fax"], input=script)
    assert refused.exit_code == 2 and "unknown channel 'fax'" in refused.stderr
    assert all(name in refused.stderr for name in ("telegram", "twilio", "whatsapp"))
