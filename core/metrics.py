"""Metrics shared by every process (web, workers on several machines), kept in Redis.

rq runs each job in a forked work-horse and gunicorn runs several processes, so in-process
counters would be lost or split. Counters and histogram buckets live in Redis hashes instead, and
``/metrics`` renders them in the Prometheus text format at scrape time.

Use :func:`incr` and :func:`observe` with a name from :data:`METRICS`; an unknown name or label
set raises ``ValueError`` so that a typo cannot silently create a new series.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from core.keys import family

log = logging.getLogger("chat2crm.metrics")


@dataclass(frozen=True)
class MetricDef:
    """A metric's name, help text, kind and labels."""

    name: str
    help: str
    kind: str  # counter | histogram
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


METRICS: dict[str, MetricDef] = {m.name: m for m in [
    MetricDef("messages_in", "Patient messages accepted, by channel and kind.", "counter", ("channel", "kind")),
    MetricDef("duplicates_dropped", "Redelivered webhooks acknowledged and dropped.", "counter", ("channel",)),
    MetricDef("webhooks_rejected", "Webhook requests refused, by reason.", "counter", ("channel", "reason")),
    MetricDef("statuses", "Delivery status callbacks, by status.", "counter", ("channel", "status")),
    MetricDef("messages_out", "Messages sent to patients, by channel and outcome.", "counter",
              ("channel", "outcome")),
    MetricDef("flows", "Flows started, completed and handed over.", "counter", ("flow", "event")),
    MetricDef("crm_calls", "CRM API calls by adapter, operation and outcome.", "counter",
              ("adapter", "operation", "outcome")),
    MetricDef("retries", "Jobs scheduled again after a retryable error.", "counter", ("queue",)),
    MetricDef("jobs_failed", "Jobs moved to the failed registry.", "counter", ("queue",)),
    MetricDef("flood_limited", "Inbound messages held back by flood control.", "counter", ("scope",)),
    MetricDef("lead_seconds", "Time from a conversation's first message to its CRM record.", "histogram", (),
              (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)),
]}

SERIES = family("metrics", "{metric}", ttl=None, holds_pii=False, owner=__name__,
                bounded_by="one hash per metric of METRICS, one field per label set")


def _field(defn: MetricDef, labels: dict[str, str]) -> str:
    if set(labels) != set(defn.labels):
        raise ValueError(f"metric {defn.name!r} takes labels {defn.labels}, got {tuple(labels)}")
    return json.dumps([str(labels[k]) for k in defn.labels], ensure_ascii=False)


def _defn(name: str) -> MetricDef:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}") from None


def incr(client: redis.Redis, name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to counter ``name``. Never raises for Redis trouble (metrics are not worth a lost job)."""
    defn = _defn(name)
    field = _field(defn, labels)
    try:
        client.hincrbyfloat(SERIES.key(name), field, amount)
    except redis.RedisError as exc:
        log.warning("metric not recorded", extra={"metric": name, "error": type(exc).__name__})


def observe(client: redis.Redis, name: str, value: float, **labels: str) -> None:
    """Record one observation of histogram ``name``."""
    defn = _defn(name)
    base = _field(defn, labels)
    try:
        pipe = client.pipeline(transaction=False)
        for bound in defn.buckets:
            if value <= bound:
                pipe.hincrbyfloat(SERIES.key(name), f"{base}|le={bound}", 1)
        pipe.hincrbyfloat(SERIES.key(name), f"{base}|le=+Inf", 1)
        pipe.hincrbyfloat(SERIES.key(name), f"{base}|sum", value)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metric not recorded", extra={"metric": name, "error": type(exc).__name__})


def read(client: redis.Redis, name: str) -> dict[tuple[str, ...], float]:
    """The values of counter ``name`` by label values (tests and the CLI use this)."""
    raw = client.hgetall(SERIES.key(name))
    return {tuple(json.loads(k)): float(v) for k, v in raw.items() if b"|" not in k}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCollector(Collector):
    """A Prometheus collector that reads the shared metrics (and queue gauges) from Redis."""

    def __init__(self, client: redis.Redis, queues: Iterable[object] = ()) -> None:
        self.client = client
        self.queues = list(queues)

    def collect(self) -> Iterator[Any]:
        for defn in METRICS.values():
            raw = {_text(k): float(v) for k, v in self.client.hgetall(SERIES.key(defn.name)).items()}
            if defn.kind == "counter":
                family = CounterMetricFamily(f"chat2crm_{defn.name}", defn.help, labels=list(defn.labels))
                for field, value in raw.items():
                    family.add_metric(json.loads(field), value)
                yield family
                continue
            hist = HistogramMetricFamily(f"chat2crm_{defn.name}", defn.help, labels=list(defn.labels))
            series: dict[str, dict[str, float]] = {}
            for field, value in raw.items():
                base, _, part = field.partition("|")
                series.setdefault(base, {})[part] = value
            for base, parts in series.items():
                buckets = [(str(b), parts.get(f"le={b}", 0.0)) for b in defn.buckets]
                buckets.append(("+Inf", parts.get("le=+Inf", 0.0)))
                hist.add_metric(json.loads(base), buckets, parts.get("sum", 0.0))
            yield hist
        depth = GaugeMetricFamily("chat2crm_queue_depth", "Jobs waiting, by queue.", labels=["queue"])
        failed = GaugeMetricFamily("chat2crm_failed_jobs", "Jobs in the failed registry, by queue.",
                                   labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue.name], len(queue))  # type: ignore[attr-defined, arg-type]
            failed.add_metric([queue.name], queue.failed_job_registry.count)  # type: ignore[attr-defined]
        yield depth
        yield failed
