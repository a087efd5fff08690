"""A Redis transaction with a condition: buffered commands run in one Lua script, all or none.

MULTI/EXEC applies a batch atomically but cannot make it conditional; WATCH can, at the price of
a retry loop. A Lua script is one transaction as MULTI/EXEC is, and may check first. Stores add
their commands to :attr:`Transaction.pipe` (rq adds its enqueues there too, which is why this is a
redis-py pipeline), guards say what must hold, and :meth:`Transaction.commit` runs it::

    tx = Transaction(client)
    tx.require_head(inbox_key, raw)          # the message is still the inbox's head…
    tx.require_value(lock_key, token)        # …and this worker still holds the lock
    tx.pipe.set(state_key, state, ex=ttl)
    committed = tx.commit()

A guard that fails applies nothing, so committing twice (a re-run after a crash, a second worker)
cannot apply a turn twice.
"""

from __future__ import annotations

from typing import Any

import redis

from core import lua

# KEYS: one per guard. ARGV: the number of guards, then each guard's operator and argument, then the
# buffered commands, each as its length followed by its words. "absent" guards set their key (with a TTL in
# seconds) after every other guard held, so a failed guard leaves nothing behind.
_SCRIPT = """
local guards = tonumber(ARGV[1])
for j = 1, guards do
  local op, arg = ARGV[2 * j], ARGV[2 * j + 1]
  if op == 'head' then
    if redis.call('lindex', KEYS[j], 0) ~= arg then return 0 end
  elseif op == 'value' then
    if redis.call('get', KEYS[j]) ~= arg then return 0 end
  elseif op == 'absent' then
    if redis.call('exists', KEYS[j]) == 1 then return 0 end
  end
end
for j = 1, guards do
  if ARGV[2 * j] == 'absent' then redis.call('set', KEYS[j], '1', 'EX', ARGV[2 * j + 1]) end
end
local i = 2 * guards + 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class Transaction:
    """Commands buffered on :attr:`pipe`, applied in one atomic step if every guard holds.

    Args:
        client: the Redis connection the transaction runs on.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pipe: redis.client.Pipeline = client.pipeline(transaction=True)
        self.pipe.multi()  # rq joins an open transaction; it would otherwise run its commands at once
        self._keys: list[str] = []
        self._guards: list[Any] = []

    def require_head(self, list_key: str, value: bytes | str) -> Transaction:
        """Apply only if ``value`` is still the first element of the list ``list_key``."""
        self._keys.append(list_key)
        self._guards += ["head", value]
        return self

    def require_value(self, key: str, value: bytes | str) -> Transaction:
        """Apply only if the string ``key`` holds ``value`` (a lock still held by its owner)."""
        self._keys.append(key)
        self._guards += ["value", value]
        return self

    def require_absent(self, key: str, ttl_seconds: int) -> Transaction:
        """Apply only if ``key`` does not exist; then set it, with a TTL (a de-duplication mark)."""
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be more than 0, got {ttl_seconds!r}")
        self._keys.append(key)
        self._guards += ["absent", ttl_seconds]
        return self

    def commit(self) -> bool:
        """Apply the buffered commands if every guard holds (one round trip).

        Returns:
            Whether they were applied.

        Raises:
            redis.RedisError: Redis failed; nothing was applied (a script runs whole or not at all).
        """
        flat: list[Any] = [len(self._keys), *self._guards]
        for args, _options in self.pipe.command_stack:
            flat.append(len(args))
            flat.extend(args)
        self.pipe.reset()
        return bool(lua.run(self.client, _SCRIPT, keys=self._keys, args=flat))  # by its SHA1
