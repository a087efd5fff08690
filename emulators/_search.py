"""What a CRM's search endpoints see: a write becomes searchable only some time after it is made.

HubSpot's CRM search and Pipedrive's search are served from indexes updated asynchronously: a
record created, changed or deleted appears so in search some seconds later (so the relay must never
decide "did my write happen?" by searching). An emulator with
``search_lag`` set answers its search endpoints from a :class:`SearchIndex`: each object as it was
``lag`` seconds ago, or not at all when it did not exist then. Reads by id and lists stay current.

Objects an emulator holds that no API write has touched (put there by a test or the demo, "as an
earlier conversation left them") are searchable at once.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from typing import Any


class SearchIndex:
    """The searchable state of an emulator's objects, ``lag`` seconds behind their real state.

    Args:
        lag: seconds between a write and its appearing in search (0: search sees every write at once).

    Raises:
        ValueError: ``lag`` is negative.
    """

    def __init__(self, lag: float = 0.0) -> None:
        self.lag = lag
        #: (kind, id) → [(searchable from (monotonic), the object then, or None when it did not exist)]
        self._history: dict[tuple[str, str], list[tuple[float, Any]]] = {}

    @property
    def lag(self) -> float:
        """Seconds between a write and its appearing in search."""
        return self._lag

    @lag.setter
    def lag(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"lag must be 0 or more seconds, got {value!r}")
        self._lag = float(value)

    def written(self, kind: str, object_id: object, after: Any, *, before: Any = None) -> None:
        """Note an API write of one object: ``after`` is the object now (None: deleted), ``before`` what it was
        (None: it did not exist). Call it holding the emulator's lock."""
        if self._lag <= 0:
            return
        key = (kind, str(object_id))
        history = self._history.setdefault(key, [(-math.inf, copy.deepcopy(before))])
        now = time.monotonic()
        history.append((now + self._lag, copy.deepcopy(after)))
        _trim(history, now)

    def visible(self, kind: str, live: dict[str, Any]) -> Iterable[Any]:
        """The objects of ``kind`` as search sees them now (``live`` holds them by id as they really are).
        Call it holding the emulator's lock."""
        if self._lag <= 0:
            yield from live.values()
            return
        now = time.monotonic()
        seen = set()
        for object_id in [*live, *(i for k, i in self._history if k == kind and i not in live)]:
            if object_id in seen:
                continue
            seen.add(object_id)
            history = self._history.get((kind, str(object_id)))
            if history is None:
                yield live[object_id]
                continue
            _trim(history, now)
            if history[0][1] is not None:
                yield history[0][1]


def _trim(history: list[tuple[float, Any]], now: float) -> None:
    """Drop the states no search can see any more: those older than the latest one searchable ``now``."""
    searchable = [i for i, (since, _) in enumerate(history) if since <= now]
    del history[:searchable[-1]]
