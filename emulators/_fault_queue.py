"""The next faults a channel emulator answers with (the CRM emulators have theirs in :mod:`emulators._faults`).

:meth:`FaultQueue.fail_next` queues ``count`` calls of one kind; each call the emulator serves takes the next
with :meth:`FaultQueue._take_fault` and answers it in its vendor's own words.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar


class FaultQueue:
    """Mixin of a channel emulator (a dataclass with a ``lock`` and a ``faults`` list)."""

    #: the kinds :meth:`fail_next` accepts; empty: any (the emulator answers what it knows)
    FAULTS: ClassVar[frozenset[str]] = frozenset()
    #: the kind :meth:`fail_next` queues when none is named
    DEFAULT_FAULT: ClassVar[str] = "500"

    lock: AbstractContextManager[Any]
    #: ``[kind, calls left]``, oldest first
    faults: list[list[Any]]

    def fail_next(self, count: int = 1, kind: str | None = None) -> None:
        """Make the next ``count`` calls fail with ``kind`` (one of :attr:`FAULTS`).

        Raises:
            ValueError: ``kind`` is not one of them.
        """
        kind = kind or self.DEFAULT_FAULT
        if self.FAULTS and kind not in self.FAULTS:
            raise ValueError(f"kind must be one of {sorted(self.FAULTS)}, got {kind!r}")
        with self.lock:
            self.faults.append([kind, count])

    def _take_fault(self) -> str | None:
        """The fault this call gets, if one is queued."""
        with self.lock:
            while self.faults and self.faults[0][1] <= 0:
                self.faults.pop(0)
            if not self.faults:
                return None
            self.faults[0][1] -= 1
            return str(self.faults[0][0])
