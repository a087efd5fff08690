"""A lock in Redis with an owner token: taken with ``SET NX PX``, extended and released only by its owner.

One class for every mutual exclusion of the relay: a conversation's turn, its outbox's delivery, a
lead's CRM write, the sweeper's lease. The module that owns the lock's key family declares it (with
its TTL); a lock never outlives its TTL, so a killed holder's lock frees itself.

:func:`take_head` and :func:`next_head` drain a list (an inbox, an outbox) under a lock in two calls per
item rather than four: taking the lock comes with the list's head, and each next head comes with the
lock's extension, or, once the list is empty, with the lock let go and the list dropped from its work list.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Literal

import redis

from core import lua

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""

# The lock taken with up to ARGV[4] heads (one: an inbox, an outbox; a batch: a channel's intake).
# KEYS: the lock, the list, its work list. ARGV: the token, the lock's TTL (ms), the list's member, how many.
_TAKE_HEADS = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local heads = redis.call('lrange', KEYS[2], 0, tonumber(ARGV[4]) - 1)
if #heads > 0 then return {1, unpack(heads)} end
redis.call('del', KEYS[1])
redis.call('zrem', KEYS[3], ARGV[3])
return {2}
"""
# After an item or a batch: the ARGV[4] items handled popped (none: a turn pops its own), if the lock is
# still this owner's and they are still the first ones (the first and the last compared by SHA1: a replay
# may have put an item in front), with their failed tries forgotten; then up to ARGV[7] heads with the lock
# extended (0: none, the lock only extended), or the list empty, the lock let go and the list off its work list.
# KEYS: the lock, the list, its work list, the tries' counter. ARGV: token, TTL (ms), member, handled count,
# SHA1 of the first handled, SHA1 of the last handled, how many heads.
_POP_NEXT_HEADS = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return {0} end
local done = tonumber(ARGV[4])
if done > 0 then
  local first = redis.call('lindex', KEYS[2], 0)
  local last = redis.call('lindex', KEYS[2], done - 1)
  if first and last and redis.sha1hex(first) == ARGV[5] and redis.sha1hex(last) == ARGV[6] then
    redis.call('ltrim', KEYS[2], done, -1)
    redis.call('del', KEYS[4])
  end
end
local want = tonumber(ARGV[7])
local heads = {}
if want > 0 then heads = redis.call('lrange', KEYS[2], 0, want - 1) end
if want == 0 or #heads > 0 then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return {1, unpack(heads)}
end
redis.call('del', KEYS[1])
redis.call('zrem', KEYS[3], ARGV[3])
return {2}
"""
#: what :func:`take_head` and :func:`next_head` found: the lock is another's (``"locked"``), the list's head
#: with the lock held (``"head"``), or an empty list, the lock let go and the work list without it (``"done"``)
Found = Literal["locked", "head", "done"]
_FOUND: tuple[Found, ...] = ("locked", "head", "done")


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
        return bool(lua.run(self.client, _EXTEND, [self.key], [self.token, self.ttl_ms]))

    def release(self) -> None:
        """Let go of the lock if this owner still holds it (never frees another owner's lock)."""
        lua.run(self.client, _RELEASE, [self.key], [self.token])

    def held(self) -> bool:
        """Whether this owner holds the lock now."""
        value = self.client.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes) else str(value)) == self.token


def take_head(lock: Lock, list_key: str, work_list: str, member: str) -> tuple[Found, bytes | None]:
    """Take ``lock`` and read the head of the list ``list_key``, in one call. An empty list is dropped from
    ``work_list`` (a sorted set where it is ``member``) and the lock let go at once.

    Returns:
        What was found, and the head when it is ``"head"``.
    """
    found, heads = take_heads(lock, list_key, work_list, member, 1)
    return found, heads[0] if heads else None


def next_head(lock: Lock, list_key: str, work_list: str, member: str) -> tuple[Found, bytes | None]:
    """After an item: the list's new head with ``lock`` held for another full TTL, or, when the list is
    empty, the lock let go and the list dropped from ``work_list``, in one call; ``"locked"`` when the lock
    was lost (its new holder goes on).

    Returns:
        What was found, and the head when it is ``"head"``.
    """
    found, heads = next_heads(lock, list_key, work_list, member, handled=(), attempts="", count=1)
    return found, heads[0] if heads else None


def take_heads(lock: Lock, list_key: str, work_list: str, member: str, count: int) -> tuple[Found, list[bytes]]:
    """As :func:`take_head`, with up to ``count`` heads, oldest first (a list whose items are handled in
    batches: a channel's intake)."""
    return _batch(lua.run(lock.client, _TAKE_HEADS, keys=[lock.key, list_key, work_list],
                          args=[lock.token, lock.ttl_ms, member, count]))


def next_heads(lock: Lock, list_key: str, work_list: str, member: str, *, handled: Sequence[bytes], attempts: str,
               count: int) -> tuple[Found, list[bytes]]:
    """After a batch: pop the ``handled`` items (if the lock is still this owner's and they are still the
    list's first ones) and delete the key ``attempts`` (their failed tries), then return up to ``count`` heads
    with the lock held for another full TTL, in one call. With ``count`` 0 no head is read and the lock is
    kept whatever is left (``"head"``, no items); otherwise an empty list lets the lock go and leaves
    ``work_list`` (``"done"``). ``"locked"``: the lock was lost, nothing popped (its new holder handles the
    items again).
    """
    first = hashlib.sha1(handled[0], usedforsecurity=False).hexdigest() if handled else ""
    last = hashlib.sha1(handled[-1], usedforsecurity=False).hexdigest() if handled else ""
    return _batch(lua.run(lock.client, _POP_NEXT_HEADS, keys=[lock.key, list_key, work_list, attempts],
                          args=[lock.token, lock.ttl_ms, member, len(handled), first, last, count]))


def _batch(answer: list[int | bytes]) -> tuple[Found, list[bytes]]:
    return _FOUND[int(answer[0])], [item if isinstance(item, bytes) else str(item).encode() for item in answer[1:]]
