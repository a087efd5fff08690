"""The fault test: 120 conversations while the CRM fails 30% of its calls (429, 500, time-outs), workers
are killed with SIGKILL mid-job several times, Redis is restarted once (append-only file on), and the
CRM's search lags seconds behind its writes, as HubSpot's does. Afterwards every completed lead is in
the CRM exactly once, with its note, and no conversation is stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.hubspot import HubSpotAdapter
from connector import inbox, outbox
from connector.app import create_app
from connector.leads import PENDING
from connector.mapping import load_mapping, required_schema
from connector.redis_server import EmbeddedRedis
from connector.runtime import Runtime
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from emulators.whatsapp import WhatsAppEmulator
from tests.conftest import TEST_SECRETS, make_settings
from tests.e2e.conftest import write_config
from tests.paths import MAPPINGS, REPO

CONVERSATIONS, WORKERS, KILLS = 120, 4, 4
INBOXES, OUTBOXES, LEADS_PENDING = inbox.DUE.key(), outbox.DUE.key(), PENDING.key()
SEARCH_LAG = 3.0
# About a minute and a half on two cores. `-m "not slow"` leaves it out of a quick run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.weight(120)]


class Workers:
    """Keeps WORKERS worker processes running, as a process supervisor would (systemd, Procfile)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def fill(self) -> None:
        self.procs = [p for p in self.procs if p.poll() is None]
        while len(self.procs) < WORKERS:
            self.started += 1
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "worker", "--name", f"fault-{self.started}"],
                env=self.env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill_one(self) -> None:
        """SIGKILL a worker and its work-horse (the job it is running dies with it)."""
        victim = self.procs.pop(0)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = EmbeddedRedis(appendonly=True, directory=tmp_path / "redis").start()
    # HubSpot's search lags behind writes by seconds: no "did my write happen?" decision may rest on it
    hubspot = HubSpotEmulator(TEST_SECRETS["hubspot_access_token"], timeout_seconds=0.8, search_lag=SEARCH_LAG)
    whatsapp = WhatsAppEmulator(access_token=TEST_SECRETS["whatsapp_access_token"],
                                phone_number_id=TEST_SECRETS["whatsapp_phone_number_id"],
                                app_secret=TEST_SECRETS["whatsapp_app_secret"])
    with ServedApp(hubspot.app) as hs, ServedApp(whatsapp.app) as wa:
        # Real time-outs (the client gives up after 1 s while the emulator stalls 1.5 s and then writes), and
        # an account limit that lets faults, not throughput, decide the test's length.
        mapping_path = tmp_path / "hubspot.yaml"
        mapping_path.write_text((MAPPINGS / "hubspot.yaml").read_text(encoding="utf-8").replace(
            "  property_group: chat2crm", "  property_group: chat2crm\n  timeout_seconds: 0.5\n"
            "  rate_limit: {requests: 2000, per_seconds: 10}"), encoding="utf-8")
        config = write_config(tmp_path, flows=str(REPO / "tests" / "data" / "fault_flows"),
                              mapping=str(mapping_path),
                              campaigns=None, default_flow="quick_request", languages=["en"],
                              **{"delivery.backoff_base_seconds": 0.2, "delivery.backoff_max_seconds": 1,
                                 "delivery.max_retries": 50, "delivery.job_timeout_seconds": 10,
                                 "delivery.lost_job_seconds": 20, "limits.global_per_second": 100000})
        settings = make_settings(server.url, chat2crm_config=config, whatsapp_api_base=wa.url,
                                 hubspot_api_base=hs.url)
        mapping = load_mapping(mapping_path, crm="hubspot")
        HubSpotAdapter.from_settings(settings, options=mapping.crm_options()).setup(required_schema(mapping), apply=True)
        runtime = Runtime(settings, redis_client=redis.Redis.from_url(server.url))
        relay = ServedApp(create_app(runtime=runtime)).start()
        whatsapp.relay_url = f"{relay.url}/webhooks/whatsapp"
        env = {**os.environ, **{k.upper(): v for k, v in TEST_SECRETS.items()}, "REDIS_URL": server.url,
               "CHAT2CRM_CONFIG": str(config), "WHATSAPP_API_BASE": wa.url, "HUBSPOT_API_BASE": hs.url,
               "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
        workers = Workers(env)
        try:
            yield {"server": server, "hubspot": hubspot, "whatsapp": whatsapp, "runtime": runtime, "workers": workers}
        finally:
            workers.stop()
            relay.stop()
            server.stop()


def _deliver(patient: Any, text: str) -> None:
    """Send until the relay acknowledges, as WhatsApp redelivers an unacknowledged webhook."""
    for _ in range(200):
        try:
            if patient.send_text(text) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the relay never acknowledged")


def _failed(runtime: Runtime) -> list[str]:
    """What the failed registries hold: function, reason and rq's last word, one line a job."""
    from rq.job import Job

    lines = []
    for queue in runtime.queues():
        for job_id in queue.failed_job_registry.get_job_ids():
            job = Job.fetch(job_id, connection=runtime.redis)
            result = job.latest_result()
            lines.append(f"{job.func_name} reason={job.meta.get('reason')!r} "
                         f"rq={(result.exc_string or '')[-160:] if result else None!r}")
    return lines


def test_no_lead_lost_or_duplicated_under_faults(world: dict[str, Any]) -> None:
    hubspot, whatsapp, runtime, workers = world["hubspot"], world["whatsapp"], world["runtime"], world["workers"]
    server: EmbeddedRedis = world["server"]
    hubspot.fault_rate = 0.30
    workers.fill()
    patients = [whatsapp.patient(f"4915200{i:06d}", f"Patient {i}") for i in range(CONVERSATIONS)]
    start = time.monotonic()

    def converse(patient: Any) -> None:
        _deliver(patient, "Hello there")
        _deliver(patient, f"Request from {patient.wa_id}")

    kills = restarts = 0
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(converse, p) for p in patients]
        while not all(f.done() for f in futures) or kills < KILLS or restarts < 1:
            time.sleep(1.0)
            if kills < KILLS and time.monotonic() - start > 3 + kills * 4:
                workers.kill_one()
                kills += 1
            if restarts < 1 and time.monotonic() - start > 12:
                server.restart()  # the append-only file keeps queued jobs, inboxes and pending leads
                restarts += 1
            workers.fill()
        for future in futures:
            future.result()

    client = runtime.redis
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        workers.fill()
        done = hubspot.count("notes") >= CONVERSATIONS and not client.zcard(LEADS_PENDING)
        if done and not client.zcard(INBOXES) and not client.zcard(OUTBOXES) and not _failed(runtime):
            break
        time.sleep(1.0)
    hubspot.fault_rate = 0.0

    references = [d["properties"]["chat2crm_reference"] for d in hubspot.records("deals")]
    notes_per_deal = Counter(ref for ref in references for n in hubspot.records("notes")
                             if f"#{ref}" in n["properties"]["hs_note_body"])
    contacts = [c["properties"]["chat2crm_contact_key"] for c in hubspot.records("contacts")]
    failed_jobs = _failed(runtime)
    failed = len(failed_jobs)
    calls = len(hubspot.calls)
    failures = sum(1 for c in hubspot.calls if c.get("fault") or (c["status"] or 0) >= 400 or c["status"] is None)
    # a note create whose answer was lost is looked for among the deal's notes (never by search, which lags)
    look_ups = sum(1 for c in hubspot.calls if c["path"].startswith("/crm/v4/"))
    print(f"\nfault test: {CONVERSATIONS} conversations, {calls} CRM calls ({failures} failed or timed out), "
          f"{kills} workers killed, Redis restarted {restarts}x, {workers.started} worker processes in all, "
          f"{time.monotonic() - start:.0f} s; search lag {SEARCH_LAG} s, {look_ups} note look-ups after a lost answer")
    print(f"deals {len(references)} ({len(set(references))} distinct), contacts {len(contacts)} "
          f"({len(set(contacts))} distinct), notes {hubspot.count('notes')}, pending leads "
          f"{client.zcard(LEADS_PENDING)}, busy inboxes {client.zcard(INBOXES)}, busy outboxes {client.zcard(OUTBOXES)}, "
          f"failed-registry entries {failed}")
    for line in failed_jobs:
        print("failed job:", line)
    assert len(references) == len(set(references)) == CONVERSATIONS
    assert len(contacts) == len(set(contacts)) == CONVERSATIONS
    assert all(notes_per_deal[ref] == 1 for ref in references) and hubspot.count("notes") == CONVERSATIONS
    assert client.zcard(LEADS_PENDING) == 0 and client.zcard(INBOXES) == 0 and client.zcard(OUTBOXES) == 0
    assert failed == 0  # jobs abandoned by killed workers were recovered, and nothing failed for real
