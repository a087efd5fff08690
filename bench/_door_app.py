"""A second baseline for the webhook benchmark: the relay's own app with the body's one Redis call replaced
by nothing (``gunicorn bench._door_app:app``). Everything else (the body read under its limits, the door,
the signature check) runs as in production, so the gap to the relay is what keeping the body costs."""

from __future__ import annotations

from connector import received


def _keep_nothing(*_: object) -> bool:
    """Stands for :func:`connector.received.receive`: the body counts as kept, and nothing is written."""
    return True


received.receive = _keep_nothing  # type: ignore[assignment]  # the webhook looks it up at call time

from connector.wsgi import app  # noqa: E402  (after the replacement: the app is built by this import)

__all__ = ["app"]
