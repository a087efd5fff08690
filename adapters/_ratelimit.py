"""A CRM's request budget, shared by every worker process through Redis.

CRMs count requests per account (HubSpot's ten-second limit, Pipedrive's two-second burst window),
not per process, so the limiter lives in Redis: a sorted set of recent calls per window, checked
and appended in one Lua script, and an optional "pause until" key that an adapter sets when the
CRM says its budget is spent (``x-ratelimit-remaining: 0``) so that every worker waits.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from core import lua
from core.errors import RetryableError
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

_SCRIPT = """
local now = tonumber(ARGV[1]); local window = tonumber(ARGV[2]); local limit = tonumber(ARGV[3])
local pause = tonumber(redis.call('get', KEYS[2]) or '0')
if pause > now then return tostring(pause - now) end
redis.call('zremrangebyscore', KEYS[1], '-inf', now - window)
if redis.call('zcard', KEYS[1]) < limit then
  redis.call('zadd', KEYS[1], now, ARGV[4]); redis.call('pexpire', KEYS[1], math.ceil(window * 1000) + 1000)
  return 0
end
local oldest = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""
_tickets = itertools.count()
#: within :func:`spare_budget_only`: the share of a window's budget such calls may use (None: any, waiting)
_SPARE: ContextVar[float | None] = ContextVar("chat2crm_spare_budget", default=None)
#: the longest pause a CRM's answer can put every worker in (a longer wait is the job layer's)
MAX_PAUSE = 60.0
#: the calls made in one window of one API (a sorted set; ``window`` is ``all`` or a window of its own)
WINDOWS = family("ratelimit", "{api}:calls:{window}", ttl="options.rate_limit.per_seconds", holds_pii=False,
                 owner=__name__)
#: the calls made to an API's search endpoints, which have a budget of their own (Pipedrive's)
SEARCH_WINDOWS = family("ratelimit", "{api}:calls:search", ttl="options.search_rate_limit.per_seconds",
                        holds_pii=False, owner=__name__)
#: until when every worker waits before calling an API again
PAUSES = family("ratelimit", "{api}:pause", ttl=int(MAX_PAUSE) + 1, holds_pii=False, owner=__name__)


@contextlib.contextmanager
def spare_budget_only(share: float = 0.5) -> Iterator[None]:
    """Calls made in this block use only the budget nobody needs: each takes a slot at once while fewer than
    ``share`` of the window's calls are spent, and otherwise fails at once (a :class:`RetryableError`) instead
    of waiting. For calls that are a nicety (the bot's look-up of a returning patient): in a spike they step
    aside, so that neither the patient's reply nor the lead writes wait for them.

    Raises:
        ValueError: ``share`` is not between 0 and 1.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be more than 0 and at most 1, got {share!r}")
    token = _SPARE.set(share)
    try:
        yield
    finally:
        _SPARE.reset(token)


class SharedRateLimiter:
    """At most ``requests`` calls in any ``seconds``, across every process sharing ``redis``.

    Args:
        redis: the shared connection (None: no limit, for one-off commands without Redis).
        api: names the CRM in errors and in the Redis keys (``hubspot``, ``pipedrive``).
        requests: calls allowed per window (at least 1).
        seconds: the window's length (more than 0).
        window: a name for this window when an API has several (Pipedrive's searches have their own).
        max_wait: the longest a call waits for a slot before it is handed back to the job layer.

    Raises:
        ValueError: ``requests`` or ``seconds`` out of range.
    """

    def __init__(self, redis: Redis | None, api: str, requests: int, seconds: float, *, window: str = "",
                 max_wait: float = 120.0) -> None:
        if requests < 1:
            raise ValueError(f"requests must be at least 1, got {requests!r}")
        if seconds <= 0:
            raise ValueError(f"seconds must be more than 0, got {seconds!r}")
        self.redis = redis
        self.api = api
        self.requests = requests
        self.seconds = seconds
        # The CRM counts a call when it arrives, we when we send it: a small margin on the window keeps a
        # call that travelled slowly from landing in the next window's count.
        self.window_seconds = seconds + max(0.05, seconds * 0.03)
        self.max_wait = max_wait
        self.key = SEARCH_WINDOWS.key(api) if window == "search" else WINDOWS.key(api, window or "all")
        self.pause_key = PAUSES.key(api)

    def acquire(self) -> None:
        """Wait for a slot (within :func:`spare_budget_only`: take a spare one now, or fail at once).

        Raises:
            RetryableError: no slot within ``max_wait`` (carries how long to wait).
        """
        if self.redis is None:
            return
        share = _SPARE.get()
        limit = self.requests if share is None else max(1, math.floor(self.requests * share))
        deadline = time.monotonic() + self.max_wait
        while True:
            now = time.time()
            wait = float(lua.run(
                self.redis, _SCRIPT,
                keys=[self.key, self.pause_key],
                args=[now, self.window_seconds, limit, f"{now}:{id(self)}:{next(_tickets)}"]))
            if wait <= 0:
                return
            if share is not None:
                raise RetryableError(f"{self.api}: no spare budget for a call that can wait", retry_after=wait)
            if time.monotonic() + wait > deadline:
                raise RetryableError(f"{self.api}: local rate limit busy", retry_after=wait)
            time.sleep(min(wait, 1.0) + 0.005)

    def pause(self, seconds: float) -> None:
        """Make every worker wait ``seconds`` (at most :data:`MAX_PAUSE`) before its next call (the CRM said the
        budget is spent)."""
        seconds = min(seconds, MAX_PAUSE)
        if self.redis is not None and seconds > 0:
            self.redis.set(self.pause_key, str(time.time() + seconds), px=int(seconds * 1000) + 100)
