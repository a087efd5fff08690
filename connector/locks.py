"""A lock in Redis with an owner token: taken with ``SET NX PX``, extended and released only by its owner.

One class for every mutual exclusion of the relay: a conversation's turn, its outbox's delivery, a
lead's CRM write, the sweeper's lease. The module that owns the lock's key family declares it (with
its TTL); a lock never outlives its TTL, so a killed holder's lock frees itself.
"""

from __future__ import annotations

import uuid

import redis

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class Lock:
    """A lock on ``key`` that expires after ``ttl_seconds`` unless extended.

    Args:
        client: the Redis connection.
        key: the lock's Redis key (built from its owner's key family).
        ttl_seconds: how long the lock holds without being extended (more than 0).

    Raises:
        ValueError: an empty key or a TTL that is not positive.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float) -> None:
        if not key:
            raise ValueError(f"key must not be empty, got {key!r}")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be more than 0, got {ttl_seconds!r}")
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        """Take the lock if it is free. Returns whether this owner now holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        """Hold the lock for another full TTL. Returns False when it was lost (expired, taken by another)."""
        return bool(self.client.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        """Let go of the lock if this owner still holds it (never frees another owner's lock)."""
        self.client.eval(_RELEASE, 1, self.key, self.token)

    def held(self) -> bool:
        """Whether this owner holds the lock now."""
        value = self.client.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes) else str(value)) == self.token
