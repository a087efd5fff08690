"""Retry policy, the one place: what a failure of kind X on attempt N means (pure: no I/O, no clock).

- :class:`~core.errors.RetryableError` (429, 5xx, time-outs), Redis failing under the work (a restart,
  a fail-over), or the work running past the job time-out (rq's ``JobTimeoutException``: a CRM slow
  enough that its calls, each within its own time-out, add up past it; the work is idempotent): again
  after an exponential backoff with full jitter, never sooner than the API's ``retry_after``, up to
  ``delivery.max_retries``; then the work is given up (``exhausted``);
- :class:`~core.errors.SkippableError`: the work is moot (``skip``);
- anything else (:class:`~core.errors.FatalError`, a bug): retrying cannot help (``fail``).

The jobs (:mod:`connector.jobs`) carry the decision out: schedule the retry, or record the failure
where ``chat2crm failed list`` shows it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import redis
from rq.timeouts import JobTimeoutException

from connector.config import Delivery
from core.errors import RetryableError, SkippableError

#: the failures worth trying again, the work left where it was (a message at its inbox's head, a lead pending)
TRANSIENT = (RetryableError, redis.RedisError, JobTimeoutException)


@dataclass(frozen=True)
class Decision:
    """What to do after a failure: ``retry`` after ``delay`` seconds, ``skip``, ``fail`` or ``exhausted``."""

    action: Literal["retry", "skip", "fail", "exhausted"]
    delay: float = 0.0

    @property
    def retry(self) -> bool:
        """Whether the work is to be tried again."""
        return self.action == "retry"


def decide(exc: BaseException, attempt: int, delivery: Delivery) -> Decision:
    """The decision for ``exc`` raised by the ``attempt``-th try (0 for the first).

    Raises:
        ValueError: ``attempt`` is negative.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, got {attempt!r}")
    if isinstance(exc, TRANSIENT):
        if attempt >= delivery.max_retries:
            return Decision("exhausted")
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        return Decision("retry", backoff_delay(delivery, attempt, retry_after))
    if isinstance(exc, SkippableError):
        return Decision("skip")
    return Decision("fail")


def backoff_delay(delivery: Delivery, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter (between half and all of ``base * 2**attempt``, capped at
    ``backoff_max_seconds``), never shorter than what the API asked for."""
    ceiling = min(delivery.backoff_max_seconds, delivery.backoff_base_seconds * (2 ** attempt))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(delivery.backoff_max_seconds, retry_after or 0))
