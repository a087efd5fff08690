"""The embedded Redis server, health endpoints, and a worker running a real job through real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from rq import Queue

from connector.redis_server import EmbeddedRedis
from connector.runtime import Runtime
from connector.worker import HEARTBEAT, heartbeat, run_worker
from tests.conftest import make_settings
from tests.paths import SHIPPED_CONFIG


def test_embedded_redis_starts_serves_and_leaves_nothing_behind() -> None:
    server = EmbeddedRedis().start()
    pid = server.process.pid if server.process else 0
    directory = server.directory
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    server.stop()
    assert not directory.exists()
    time.sleep(0.1)
    try:
        os.kill(pid, 0)
        alive = Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except ProcessLookupError:
        alive = False
    assert not alive


def test_append_only_file_survives_a_restart() -> None:
    with EmbeddedRedis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("jobs", "a", "b")
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.lrange("jobs", 0, -1) == [b"a", b"b"]


def test_healthz_is_always_up(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_metrics_need_the_admin_token(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer test-admin-token-0123456789"})
    assert ok.status_code == 200
    assert b"chat2crm_queue_depth" in ok.data


def test_worker_runs_a_real_job_through_real_redis(runtime: Runtime) -> None:
    queue = runtime.queue("crm")
    job = queue.enqueue(heartbeat)
    assert isinstance(queue, Queue) and job.get_status() == "queued"
    run_worker(runtime, burst=True, name="probe-worker")
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == "probe-worker"
    assert runtime.redis.get("c2c:worker:heartbeat").startswith(b"probe-worker ")


def test_worker_process_stops_cleanly_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "CHAT2CRM_CONFIG": str(SHIPPED_CONFIG)}
    proc = subprocess.Popen([str(Path(os.sys.executable)), "-c",
                             "from connector.runtime import Runtime; from connector.worker import run_worker;"
                             "run_worker(Runtime())"], env=env)
    # stopped only once it works (a heartbeat job run): a loaded machine may take seconds to import it,
    # and a SIGTERM before its handlers are installed would test nothing
    runtime = Runtime(make_settings(redis_url))
    runtime.redis.delete(HEARTBEAT.key())
    runtime.queue("crm").enqueue(heartbeat)
    deadline = time.monotonic() + 60
    while not runtime.redis.exists(HEARTBEAT.key()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None and runtime.redis.exists(HEARTBEAT.key())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_readyz_when_redis_and_configuration_are_fine(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json["checks"] == {"redis": "ok", "configuration": "ok"}


def test_readyz_reports_redis_down(settings) -> None:  # type: ignore[no-untyped-def]
    from connector.app import create_app

    runtime = Runtime(settings, redis_client=redis.Redis(unix_socket_path="/nonexistent/redis.sock"))
    response = create_app({"TESTING": True}, runtime=runtime).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"].startswith("unreachable")


def test_readyz_reports_bad_configuration(redis_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from connector.app import create_app
    from tests.conftest import make_settings

    bad = tmp_path / "chat2crm.yaml"
    bad.write_text("version: 1\ncrm: hubspot\nmapping: missing.yaml\ndefault_flow: x\n", encoding="utf-8")
    runtime = Runtime(make_settings("unix:///x", chat2crm_config=bad), redis_client=redis_client)
    response = create_app({"TESTING": True}, runtime=runtime).test_client().get("/readyz")
    assert response.status_code == 503 and "problem" in response.json["checks"]["configuration"]
