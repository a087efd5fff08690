"""Pipedrive's chokepoint: the ``requests`` session every call of the adapter goes through, and
Pipedrive's error table.

The session holds the token, the Redis-shared limiters for Pipedrive's 2-second burst windows (the
search endpoints have their own), the pause when ``x-ratelimit-remaining`` runs out, the timeouts,
call counting and metrics, and the translation of Pipedrive's refusals into the error tree.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import requests

from adapters._ratelimit import SharedRateLimiter
from adapters.pipedrive.options import PipedriveCredentials, PipedriveOptions
from adapters.session import Answer, ErrorTable, RequestsSession, rule
from core.errors import RetryableError, SyncError

if TYPE_CHECKING:
    from redis import Redis

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
        self.http = requests.Session()
        if credentials.oauth_token is not None and credentials.oauth_token.get_secret_value():
            self.http.headers["Authorization"] = f"Bearer {credentials.oauth_token.get_secret_value()}"
            self.credential_setting = PipedriveCredentials.setting("oauth_token")
        else:
            token = credentials.api_token.get_secret_value() if credentials.api_token else ""
            self.http.headers["x-api-token"] = token
            self.credential_setting = PipedriveCredentials.setting("api_token")
        self.http.headers["Accept"] = "application/json"
        self.base = credentials.api_base.rstrip("/")

    def request(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None) -> dict[str, Any]:
        """One API call: ``path`` starts with ``/v1/`` or ``/api/v2/``. Returns the JSON envelope.

        Raises:
            As :meth:`VendorSession.call`; a refusal naming a field's key carries it in ``details["field_key"]``.
        """
        def send() -> dict[str, Any]:
            response = self.http.request(method, self.base + path, params=params, json=body,
                                         timeout=self.timeouts.pair())
            self._note_budget(response)
            if not response.ok:
                raise _Answered(response)
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                raise RetryableError("pipedrive: answer was not JSON", details={"operation": operation}) from None
            return data

        return self.call(operation, send, limiters=[self.search_limiter] if path.endswith("/search") else [])

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
            return self.errors.error(answer, operation=operation, setting=self.credential_setting, details=details,
                                     hint=f"; check {self.credential_setting} and the user's permissions")
        key = _KEY.search(answer.message)
        if key:
            details["field_key"] = key.group(1)
        return self.errors.error(answer, operation=operation, field=key.group(1) if key else None, details=details)
