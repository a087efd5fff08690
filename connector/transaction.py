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

Steps (:meth:`Transaction.then`) are small Lua functions that run after the commands, in the same call,
and answer something (:attr:`Transaction.answers`): a turn's commit also brings the inbox's next message
and takes the outbox for its reply, so that a message costs a few round trips rather than a dozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from core import lua

# KEYS: one per guard, then each step's keys. ARGV: the number of guards, then each guard's operator and
# argument, then the number of buffered commands and each as its length followed by its words, then each
# step's key and argument counts followed by its arguments. "absent" guards set their key (with a TTL in
# seconds) after every other guard held, so a failed guard leaves nothing behind. The steps (Lua functions of
# their keys and arguments, spliced in where the text says STEPS) run after the commands, in the same atomic
# step; the script answers 1, or with steps {1, each step's answer}.
_BODY = """
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
local commands = tonumber(ARGV[i])
i = i + 1
for _ = 1, commands do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
local steps = {STEPS}
if #steps == 0 then return 1 end
local answers, k = {1}, guards
for s = 1, #steps do
  local nk, na = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local K, A = {}, {}
  for j = 1, nk do K[j] = KEYS[k + j] end
  for j = 1, na do A[j] = ARGV[i + 1 + j] end
  k, i = k + nk, i + 2 + na
  answers[s + 1] = steps[s](K, A) or false
end
return answers
"""
_SCRIPTS: dict[tuple[str, ...], str] = {}


def _script(steps: tuple[str, ...]) -> str:
    text = _SCRIPTS.get(steps)
    if text is None:  # one text per combination of steps, so that its digest is computed once
        text = _SCRIPTS.setdefault(steps, _BODY.replace("STEPS", ",\n".join(steps)))
    return text


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
        self._steps: list[tuple[str, list[Any], list[Any]]] = []
        #: each step's answer, in the order they were added (after a commit that applied)
        self.answers: list[Any] = []

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

    def then(self, step: str, keys: Sequence[str], args: Sequence[Any]) -> int:
        """Run ``step`` in the same atomic step, after the buffered commands, if every guard held: a Lua function
        ``function(K, A) ... end`` of its own keys ``K`` and arguments ``A``, whose answer (a nil as false) lands
        in :attr:`answers`. What a turn reads for its next round (the next message, the outbox to send) comes
        with its commit this way instead of in calls of its own. Returns the answer's index."""
        self._steps.append((step, list(keys), list(args)))
        return len(self._steps) - 1

    def commit(self) -> bool:
        """Apply the buffered commands (and run the steps) if every guard holds (one round trip).

        Returns:
            Whether they were applied.

        Raises:
            redis.RedisError: Redis failed; nothing was applied (a script runs whole or not at all).
        """
        flat: list[Any] = [len(self._keys), *self._guards, len(self.pipe.command_stack)]
        for args, _options in self.pipe.command_stack:
            flat.append(len(args))
            flat.extend(args)
        self.pipe.reset()
        keys = list(self._keys)
        for _step, step_keys, step_args in self._steps:
            keys += step_keys
            flat += [len(step_keys), len(step_args), *step_args]
        text = _script(tuple(step for step, _keys, _args in self._steps))
        answer = lua.run(self.client, text, keys=keys, args=flat)  # by its SHA1
        if isinstance(answer, list):
            self.answers = list(answer[1:])
            return True
        return bool(answer)
