"""The clinic's figures, counted from conversations run through the whole relay (webhooks over HTTP, real Redis,
rq workers, the WhatsApp emulator, HubSpot's emulator for the leads, a recording CRM inbox for the agents):
`/metrics` exposes them with bounded labels, and `chat2crm report` prints them, or writes them as an HTML page.

The scene: a Turkish patient from the ``meeting-tr`` campaign completes a request and an agent answers from the
CRM; an English patient asks for a person; a third patient answers the first question and goes quiet past the
resume window (the sweeper counts the drop-off at the question it stopped at).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from connector import measures, sweeper
from connector.cli import main
from core import metrics
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack
from tests.integration.inbox.conftest import RecordingInbox, post_events

TURKISH, ENGLISH, QUIET = "905321112233", "447700900123", "4915112340000"


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request"}


def _key(stack: Stack, patient: str) -> str:
    return f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{patient}"


def _scene(stack: Stack) -> None:
    crm = RecordingInbox()
    stack.runtime.cached("inbox", lambda: crm)  # the CRM's inbox, where agents answer
    click = requests.get(f"{stack.relay_url}/c/meeting-tr", allow_redirects=False, timeout=5)
    opening = parse_qs(urlparse(click.headers["Location"]).query)["text"][0]
    turkish = stack.whatsapp.patient(TURKISH, "Ayşe Yılmaz")
    for said in (opening, "Süreç otomasyonu ve raporlama.", "ABC Lojistik, info@abc.com", "Çarşamba 11:00 uygun."):
        assert turkish.send_text(said) == 200
        stack.work()
    english = stack.whatsapp.patient(ENGLISH, "Tom Baker")
    for said in ("Hello, I would like to book a meeting", "human"):
        assert english.send_text(said) == 200
        stack.work()
    quiet = stack.whatsapp.patient(QUIET, "Hans Müller")
    for said in ("Hello, I would like to book a meeting", "Reporting and dashboards"):
        assert quiet.send_text(said) == 200
        stack.work()
    assert stack.hubspot.count("deals") == 2
    # an agent answers the Turkish patient from the CRM, twice: only the first reply is timed
    for n in (1, 2):
        reply = {"type": "reply", "crm_message_id": f"crm-{n}", "text": "Merhaba Ayşe Hanım", "conversation":
                 _key(stack, TURKISH)}
        assert post_events(stack.relay_url, [reply]).json()["accepted"] == 1
        stack.work()
    # time passes for the quiet patient: its resume window ends, and the sweeper counts where it stopped
    client = stack.runtime.redis
    assert client.zscore(measures.IDLE.key(), _key(stack, QUIET)) is not None
    client.zadd(measures.IDLE.key(), {_key(stack, QUIET): time.time() - 1})
    sweeper.sweep(stack.runtime)
    sweeper.sweep(stack.runtime)  # a second sweep counts nothing more
    assert client.zcard(measures.IDLE.key()) == 0


def test_metrics_and_the_report_give_the_clinics_figures(stack: Stack, tmp_path: Path) -> None:
    _scene(stack)
    client = stack.runtime.redis
    assert metrics.read(client, "leads") == {("meeting_request", "tr", "meeting-tr", "completed", "full", "none"): 1.0,
                                             ("meeting_request", "en", "none", "handed_over", "full", "none"): 1.0}
    assert metrics.read(client, "handoffs") == {("meeting_request", "patient_request", "full", "none"): 1.0}
    assert metrics.read(client, "dropoffs") == {("meeting_request", "company", "full", "none"): 1.0}

    # /metrics: the series and their labels, bounded by the configuration
    scraped = requests.get(f"{stack.relay_url}/metrics", timeout=5,
                           headers={"Authorization": f"Bearer {TEST_SECRETS['admin_token']}"})
    assert scraped.status_code == 200
    samples = {s.name: s for family in text_string_to_metric_families(scraped.text) for s in family.samples}
    assert samples["chat2crm_agent_reply_seconds_count"].value == 1
    assert samples["chat2crm_lead_seconds_count"].value == 2
    assert set(samples) <= set(metrics.exposed_names()) | {n.removesuffix("_total") + "_created" for n in samples}
    languages = {s.labels["language"] for f in text_string_to_metric_families(scraped.text) for s in f.samples
                 if s.name == "chat2crm_leads_total"}
    assert languages <= {*stack.runtime.config.languages, "none", "other"}
    promtool = shutil.which("promtool")
    if promtool:  # Prometheus's own linter reads the exposition as a scrape would
        linted = subprocess.run([promtool, "check", "metrics"], input=scraped.text, capture_output=True, text=True,
                                timeout=30)
        assert linted.returncode == 0, linted.stdout + linted.stderr

    env = {"REDIS_URL": stack.settings.redis_url or "", "CHAT2CRM_CONFIG": str(stack.config_path)}
    printed = CliRunner().invoke(main, ["report", "--since", "1h"], env=env)
    assert printed.exit_code == 0, printed.output
    text = printed.output
    for expected in ("conversations started            3", "requests finished (leads)        2",
                     "completed by the bot           1   50%  (completeness)",
                     "handed to a person             1   50%  (hand-off rate)", "(2 leads)", "(1 reply)",
                     "meeting_request · company", "(33% of started)", "patient_request",
                     "1 completed, 0 handed over", "0 completed, 1 handed over", "meeting-tr"):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert "█" in text
    for secret in (TURKISH, ENGLISH, QUIET, "Ayşe", "Hans", "info@abc.com"):
        assert secret not in text

    page = tmp_path / "report.html"
    written = CliRunner().invoke(main, ["report", "--since", "2d", "--html", str(page)], env=env)
    assert written.exit_code == 0, written.output
    shown = page.read_text(encoding="utf-8")
    assert shown.count("<svg") == 5 and "meeting_request · company" in shown and "patient_request" in shown
    assert "<script" not in shown and "src=" not in shown and "href=" not in shown  # nothing fetched from elsewhere

    wrong = CliRunner().invoke(main, ["report", "--since", "1y"], env=env)
    assert wrong.exit_code == 2 and "24h, 7d, 2w" in wrong.output
