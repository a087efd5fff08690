"""A Redis connection that goes silent (a network cut that sends no reset) holds the web's webhooks for
seconds, not for good: they are answered 503 (the vendor redelivers), and once Redis answers again the
next webhook is kept on a fresh connection.

The web's appends share one Redis call at a time per process (:mod:`connector.keeper`): without a limit on
the wait, the request caught on the silent connection, and every later one queued behind it, would wait
forever. Redis is reached through a TCP relay that can go silent, in front of the test's real Redis.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from connector.app import create_app
from connector.inbox import INBOX
from connector.received import intake_key
from connector.runtime import WEB_REDIS_TIMEOUT_SECONDS, Runtime, set_current_runtime
from tests.conftest import make_settings
from tests.intake import kept
from tests.integration.test_webhooks import post_wa

#: the limit used here (the web's own is WEB_REDIS_TIMEOUT_SECONDS): the test waits on it twice
TIMEOUT = 0.5


class _SilentLink:
    """TCP in front of a Redis unix socket: forwards both ways until :meth:`cut`; cut, it keeps every
    connection open and drops whatever arrives, as a cable pulled out between two switches."""

    def __init__(self, unix_path: str) -> None:
        self._upstream = unix_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def mend(self) -> None:
        self._cut.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._upstream)
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self._cut.is_set():
                    target.sendall(data)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        for end in self._sockets:
            with contextlib.suppress(OSError):
                end.close()


@pytest.fixture
def link(redis_url: str) -> Iterator[_SilentLink]:
    path = urlparse(redis_url).path
    if not redis_url.startswith("unix://") or not Path(path).exists():
        pytest.skip("needs the tests' own Redis (REDIS_URL is set to another server)")
    made = _SilentLink(path)
    try:
        yield made
    finally:
        made.close()


def _webhook(number: int) -> bytes:
    return (b'{"object":"whatsapp_business_account","entry":[{"id":"106540352242922","changes":[{"field":"messages",'
            b'"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111",'
            b'"phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"A"},"wa_id":"4915100000001"}],'
            b'"messages":[{"from":"4915100000001","id":"wamid.T%d","timestamp":"1700000000","type":"text",'
            b'"text":{"body":"hi"}}]}}]}]}' % number)


def _post_all(client: Any, bodies: list[bytes], seconds: float) -> list[Any]:
    """Post ``bodies`` at once (each from its own thread, as the server's threads do); every answer must
    come within ``seconds``."""
    answers: list[Any] = [None] * len(bodies)

    def post(index: int) -> None:
        answers[index] = post_wa(client, bodies[index])

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)
    assert not any(thread.is_alive() for thread in threads), "a webhook still waits on the silent connection"
    return answers


def test_a_silent_redis_holds_the_web_s_webhooks_for_seconds_not_for_good(link: _SilentLink,
                                                                          redis_client: redis.Redis) -> None:
    assert 0 < WEB_REDIS_TIMEOUT_SECONDS <= 10  # under a vendor's own wait for the answer
    settings = make_settings(f"redis://127.0.0.1:{link.port}/0")
    runtime = Runtime(settings, redis_timeout=TIMEOUT)
    set_current_runtime(runtime)
    try:
        client = create_app({"TESTING": True}, runtime=runtime).test_client()
        assert kept(post_wa(client, _webhook(1)))
        link.cut()
        # one caught on the silent connection, the others queued behind it: all answered, none kept
        answers = _post_all(client, [_webhook(n) for n in (2, 3, 4)], seconds=10 * TIMEOUT + 5)
        assert [answer.status_code for answer in answers] == [503, 503, 503]
        assert all(answer.headers["Retry-After"] for answer in answers)
        link.mend()
        # the vendor's redelivery is kept, on a fresh connection
        answers = _post_all(client, [_webhook(n) for n in (2, 3, 4)], seconds=10)
        assert all(kept(answer) for answer in answers)
        assert redis_client.llen(INBOX.key(intake_key("whatsapp"))) == 4
    finally:
        set_current_runtime(None)
