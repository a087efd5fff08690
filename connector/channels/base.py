"""What every channel shares: the parsed-webhook shape, the client interface, and one HTTP chokepoint.

:class:`HttpChannel` is that chokepoint: timeouts, tries in place, error mapping and call counting, and
reading a file's bytes under a size limit (:meth:`HttpChannel.read_limited`), so a patient's file or an
agent's attachment never holds more memory than the caller allows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from tenacity import Retrying, retry_if_exception, retry_if_result, stop_after_attempt, wait_exponential
from urllib3.exceptions import NewConnectionError

from core.errors import AuthError, FatalError, RetryableError
from core.http import session as http_session
from core.models import Conversation, InboundMessage, MediaFile, Reply

log = logging.getLogger("chat2crm.channels")

#: seconds: (connect, read) for every call to a channel API
TIMEOUT = (3.05, 15)
#: tries of one call inside a job, when the channel surely did not act on it (see ``HttpChannel.request``)
ATTEMPTS = 3
#: statuses that say the channel did not carry the request out and may well on a second try
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
#: bytes read at a time from a file being downloaded
CHUNK = 64 * 1024


@dataclass
class StatusUpdate:
    """A delivery status callback (sent, delivered, read, failed) for a message we sent."""

    channel: str
    message_id: str
    status: str
    recipient: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: what the relay attached to the message when it sent it, echoed by the channel (WhatsApp's
    #: ``biz_opaque_callback_data``); None when the channel has no such thing or nothing was attached
    tracking: str | None = None


@dataclass
class ParsedWebhook:
    """Everything one webhook body carried, each part independent of the others."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    #: (account, sender id) of patients who opted out at the channel level (WhatsApp's "stop", a blocked bot)
    opt_outs: list[tuple[str, str]] = field(default_factory=list)
    #: (account, sender id) of patients who allowed messages again (a Telegram bot unblocked)
    opt_ins: list[tuple[str, str]] = field(default_factory=list)
    #: vendor error objects carried by the payload (logged with their codes)
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: parts that could not be understood (one bad message never drops the others)
    skipped: int = 0
    #: sender ids (as given) whose messages were ignored by policy (bots, groups)
    ignored: int = 0


class ChannelClient(Protocol):
    """Sends the bot's replies through one channel, and fetches the files patients send."""

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None) -> list[str]:
        """Send ``replies`` in order (a reply with attachments may take several messages); return the
        channel's message ids.

        ``tracking`` is attached to every message where the channel echoes it in its delivery statuses
        (WhatsApp); channels without such a field ignore it.

        Raises:
            RetryableError: throttling, 5xx, timeout or connection error.
            AuthError: the token is wrong or expired (names the setting).
            FatalError: the channel rejected the message for good, or an attachment is of a type or size the
                channel cannot carry (checked before anything is sent: nothing of the replies goes out then).
            SkippableError: the message cannot be sent now (for example outside WhatsApp's window).
        """

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a file a patient sent (``MediaRef.media_id``), refusing one over ``max_bytes``.

        The channel may not know the file's original name or type (Telegram): prefer the ``MediaRef``'s.

        Raises:
            RetryableError: throttling, 5xx, timeout, connection error, or a download link that expired.
            AuthError: the token is wrong or expired (names the setting).
            FatalError: the file does not exist (any more), is over ``max_bytes``, or came back damaged.
        """

    def mark_read(self, message: InboundMessage) -> None:
        """Tell the patient their message was read (courtesy; errors are the caller's to ignore)."""

    def answer_callback(self, message: InboundMessage) -> None:
        """Acknowledge a button press where the channel requires it (Telegram)."""


def _never_reached(exc: BaseException) -> bool:
    """Whether a failed request surely never reached the channel: no connection was made at all.

    A connection dropped after the request went out ("connection aborted") is not one of these: the
    channel may have acted on it.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
        return isinstance(reason, NewConnectionError)
    return False


class HttpChannel:
    """One ``requests.Session`` per channel API: timeouts, error mapping and call counting live here.

    Args:
        api: the channel's name, for errors and metrics.
        token_setting: the environment variable that holds the token (named in auth errors).
    """

    def __init__(self, api: str, token_setting: str, session: requests.Session | None = None) -> None:
        self.api = api
        self.token_setting = token_setting
        self.session = session or http_session()
        self.calls = 0

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request, tried again in place (up to ``ATTEMPTS``, backing off) only where the channel
        surely did not act on it: no connection could be made, or it answered 500/502/503/504. A read time-out
        is never tried again here, because the message may have gone out: a second send would reach the
        patient twice. Whatever is left is the job's to retry (rq), as the error tree says.

        Returns:
            The response (the last one, if every try answered a transient status).

        Raises:
            RetryableError: timeout or connection error (after the tries).
        """
        retrying = Retrying(
            stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(_never_reached)
            | retry_if_result(lambda response: response.status_code in _TRANSIENT_STATUSES),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True)
        try:
            response: requests.Response = retrying(self._send, method, url, **kwargs)
        except requests.Timeout as exc:
            raise RetryableError(f"{self.api}: timed out", details={"error": type(exc).__name__}) from exc
        except requests.ConnectionError as exc:
            raise RetryableError(f"{self.api}: connection failed", details={"error": type(exc).__name__}) from exc
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls += 1
        return self.session.request(method, url, timeout=TIMEOUT, **kwargs)

    def read_limited(self, response: requests.Response, max_bytes: int, what: str) -> bytes:
        """The body of a streamed ``response`` (``stream=True``), read a chunk at a time and given up as soon
        as it grows past ``max_bytes``, whatever ``Content-Length`` claimed. The response is closed.

        Raises:
            FatalError: the body is over ``max_bytes`` (the file is refused, not cut short).
            RetryableError: the connection broke or timed out while reading.
        """
        received = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                received.extend(chunk)
                if len(received) > max_bytes:
                    raise FatalError(f"{self.api}: {what} is over the {max_bytes}-byte limit",
                                     details={"max_bytes": max_bytes})
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            # a read time-out or a dropped connection: the file is still there for the next try
            raise RetryableError(f"{self.api}: {what} could not be read to the end",
                                 details={"error": type(exc).__name__}) from None
        finally:
            response.close()
        return bytes(received)

    def status_error(self, response: requests.Response, code: Any, message: str,
                     retry_after: float | None = None, *, throttled: bool = False) -> Exception:
        """The error-tree exception for a failed response."""
        details = {"status": response.status_code, "code": code}
        if throttled or response.status_code == 429:
            header = response.headers.get("Retry-After")
            if retry_after is None and header and header.replace(".", "", 1).isdigit():
                retry_after = float(header)
            return RetryableError(f"{self.api}: throttled ({code})", retry_after=retry_after, details=details)
        if response.status_code >= 500:
            return RetryableError(f"{self.api}: server error {response.status_code}", details=details)
        if response.status_code == 401:
            return AuthError(f"{self.api}: the token was refused ({message}); check {self.token_setting}",
                             setting=self.token_setting, details=details)
        return FatalError(f"{self.api}: request rejected ({code}: {message})", details=details)


def render_numbered(text: str, titles: list[str]) -> str:
    """The last-resort rendering of options: a numbered list the patient answers with a number."""
    lines = [text, ""] + [f"{i}. {title}" for i, title in enumerate(titles, 1)]
    return "\n".join(lines)
