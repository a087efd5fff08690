"""Settings, configuration errors, logging redaction, the CLI surface."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import load_config
from connector.logs import RedactingFilter, configure_logging, pii_scope, redact, register_secret
from core.errors import ConfigurationError, Problem, WebhookRejectedError
from core.settings import load_settings
from tests.paths import SHIPPED_CONFIG

PY = sys.executable


def test_problem_prints_file_line_path_and_hint() -> None:
    problem = Problem("unknown key", file="flows/x.yaml", line=12, path="steps.0.typ", hint="did you mean type?")
    assert str(problem) == "flows/x.yaml:12: steps.0.typ: unknown key (did you mean type?)"


def test_configuration_error_lists_every_problem() -> None:
    exc = ConfigurationError([Problem("a"), Problem("b")])
    assert "2 configuration problems" in str(exc)
    assert "  - a" in str(exc) and "  - b" in str(exc)


def test_webhook_rejection_must_be_a_client_error() -> None:
    with pytest.raises(ValueError, match="status must be a 4xx"):
        WebhookRejectedError(500, "nope")


def test_settings_collect_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    paths = {p.path for p in info.value.problems}
    assert paths == {"PORT", "LOG_FORMAT"}


def test_main_config_errors_carry_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "chat2crm.yaml"
    path.write_text("version: 1\ncrm: hubspot\nmapping: m.yaml\ndefault_flow: x\n"
                    "timezone: Mars/Olympus\nlanguages: [tr, EN]\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    rendered = [str(p) for p in info.value.problems]
    assert any(":5: timezone: " in r and "unknown time zone" in r for r in rendered)
    assert any(":6: languages: " in r for r in rendered)
    assert any(":7: bogus: unknown key" in r for r in rendered)


def test_invalid_yaml_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\ncrm: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert info.value.problems[0].line is not None


def test_shipped_main_config_is_valid() -> None:
    config = load_config(SHIPPED_CONFIG)
    assert config.crm == "hubspot"
    assert config.mapping_path.name == "hubspot.yaml"


# -- logging -------------------------------------------------------------------------------------
def _capture(fmt: str = "json") -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure_logging(fmt, "DEBUG", stream=stream)
    return logging.getLogger("chat2crm.test"), stream


def test_redacts_phones_and_emails_in_free_text() -> None:
    text = redact("call +90 532 123 45 67 or write to ayse.yilmaz@example.com.tr")
    assert "532" not in text and "ayse" not in text
    assert "[phone …67]" in text and "[email]" in text


def test_sensitive_extra_keys_are_masked_whatever_they_hold() -> None:
    log, stream = _capture()
    log.info("lead ready", extra={"profile_name": "Ayşe Yılmaz", "text": "saç ekimi fiyatı", "reference": "#1042"})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["profile_name"] == "[redacted]" and line["text"] == "[redacted]"
    assert line["reference"] == "#1042"


def test_pii_scope_masks_names_and_message_text_in_messages() -> None:
    log, stream = _capture("text")
    with pii_scope("Мария Иванова", "Хочу узнать цену на имплант"):
        log.warning("could not parse 'Хочу узнать цену на имплант' from Мария Иванова")
    log.warning("outside: Мария Иванова")
    lines = stream.getvalue().splitlines()
    assert "Мария" not in lines[-2] and "имплант" not in lines[-2]
    assert "Мария" in lines[-1]  # the scope ended: only what is known to be patient data is masked


def test_registered_secrets_never_reach_a_handler() -> None:
    register_secret("EAAsupersecrettoken42")
    log, stream = _capture()
    log.error("request failed with token %s", "EAAsupersecrettoken42")
    assert "EAAsupersecrettoken42" not in stream.getvalue()


def test_exception_text_is_redacted() -> None:
    log, stream = _capture()
    try:
        raise ValueError("bad phone +4915112345678")
    except ValueError:
        log.exception("boom")
    assert "4915112345678" not in stream.getvalue()


def test_filter_works_on_foreign_handlers_too() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "mail %s", ("a@b.co",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "mail [email]"


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_help_lists_the_commands() -> None:
    out = subprocess.run([PY, "-m", "connector.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("serve", "worker", "check"):
        assert f"  {name}" in out


def test_cli_prints_configuration_problems_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "chat2crm.yaml"
    bad.write_text("version: 2\n", encoding="utf-8")
    proc = subprocess.run([PY, "-m", "connector.cli", "check"], capture_output=True, text=True,
                          env={"CHAT2CRM_CONFIG": str(bad), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{bad}:1: version:" in proc.stderr
    assert "crm: Field required" in proc.stderr
