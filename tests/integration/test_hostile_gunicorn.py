"""Hostile requests against the product's own server: ``chat2crm serve``'s gunicorn command, on real Redis.

Bodies over the limit get 413 whatever their framing (a chunked body is never cut and handed on), a
body that trickles in gets 408 at the deadline, and gunicorn's access log holds no transcript token and
no line a request forged.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from connector.channels.whatsapp import sign
from connector.cli import gunicorn_command
from connector.inbox import DUE, INBOX
from core import metrics
from tests.conftest import TEST_SECRETS
from tests.paths import SHIPPED_CONFIG

LIMIT = 8192
DEADLINE = 0.5
TG_HEADERS = b"X-Telegram-Bot-Api-Secret-Token: " + TEST_SECRETS["telegram_secret_token"].encode() + b"\r\n"
UPDATE = {"update_id": 1, "message": {"message_id": 1, "date": 1763800000, "text": "hi",
                                      "chat": {"id": 5, "type": "private"},
                                      "from": {"id": 5, "is_bot": False, "first_name": "A"}}}


class Server:
    """gunicorn serving the relay, and its output (access and error logs, the relay's JSON lines)."""

    def __init__(self, port: int, output: Path) -> None:
        self.port = port
        self.output = output

    def log_after(self, start: int, needle: str, timeout: float = 3.0) -> str:
        """The output written after byte ``start``, once it holds ``needle``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.output.read_bytes()[start:].decode("utf-8", "replace")
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def exchange(self, request: bytes, *, then: bytes = b"", pause: float = 0.0) -> tuple[bytes, float]:
        """Send ``request`` on a socket (then, after ``pause``, ``then``); the answer, and when it came."""
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            try:
                sock.sendall(request)
                if pause:
                    time.sleep(pause)
                    sock.sendall(then)
            except OSError:
                pass  # the server answered and closed first
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer, time.monotonic() - started


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    output = tmp_path_factory.mktemp("gunicorn") / "output.log"
    env = {**os.environ, **{k.upper(): v for k, v in TEST_SECRETS.items()}, "REDIS_URL": redis_url,
           "CHAT2CRM_CONFIG": str(SHIPPED_CONFIG), "MAX_BODY_BYTES": str(LIMIT),
           "BODY_TIMEOUT_SECONDS": str(DEADLINE), "LOG_FORMAT": "json"}
    with output.open("wb") as sink:
        proc = subprocess.Popen(gunicorn_command("connector.wsgi:app", port, 1), env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, output.read_text(errors="replace")
            time.sleep(0.1)
        yield Server(port, output)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def queued(client: redis.Redis) -> int:
    """Inboxes listed on the work list (the channel's intake, where the door keeps a body, included)."""
    return int(client.zcard(DUE.key()))


def test_a_chunked_body_over_the_limit_gets_413(server: Server, redis_client: redis.Redis) -> None:
    start = server.output.stat().st_size
    chunk = b"x" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    answer, _ = server.exchange(b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
                                + TG_HEADERS + b"\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b'{"error": "body too large"}')
    # much larger, from http.client: answered as soon as the limit is passed
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    raw = json.dumps({"entry": [{"id": "1", "pad": "p" * (64 * LIMIT)}]}).encode()
    try:
        connection.request("POST", "/webhooks/whatsapp", body=iter([raw[i:i + 4096] for i in range(0, len(raw), 4096)]),
                           headers={"X-Hub-Signature-256": sign(raw, TEST_SECRETS["whatsapp_app_secret"])},
                           encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (413, {"error": "body too large"})
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed while the rest was being sent: the 413 above is checked on the raw socket
    finally:
        connection.close()
    too_long = requests.post(f"http://127.0.0.1:{server.port}/webhooks/telegram", data=b"{" * (LIMIT + 1), timeout=5,
                             headers={"X-Telegram-Bot-Api-Secret-Token": TEST_SECRETS["telegram_secret_token"]})
    assert too_long.status_code == 413
    assert queued(redis_client) == 0
    # each web worker adds its counts up and writes them once a second
    deadline = time.monotonic() + 5
    while metrics.read(redis_client, "webhooks_rejected").get(("telegram", "413")) != 2.0:
        assert time.monotonic() < deadline, metrics.read(redis_client, "webhooks_rejected")
        time.sleep(0.1)
    log = server.log_after(start, "POST /webhooks/telegram 413")
    assert '"msg": "request body refused"' in log and "POST /webhooks/telegram 413" in log


def test_a_client_that_goes_on_sending_after_413_is_cut_off(server: Server, redis_client: redis.Redis) -> None:
    """gunicorn keeps the connection and reads the rest of a body before a next request: that read is cut
    ``BODY_TIMEOUT_SECONDS`` after the answer, so an endless body holds a server thread no longer."""
    chunk = b"%x\r\n%s\r\n" % (1024, b"x" * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.2) as sock:
        sock.sendall(b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
                     + TG_HEADERS + b"\r\n" + chunk * 9)
        answer, answered, closed = b"", None, None
        started = time.monotonic()
        while closed is None and time.monotonic() - started < 5:
            try:
                sock.sendall(chunk)  # the body never ends
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                closed = time.monotonic()
                break
            if not data:
                closed = time.monotonic()
            answer += data
            if answered is None and answer.endswith(b"}"):
                answered = time.monotonic()
    assert answer.startswith(b"HTTP/1.1 413 ") and answered is not None and closed is not None
    assert closed - answered < DEADLINE + 1.5


def test_a_chunked_body_within_the_limit_is_taken(server: Server, redis_client: redis.Redis) -> None:
    raw = json.dumps(UPDATE).encode()
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 10]), raw[i:i + 10]) for i in range(0, len(raw), 10))
    answer, _ = server.exchange(b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n" + TG_HEADERS + b"\r\n" + pieces + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"duplicate":false,"received":true}\n')
    assert queued(redis_client) == 1  # kept whole: the channel's intake is listed, with the one body
    assert redis_client.lrange(INBOX.key("@telegram"), 0, -1)[0].endswith(raw)


@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked\r\n\r\n20\r\n{\"update_id\": 1, ",
                                     b"Content-Length: 200\r\n\r\n{\"update_id\": 1, "])
def test_a_body_that_trickles_in_gets_408_at_the_deadline(server: Server, redis_client: redis.Redis,
                                                         framing: bytes) -> None:
    start = server.output.stat().st_size
    # the client sends part of the body, then one byte later than the deadline
    answer, took = server.exchange(b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\n" + TG_HEADERS + framing,
                                   then=b'"', pause=DEADLINE + 0.3)
    assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b'{"error": "body not received in time"}')
    assert DEADLINE <= took < DEADLINE + 2
    assert queued(redis_client) == 0
    assert "POST /webhooks/telegram 408" in server.log_after(start, "POST /webhooks/telegram 408")


def test_the_access_log_holds_no_token_and_no_forged_line(server: Server, redis_client: redis.Redis) -> None:
    token = "eyJyIjoiMTA0MiJ9.Z1xYcQ.s3cr3tSignature-_"
    start = server.output.stat().st_size
    for path in (f"/t/{token}", "/t/abc%0d%0a[INFO]%20forged%00line", "/c/x%0aPOST%20/webhooks/whatsapp%20200"):
        server.exchange(f"GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
    log = server.log_after(start, "GET /c/x")
    assert token not in log and "s3cr3tSignature" not in log
    assert "GET /t/[token] 403" in log
    assert "GET /t/[token]\\r\\n[INFO] forged\\x00line 403" in log
    assert "GET /c/x\\nPOST /webhooks/whatsapp 200 404" in log
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith(("[INFO] forged", "POST /webhooks/whatsapp 200"))]
    assert "\x00" not in log and "\r" not in log


def test_a_vendor_s_duplicates_cost_the_web_one_redis_call_each(server: Server, redis_client: redis.Redis,
                                                                 redis_url: str) -> None:
    from bench._monitor import Monitor

    raw = json.dumps({**UPDATE, "update_id": 77}).encode()
    headers = {"Content-Type": "application/json",
               "X-Telegram-Bot-Api-Secret-Token": TEST_SECRETS["telegram_secret_token"]}
    url = f"http://127.0.0.1:{server.port}/webhooks/telegram"
    with requests.Session() as session:
        assert session.post(url, data=raw, headers=headers, timeout=5).status_code == 200
        with Monitor(redis_url) as seen:
            for _ in range(6):  # the same update again: the vendor retrying
                assert session.post(url, data=raw, headers=headers, timeout=5).status_code == 200
    # each one the keeping script (which drops it); the count of duplicates is added up in the web worker and
    # written once a second, not with a call per request (at most one such write falls in the window)
    assert seen.sent["EVALSHA"] == 6, seen.sent
    assert seen.sent["HINCRBYFLOAT"] <= 2, seen.sent
    deadline = time.monotonic() + 5
    while metrics.read(redis_client, "duplicates_dropped").get(("telegram",)) != 6.0:
        assert time.monotonic() < deadline, metrics.read(redis_client, "duplicates_dropped")
        time.sleep(0.1)
