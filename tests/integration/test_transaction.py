"""A transaction with guards, and steps that read what comes next in the same atomic call."""

from __future__ import annotations

import redis

from connector.transaction import Transaction

# what a step sees: its own keys and arguments, after the transaction's commands ran
_READ_BACK = "function(K, A) return {redis.call('get', K[1]), A[1]} end"
_NOTHING = "function(K, A) return nil end"


def test_steps_run_after_the_commands_with_their_own_keys_and_answer_in_order(redis_client: redis.Redis) -> None:
    redis_client.set("test:lock", "me")
    tx = Transaction(redis_client).require_value("test:lock", "me")
    tx.pipe.set("test:state", "saved")
    tx.pipe.rpush("test:list", "a", "b")
    first = tx.then(_READ_BACK, ["test:state"], ["one"])
    second = tx.then(_NOTHING, [], [])
    third = tx.then("function(K, A) return redis.call('lindex', K[1], tonumber(A[1])) end", ["test:list"], [1])
    assert tx.commit()
    assert tx.answers[first] == [b"saved", b"one"]  # the step saw the command's write
    assert tx.answers[second] is None  # a step that answers nothing leaves its place empty, the next still counts
    assert tx.answers[third] == b"b"


def test_a_guard_that_fails_runs_neither_the_commands_nor_the_steps(redis_client: redis.Redis) -> None:
    redis_client.set("test:lock", "another")
    tx = Transaction(redis_client).require_value("test:lock", "me")
    tx.pipe.set("test:state", "saved")
    tx.then("function(K, A) redis.call('set', K[1], 'stepped') return 1 end", ["test:step"], [])
    assert not tx.commit()
    assert tx.answers == []
    assert not redis_client.exists("test:state") and not redis_client.exists("test:step")


def test_a_transaction_without_steps_answers_as_before(redis_client: redis.Redis) -> None:
    tx = Transaction(redis_client).require_absent("test:mark", 60)
    tx.pipe.set("test:state", "x")
    assert tx.commit() and tx.answers == []
    again = Transaction(redis_client).require_absent("test:mark", 60)
    again.pipe.set("test:state", "y")
    assert not again.commit() and redis_client.get("test:state") == b"x"
