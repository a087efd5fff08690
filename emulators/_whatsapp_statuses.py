"""The status webhooks Meta sends about a message it accepted: ``sent``, then ``delivered``, then ``read``
when the patient reads it, or ``failed`` with the reason.

Each status is a ``statuses[]`` entry shaped as Meta's webhook reference shows it: the message id, the
status, a timestamp, the recipient, ``pricing`` (a service conversation, free inside the customer-service
window), the ``biz_opaque_callback_data`` the message was sent with, and for ``failed`` the ``errors``
(``code``, ``title``, ``message``, ``error_data.details``, ``href``). The emulator's signed webhook post
sends them from a background thread (:class:`~emulators._webhook_sender.WebhookSender`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulators._webhook_sender import WebhookSender

#: what Meta reports when a message cannot reach the patient
UNDELIVERABLE = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                 "error_data": {"details": "Message Undeliverable."},
                 "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}
#: between two statuses of one message (they arrive in order, not at once)
STEP_SECONDS = 0.01


@dataclass
class Tracked:
    """A message the emulator accepted, and the latest status it has scheduled for it."""

    id: str
    to: str
    tracking: str | None
    state: str = "accepted"
    #: when its latest status is due (``time.monotonic()``): a later one is due after it
    due: float = 0.0


class StatusWebhooks:
    """Schedules and posts the status webhooks of the messages an emulator accepted.

    Args:
        post: posts one webhook body, signed, to the relay (returns the HTTP status).
        envelope: the complete webhook body around a ``statuses`` list.
    """

    def __init__(self, post: Callable[[dict[str, Any]], int], envelope: Callable[[list[dict[str, Any]]],
                                                                                  dict[str, Any]]) -> None:
        self._post, self._envelope = post, envelope
        self.sender = WebhookSender(self._deliver, "whatsapp-emulator-statuses")
        self._lock = threading.Lock()
        self.messages: dict[str, Tracked] = {}
        #: every status webhook posted: message id, status, and the relay's HTTP status (0: not reached)
        self.posted: list[dict[str, Any]] = []

    def _deliver(self, body: dict[str, Any]) -> None:
        status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
        try:
            answer = self._post(body)
        except OSError:  # the relay is not there (the real platform retries; the emulator records it)
            answer = 0
        with self._lock:
            self.posted.append({"id": status["id"], "status": status["status"], "http_status": answer})

    def _status(self, message: Tracked, status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": message.id, "status": status, "timestamp": str(int(time.time()))}
        entry["recipient_id" if message.to.isdigit() else "recipient_user_id"] = message.to
        if message.tracking is not None:
            entry["biz_opaque_callback_data"] = message.tracking
        if errors:
            entry["errors"] = errors
        else:
            entry["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
        return self._envelope([entry])

    def _schedule(self, message: Tracked, status: str, delay: float,
                  errors: list[dict[str, Any]] | None = None) -> None:
        # never before the message's previous status: Meta reports a message's statuses in order
        delay = max(delay, message.due - time.monotonic() + STEP_SECONDS)
        message.state = status
        message.due = self.sender.schedule(self._status(message, status, errors), delay)

    def accepted(self, message_id: str, to: str, tracking: str | None, *, delay: float = 0.0,
                 error: dict[str, Any] | None = None) -> None:
        """A message was accepted: ``sent`` then ``delivered`` after ``delay`` seconds, or ``failed`` with
        ``error``."""
        message = Tracked(message_id, to, tracking)
        with self._lock:
            self.messages[message_id] = message
            if error is not None:
                self._schedule(message, "failed", delay, [error])
            else:
                self._schedule(message, "sent", delay)
                self._schedule(message, "delivered", 0.0)

    def read_by(self, recipient: str) -> int:
        """The patient opened the chat: ``read`` for every delivered message not yet read; how many."""
        with self._lock:
            unread = [m for m in self.messages.values() if m.to == recipient and m.state == "delivered"]
            for message in unread:
                self._schedule(message, "read", 0.0)
        return len(unread)

    def state(self, message_id: str) -> str | None:
        """The latest status scheduled for a message (``accepted`` when none)."""
        with self._lock:
            message = self.messages.get(message_id)
            return message.state if message else None
