"""The CRM request budget shared by every worker through Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from adapters._ratelimit import SharedRateLimiter
from core.errors import RetryableError


def test_rejects_an_impossible_limit(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="requests must be at least 1, got 0"):
        SharedRateLimiter(redis_client, "hubspot", 0, 10)
    with pytest.raises(ValueError, match="seconds must be more than 0"):
        SharedRateLimiter(redis_client, "hubspot", 5, 0)


def test_several_workers_share_one_window(redis_client: redis.Redis) -> None:
    workers = [SharedRateLimiter(redis_client, "hubspot", 5, 0.5) for _ in range(3)]  # as three processes would
    stamps: list[float] = []
    lock = threading.Lock()

    def work(limiter: SharedRateLimiter) -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert len(stamps) == 15
    # never more than 5 calls in any half second, whichever worker made them
    assert all(later - earlier >= 0.5 for earlier, later in zip(stamps, stamps[5:], strict=False))
    assert stamps[-1] - stamps[0] < 2.5  # and no slower than the limit requires (two more windows, and margin)


def test_a_pause_holds_every_worker_and_a_long_wait_goes_back_to_the_job_layer(redis_client: redis.Redis) -> None:
    first, second = (SharedRateLimiter(redis_client, "pipedrive", 100, 2, max_wait=5) for _ in range(2))
    first.pause(0.4)  # the CRM said the budget is spent
    start = time.monotonic()
    second.acquire()
    assert time.monotonic() - start >= 0.35
    first.pause(30)
    with pytest.raises(RetryableError) as info:
        second.acquire()
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30


def test_without_redis_there_is_no_limit() -> None:
    limiter = SharedRateLimiter(None, "hubspot", 1, 60)
    limiter.acquire()
    limiter.acquire()


def test_spare_budget_calls_step_aside_at_once(redis_client: redis.Redis) -> None:
    """Within ``spare_budget_only(0.5)`` a call takes one of the first half of the window's slots, or fails at once
    with how long it would have waited; outside it, calls still use the whole budget."""
    from adapters._ratelimit import spare_budget_only

    limiter = SharedRateLimiter(redis_client, "hubspot", 10, 30)
    for _ in range(4):
        limiter.acquire()
    with spare_budget_only(0.5):
        limiter.acquire()  # the fifth: still spare
        started = time.monotonic()
        with pytest.raises(RetryableError, match="no spare budget") as refused:
            limiter.acquire()
        assert time.monotonic() - started < 1.0 and refused.value.retry_after
    for _ in range(5):  # the writes keep the other half
        limiter.acquire()
    limiter.pause(20)
    with spare_budget_only(), pytest.raises(RetryableError):  # a paused CRM: nothing spare either
        limiter.acquire()
    with pytest.raises(ValueError, match="share must be"), spare_budget_only(0):
        pass
