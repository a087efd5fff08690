"""Jobs that misbehave, for the worker supervisor's test (run by name in the job processes)."""

from __future__ import annotations

import os
import signal
import time

import redis

from connector.runtime import current_runtime

#: memory a leaking job keeps for good (module level: it outlives the job, as a real leak does)
_KEPT: list[bytearray] = []


def _client() -> redis.Redis:
    return current_runtime().redis


def record(label: str) -> int:
    """Note which process ran the job ``label``."""
    _client().rpush("test:ran", f"{label} {os.getpid()}")
    return os.getpid()


def hang() -> None:
    """Stay busy where rq's time-out (SIGALRM) cannot reach: the signal is blocked."""
    _client().rpush("test:hung", str(os.getpid()))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(3600)


def leak(megabytes: int) -> None:
    """Keep ``megabytes`` of memory after the job ends."""
    _KEPT.append(bytearray(os.urandom(1024)) * (megabytes * 1024))
    _client().rpush("test:leaked", str(os.getpid()))


def balloon(megabytes: int) -> None:
    """Grow to ``megabytes`` and stay in the job (signals blocked), as a runaway allocation does."""
    _client().rpush("test:ballooned", str(os.getpid()))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    kept = [bytearray(os.urandom(1024)) * (megabytes * 1024)]
    time.sleep(3600)
    kept.clear()
