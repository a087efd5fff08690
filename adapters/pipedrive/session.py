"""Pipedrive's chokepoint: the ``requests`` session every call of the adapter goes through, and
Pipedrive's error table.

The session holds the token, the Redis-shared limiters for Pipedrive's 2-second burst windows (the
search endpoints have their own), the pause when ``x-ratelimit-remaining`` runs out, the timeouts,
call counting and metrics, and the translation of Pipedrive's refusals into the error tree.

With the app installed by OAuth (:meth:`PipedriveSession.use_app`) every call carries the installed
company's access token and goes to its API domain (``https://clinic.pipedrive.com/api/v1/…``, as Pipedrive
asks of OAuth apps); a 401 for a token that expired under us refreshes it once and sends the call again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import requests

from adapters._ratelimit import SharedRateLimiter
from adapters.pipedrive.options import PipedriveCredentials, PipedriveOptions
from adapters.session import Answer, ErrorTable, RequestsSession, rule
from core.errors import AuthError, RetryableError, SyncError
from core.http import session as http_session

if TYPE_CHECKING:
    from redis import Redis

T = TypeVar("T")
_KEY = re.compile(r"\b([0-9a-f]{40})\b")
#: Pipedrive's answers → the error tree
ERRORS = ErrorTable("pipedrive", [
    rule("retryable", 429, what="rate limited"),
    rule("retryable", (500, 599), what="server error"),
    rule("auth", 401, what="token refused"),
    rule("auth", 403, what="permission denied"),
    rule("fatal", (400, 499), what="request rejected"),
])


class _Answered(Exception):
    """Pipedrive answered with an error status."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class TokenSource(Protocol):
    """Where the session gets the app's OAuth token and the company's API domain (the app installed by OAuth:
    :class:`adapters.pipedrive.oauth.PipedriveOAuth`)."""

    def access_token(self) -> str:
        """A token valid for a while yet (refreshed first when it is about to expire)."""

    def refresh(self, stale: str | None = None) -> str:
        """A new token in place of ``stale`` (once for every worker)."""

    def api_domain(self) -> str:
        """The installed company's API domain (``https://clinic.pipedrive.com``)."""

    def reinstall_hint(self) -> str:
        """What the admin does when the app's tokens are refused."""


@dataclass(frozen=True)
class Download:
    """A file's bytes as Pipedrive sent them."""

    content: bytes
    mime_type: str


class PipedriveSession(RequestsSession):
    """Pipedrive's chokepoint: a ``requests`` session with the token, the limiters, the timeouts and the
    error table.

    Args:
        credentials: the token (OAuth or API) and the API base URL.
        options: the adapter's options (timeouts, the burst and search limits).
        redis: the shared connection (limiters, metrics).
    """

    def __init__(self, credentials: PipedriveCredentials, options: PipedriveOptions, redis: Redis | None) -> None:
        limit, search = options.rate_limit, options.search_rate_limit
        # per API token, so shared by every worker; the search endpoints have a lower limit of their own
        super().__init__("pipedrive", redis=redis, timeouts=options.timeouts(), errors=ERRORS,
                         limiter=SharedRateLimiter(redis, "pipedrive", limit.requests, limit.per_seconds))
        self.search_limiter = SharedRateLimiter(redis, "pipedrive", search.requests, search.per_seconds,
                                                window="search")
        self.rate_seconds = limit.per_seconds
        self.http = http_session()
        if credentials.oauth_token is not None and credentials.oauth_token.get_secret_value():
            self.http.headers["Authorization"] = f"Bearer {credentials.oauth_token.get_secret_value()}"
            self.credential_setting = PipedriveCredentials.setting("oauth_token")
        else:
            token = credentials.api_token.get_secret_value() if credentials.api_token else ""
            self.http.headers["x-api-token"] = token
            self.credential_setting = PipedriveCredentials.setting("api_token")
        self.http.headers["Accept"] = "application/json"
        self.base = credentials.api_base.rstrip("/")
        #: the app installed by OAuth: once set, its token and its company's API domain are used instead
        self.tokens: TokenSource | None = None

    def use_app(self, tokens: TokenSource) -> None:
        """Call with the installed app's token, on its company's API domain, from now on."""
        self.tokens = tokens
        self.http.headers.pop("x-api-token", None)
        self.http.headers.pop("Authorization", None)
        self.credential_setting = PipedriveCredentials.setting("client_id")

    def request(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, files: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call: ``path`` starts with ``/v1/`` or ``/api/v2/``. Returns the JSON envelope. With
        ``files``, the body is sent as ``multipart/form-data`` (``body`` its other fields).

        Raises:
            As :meth:`VendorSession.call`; a refusal naming a field's key carries it in ``details["field_key"]``.
        """
        def parse(response: requests.Response) -> dict[str, Any]:
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                raise RetryableError("pipedrive: answer was not JSON", details={"operation": operation}) from None
            return data

        return self._authorised(operation, method, path, params=params, body=body, files=files, read=parse)

    def download(self, operation: str, path: str) -> Download:
        """A file's bytes (``GET /v1/files/{id}/download``).

        Raises:
            As :meth:`request`.
        """
        def read(response: requests.Response) -> Download:
            mime = (response.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
            return Download(content=response.content, mime_type=mime)

        return self._authorised(operation, "GET", path, params=None, body=None, files=None, read=read)

    def _authorised(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None, body: Any,
                    files: dict[str, Any] | None, read: Callable[[requests.Response], T]) -> T:
        """Send with the app's token when there is one; a token Pipedrive says has expired (under us, or a clock
        behind Pipedrive's) is refreshed once and the call sent again."""
        if self.tokens is None:
            return self.send_url(operation, method, self.base + path, params=params, body=body, files=files, read=read,
                              token=None)
        token = self.tokens.access_token()
        url = self.tokens.api_domain().rstrip("/") + ("/api" + path if path.startswith("/v1/") else path)
        try:
            return self.send_url(operation, method, url, params=params, body=body, files=files, read=read, token=token)
        except AuthError as exc:
            if exc.details.get("status") != 401:
                raise
        return self.send_url(operation, method, url, params=params, body=body, files=files, read=read,
                             token=self.tokens.refresh(stale=token))

    def send_url(self, operation: str, method: str, url: str, *, params: dict[str, Any] | None, body: Any,
                 files: dict[str, Any] | None, read: Callable[[requests.Response], T], token: str | None) -> T:
        """One call to a full ``url`` (with ``token`` as Bearer, when given), through the chokepoint; ``read``
        turns the answer into the result.

        Raises:
            As :meth:`VendorSession.call`.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else None

        def send() -> T:
            if files is not None:
                response = self.http.request(method, url, params=params, data=body, files=files, headers=headers,
                                             timeout=self.timeouts.pair())
            else:
                response = self.http.request(method, url, params=params, json=body, headers=headers,
                                             timeout=self.timeouts.pair())
            self._note_budget(response)
            if not response.ok:
                raise _Answered(response)
            return read(response)

        return self.call(operation, send, limiters=[self.search_limiter] if url.endswith("/search") else [])

    def _note_budget(self, response: requests.Response) -> None:
        """Slow every worker down when Pipedrive says the burst window is used up."""
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is None or response.status_code == 429 or self.limiter is None:
            return
        try:
            if int(remaining) > 0:
                return
            reset = float(response.headers.get("x-ratelimit-reset") or self.rate_seconds)
        except ValueError:
            return
        self.limiter.pause(min(reset, 10.0))

    def answer_of(self, exc: Exception) -> Answer | None:
        if not isinstance(exc, _Answered):
            return None
        response = exc.response
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        return Answer(status=response.status_code, message=str(body.get("error") or response.reason or ""),
                      headers=dict(response.headers), body=body)

    def refused(self, answer: Answer, operation: str) -> SyncError:
        details = {"error_info": (answer.body or {}).get("error_info")}
        if answer.status == 429:
            retry_after = answer.headers.get("Retry-After") or answer.headers.get("x-ratelimit-reset")
            try:
                seconds = max(float(retry_after), 0.5) if retry_after else self.rate_seconds
            except ValueError:
                seconds = self.rate_seconds
            if self.limiter is not None:
                self.limiter.pause(min(seconds, 10.0))  # a daily budget's reset is far away: the job layer waits
            return self.errors.error(answer, operation=operation, retry_after=seconds, details=details)
        if answer.status in (401, 403):
            hint = (f"; {self.tokens.reinstall_hint()}" if self.tokens is not None and answer.status == 401
                    else f"; check {self.credential_setting} and the user's permissions")
            return self.errors.error(answer, operation=operation, setting=self.credential_setting, details=details,
                                     hint=hint)
        key = _KEY.search(answer.message)
        if key:
            details["field_key"] = key.group(1)
        return self.errors.error(answer, operation=operation, field=key.group(1) if key else None, details=details)
