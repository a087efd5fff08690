"""Scripts run by their SHA1, hashed once per process, on whichever connection is given."""

from __future__ import annotations

import redis

from core import lua

_DOUBLE = "return tonumber(ARGV[1]) * 2 + redis.call('incr', KEYS[1])"


def test_a_script_is_kept_and_runs_on_any_connection_even_after_redis_forgot_it(redis_url: str,
                                                                                redis_client: redis.Redis) -> None:
    other = redis.Redis.from_url(redis_url)
    redis_client.config_resetstat()  # this test's commands only (the tests of one process run one at a time)
    assert lua.run(redis_client, _DOUBLE, keys=["test:n"], args=[5]) == 11
    kept = lua._KEPT[_DOUBLE]
    assert lua.run(other, _DOUBLE, keys=["test:n"], args=[5]) == 12 and lua._KEPT[_DOUBLE] is kept
    redis_client.script_flush()  # as after a restart: Redis no longer has it, the text is sent again
    assert lua.run(redis_client, _DOUBLE, keys=["test:n"], args=[1]) == 5
    calls = {name: int(stat["calls"]) for name, stat in redis_client.info("commandstats").items()}
    assert calls.get("cmdstat_evalsha", 0) >= 3 and calls.get("cmdstat_eval", 0) == 0  # never the text per call
