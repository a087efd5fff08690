"""What a worker knows of the published WhatsApp forms (a real Redis): read at most once a minute, only the form
the flow file describes now, and no form (questions instead) when Redis cannot be read."""

from __future__ import annotations

import pytest
import redis

from connector import forms
from connector.bot.form import form_name
from connector.runtime import Runtime
from core.settings import Settings

FLOW = "health_tourism_intake"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(forms.time, "monotonic", clock)
    return clock


def test_a_form_published_while_the_relay_runs_is_offered_within_a_minute(runtime: Runtime, clock: Clock) -> None:
    name = form_name(runtime.flows[FLOW], "en")
    known = forms.Published(runtime)
    assert known.form_id(FLOW, "en") is None  # nothing published yet: the steps are questions
    runtime.redis.hset(forms.PUBLISHED.key(), name, "1111")
    clock.now += forms.REFRESH_SECONDS - 1
    assert known.form_id(FLOW, "en") is None  # read a moment ago: not read again
    clock.now += 1
    assert known.form_id(FLOW, "en") == "1111"
    assert known.form_id(FLOW, "de") is None


def test_a_form_of_an_earlier_version_of_the_flow_is_never_offered(runtime: Runtime, clock: Clock) -> None:
    """The hash holds the name of what was published; an edited flow's form has another name until published."""
    runtime.redis.hset(forms.PUBLISHED.key(), f"{FLOW}_en_0123456789", "2222")
    assert forms.Published(runtime).form_id(FLOW, "en") is None
    assert forms.Published(runtime).form_id("no_such_flow", "en") is None


def test_redis_unreachable_means_questions_not_a_failure(settings: Settings, clock: Clock) -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    known = forms.Published(Runtime(settings, redis_client=unreachable))
    assert known.form_id(FLOW, "en") is None
