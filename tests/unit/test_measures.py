"""The clinic's figures keep `/metrics` bounded (a label the configuration does not name is `other`), and the
report's percentiles are read from histogram buckets as PromQL's `histogram_quantile` reads them."""

from __future__ import annotations

import click
import pytest

from connector import measures
from connector.bot.engine import LANGUAGE_STEP
from connector.commands.report import bar, duration, parse_since
from connector.runtime import Runtime
from core.metrics import Histogram, exposed_names, quantile
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    """The shipped configuration (no Redis: labels read the configuration only)."""
    return Runtime(make_settings("redis://127.0.0.1:1/0"))


def test_labels_are_bounded_by_the_configuration(runtime: Runtime) -> None:
    assert measures.flow_label(runtime, "meeting_request") == "meeting_request"
    assert measures.flow_label(runtime, "a-flow-removed-since") == "other"
    assert measures.language_label(runtime, "tr") == "tr"
    assert (measures.language_label(runtime, "fr"), measures.language_label(runtime, None)) == ("other", "none")
    assert measures.campaign_label(runtime, "meeting-tr") == "meeting-tr"
    assert (measures.campaign_label(runtime, "x" * 40), measures.campaign_label(runtime, None)) == ("other", "none")
    assert measures.step_label(runtime, "meeting_request", "company") == "company"
    assert measures.step_label(runtime, "meeting_request", LANGUAGE_STEP) == "language"
    assert measures.step_label(runtime, "meeting_request", "treatment") == "other"  # not a question of that flow
    assert measures.reason_label(runtime, "meeting_request", "patient_request") == "patient_request"
    assert measures.reason_label(runtime, "meeting_request", "option:whatever") == "other"
    assert measures.reason_label(runtime, "meeting_request", "<script>") == "other"


def test_the_new_series_are_exposed_with_their_labels() -> None:
    names = exposed_names()
    assert names["chat2crm_leads_total"] == ("flow", "language", "campaign", "outcome", "rollout", "group")
    assert names["chat2crm_dropoffs_total"] == ("flow", "step", "rollout", "group")
    assert names["chat2crm_agent_reply_seconds_bucket"] == ("le",)
    assert names["chat2crm_queue_depth"] == ("queue",)


def test_percentiles_are_interpolated_within_their_bucket() -> None:
    histogram = Histogram(buckets={1.0: 0.0, 2.0: 10.0, 5.0: 20.0, float("inf"): 20.0}, sum=50.0)
    assert quantile(0.5, histogram) == 2.0
    assert quantile(0.25, histogram) == 1.5
    assert quantile(0.75, histogram) == 3.5
    beyond = Histogram(buckets={1.0: 0.0, float("inf"): 4.0})
    assert quantile(0.5, beyond) == 1.0  # past the last bound: that bound, as Prometheus gives it
    assert quantile(0.5, Histogram()) is None


def test_the_reports_words_and_bars() -> None:
    assert [duration(v) for v in (None, 4.25, 45, 210, 5400, 172800)] == ["-", "4.2 s", "45 s", "3.5 min", "1.5 h",
                                                                          "2.0 d"]
    assert bar(10, 10, width=4) == "████" and bar(1, 16, width=4) == "▎" and bar(0, 10) == ""
    assert parse_since("7d") == 7 * 86400 and parse_since("24h") == 86400
    for wrong in ("0d", "7", "1y", "200w"):
        with pytest.raises(click.BadParameter, match=r"24h, 7d, 2w|days of counts"):
            parse_since(wrong)
