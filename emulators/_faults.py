"""What every CRM emulator shares: the calls it received, the requests the vendor would reject,
injected faults and latency, rolling-window rate limits, and search that lags behind writes.

Each emulator answers a fault in its vendor's own words; this module only decides *which* fault
the next call gets (the next one asked for with :meth:`FaultInjection.fail_next`, or one drawn at
random at ``fault_rate``) and whether a call fits in a rate-limit window.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from typing import Any, ClassVar

from emulators._search import SearchIndex

#: a call asked to pass (``fail_next(…, after=n)``): no fault, not even a random one
_PASS = "pass"


class FaultInjection:
    """Mixin of the CRM emulators. Subclasses name the fault kinds they answer in ``FAULTS``.

    Args:
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the call.
        rate_limit: ``(requests, seconds)`` the emulated account allows, or None.
        search_lag: seconds before a write shows in the vendor's search endpoints (see :mod:`emulators._search`).
    """

    #: the kinds :meth:`fail_next` accepts (the vendor-specific ones included)
    FAULTS: ClassVar[frozenset[str]] = frozenset({"400", "401", "404", "409", "429", "500", "502", "503", "timeout"})

    def _init_faults(self, *, latency: float, timeout_seconds: float, rate_limit: tuple[int, float] | None,
                     search_lag: float = 0.0) -> None:
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError(f"rate_limit must be (requests >= 1, seconds > 0), got {rate_limit!r}")
        #: what the search endpoints see (``search_lag`` seconds behind the writes)
        self.search_index = SearchIndex(search_lag)
        self.latency = latency
        self.timeout_seconds = timeout_seconds
        self.rate_limit = rate_limit
        self.lock = threading.RLock()
        #: every call received: method, path, time, status (and what an emulator adds)
        self.calls: list[dict[str, Any]] = []
        #: requests the vendor would have rejected (tests assert there are none)
        self.violations: list[dict[str, Any]] = []
        self.faults: deque[str] = deque()
        #: share of calls that fail at random, and how (a list of fail_next kinds)
        self.fault_rate = 0.0
        self.fault_kinds: list[str] = ["429", "500", "timeout"]
        self._random = random.Random(7)  # the same faults on every run
        self.window: deque[float] = deque()

    @property
    def search_lag(self) -> float:
        """Seconds before a write shows in search (settable while serving)."""
        return self.search_index.lag

    @search_lag.setter
    def search_lag(self, value: float) -> None:
        self.search_index.lag = value

    def fail_next(self, count: int = 1, kind: str = "500", *, after: int = 0) -> None:
        """Make the next ``count`` calls fail with ``kind`` (one of ``FAULTS``), once ``after`` calls have passed.

        Raises:
            ValueError: ``kind`` is not a fault this emulator answers, or ``after`` is negative.
        """
        if kind not in self.FAULTS:
            raise ValueError(f"kind must be one of {sorted(self.FAULTS)}, got {kind!r}")
        if after < 0:
            raise ValueError(f"after must be 0 or more calls, got {after!r}")
        with self.lock:
            self.faults.extend([_PASS] * after + [kind] * count)

    def _record_call(self, **extra: Any) -> None:
        """Record the call being served (its status is filled in by :meth:`_record_status`)."""
        from flask import g, request

        call = {"method": request.method, "path": request.path, "at": time.time(), "status": None, **extra}
        with self.lock:
            self.calls.append(call)
        g.emulator_call = call  # this request's own record, whatever other threads are serving

    def _record_status(self, status: int) -> None:
        """The status the call recorded by :meth:`_record_call` was answered with."""
        from flask import g

        call = g.get("emulator_call")
        if call is not None:
            with self.lock:
                call["status"] = status

    def _draw_fault(self) -> str | None:
        """Wait the added latency, then the fault this call gets (None: none), noted on its record."""
        from flask import g, has_app_context

        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
            if fault is None and self.fault_rate and self._random.random() < self.fault_rate:
                fault = self._random.choice(self.fault_kinds)
            if fault == _PASS:
                fault = None
            call = g.get("emulator_call") if has_app_context() else None
            if call is not None:
                call["fault"] = fault
        return fault

    def _fits(self, window: deque[float], limit: tuple[int, float] | None) -> bool:
        """Whether one more call fits in the rolling ``window`` (counted when it does). Hold ``lock``."""
        if limit is None:
            return True
        now = time.monotonic()
        while window and now - window[0] > limit[1]:
            window.popleft()
        if len(window) >= limit[0]:
            return False
        window.append(now)
        return True
