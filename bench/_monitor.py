"""Redis's MONITOR, counting what the relay sends apart from what its scripts run inside (the benchmarks and
the test of a message's round trips)."""

from __future__ import annotations

import threading
from collections import Counter

import redis


class Monitor:
    """Every command Redis receives while it runs (MONITOR: slow, so never during a timed run), told apart: sent
    by a client (one round trip each, a script counting once) or run inside a script."""

    END = "end-of-count"

    def __init__(self, url: str) -> None:
        self.sent: Counter[str] = Counter()
        self.in_scripts = 0
        self._client, self._other = redis.Redis.from_url(url), redis.Redis.from_url(url)
        self._other.ping()  # connected before the count starts
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._started.set()
            for command in monitor.listen():
                words = command["command"].split()
                if words == ["ECHO", self.END]:
                    return
                if command.get("client_address") == "lua":
                    self.in_scripts += 1
                elif words and words[0] != "MONITOR":
                    self.sent[words[0].upper()] += 1

    def __enter__(self) -> Monitor:
        self._thread.start()
        self._started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._other.echo(self.END)
        self._thread.join(10)
        self._client.close()
        self._other.close()
