"""The retry policy (error kind and attempt → decision) and how a key family's TTL and placeholders are read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rq.timeouts import JobTimeoutException

from connector.config import Delivery
from connector.retry import backoff_delay, decide
from core.errors import AuthError, FatalError, RetryableError, SkippableError
from core.keys import KeyFamily, family

DELIVERY = Delivery(max_retries=3, backoff_base_seconds=2, backoff_max_seconds=60)


def test_each_kind_of_failure_has_one_answer() -> None:
    assert decide(RetryableError("503"), 0, DELIVERY).action == "retry"
    assert decide(RetryableError("503"), 3, DELIVERY).action == "exhausted"  # max_retries spent
    assert decide(SkippableError("opted out"), 0, DELIVERY).action == "skip"
    assert decide(FatalError("400"), 0, DELIVERY).action == "fail"
    assert decide(AuthError("401", setting="HUBSPOT_ACCESS_TOKEN"), 0, DELIVERY).action == "fail"
    assert decide(KeyError("a bug"), 0, DELIVERY).action == "fail"
    # the work ran past the job time-out (a slow CRM, each call within its own time-out): tried again
    assert decide(JobTimeoutException("Task exceeded maximum timeout value (10 seconds)"), 0, DELIVERY).action == "retry"
    assert decide(JobTimeoutException("again"), 3, DELIVERY).action == "exhausted"
    with pytest.raises(ValueError, match="attempt must be 0 or more"):
        decide(FatalError("x"), -1, DELIVERY)


def test_backoff_doubles_with_jitter_is_capped_and_honours_retry_after() -> None:
    for attempt, (low, high) in enumerate([(1, 2), (2, 4), (4, 8), (8, 16)]):
        delays = [backoff_delay(DELIVERY, attempt) for _ in range(50)]
        assert all(low <= d <= high for d in delays), (attempt, delays)
    assert all(30 <= backoff_delay(DELIVERY, 10) <= 60 for _ in range(50))  # the cap
    assert backoff_delay(DELIVERY, 0, retry_after=30) == 30  # never sooner than the API asked
    assert backoff_delay(DELIVERY, 0, retry_after=600) == 600  # even beyond the cap
    decision = decide(RetryableError("429", retry_after=7), 0, DELIVERY)
    assert decision.retry and decision.delay == 7


def test_a_ttl_names_seconds_or_a_setting_with_its_unit() -> None:
    config = SimpleNamespace(retention=SimpleNamespace(conversation_hours=72, dedup_days=7),
                             delivery=SimpleNamespace(job_timeout_seconds=120))
    hours = family("test-hours", "{x}", ttl="retention.conversation_hours", holds_pii=False, owner=__name__)
    days = family("test-days", "{x}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
    seconds = family("test-seconds", "{x}", ttl="delivery.job_timeout_seconds", holds_pii=False, owner=__name__)
    bounded = family("test-bounded", ttl=None, holds_pii=False, owner=__name__, bounded_by="one key")
    assert (hours.seconds(config), days.seconds(config), seconds.seconds(config)) == (72 * 3600, 7 * 86400, 120)
    assert bounded.seconds(config) is None and family("test-int", ttl=60, holds_pii=False, owner=__name__).seconds(
        config) == 60
    with pytest.raises(ValueError, match="ttl must name a setting"):
        KeyFamily("test-bad", "", "retention.forever", False, __name__)
    with pytest.raises(ValueError, match="positive number of seconds"):
        KeyFamily("test-bad", "", 0, False, __name__)


def test_placeholders_are_read_back_even_when_they_hold_colons() -> None:
    flood = family("test-flood", "{conversation}:{minute}", ttl=120, holds_pii=True, owner=__name__)
    assert flood.parse("c2c:test-flood:whatsapp:1065:905321112233:2938475") == {
        "conversation": "whatsapp:1065:905321112233", "minute": "2938475"}
    assert flood.parse("c2c:other:x:y") is None


def test_a_family_of_another_prefix_lives_beside_chat2crms_own() -> None:
    job = family("test-job", "{job}", ttl=None, holds_pii=True, owner="rq", bounded_by="rq's", prefix="rq:")
    ours = family("test-job", "{job}", ttl=60, holds_pii=False, owner=__name__)
    assert job.key("abc") == "rq:test-job:abc" and ours.key("abc") == "c2c:test-job:abc"
    assert job.matches("rq:test-job:abc") and not job.matches("c2c:test-job:abc")
