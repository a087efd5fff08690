"""Lua scripts run by their SHA1, each hashed once per process.

``client.register_script(text)`` makes a new ``Script`` each time, hashing the whole text (a few dozen
microseconds for the longer scripts, on every webhook and every turn). :func:`run` keeps one ``Script`` per
text and calls it on whichever client is given: EVALSHA, and the text itself only when Redis does not have it
yet (after a restart, or a ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

_KEPT: dict[str, Script] = {}
_LOCK = threading.Lock()


def run(client: redis.Redis | Any, text: str, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
    """Run the Lua script ``text`` on ``client`` (a connection or a pipeline) with ``keys`` and ``args``.

    Raises:
        redis.RedisError: Redis failed, or the script raised an error.
    """
    script = _KEPT.get(text)
    if script is None:
        with _LOCK:
            script = _KEPT.setdefault(text, Script(client, text))
    return script(keys=list(keys), args=list(args), client=client)
