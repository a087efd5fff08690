"""Reading the webhooks a test posted, as a job process reads them (:func:`connector.received.accept_waiting`)."""

from __future__ import annotations

from connector import received
from connector.runtime import Runtime

#: every count :func:`read` reports, zeros included
KINDS = ("queued", "duplicates", "statuses", "skipped", "ignored", "rejected")


def read(runtime: Runtime) -> dict[str, int]:
    """Read every webhook body waiting in the intakes; what they held, each of :data:`KINDS` counted."""
    counts = received.accept_waiting(runtime)
    assert set(counts) <= {*KINDS, "dropped"}, counts
    return {kind: counts.get(kind, 0) for kind in KINDS}


def kept(response: object) -> bool:
    """Whether the webhook's answer says the body was kept (not refused, not a body received already)."""
    status = getattr(response, "status_code", None)
    body = getattr(response, "json", None)
    return status == 200 and body == {"received": True, "duplicate": False}
