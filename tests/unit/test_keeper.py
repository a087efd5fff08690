"""The web process's grouped writes (connector.keeper): requests that arrive during a write share the next
call; each request gets its own answer; a failed call fails its group alone; no request is left waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from connector.inbox import Entry
from connector.keeper import Keeper


def entry(n: int) -> Entry:
    return Entry("@whatsapp", f"body {n}".encode(), f"seen:{n}", 3600)


class Store:
    """A write function that records each call; the first call can be held until released, so that the
    other requests queue behind it; ``fail_call`` makes that call (1-based) fail."""

    def __init__(self, hold_first: bool = False, fail_call: int | None = None,
                 answer: Callable[[Sequence[Entry]], list[bool]] | None = None) -> None:
        self.calls: list[list[bytes]] = []
        self.seen: set[str] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_call = fail_call
        self.answer = answer

    def __call__(self, entries: Sequence[Entry]) -> list[bool]:
        self.calls.append([e.item for e in entries])
        self.started.set()
        assert self.release.wait(10)
        if len(self.calls) == self.fail_call:
            raise ConnectionError("Redis went away")
        if self.answer is not None:
            return self.answer(entries)
        kept = []
        for e in entries:
            kept.append(e.seen_key not in self.seen)
            self.seen.add(e.seen_key)
        return kept


def run_all(keeper: Keeper, numbers: list[int]) -> tuple[dict[int, object], list[threading.Thread]]:
    results: dict[int, object] = {}

    def one(n: int) -> None:
        try:
            results[n] = keeper.keep(entry(n))
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    return results, threads


def queue_behind_a_held_write(store: Store, keeper: Keeper, others: list[int]) -> tuple[dict[int, object], list[threading.Thread]]:
    """Request 0 writes alone and is held inside its call; ``others`` arrive meanwhile and queue."""
    first, first_threads = run_all(keeper, [0])
    assert store.started.wait(5)
    results, threads = run_all(keeper, others)
    deadline = time.monotonic() + 5
    while len(keeper._queued) < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(keeper._queued) == len(others)
    store.release.set()
    for thread in first_threads + threads:
        thread.join(10)
        assert not thread.is_alive(), "a request was left waiting"
    return {**first, **results}, threads


def test_a_request_alone_writes_at_once_in_its_own_call() -> None:
    store = Store()
    keeper = Keeper(store)
    assert keeper.keep(entry(1)) is True
    assert keeper.keep(entry(1)) is False  # seen before: the store's answer is the request's
    assert store.calls == [[b"body 1"], [b"body 1"]] and (keeper.calls, keeper.entries) == (2, 2)


def test_requests_arriving_during_a_write_share_the_next_call_and_each_gets_its_own_answer() -> None:
    store = Store(hold_first=True)
    keeper = Keeper(store)
    results, _ = queue_behind_a_held_write(store, keeper, [1, 2, 3, 4, 5, 3])
    # the first call held request 0; the six that came meanwhile went in one call, in arrival order
    assert len(store.calls) == 2 and store.calls[0] == [b"body 0"]
    assert sorted(store.calls[1]) == sorted(f"body {n}".encode() for n in (1, 2, 3, 4, 5, 3))
    assert results[0] is True and all(results[n] is True for n in (1, 2, 4, 5))
    assert (keeper.calls, keeper.entries) == (2, 7)


def test_the_same_body_twice_in_one_group_is_kept_once() -> None:
    store = Store(hold_first=True)
    keeper = Keeper(store)
    answers: list[object] = []
    _, threads = run_all(keeper, [0])
    assert store.started.wait(5)
    twins = [threading.Thread(target=lambda: answers.append(keeper.keep(entry(7)))) for _ in range(2)]
    for thread in twins:
        thread.start()
    while len(keeper._queued) < 2:
        time.sleep(0.005)
    store.release.set()
    for thread in threads + twins:
        thread.join(10)
    assert sorted(answers, key=bool) == [False, True]


def test_a_group_is_at_most_max_group_and_the_rest_follows_in_the_next_call() -> None:
    store = Store(hold_first=True)
    keeper = Keeper(store, max_group=4)
    results, _ = queue_behind_a_held_write(store, keeper, list(range(1, 11)))
    assert [len(call) for call in store.calls] == [1, 4, 4, 2]
    assert all(results[n] is True for n in range(11))


def test_a_failed_call_fails_its_group_alone_and_the_next_group_is_still_written() -> None:
    store = Store(hold_first=True, fail_call=2)
    keeper = Keeper(store, max_group=3)
    results, _ = queue_behind_a_held_write(store, keeper, [1, 2, 3, 4, 5])
    failed = {n for n, r in results.items() if isinstance(r, ConnectionError)}
    # the second call (three requests) failed; the first and the third were kept
    assert len(failed) == 3 and [len(call) for call in store.calls] == [1, 3, 2]
    assert {n for n, r in results.items() if r is True} == set(range(6)) - failed
    # the keeper goes on: the next request writes at once
    assert keeper.keep(entry(9)) is True and not keeper._writing


def test_a_write_that_answers_wrongly_fails_its_requests_and_leaves_none_waiting() -> None:
    keeper = Keeper(Store(answer=lambda entries: [True] * (len(entries) + 1)))
    with pytest.raises(ValueError):
        keeper.keep(entry(1))
    assert not keeper._writing and not keeper._queued
