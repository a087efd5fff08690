"""`chat2crm demo` as a newcomer meets it: the port ($PORT or --port) checked first, Ctrl-C honoured even
in a script's background job, a banner whose operator commands work as printed, failures on the page,
and a terminal with one redacted line per conversation event instead of the page's polling."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_demo import _alive
from tests.integration.test_docs_commands import _free_port

pytestmark = pytest.mark.weight(75)  # seconds, about: see pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "connector.cli", "demo"]
#: the patient the banner's release and forget examples name
BANNER_PATIENT = "905321234567"


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT")}
    env.update(changes)
    return env


@contextlib.contextmanager
def _listening(port: int = 0) -> Iterator[int]:
    """A socket listening on ``port`` (any free one with 0) on every interface, as another server would."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", port))  # the address the demo's web app would take
        sock.listen()
        yield int(sock.getsockname()[1])


class Output:
    """Everything a process prints, collected by a thread as it comes."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text}"
            time.sleep(0.2)

    def finish(self) -> None:
        self._thread.join(timeout=10)


def _until(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.3)


# -- 1. the port ------------------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["--port", "$PORT", "default"])
def test_a_taken_port_is_one_clear_line_and_nothing_starts(via: str) -> None:
    with contextlib.ExitStack() as stack:
        if via == "default":
            port = 8000
            with contextlib.suppress(OSError):  # if something else holds 8000, it is taken all the same
                stack.enter_context(_listening(8000))
            args, env = DEMO, _env()
        else:
            port = stack.enter_context(_listening())
            args = [*DEMO, "--port", str(port)] if via == "--port" else DEMO
            env = _env(PORT=str(port)) if via == "$PORT" else _env()
        started = time.monotonic()
        proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == "", "nothing may start when the port is taken"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    free = re.search(r"--port (\d+) \(or PORT=(\d+) \./scripts/demo\)", lines[0])
    assert lines[0].startswith(f"chat2crm demo: port {port} is in use: stop what uses it, or run ./scripts/demo --port ")
    assert free and free.group(1) == free.group(2) and int(free.group(1)) != port, lines[0]
    assert time.monotonic() - started < 20


# -- 2. Ctrl-C in a script's background job ----------------------------------------------------------
def test_sigint_stops_a_demo_started_in_the_background_of_a_script(tmp_path: Path) -> None:
    """A non-interactive shell starts `cmd &` with SIGINT ignored; the demo must stop on SIGINT all the same.
    Here $PORT names a taken port too: --port wins."""
    port = _free_port()
    pidfile = tmp_path / "demo.pid"
    with _listening() as taken:
        script = (f"PORT={taken} {' '.join(DEMO)} --port {port} & echo $! > {pidfile}; wait")
        proc = subprocess.Popen(["bash", "-c", script], env=_env(), cwd=ROOT, start_new_session=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = Output(proc.stdout)
        try:
            output.wait_for("chat2crm is running")
            assert f"open http://127.0.0.1:{port}/demo" in output.text
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            os.kill(int(pidfile.read_text()), signal.SIGINT)
            assert proc.wait(timeout=60) == 0, output.text
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
            output.finish()
    text = output.text
    assert "==> stopping" in text and "nothing left running" in text, text
    assert "Traceback" not in text, text
    pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
    assert len(pids) >= 3  # redis, web, worker
    time.sleep(1.5)
    assert [pid for pid in pids if _alive(pid)] == []


def _start_demo(port: int) -> tuple[subprocess.Popen[str], Output]:
    """`chat2crm demo --port PORT`, started; its output read as it comes."""
    proc = subprocess.Popen([*DEMO, "--port", str(port)], env=_env(), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, Output(proc.stdout)


def test_a_demo_killed_outright_leaves_nothing_running() -> None:
    """SIGKILL (or a terminal closed under it) gives the demo no chance to stop its processes: each of them
    stops by itself once the demo is gone (the worker within its supervisor's stop time-out: its job
    processes cannot reach the demo's Redis, gone with the demo, to sign off)."""
    proc, output = _start_demo(_free_port())
    try:
        output.wait_for("chat2crm is running")
        pids = {name: int(pid) for name, pid in re.findall(r"^\s+(\w+)\s+pid (\d+)", output.text, re.M)}
        assert {"web", "worker"} <= set(pids), output.text
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and [p for p in pids.values() if _alive(p)]:
            time.sleep(0.2)
        assert {name: pid for name, pid in pids.items() if _alive(pid)} == {}
    finally:
        if proc.poll() is None:
            proc.kill()
        output.finish()


# -- 3, 4, 5. the banner's commands, failures on the page, the terminal's event lines -----------------
@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, Output]]:
    port = _free_port()
    proc, output = _start_demo(port)
    try:
        output.wait_for("one line per conversation event")
        yield f"http://127.0.0.1:{port}", output
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        output.finish()
    assert proc.returncode == 0, output.text


def _printed(output: Output, marker: str) -> str:
    """The banner line holding ``marker`` (a command to run as printed)."""
    found = [line.strip() for line in output.lines if marker in line]
    assert found, f"the banner shows no {marker!r}:\n{output.text}"
    return found[0]


def _run_printed(command: str) -> str:
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _say(base: str, patient: str, text: str) -> None:
    """The patient writes ``text`` and the bot answers it (its reply count grows)."""
    def replies() -> int:
        messages = requests.get(f"{base}/demo/api/chat?channel=whatsapp&patient={patient}", timeout=5).json()
        return sum(1 for m in messages["messages"] if m["direction"] == "out")

    before = replies()
    requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "text": text},
                  timeout=10).raise_for_status()
    _until(lambda: replies() > before, what=f"a reply to {text!r}")


def _problems(base: str) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = requests.get(f"{base}/demo/api/problems", timeout=5).json()["problems"]
    return problems


def _fault(base: str, fault: str) -> None:
    requests.post(f"{base}/demo/api/fault", json={"fault": fault}, timeout=5).raise_for_status()


def _crm_calls(base: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = requests.get(f"{base}/demo/api/crm", timeout=5).json()["calls"]
    return calls


def _settled(output: Output, base: str) -> None:
    """Wait until every lead queued so far has reached the CRM or failed, and the CRM has had no call for a
    second (the agents' inbox, a note: nothing on its way that a fault armed next could hit instead)."""
    def done() -> bool:
        text = output.text
        return text.count("lead queued for the CRM") == text.count("lead in CRM") + text.count("job failed")

    _until(done, what="the queued leads")
    seen = {"count": -1, "since": time.monotonic()}

    def quiet() -> bool:
        count = len(_crm_calls(base))
        if count != seen["count"]:
            seen["count"], seen["since"] = count, time.monotonic()
        return time.monotonic() - seen["since"] >= 1.0

    _until(quiet, what="a quiet CRM")


def test_the_banner_prints_redis_config_token_and_commands_that_work(demo: tuple[str, Output]) -> None:
    base, output = demo
    redis_url = re.search(r"Redis: (unix://\S+)", output.text)
    config = re.search(r"configuration \(CHAT2CRM_CONFIG\): (\S+)", output.text)
    token = re.search(r"admin token \(ADMIN_TOKEN\): (\S+)", output.text)
    assert redis_url and config and token, output.text
    failed = _printed(output, " failed list")
    assert f"REDIS_URL={redis_url.group(1)} CHAT2CRM_CONFIG={config.group(1)} " in failed
    assert _run_printed(failed).strip().endswith("0 failed jobs")
    metrics = _printed(output, "/metrics")
    assert metrics == f'curl -H "Authorization: Bearer {token.group(1)}" {base}/metrics'
    assert "chat2crm_queue_depth" in _run_printed(f"curl -sf {metrics.removeprefix('curl ')}")
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 401  # the token is what opens it
    # release and forget, as printed, on the patient they name: a handed-over conversation
    _say(base, BANNER_PATIENT, "Merhaba")
    _say(base, BANNER_PATIENT, "temsilci")
    assert _run_printed(_printed(output, " release +")).strip() == "released 1 conversation"
    assert "conversations=1" in _run_printed(_printed(output, " forget +"))


def test_a_failed_crm_write_and_a_failed_send_show_on_the_page(demo: tuple[str, Output]) -> None:
    base, output = demo
    # The CRM answers 500 once: the relay retries the write, and the lead reaches the CRM all the same.
    _say(base, "905321110001", "Merhaba")  # the first message's CRM look-up is done; the next call is the write
    _settled(output, base)
    _fault(base, "crm-500")
    _say(base, "905321110001", "temsilci")
    retry = _until(lambda: [p for p in _problems(base) if p["kind"] == "retry" and "CRM write" in p["text"]],
                   what="the CRM write's retry on the page")[0]
    assert re.match(r"CRM write of lead #\d+ failed \(will retry: attempt 1 in [\d.]+ s\): hubspot: server error 500",
                    retry["text"]), retry
    reference = re.search(r"#\d+", retry["text"]).group(0)  # type: ignore[union-attr]
    output.wait_for(f"lead in CRM  reference={reference}", timeout=30)
    # The CRM refuses a write: the relay gives up on it, and says so on the page.
    _say(base, "905321110002", "Merhaba")
    _settled(output, base)
    _fault(base, "crm-400")
    _say(base, "905321110002", "temsilci")
    final = _until(lambda: [p for p in _problems(base) if p["kind"] == "final"], what="a failed-for-good item")[0]
    assert re.match(r"CRM write of lead #\d+ failed for good: FatalError: hubspot: request rejected \(400",
                    final["text"]), final
    assert "chat2crm failed replay" in final["hint"]
    output.wait_for("ERROR  job failed  job=lead #", timeout=10)  # the terminal says it too, in one line
    # the banner's command lists it (rq files the job as failed just after the worker's line)
    command = _printed(output, " failed list")

    def listed() -> str | None:
        text = _run_printed(command)
        return text if re.search(r"lead #\d+\s+FatalError: hubspot: request rejected", text) else None

    _until(listed, timeout=10, what="the lead in `chat2crm failed list`")
    # WhatsApp throttles a reply: the relay retries the send (not the bot's turn), and the patient gets the answer.
    _fault(base, "whatsapp-429")
    _say(base, "905321110003", "Hello")
    send = _until(lambda: [p for p in _problems(base) if p["kind"] == "retry" and "whatsapp" in p["text"]],
                  what="the throttled send on the page")[0]
    assert send["text"].startswith("Sending a reply to a patient failed (will retry: attempt 1 in "), send
    problems = _problems(base)
    assert [p["at"] for p in problems] == sorted((p["at"] for p in problems), reverse=True)  # newest first


def test_the_terminal_shows_conversation_events_not_polling(demo: tuple[str, Output]) -> None:
    base, output = demo
    patient = "905321110004"
    for _ in range(3):  # what the open page does every second
        requests.get(f"{base}/demo/api/crm", timeout=5)
        requests.get(f"{base}/demo/api/problems", timeout=5)
        requests.get(f"{base}/demo/api/chat?channel=whatsapp&patient={patient}", timeout=5)
    _say(base, patient, "Hi, price for hair transplant? Write to ayse.yilmaz@example.com")
    _say(base, patient, "I want to talk to a person")
    output.wait_for("lead in CRM", timeout=30)
    time.sleep(1)
    events = output.text.split("one line per conversation event", 1)[1]
    assert not re.search(r"^(GET|POST) /(demo|healthz|readyz|webhooks)", events, re.M), events
    for event in ("message received", "bot replied", "handed over to a person", "lead queued for the CRM",
                  "lead in CRM"):
        assert re.search(rf"^\d\d:\d\d:\d\d +{event} ", events, re.M), f"no {event!r} line:\n{events}"
    assert re.search(r"lead in CRM  reference=#\d+ .*record=deals/\d+", events), events
    assert "Traceback" not in events
    for secret in (patient, "price for hair", "ayse.yilmaz", "Demo Patient", "talk to a person", "Merhaba"):
        assert secret not in events, f"{secret!r} in the terminal:\n{events}"
