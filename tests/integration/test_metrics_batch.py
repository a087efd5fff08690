"""A job process adds its counts up in memory and writes each series once a second: the same figures, far
fewer Redis commands, and nothing lost when Redis fails for a moment."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from core import metrics


@pytest.fixture
def batching(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    metrics.batch_in_process(redis_client, every=3600)  # flushed by the test itself
    yield redis_client
    metrics.stop_batching()


def _commands(client: redis.Redis) -> int:
    return sum(int(stat["calls"]) for stat in client.info("commandstats").values())


def test_counts_are_summed_in_memory_and_written_once_per_series(batching: redis.Redis) -> None:
    client = batching
    for _ in range(50):
        metrics.incr(client, "messages_in", channel="whatsapp", kind="text")
        metrics.incr(client, "flows", flow="meeting_request", event="started")  # hourly: its hour's hash too
    metrics.observe(client, "lead_seconds", 4.0)
    assert metrics.read(client, "messages_in") == {}  # nothing written yet
    before = _commands(client)
    written = metrics.flush()
    used = _commands(client) - before - 1  # INFO itself
    # messages_in; flows and its hour's field; the histogram's 9 buckets at or above 4 s, +Inf and sum, and
    # the same in its hour's hash
    assert written == 1 + 2 + 11 * 2
    assert used <= written + 2  # one command per field, the hour's TTL: not one per count
    assert metrics.read(client, "messages_in") == {("whatsapp", "text"): 50.0}
    period = metrics.read_period(client, time.time() - 60)
    assert period.counter("flows") == {("meeting_request", "started"): 50.0}
    assert period.histogram("lead_seconds").count == 1.0
    hour_key = metrics.HOURS.key(metrics.hour_of(time.time()))
    assert 0 < client.ttl(hour_key) <= metrics.REPORT_DAYS * 86400
    assert metrics.flush() == 0  # nothing left


def test_a_flush_that_meets_a_redis_failure_keeps_its_counts(batching: redis.Redis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = batching
    metrics.incr(client, "messages_in", channel="telegram", kind="text", amount=3)

    def broken(self: redis.client.Pipeline, *args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(redis.client.Pipeline, "execute", broken)
    assert metrics.flush() == 0
    monkeypatch.undo()
    metrics.incr(client, "messages_in", channel="telegram", kind="text")
    assert metrics.flush() == 1
    assert metrics.read(client, "messages_in") == {("telegram", "text"): 4.0}


def test_without_batching_a_count_is_written_at_once(redis_client: redis.Redis) -> None:
    metrics.incr(redis_client, "messages_in", channel="whatsapp", kind="image")
    assert metrics.read(redis_client, "messages_in") == {("whatsapp", "image"): 1.0}
