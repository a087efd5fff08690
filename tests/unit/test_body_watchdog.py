"""The web process's body watchdog (:mod:`connector.request_body`): a read past its deadline is stopped, and a
read that ends in time costs the watchdog's thread no wake-up of its own."""

from __future__ import annotations

import socket
import threading
import time

from connector.request_body import _Watchdog


class _CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def test_reads_in_time_do_not_wake_the_watchdog_and_a_late_one_is_still_stopped() -> None:
    watchdog = _Watchdog()
    counting = watchdog._wake = _CountingCondition()
    pairs = [socket.socketpair() for _ in range(41)]
    try:
        first = watchdog.watch(pairs[0][0], 0.3)
        time.sleep(0.05)  # the thread started, and sleeps until that deadline
        first.done()
        for ours, _theirs in pairs[1:40]:  # more bodies read in time (same timeout: each deadline after the last)
            watchdog.watch(ours, 0.3).done()
            time.sleep(0.002)  # as requests come: the thread may look at them meanwhile, none wakes it
        assert counting.notified == 0
        late, client = pairs[40]
        started = time.monotonic()
        watch = watchdog.watch(late, 0.5)
        client.sendall(b"part of a body")  # ... and then nothing more
        assert late.recv(100) == b"part of a body"
        assert late.recv(100) == b""  # the watchdog shut the read down at its deadline
        assert watch.expired and 0.45 <= time.monotonic() - started < 3
        with counting:
            assert watchdog._due == []  # the reads that ended were dropped on the way
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_an_earlier_deadline_wakes_the_watchdog_sooner() -> None:
    watchdog = _Watchdog()
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        (slow, _a), (quick, _b) = pairs
        watchdog.watch(slow, 30.0)  # the thread sleeps for up to 30 s...
        started = time.monotonic()
        watch = watchdog.watch(quick, 0.2)  # ...until a read due sooner comes
        assert quick.recv(100) == b""
        assert watch.expired and time.monotonic() - started < 3
    finally:
        for a, b in pairs:
            a.close()
            b.close()
