"""The job processes are long-lived (no fork per job), yet a job that hangs, leaks or balloons never
takes the worker down nor holds up other work: the supervisor replaces the process, the rest goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from connector.runtime import Runtime
from tests.conftest import make_settings
from tests.e2e.conftest import write_config
from tests.paths import REPO

pytestmark = pytest.mark.weight(50)  # seconds, about: see pytest_collection_modifyitems

JOBS = "tests.e2e.supervised_jobs"


@pytest.fixture
def worker(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    # one language: the worker starts without loading the detector's models (these jobs are not bot turns)
    config = write_config(tmp_path, languages=["en"], campaigns=None)
    env = {**os.environ, "REDIS_URL": redis_url, "CHAT2CRM_CONFIG": str(config), "LOG_FORMAT": "json",
           "WORKER_HANG_GRACE_SECONDS": "1", "WORKER_MAX_MEMORY_MB": "64",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--processes", "2",
                             "--name", "supervised"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


def _wait(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _ran(client: redis.Redis) -> dict[str, int]:
    return {label: int(pid) for label, pid in (item.decode().split() for item in client.lrange("test:ran", 0, -1))}


def _job_processes(worker: subprocess.Popen[bytes]) -> set[int]:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def test_a_hung_job_is_killed_and_replaced_while_other_work_goes_on(
        worker: subprocess.Popen[bytes], redis_url: str, redis_client: redis.Redis) -> None:
    queue = Runtime(make_settings(redis_url), redis_client=redis_client).queue("inbound")
    _wait(lambda: len(_job_processes(worker)) == 2)
    queue.enqueue(f"{JOBS}.hang", job_timeout=1)
    _wait(lambda: redis_client.llen("test:hung") == 1)
    hung = int(redis_client.lindex("test:hung", 0) or 0)
    for i in range(20):  # the other process serves them while one is stuck
        queue.enqueue(f"{JOBS}.record", f"job-{i}")
    _wait(lambda: len(_ran(redis_client)) == 20, seconds=10)
    assert hung in _job_processes(worker) and hung not in set(_ran(redis_client).values())
    # past its time-out (1 s) and the grace (1 s), the stuck process is killed and a new one takes its place
    _wait(lambda: hung not in _job_processes(worker) and len(_job_processes(worker)) == 2, seconds=15)
    for i in range(20, 40):
        queue.enqueue(f"{JOBS}.record", f"job-{i}")
    _wait(lambda: len(_ran(redis_client)) == 40)
    assert worker.poll() is None


def test_a_leaking_process_is_retired_after_its_job_and_a_ballooning_one_is_killed(
        worker: subprocess.Popen[bytes], redis_url: str, redis_client: redis.Redis) -> None:
    queue = Runtime(make_settings(redis_url), redis_client=redis_client).queue("inbound")
    _wait(lambda: len(_job_processes(worker)) == 2)
    queue.enqueue(f"{JOBS}.leak", 100)  # over the 64 MB limit once the job is done: retired, not killed
    _wait(lambda: redis_client.llen("test:leaked") == 1)
    leaker = int(redis_client.lindex("test:leaked", 0) or 0)
    _wait(lambda: leaker not in _job_processes(worker) and len(_job_processes(worker)) == 2)
    queue.enqueue(f"{JOBS}.balloon", 200, job_timeout=600)  # past twice the limit mid-job: killed at once
    _wait(lambda: redis_client.llen("test:ballooned") == 1)
    ballooned = int(redis_client.lindex("test:ballooned", 0) or 0)
    for i in range(10):
        queue.enqueue(f"{JOBS}.record", f"job-{i}")
    _wait(lambda: ballooned not in _job_processes(worker) and len(_job_processes(worker)) == 2)
    _wait(lambda: len(_ran(redis_client)) == 10)
    assert worker.poll() is None


def test_the_worker_stops_on_sigterm_and_leaves_no_job_process(worker: subprocess.Popen[bytes]) -> None:
    _wait(lambda: len(_job_processes(worker)) == 2)
    children = _job_processes(worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=40) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_job_processes_stop_when_their_supervisor_is_killed(worker: subprocess.Popen[bytes]) -> None:
    _wait(lambda: len(_job_processes(worker)) == 2)
    children = _job_processes(worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    _wait(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), seconds=15)


def test_a_delayed_retry_is_moved_by_a_scheduler_thread_not_a_process_of_its_own(
        worker: subprocess.Popen[bytes], redis_client: redis.Redis) -> None:
    from datetime import timedelta

    from rq import Queue
    _wait(lambda: len(_job_processes(worker)) == 2)
    _wait(lambda: bool(redis_client.keys("rq:scheduler-lock:*")))  # one job process took the scheduler's locks
    Queue("chat2crm-outbound", connection=redis_client).enqueue_in(timedelta(seconds=1), f"{JOBS}.record", "later")
    _wait(lambda: "later" in _ran(redis_client), seconds=15)
    # the job processes have no children: rq's scheduler runs as a thread of one of them
    for pid in _job_processes(worker):
        assert not Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=40) == 0
    assert not redis_client.keys("rq:scheduler-lock:*")  # let go on the way out
