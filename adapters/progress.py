"""Which steps of one lead's sync are done, so that a retry resumes where the last attempt stopped.

Under a CRM that fails often, writing every step again on each retry compounds the failures: the
contact written, the record failing, the contact written again… The progress log keeps, per lead
reference, the id each finished step produced (``contact``, ``record``); the retry takes them from
there. It is a Redis hash with its family's TTL, deleted when the sync completes: a later replay of
the same lead writes everything again, idempotently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.keys import KeyFamily

if TYPE_CHECKING:
    from redis import Redis


class ProgressLog:
    """The finished steps of one lead's sync.

    Args:
        family: the key family of progress logs (shape with one placeholder, the lead reference; TTL in seconds).
        redis: the shared connection (None: nothing is kept; every attempt starts afresh).
        reference: the lead's reference.

    Raises:
        ValueError: the family has no TTL in seconds, or the reference is empty.
    """

    def __init__(self, family: KeyFamily, redis: Redis | None, reference: str) -> None:
        if not isinstance(family.ttl, int) or family.ttl <= 0:
            raise ValueError(f"family must have a TTL in seconds, got {family.ttl!r}")
        if not reference:
            raise ValueError(f"reference must not be empty, got {reference!r}")
        self.key = family.key(reference)
        self.ttl = family.ttl
        self.redis = redis
        self._steps: dict[str, str] | None = None

    def steps(self) -> dict[str, str]:
        """Step → the id it produced, for every step an earlier attempt finished."""
        if self._steps is None:
            raw = self.redis.hgetall(self.key) if self.redis is not None else {}
            self._steps = {_text(k): _text(v) for k, v in raw.items()}
        return dict(self._steps)

    def get(self, step: str) -> str | None:
        """The id ``step`` produced in an earlier attempt, if it finished."""
        return self.steps().get(step)

    def record(self, step: str, value: str) -> None:
        """Note that ``step`` is done and produced ``value``."""
        self.steps()
        assert self._steps is not None
        self._steps[step] = value
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.key, step, value)
            pipe.expire(self.key, self.ttl)
            pipe.execute()

    def finish(self) -> None:
        """The sync completed: forget its steps."""
        self._steps = {}
        if self.redis is not None:
            self.redis.delete(self.key)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
