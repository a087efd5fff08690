"""Metrics shared by every process (web, workers on several machines), kept in Redis.

rq runs each job in a forked work-horse and gunicorn runs several processes, so in-process
counters would be lost or split. Counters and histogram buckets live in Redis hashes instead, and
``/metrics`` renders them in the Prometheus text format at scrape time.

Use :func:`incr` and :func:`observe` with a name from :data:`METRICS`; an unknown name or label
set raises ``ValueError`` so that a typo cannot silently create a new series.

A busy process may add its counts up in memory instead (:func:`batch_in_process`, what the worker's job
processes do): every second, one pipeline writes each series' sum once, rather than a command per count
(three a bot turn). A process killed outright loses at most its last second of counts; a flush that
meets a Redis failure keeps its counts for the next one.

The metrics marked ``hourly`` are also counted per hour (:data:`HOURS`, kept :data:`REPORT_DAYS` days), so
``chat2crm report`` can give the figures of a period without Prometheus: :func:`read_period` sums the hours
of a period, :func:`quantile` estimates a percentile from a histogram's buckets as PromQL's
``histogram_quantile`` does. :func:`exposed_names` lists the series ``/metrics`` exposes (dashboards and
alert rules are checked against it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
    #: also counted per hour, for ``chat2crm report`` (:data:`HOURS`)
    hourly: bool = False


METRICS: dict[str, MetricDef] = {m.name: m for m in [
    MetricDef("messages_in", "Patient messages accepted, by channel and kind.", "counter", ("channel", "kind")),
    MetricDef("duplicates_dropped", "Redelivered webhooks acknowledged and dropped.", "counter", ("channel",)),
    MetricDef("webhooks_rejected", "Webhook requests refused, by reason.", "counter", ("channel", "reason")),
    MetricDef("statuses", "Delivery status callbacks, by status.", "counter", ("channel", "status")),
    MetricDef("messages_out", "Messages sent to patients, by channel and outcome.", "counter",
              ("channel", "outcome")),
    MetricDef("flows", "Flows started, completed and handed over.", "counter", ("flow", "event"), hourly=True),
    MetricDef("crm_calls", "CRM API calls by adapter, operation and outcome.", "counter",
              ("adapter", "operation", "outcome")),
    MetricDef("retries", "Jobs scheduled again after a retryable error.", "counter", ("queue",)),
    MetricDef("jobs_failed", "Jobs moved to the failed registry.", "counter", ("queue",)),
    MetricDef("flood_limited", "Inbound messages held back by flood control.", "counter", ("scope",)),
    MetricDef("language_detections", "Languages detected while a conversation has none yet, by outcome.",
              "counter", ("language", "outcome")),
    MetricDef("lead_seconds", "Time from a conversation's first message to its CRM record.", "histogram", (),
              (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), hourly=True),
    # the clinic's figures: labels are bounded by the configuration (flows, languages, campaigns, questions),
    # anything else is counted as "other" (:mod:`connector.measures`)
    MetricDef("leads", "Requests the bot finished, by flow, language, campaign and outcome (completed, "
              "handed_over), and the bot's rollout level and split group.", "counter",
              ("flow", "language", "campaign", "outcome", "rollout", "group"), hourly=True),
    MetricDef("handoffs", "Conversations handed to a person, by flow, reason, rollout level and split group.",
              "counter", ("flow", "reason", "rollout", "group"), hourly=True),
    MetricDef("dropoffs", "Conversations that went quiet mid-flow for longer than the resume window, by flow and "
              "the question they stopped at, rollout level and split group.", "counter", ("flow", "step", "rollout", "group"),
              hourly=True),
    MetricDef("agent_reply_seconds", "Time from a request's completion or handoff to the first agent reply sent "
              "to the patient.", "histogram", (),
              (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800), hourly=True),
    # completeness on first pass, time to CRM and to owner, by rollout level and group (:mod:`connector.completeness`)
    MetricDef("leads_first_pass", "Leads in the CRM, by whether every required field was collected (outcome: "
              "complete, incomplete).", "counter", ("flow", "language", "campaign", "rollout", "group", "outcome"),
              hourly=True),
    MetricDef("leads_missing_fields", "Required fields missing when a lead reached the CRM, by field.", "counter",
              ("flow", "field"), hourly=True),
    MetricDef("fields_asked_again", "Required fields of a lead asked again (once per lead and field), by field and "
              "how (crm_edit, agent_question).", "counter", ("flow", "field", "via", "rollout", "group"), hourly=True),
    MetricDef("leads_asked_again", "Leads with a required field asked again (once per lead), by whether they were "
              "complete on first pass.", "counter", ("flow", "language", "campaign", "rollout", "group", "first_pass"),
              hourly=True),
    MetricDef("time_to_crm_seconds", "Time from a conversation's first message to its lead in the CRM.", "histogram",
              ("flow", "language", "campaign", "rollout", "group"),
              (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), hourly=True),
    MetricDef("time_to_owner_seconds", "Time from a conversation's first message to the first agent reply sent.",
              "histogram", ("flow", "language", "campaign", "rollout", "group"),
              (60, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800), hourly=True),
]}

SERIES = family("metrics", "{metric}", ttl=None, holds_pii=False, owner=__name__,
                bounded_by="one hash per metric of METRICS, one field per label set")
#: how long the hourly counts are kept: the longest period ``chat2crm report`` covers
REPORT_DAYS = 93
_HOURS_TTL = REPORT_DAYS * 86400
#: the hourly counts of the ``hourly`` metrics: one hash per hour (``2026120314``, UTC), one field per series
HOURS = family("metrics-hour", "{hour}", ttl=_HOURS_TTL, holds_pii=False, owner=__name__)
#: the gauges ``/metrics`` adds (read from rq at scrape time, not kept in Redis)
GAUGES: dict[str, tuple[str, ...]] = {"queue_depth": ("queue",), "failed_jobs": ("queue",)}


def hour_of(moment: float) -> str:
    """The hour (UTC) a Unix time falls in, as :data:`HOURS` names it: ``2026120314``."""
    return time.strftime("%Y%m%d%H", time.gmtime(moment))


def _field(defn: MetricDef, labels: dict[str, str]) -> str:
    if set(labels) != set(defn.labels):
        raise ValueError(f"metric {defn.name!r} takes labels {defn.labels}, got {tuple(labels)}")
    return json.dumps([str(labels[k]) for k in defn.labels], ensure_ascii=False)


def _defn(name: str) -> MetricDef:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}") from None


class _Pending:
    """Counts added up in this process until the next flush (:func:`batch_in_process`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: redis.Redis | None = None
        self.stop = threading.Event()
        #: (hash key, field) -> amount; the hour hashes among them get their TTL when flushed
        self.amounts: dict[tuple[str, str], float] = {}

    def add(self, amounts: dict[tuple[str, str], float]) -> bool:
        """Add ``amounts`` if this process batches. Returns whether it does."""
        if self.client is None:
            return False
        with self.lock:
            for place, amount in amounts.items():
                self.amounts[place] = self.amounts.get(place, 0.0) + amount
        return True


_PENDING = _Pending()


def batch_in_process(client: redis.Redis, every: float = 1.0) -> None:
    """From now on, add this process's counts up in memory and write them to ``client`` every ``every``
    seconds, one pipeline per flush, from a daemon thread. Call :func:`flush` before the process exits."""
    if _PENDING.client is not None:
        return
    _PENDING.client = client
    stop = _PENDING.stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            flush()

    threading.Thread(target=run, name="chat2crm-metrics", daemon=True).start()


def stop_batching() -> None:
    """Write what is pending and count straight to Redis again (a process that stops batching)."""
    flush()
    _PENDING.stop.set()
    _PENDING.client = None


def flush() -> int:
    """Write the counts added up so far (nothing when this process does not batch). Never raises: on a Redis
    failure the counts are kept for the next flush. Returns how many series fields were written."""
    client = _PENDING.client
    if client is None:
        return 0
    with _PENDING.lock:
        amounts, _PENDING.amounts = _PENDING.amounts, {}
    if not amounts:
        return 0
    try:
        pipe = client.pipeline(transaction=False)
        for (key, field), amount in amounts.items():
            pipe.hincrbyfloat(key, field, amount)
        for key in {key for key, _ in amounts if HOURS.parse(key) is not None}:
            pipe.expire(key, _HOURS_TTL)
        pipe.execute()
    except redis.RedisError as exc:
        _PENDING.add(amounts)  # tried again at the next flush (a pipeline that failed may have applied part)
        log.warning("metrics not recorded yet", extra={"error": type(exc).__name__, "series": len(amounts)})
        return 0
    return len(amounts)


def counter_field(name: str, **labels: str) -> tuple[str, str]:
    """Where counter ``name`` with ``labels`` is kept: its hash and field, for a caller that adds to it inside a
    Lua script of its own (one round trip for its work and the count). Only for counters not counted per hour.

    Raises:
        ValueError: an unknown name, the wrong labels, or a histogram or ``hourly`` counter.
    """
    defn = _defn(name)
    if defn.kind != "counter" or defn.hourly:
        raise ValueError(f"metric {name!r} is not a counter kept only in total")
    return SERIES.key(name), _field(defn, labels)


def incr(client: redis.Redis, name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to counter ``name``. Never raises for Redis trouble (metrics are not worth a lost job)."""
    defn = _defn(name)
    field = _field(defn, labels)
    batched = {(SERIES.key(name), field): amount}
    if defn.hourly:
        batched[(HOURS.key(hour_of(time.time())), f"{name}|{field}")] = amount
    if _PENDING.add(batched):
        return
    try:
        if not defn.hourly:
            client.hincrbyfloat(SERIES.key(name), field, amount)
            return
        pipe = client.pipeline(transaction=False)
        pipe.hincrbyfloat(SERIES.key(name), field, amount)
        _count_hour(pipe, {f"{name}|{field}": amount})
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metric not recorded", extra={"metric": name, "error": type(exc).__name__})


def observe(client: redis.Redis, name: str, value: float, **labels: str) -> None:
    """Record one observation of histogram ``name``."""
    defn = _defn(name)
    base = _field(defn, labels)
    parts = {f"{base}|le={bound}": 1.0 for bound in defn.buckets if value <= bound}
    parts[f"{base}|le=+Inf"] = 1.0
    parts[f"{base}|sum"] = value
    batched = {(SERIES.key(name), part): amount for part, amount in parts.items()}
    if defn.hourly:
        hour = HOURS.key(hour_of(time.time()))
        batched.update({(hour, f"{name}|{part}"): amount for part, amount in parts.items()})
    if _PENDING.add(batched):
        return
    try:
        pipe = client.pipeline(transaction=False)
        for part, amount in parts.items():
            pipe.hincrbyfloat(SERIES.key(name), part, amount)
        if defn.hourly:
            _count_hour(pipe, {f"{name}|{part}": amount for part, amount in parts.items()})
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metric not recorded", extra={"metric": name, "error": type(exc).__name__})


def _count_hour(pipe: Any, amounts: dict[str, float]) -> None:
    """Add ``amounts`` (field → amount) to this hour's hash, in the caller's pipeline."""
    key = HOURS.key(hour_of(time.time()))
    for hour_field, amount in amounts.items():
        pipe.hincrbyfloat(key, hour_field, amount)
    pipe.expire(key, _HOURS_TTL)


@dataclass
class Histogram:
    """One histogram's counts over a period: cumulative bucket counts (by upper bound), their sum and count."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0

    @property
    def count(self) -> float:
        """How many observations (the ``+Inf`` bucket)."""
        return self.buckets.get(float("inf"), 0.0)

    def add(self, other: Histogram) -> None:
        """Add ``other``'s counts to these."""
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count
        self.sum += other.sum


@dataclass
class Period:
    """The hourly metrics summed over a period: counters and histograms by metric, then by label values."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    histograms: dict[str, dict[tuple[str, ...], Histogram]] = field(default_factory=dict)
    #: the hours read (oldest first), as :func:`hour_of` names them
    hours: list[str] = field(default_factory=list)

    def counter(self, name: str) -> dict[tuple[str, ...], float]:
        """Counter ``name`` by label values (empty when nothing was counted)."""
        return self.counters.get(name, {})

    def histogram(self, name: str) -> Histogram:
        """Histogram ``name``, every label set added together."""
        total = Histogram()
        for part in self.histograms.get(name, {}).values():
            total.add(part)
        return total


def read_period(client: redis.Redis, since: float, until: float | None = None) -> Period:
    """The ``hourly`` metrics counted from the hour of ``since`` to the hour of ``until`` (now), summed."""
    end = time.time() if until is None else until
    hours: list[str] = []
    moment = since - since % 3600
    while moment <= end:
        hours.append(hour_of(moment))
        moment += 3600
    pipe = client.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(HOURS.key(hour))
    period = Period(hours=hours)
    for raw in pipe.execute():
        for key, value in raw.items():
            _add_to_period(period, _text(key), float(value))
    return period


def _add_to_period(period: Period, hour_field: str, value: float) -> None:
    name, _, rest = hour_field.partition("|")
    defn = METRICS.get(name)
    if defn is None:
        return  # a metric of another version of the relay
    if defn.kind == "counter":
        series = period.counters.setdefault(name, {})
        labels = tuple(json.loads(rest))
        series[labels] = series.get(labels, 0.0) + value
        return
    base, _, part = rest.rpartition("|")
    histogram = period.histograms.setdefault(name, {}).setdefault(tuple(json.loads(base)), Histogram())
    if part == "sum":
        histogram.sum += value
    elif part.startswith("le="):
        bound = float(part[3:])  # float("+Inf") is infinity
        histogram.buckets[bound] = histogram.buckets.get(bound, 0.0) + value


def quantile(q: float, histogram: Histogram) -> float | None:
    """The ``q`` quantile (0.5, 0.95) of a histogram's observations, interpolated within its bucket as
    PromQL's ``histogram_quantile`` does; None without observations. One past the last finite bound is
    given as that bound."""
    total = histogram.count
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in sorted(histogram.buckets):
        count = histogram.buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def exposed_names() -> dict[str, tuple[str, ...]]:
    """Every series name ``/metrics`` exposes, with its labels: counters as ``chat2crm_<name>_total``,
    histograms as their ``_bucket`` (with ``le``), ``_sum`` and ``_count``, and the gauges."""
    names: dict[str, tuple[str, ...]] = {}
    for defn in METRICS.values():
        base = f"chat2crm_{defn.name}"
        if defn.kind == "counter":
            names[f"{base}_total"] = defn.labels
        else:
            names[f"{base}_bucket"] = (*defn.labels, "le")
            names[f"{base}_sum"] = defn.labels
            names[f"{base}_count"] = defn.labels
    for gauge, labels in GAUGES.items():
        names[f"chat2crm_{gauge}"] = labels
    return names


def read(client: redis.Redis, name: str) -> dict[tuple[str, ...], float]:
    """The values of counter ``name`` by label values (tests and the CLI use this)."""
    raw = client.hgetall(SERIES.key(name))
    return {tuple(json.loads(k)): float(v) for k, v in raw.items() if b"|" not in k}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCollector(Collector):
    """A Prometheus collector that reads the shared metrics (and queue gauges) from Redis.

    Args:
        queues: the rq queues whose depth and failed jobs are gauged.
        also_waiting: per queue name, a Redis list whose length adds to that queue's depth (work that waits
            there instead of as rq jobs: the relay's ready conversations count as ``inbound``).
    """

    def __init__(self, client: redis.Redis, queues: Iterable[object] = (),
                 also_waiting: dict[str, str] | None = None) -> None:
        self.client = client
        self.queues = list(queues)
        self.also_waiting = dict(also_waiting or {})

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
        depth = GaugeMetricFamily("chat2crm_queue_depth", "Jobs waiting, by queue.",
                                  labels=list(GAUGES["queue_depth"]))
        failed = GaugeMetricFamily("chat2crm_failed_jobs", "Jobs in the failed registry, by queue.",
                                   labels=list(GAUGES["failed_jobs"]))
        for queue in self.queues:
            name = queue.name  # type: ignore[attr-defined]
            extra = int(self.client.llen(self.also_waiting[name])) if name in self.also_waiting else 0
            depth.add_metric([name], len(queue) + extra)  # type: ignore[arg-type]
            failed.add_metric([queue.name], queue.failed_job_registry.count)  # type: ignore[attr-defined]
        yield depth
        yield failed
