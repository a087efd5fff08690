"""Webhooks an emulator sends on its own, later, from one background thread (as a vendor's platform does).

:class:`WebhookSender` posts each scheduled body at its due time, earliest first (ties in the order they
were scheduled), and tells a test when everything scheduled has been posted (:meth:`WebhookSender.wait`),
so no test sleeps to find out.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("chat2crm.emulators")


class WebhookSender:
    """Posts webhook bodies in the background, each no sooner than its due time.

    Args:
        post: posts one body (it handles its own errors; one that escapes is logged and dropped).
        name: the thread's name.
    """

    def __init__(self, post: Callable[[dict[str, Any]], Any], name: str) -> None:
        self._post = post
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._pending = 0  # scheduled, or being posted
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, body: dict[str, Any], delay: float = 0.0) -> float:
        """Post ``body`` ``delay`` seconds from now (or later, behind what is due before it).

        Returns:
            Its due time (``time.monotonic()``).
        """
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            heapq.heappush(self._queue, (due, next(self._order), body))
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return due

    def _next(self) -> dict[str, Any] | None:
        """The next body once it is due; None when closed."""
        with self._cond:
            while not self._closed:
                if self._queue:
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._queue)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        while (body := self._next()) is not None:
            try:
                self._post(body)
            except Exception:  # the thread outlives any one webhook
                log.exception("emulator webhook not posted")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def wait(self, timeout: float = 5.0) -> bool:
        """Wait until everything scheduled has been posted; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        """Webhooks scheduled and not yet posted."""
        with self._cond:
            return self._pending

    def close(self) -> None:
        """Stop the thread; what is still scheduled is not posted."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
