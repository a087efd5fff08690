"""The CRM's inbox for the tests of the relay's side: a :class:`CRMInbox` that records what it is given.

These tests run the relay as the end-to-end tests do (:func:`tests.e2e.conftest.stack`: the web app over
real HTTP, real Redis, rq workers, the channels' emulators, HubSpot's emulator for the leads).

It behaves as the contract says a CRM's inbox does (idempotent publish on the message id, files stored
once uploaded, reports recorded), signs its webhooks with HMAC-SHA256 over the method, the exact URL and
the body, and refuses a request whose signature does not match; faults are injected with
:meth:`RecordingInbox.fail_next`. The :func:`crm` fixture puts it in the stack's relay in place of the
adapter's inbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapters.inbox import CRMInbox, InboxLimits, Published, WebhookRequest
from core.errors import RetryableError, WebhookRejectedError
from core.inbox import AgentReply, DeliveryReport, FileRef, InboxEvent, ThreadClosed, ThreadMessage
from tests.e2e.conftest import Stack, crm_name, stack, stack_config  # noqa: F401 - the stack's fixtures, for this folder

SECRET = "test-crm-inbox-secret"
HEADER = "X-Test-Signature"


def signature(method: str, url: str, body: bytes) -> str:
    """What the recording CRM signs its webhook with."""
    return hmac.new(SECRET.encode(), method.encode() + url.encode() + body, hashlib.sha256).hexdigest()


class RecordingInbox(CRMInbox):
    """A CRM's inbox in memory: every call is recorded; ``fail_next`` makes calls fail for now."""

    name = "hubspot"

    def __init__(self, limits: InboxLimits | None = None) -> None:
        self.limits = limits or InboxLimits()
        self.lock = threading.Lock()
        #: published messages by id, in the order first published
        self.published: dict[str, ThreadMessage] = {}
        self.publish_calls: Counter[str] = Counter()
        self.uploads: list[tuple[str, str, bytes]] = []
        self.reports: list[DeliveryReport] = []
        self.faults: dict[str, int] = {}

    def fail_next(self, method: str, count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` (publish, report, upload) fail with a retryable error."""
        self.faults[method] = self.faults.get(method, 0) + count

    def _fault(self, method: str) -> None:
        with self.lock:
            if self.faults.get(method, 0) > 0:
                self.faults[method] -= 1
                raise RetryableError(f"crm: {method} failed for now", details={"status": 503})

    def publish(self, message: ThreadMessage) -> Published:
        with self.lock:
            self.publish_calls[message.id] += 1  # every call, refused or not
        self._fault("publish")
        with self.lock:
            self.published.setdefault(message.id, message)
        return Published(crm_message_id=f"crm-{message.id}", crm_thread_id=f"T{message.thread[-6:]}")

    def report(self, report: DeliveryReport) -> None:
        self._fault("report")
        with self.lock:
            self.reports.append(report)

    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        self._fault("upload")
        with self.lock:
            self.uploads.append((name, mime_type, content))
            return FileRef(crm_file_id=f"F{len(self.uploads)}", name=name, mime_type=mime_type, size=len(content))

    def file_url(self, file: FileRef) -> str:
        return f"https://files.crm.example/{file.crm_file_id}/{file.name or 'file'}"

    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        given = request.headers.get(HEADER)
        if not given:
            raise WebhookRejectedError(401, "signature missing")
        if not hmac.compare_digest(given, signature(request.method, request.url, request.body)):
            raise WebhookRejectedError(401, "signature does not match")
        events: list[InboxEvent] = []
        for event in json.loads(request.body)["events"]:
            kind = event.pop("type")
            events.append(AgentReply.model_validate(event) if kind == "reply" else ThreadClosed.model_validate(event))
        return events

    # -- what a test reads ------------------------------------------------------------------------
    def order(self) -> list[str]:
        """The ids published, in order."""
        with self.lock:
            return list(self.published)

    def statuses(self, crm_message_id: str) -> list[tuple[str, str | None, str | None]]:
        """``(status, code, reason)`` reported for one message, in order."""
        with self.lock:
            return [(r.status, r.code, r.reason) for r in self.reports if r.crm_message_id == crm_message_id]


def post_events(relay_url: str, events: list[dict[str, Any]], *, public_base_url: str = "https://relay.example",
                sign: bool = True, crm: str = "hubspot") -> requests.Response:
    """POST the CRM's webhook with ``events`` to the relay over HTTP, signed for the URL the CRM was given."""
    path = f"/crm/{crm}/webhooks?portalId=42"
    body = json.dumps({"events": events}).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        headers[HEADER] = signature("POST", public_base_url + path, body)
    return requests.post(relay_url + path, data=body, headers=headers, timeout=10)


@pytest.fixture
def crm(stack: Stack) -> Iterator[RecordingInbox]:  # noqa: F811 - the fixture imported above
    """The stack's relay with a recording CRM inbox (which takes PDFs and JPEGs up to 5 MB)."""
    recorder = RecordingInbox(InboxLimits(max_file_bytes=5 * 1024 * 1024,
                                          mime_types=frozenset({"image/jpeg", "application/pdf"})))
    stack.runtime.cached("inbox", lambda: recorder)  # before anything asks the runtime for its inbox
    yield recorder
