"""Hostile and malformed webhooks over real HTTP against the relay, on real Redis.

The bodies start from the vendors' documented payloads (``tests/data/*/documented.json``: Meta's webhook
examples, the Bot API's ``Update``) and are then broken one way at a time. Each case gets its answer (at
the door, which checks the proof, the size and the framing) or its verdict when a job process reads the
body (read here as one does, :func:`tests.intake.read`), a log line without patient data, and nothing
queued that should not be.
"""

from __future__ import annotations

import copy
import http.client
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from connector.channels.whatsapp import sign
from connector.inbox import DUE, ready_count
from connector.inbox import messages as inbox_messages
from connector.runtime import Runtime
from core import metrics
from tests.conftest import TEST_SECRETS, make_settings
from tests.intake import read

DATA = Path(__file__).parents[1] / "data"
WA_DOC = json.loads((DATA / "whatsapp" / "documented.json").read_text(encoding="utf-8"))
TG_DOC = json.loads((DATA / "telegram" / "documented.json").read_text(encoding="utf-8"))
APP_SECRET = TEST_SECRETS["whatsapp_app_secret"]
TG_SECRET = TEST_SECRETS["telegram_secret_token"]
ACCOUNT = "106540352242922"
SENDER = "16505551234"  # the documented sender
LIMIT = 8192  # MAX_BODY_BYTES of the relay under test


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[tuple[str, Runtime]]:
    """The relay's app served over real HTTP (the server the other integration tests use), for the module."""
    from connector.app import create_app
    from emulators.server import ServedApp

    client = redis.Redis.from_url(redis_url)
    runtime = Runtime(make_settings(redis_url, max_body_bytes=LIMIT), redis_client=client)
    server = ServedApp(create_app({"TESTING": True}, runtime=runtime)).start()
    try:
        yield server.url, runtime
    finally:
        server.stop()
        client.close()


@pytest.fixture
def relay(served: tuple[str, Runtime], redis_client: redis.Redis) -> tuple[str, Runtime]:
    """The served relay, its Redis flushed for this test (``redis_client`` flushes it before and after)."""
    return served


def post_wa(url: str, raw: bytes) -> requests.Response:
    return requests.post(f"{url}/webhooks/whatsapp", data=raw, timeout=5, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, APP_SECRET)})


def post_tg(url: str, raw: bytes) -> requests.Response:
    return requests.post(f"{url}/webhooks/telegram", data=raw, timeout=5, headers={
        "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET})


def queued(runtime: Runtime) -> int:
    """Messages waiting in every conversation's inbox (a channel's intake, ``@<channel>``, holds bodies)."""
    return sum(len(inbox_messages(runtime, k.decode())) for k in runtime.redis.zrange(DUE.key(), 0, -1)
               if not k.startswith(b"@"))


def wa_batch(*messages: dict[str, Any]) -> dict[str, Any]:
    """Meta's documented text webhook, carrying ``messages``."""
    body = copy.deepcopy(WA_DOC["text"])
    body["entry"][0]["changes"][0]["value"]["messages"] = list(messages)
    return body


def wa_text(message_id: str, text: Any = "Does it come in another color?", **changes: Any) -> dict[str, Any]:
    """One documented text message, with ``changes``."""
    message = copy.deepcopy(WA_DOC["text"]["entry"][0]["changes"][0]["value"]["messages"][0])
    message.update(id=message_id, text={"body": text}, **changes)
    return message


def tg_update(update_id: int, **changes: Any) -> dict[str, Any]:
    """The Bot API's documented text update, with ``changes`` to its message (None removes a field)."""
    update = copy.deepcopy(TG_DOC["text"])
    update["update_id"] = update_id
    for key, value in changes.items():
        if value is None:
            update["message"].pop(key)
        else:
            update["message"][key] = value
    return update


def texts(runtime: Runtime, conversation: str) -> list[str | None]:
    return [m.text for m in inbox_messages(runtime, conversation)]


# -- bad as a whole: dropped when read, nothing queued ---------------------------------------------------
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_or_infinity_anywhere_is_dropped(relay: tuple[str, Runtime], literal: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = relay
    # deep inside a message Meta documents (a location's latitude), and in a Telegram update
    location = copy.deepcopy(WA_DOC["location"])
    raw = json.dumps(location).replace('"latitude": 37.44221496582', f'"latitude": {literal}').encode()
    assert literal.encode() in raw
    assert post_wa(url, raw).status_code == 200  # signed: kept at the door, which does not read it
    update = json.dumps(tg_update(801)).replace('"date": 1763800000', f'"date": 1763800000, "x": [{literal}]')
    assert post_tg(url, update.encode()).status_code == 200
    assert read(runtime)["rejected"] == 2
    assert queued(runtime) == 0 and ready_count(runtime) == 0
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("whatsapp", "400"): 1.0, ("telegram", "400"): 1.0}
    assert [r.reason for r in caplog.records if r.getMessage() == "webhook dropped"] == (  # type: ignore[attr-defined]
        ["body holds NaN or Infinity"] * 2)
    assert SENDER not in caplog.text and "Мария" not in caplog.text


def _wa_envelopes() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for name, breaking in [("messages", {"0": wa_text("wamid.M1")}), ("messages", "wamid.M1"),
                           ("statuses", {"id": "wamid.S1", "status": "read"}), ("contacts", 7)]:
        body = wa_batch(wa_text("wamid.M1"))
        body["entry"][0]["changes"][0]["value"][name] = breaking
        cases.append((name, body))
    changes = wa_batch(wa_text("wamid.M1"))
    changes["entry"][0]["changes"] = changes["entry"][0]["changes"][0]
    entry = wa_batch(wa_text("wamid.M1"))
    entry["entry"] = entry["entry"][0]
    return [*cases, ("changes", changes), ("entry", entry)]


@pytest.mark.parametrize(("field", "body"), _wa_envelopes())
def test_a_whatsapp_envelope_whose_lists_are_not_lists_is_dropped(relay: tuple[str, Runtime], field: str,
                                                                   body: dict[str, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = relay
    assert post_wa(url, json.dumps(body).encode()).status_code == 200
    assert read(runtime)["rejected"] == 1
    assert [r.reason for r in caplog.records if r.getMessage() == "webhook dropped"] == [  # type: ignore[attr-defined]
        f"not a WhatsApp webhook: '{field}' list expected"]
    assert queued(runtime) == 0 and ready_count(runtime) == 0


# -- inside a valid batch: the bad message is dropped, the rest is queued ---------------------------------
def _unix(moment: datetime) -> str:
    return str(int(moment.timestamp()))


@pytest.mark.parametrize(("bad", "problem"), [
    (wa_text("wamid.BAD", "gizli\x00metin"), "text.body: Value error, text holds a NUL character"),
    (wa_text("wamid.BAD", 42), "text.body: string_type"),
    (wa_text("wamid.BAD", timestamp="1230000000"), "timestamp: Value error, timestamp outside any plausible range"),
    (wa_text("wamid.BAD", timestamp=_unix(datetime.now(UTC) + timedelta(days=2))),
     "timestamp: Value error, timestamp outside any plausible range"),
    (wa_text("wamid.BAD", timestamp="99999999999999999999"), "timestamp: Value error, a Unix time in seconds expected"),
    (wa_text("wamid.BAD", timestamp=1749416383.5), "timestamp: Value error, a Unix time in seconds expected"),
])
def test_a_bad_whatsapp_message_is_dropped_and_its_neighbours_are_queued(
        relay: tuple[str, Runtime], bad: dict[str, Any], problem: str, caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = relay
    body = wa_batch(wa_text("wamid.GOOD1", "first"), bad, wa_text("wamid.GOOD2", "second"))
    assert post_wa(url, json.dumps(body).encode()).status_code == 200
    assert read(runtime) == {"queued": 2, "duplicates": 0, "statuses": 0, "skipped": 1, "ignored": 0, "rejected": 0}
    assert texts(runtime, f"whatsapp:{ACCOUNT}:{SENDER}") == ["first", "second"]
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("whatsapp", "part"): 1.0}
    dropped = [r for r in caplog.records if r.getMessage() == "webhook part dropped"]
    assert [(r.channel, r.part, r.problems) for r in dropped] == [("whatsapp", "message", [problem])]  # type: ignore[attr-defined]
    assert SENDER not in caplog.text and "gizli" not in caplog.text and "Sheena" not in caplog.text


@pytest.mark.parametrize(("changes", "problem"), [
    ({"text": "gizli\x00metin"}, "message.text: Value error, text holds a NUL character"),
    ({"text": {"body": "not a string"}}, "message.text: string_type"),
    ({"chat": None}, "message.chat: missing"),
    ({"date": 1230000000}, "message.date: Value error, timestamp outside any plausible range"),
    ({"date": int((datetime.now(UTC) + timedelta(days=2)).timestamp())},
     "message.date: Value error, timestamp outside any plausible range"),
    ({"date": 1763800000.5}, "message.date: Value error, a Unix time in seconds expected"),
])
def test_a_bad_telegram_message_is_dropped_and_the_next_update_is_taken(
        relay: tuple[str, Runtime], changes: dict[str, Any], problem: str, caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = relay
    assert post_tg(url, json.dumps(tg_update(901, **changes)).encode()).status_code == 200
    assert read(runtime) == {"queued": 0, "duplicates": 0, "statuses": 0, "skipped": 1, "ignored": 0, "rejected": 0}
    assert post_tg(url, json.dumps(tg_update(902, text="fine")).encode()).status_code == 200
    assert read(runtime)["queued"] == 1
    account = TEST_SECRETS["telegram_bot_token"].split(":")[0]
    assert texts(runtime, f"telegram:{account}:111111111") == ["fine"]
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("telegram", "part"): 1.0}
    dropped = [r for r in caplog.records if r.getMessage() == "webhook part dropped"]
    assert [(r.channel, r.part, r.problems) for r in dropped] == [("telegram", "update", [problem])]  # type: ignore[attr-defined]
    assert "111111111" not in caplog.text and "Мария" not in caplog.text and "gizli" not in caplog.text


# -- too large, whatever the framing: 413 --------------------------------------------------------------
def _chunked(url: str, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``chunks`` with ``Transfer-Encoding: chunked`` and no Content-Length (http.client)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is on a socket; everything the relay answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)  # the request is complete: the server reads to its end, then closes
        except OSError:
            pass  # the relay may answer and close before the last bytes are sent
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_chunked_body_over_the_limit_gets_413_not_a_cut(relay: tuple[str, Runtime],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = relay
    # a real batch with a long message: once cut at the limit, it used to fail its signature check (403)
    body = json.dumps(wa_batch(wa_text("wamid.BIG", "x" * (3 * LIMIT)))).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    pieces = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    status, answer = _chunked(url, "/webhooks/whatsapp", pieces, headers)
    assert (status, json.loads(answer)) == (413, {"error": "body too large"})
    # the same on a raw socket, and to Telegram
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    answer = _raw_exchange(url, b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
                                b"X-Telegram-Bot-Api-Secret-Token: " + TG_SECRET.encode() + b"\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b'{"error": "body too large"}')
    # and with a Content-Length that says so: refused before the body is read
    assert post_wa(url, body).status_code == 413
    assert queued(runtime) == 0 and ready_count(runtime) == 0
    assert metrics.read(runtime.redis, "webhooks_rejected") == {("whatsapp", "413"): 2.0, ("telegram", "413"): 1.0}
    assert "request body refused" in caplog.text and "wamid.BIG" not in caplog.text


def test_a_chunked_body_within_the_limit_is_read_whole_and_taken(relay: tuple[str, Runtime]) -> None:
    url, runtime = relay
    body = json.dumps(wa_batch(wa_text("wamid.CH1", "y" * (LIMIT // 2)))).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    status, answer = _chunked(url, "/webhooks/whatsapp", [body[i:i + 700] for i in range(0, len(body), 700)], headers)
    assert status == 200 and json.loads(answer) == {"received": True, "duplicate": False}
    assert read(runtime)["queued"] == 1
    assert texts(runtime, f"whatsapp:{ACCOUNT}:{SENDER}") == ["y" * (LIMIT // 2)]


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
    b"Content-Length: 40\r\n\r\n{}",  # a body shorter than it says, then the client stops sending
])
def test_a_body_that_cannot_be_read_is_refused(relay: tuple[str, Runtime], framing: bytes) -> None:
    url, runtime = relay
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /webhooks/telegram HTTP/1.1\r\nHost: relay\r\nX-Telegram-Bot-Api-Secret-Token: "
                     + TG_SECRET.encode() + b"\r\n" + framing)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert queued(runtime) == 0 and ready_count(runtime) == 0


# -- the verify handshake ----------------------------------------------------------------------------
def _handshake(url: str, challenge: str, token: str = TEST_SECRETS["whatsapp_verify_token"]) -> requests.Response:
    return requests.get(f"{url}/webhooks/whatsapp", timeout=5, params={
        "hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge})


def test_the_challenge_is_echoed_as_plain_text_only(relay: tuple[str, Runtime]) -> None:
    url, _ = relay
    ok = _handshake(url, "1158201444")
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["Content-Type"].startswith("text/plain") and ok.headers["X-Content-Type-Options"] == "nosniff"
    for challenge in ["<script>alert(1)</script>", "1158201444\r\nSet-Cookie: a=b", "a b", "é", "9" * 129]:
        refused = _handshake(url, challenge)
        assert refused.status_code == 400 and refused.headers["Content-Type"].startswith("text/plain")
        assert "script" not in refused.text and "Set-Cookie" not in refused.headers
    wrong = _handshake(url, "<script>alert(1)</script>", token="nope")
    assert wrong.status_code in (400, 403) and wrong.headers["Content-Type"].startswith("text/plain")
    assert _handshake(url, "1158201444", token="nope").status_code == 403
