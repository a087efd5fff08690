"""The inbox contract: how a CRM receives the conversation after the bot, and hands back agents' replies.

An adapter whose CRM can hold conversations returns a :class:`CRMInbox` from
:meth:`adapters.base.CRMAdapter.inbox`. The relay (:mod:`connector.threads`, :mod:`connector.agent`)
uses only this interface, so HubSpot's conversations inbox, Salesforce and Pipedrive are served by one
core.

Every write is idempotent: :meth:`CRMInbox.publish` on the message id (a redelivered or replayed
message is never shown twice), :meth:`CRMInbox.report` on the CRM message and status. The webhook side,
:meth:`CRMInbox.parse_webhook`, authenticates the CRM's request and turns it into events; it does no
I/O, so it can run inside the web request.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

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


class CRMInbox(abc.ABC):
    """A CRM's inbox for the conversation after the bot.

    Raises (every method that calls the CRM): :class:`~core.errors.RetryableError` (busy, failing, no
    answer), :class:`~core.errors.AuthError` (credentials refused, naming the setting),
    :class:`~core.errors.FatalError` (refused for good).
    """

    #: the CRM's name (``hubspot``)
    name: str
    limits: InboxLimits = InboxLimits()

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
