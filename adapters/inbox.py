"""The inbox contract: how a CRM receives the conversation after the bot, and hands back agents' replies.

An adapter whose CRM can hold conversations returns a :class:`CRMInbox` from
:meth:`adapters.base.CRMAdapter.inbox`. The relay (:mod:`connector.threads`, :mod:`connector.agent`)
uses only this interface, so HubSpot's conversations inbox, Salesforce and Pipedrive are served by one
core.

Every write is idempotent: :meth:`CRMInbox.publish` on the message id (a redelivered or replayed
message is never shown twice), :meth:`CRMInbox.report` on the CRM message and status. The webhook side,
:meth:`CRMInbox.parse_webhook`, authenticates the CRM's request and turns it into events; it does no
I/O, so it can run inside the web request. A CRM that pushes its events over a connection instead
(Salesforce's Pub/Sub API) returns an :class:`InboxStream` from :meth:`CRMInbox.stream`, which the
``chat2crm listen`` process reads; a CRM whose files need its credentials to read serves them through
the relay's own signed links (:class:`FileLinks`, :meth:`CRMInbox.open_file`).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from core.errors import FatalError
from core.inbox import DeliveryReport, FileRef, InboxEvent, ThreadMessage


@dataclass(frozen=True)
class Published:
    """What the CRM answered to a published message."""

    crm_message_id: str
    #: the CRM's own id of the thread the message landed in (to find the conversation from its events)
    crm_thread_id: str | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """A CRM's webhook request, as received (the signature covers these exact bytes and the URL)."""

    method: str
    #: the full URL the CRM called, as registered with it (scheme, host, path and query)
    url: str
    headers: Mapping[str, str]
    body: bytes
    #: when it was received (seconds since the epoch), to refuse stale replays
    received_at: float


@dataclass
class InboxLimits:
    """What the CRM's inbox accepts as attachments (stated in the docs, checked before uploading)."""

    max_file_bytes: int = 20 * 1024 * 1024
    mime_types: frozenset[str] = field(default_factory=lambda: frozenset({
        "image/jpeg", "image/png", "image/webp", "application/pdf", "audio/ogg", "audio/mpeg", "audio/aac",
        "audio/mp4", "audio/amr", "video/mp4", "video/3gpp",
    }))


@dataclass(frozen=True)
class FileContent:
    """A CRM file's bytes, as the relay serves them to a channel that fetches an agent's attachment."""

    content: bytes
    mime_type: str
    name: str | None = None


class FileLinks:
    """The relay's own short-lived signed links to a CRM's file (``/crm/<crm>/files/<token>``), for a CRM whose
    files can only be read with its credentials: the channel fetches the link, the relay reads the file
    (:meth:`CRMInbox.open_file`) and serves its bytes.

    Args:
        secret: the key that signs the links (the relay's ``TRANSCRIPT_SECRET``).
        base_url: where the relay is reached (``PUBLIC_BASE_URL``).
        crm: the CRM's name (in the link's path, and signed).
        max_age: seconds a link stays valid.
    """

    SALT = "chat2crm.crm-file.v1"

    def __init__(self, secret: str, *, base_url: str, crm: str, max_age: int = 900) -> None:
        from itsdangerous import URLSafeTimedSerializer

        self.serializer = URLSafeTimedSerializer(secret, salt=self.SALT)
        self.base_url = base_url.rstrip("/")
        self.crm = crm
        self.max_age = max_age

    def url(self, file: FileRef) -> str:
        """A link to ``file`` (its CRM id, name and type are signed into it)."""
        token = self.serializer.dumps({"crm": self.crm, "id": file.crm_file_id, "name": file.name,
                                       "type": file.mime_type})
        return f"{self.base_url}/crm/{self.crm}/files/{token}"

    def read(self, token: str) -> FileRef | None:
        """The file a link names; None when the link is forged, for another CRM, or expired."""
        from itsdangerous import BadSignature

        try:
            data = self.serializer.loads(token, max_age=self.max_age)
        except (BadSignature, json.JSONDecodeError):  # SignatureExpired is a BadSignature
            return None
        if not isinstance(data, dict) or data.get("crm") != self.crm or not data.get("id"):
            return None
        return FileRef(crm_file_id=str(data["id"]), name=data.get("name"), mime_type=data.get("type"))


@dataclass(frozen=True)
class StreamBatch:
    """What one read of a CRM's event stream brought: the inbox events in it, and where the stream stands
    after them (the position to resume from once they are taken)."""

    events: list[InboxEvent]
    position: bytes
    #: the CRM's events in the batch (those for the relay, and those it ignores: its own writes…)
    received: int = 0


class StreamPositionLost(Exception):
    """The position a subscription was asked to resume from is no longer valid (older than the CRM keeps
    events, or not one of its positions)."""


class InboxStream(abc.ABC):
    """A CRM's inbox events pushed over a connection the relay keeps open (``chat2crm listen``), rather than
    webhooks: agents' replies and closed threads, in the CRM's order, each with its position in the stream."""

    @abc.abstractmethod
    def batches(self, position: bytes | None, *, earliest: bool = False) -> Iterator[StreamBatch]:
        """Subscribe and yield batches until the connection ends: after ``position`` (None: from now on, or
        with ``earliest`` from the oldest event the CRM keeps). A batch with no events (a keep-alive) still
        carries the stream's position.

        Raises:
            StreamPositionLost: ``position`` is no longer valid.
            core.errors.RetryableError: the connection failed or the CRM is unavailable (subscribe again).
            core.errors.AuthError: the credentials were refused.
            core.errors.FatalError: the CRM refuses the subscription for good (no such topic, no access).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """End the subscription (from another thread): :meth:`batches` returns."""


class CRMInbox(abc.ABC):
    """A CRM's inbox for the conversation after the bot.

    Raises (every method that calls the CRM): :class:`~core.errors.RetryableError` (busy, failing, no
    answer), :class:`~core.errors.AuthError` (credentials refused, naming the setting),
    :class:`~core.errors.FatalError` (refused for good).
    """

    #: the CRM's name (``hubspot``)
    name: str
    limits: InboxLimits = InboxLimits()
    #: True when :meth:`publish` keeps a history line (``message.history``: the bot's part, on the lead's note
    #: already) without calling the CRM: the relay then publishes a lead's history lines in one step
    local_history: bool = False

    @abc.abstractmethod
    def publish(self, message: ThreadMessage) -> Published:
        """Put ``message`` into the conversation's thread (opening it on the first message, associated
        with ``message.contact_id``), idempotently on ``message.id``."""

    @abc.abstractmethod
    def report(self, report: DeliveryReport) -> None:
        """Write what became of an agent's reply back to its CRM message (failures visible to the agent)."""

    @abc.abstractmethod
    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        """Store a patient's file in the CRM; the reference to attach to a published message."""

    @abc.abstractmethod
    def file_url(self, file: FileRef) -> str:
        """A URL the channel can fetch an agent's attachment from (a short-lived signed URL)."""

    @abc.abstractmethod
    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        """Authenticate a CRM webhook request and read its events (no I/O).

        Raises:
            core.errors.WebhookRejectedError: the signature is missing, wrong or stale (401), or the body is
                not the CRM's (400).
        """

    def check(self) -> list[str]:
        """What is set up and what is missing, one line each (``chat2crm doctor``). The default: nothing."""
        return []

    def open_file(self, file: FileRef) -> FileContent:
        """The bytes of an agent's file that :meth:`file_url` linked to through the relay (:class:`FileLinks`).

        Raises:
            core.errors.FatalError: this inbox serves no files through the relay (the default), or the file is gone.
            core.errors.RetryableError, core.errors.AuthError: the CRM did not answer, or refused the credentials.
        """
        raise FatalError(f"{self.name}: the inbox serves no files through the relay")

    def stream(self) -> InboxStream | None:
        """The CRM's stream of inbox events, when the CRM pushes them over a connection the relay keeps open
        (``chat2crm listen``) instead of calling webhooks. The default: None (webhooks)."""
        return None


class OAuthInstall(abc.ABC):
    """How a CRM app is installed into an account by OAuth: the consent page, then the code exchanged for
    tokens the adapter keeps (encrypted) and refreshes before they expire."""

    @abc.abstractmethod
    def authorize_url(self, *, state: str, redirect_uri: str) -> str:
        """The CRM's consent page the account's admin is sent to."""

    @abc.abstractmethod
    def complete(self, *, code: str, redirect_uri: str) -> str:
        """Exchange the authorization code for tokens and keep them; returns the installed account's id.

        Raises:
            core.errors.AuthError: the code (or the app's credentials) was refused.
            core.errors.RetryableError: the CRM did not answer.
        """
