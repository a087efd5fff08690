"""`chat2crm init`, `links`, `simulate` and `check` as a clinic and an integrator use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from tests.paths import SHIPPED_CONFIG


def test_init_scaffolds_a_configuration_that_checks(tmp_path: Path) -> None:
    clinic = tmp_path / "clinic"
    result = CliRunner().invoke(main, ["init", str(clinic), "--crm", "hubspot"])
    assert result.exit_code == 0, result.output
    for name in ("chat2crm.yaml", "mappings/hubspot.yaml", "bot_flows/meeting_request.yaml",
                 "bot_flows/health_tourism_intake.yaml", "campaigns.yaml", ".env.example"):
        assert (clinic / name).exists(), name
    env_example = (clinic / ".env.example").read_text()
    assert "HUBSPOT_ACCESS_TOKEN=" in env_example and "SALESFORCE" not in env_example
    checked = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(clinic / "chat2crm.yaml")})
    assert checked.exit_code == 0, checked.output
    assert "configuration ok: hubspot mapping, 2 flow(s), 6 campaign(s)" in checked.output
    again = CliRunner().invoke(main, ["init", str(clinic)])
    assert again.exit_code == 1 and "use --force" in again.output


def test_check_reports_a_broken_flow_with_file_and_line(tmp_path: Path) -> None:
    clinic = tmp_path / "clinic"
    CliRunner().invoke(main, ["init", str(clinic)])
    flow = clinic / "bot_flows" / "meeting_request.yaml"
    flow.write_text(flow.read_text().replace("    type: email\n", "    type: e-mail\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(clinic / "chat2crm.yaml")})
    assert result.exit_code == 1
    assert f"{flow}:" in result.output and "steps.2.type" in result.output


def test_links_prints_links_and_writes_qr_codes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["links", "--out", str(tmp_path / "qr"), "--base-url", "https://relay.example"],
                                env={"CHAT2CRM_CONFIG": str(SHIPPED_CONFIG)})
    assert result.exit_code == 0, result.output
    assert "https://relay.example/c/hair-tr?utm_source=instagram" in result.output
    assert (tmp_path / "qr" / "hair-tr.svg").read_text().startswith("<?xml")
    assert (tmp_path / "qr" / "hair-tr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_the_turkish_meeting_exchange() -> None:
    script = "Merhaba, hafta içi bir görüşme ayarlamak istiyorum\nSüreç otomasyonu ve raporlama.\n" \
             "ABC Lojistik, info@abc.com\nÇarşamba 11:00 uygun.\n"
    proc = subprocess.run([sys.executable, "-m", "connector.cli", "simulate", "--flow", "meeting_request",
                           "--lang", "tr"], input=script, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CHAT2CRM_CONFIG": str(SHIPPED_CONFIG)})
    assert proc.returncode == 0, proc.stderr
    assert "bot> Görüşmenin konusu nedir?" in proc.stdout and "numarasıyla kaydedildi" in proc.stdout
    lead_text = proc.stdout.split("== Lead ==")[1].split("== hubspot operations")[0]
    lead = json.loads(lead_text)
    assert lead["organization"] == "ABC Lojistik" and lead["contact"]["email"] == "info@abc.com"
    operations = json.loads(proc.stdout.split("(dry run) ==")[1])
    assert operations["record"]["object"] == "deals" and operations["contact"]["key_property"] == "chat2crm_contact_key"


def test_simulate_without_lang_detects_the_language_on_the_first_message() -> None:
    script = "Guten Tag, ich interessiere mich für eine Haartransplantation\n"
    proc = subprocess.run([sys.executable, "-m", "connector.cli", "simulate", "--flow", "health_tourism_intake"],
                          input=script, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CHAT2CRM_CONFIG": str(SHIPPED_CONFIG)})
    assert proc.returncode == 0, proc.stderr
    assert "Which language" not in proc.stdout and "In welcher Sprache" not in proc.stdout
    assert "bot> In welchem Land und welcher Stadt wohnen Sie?" in proc.stdout, proc.stdout
