"""HubSpot's chokepoint: the session every call of the HubSpot adapter goes through, HubSpot's error
table, and the conflict error a 409 on a unique value becomes.

The session builds the official client with its own settings (base URL, the token, no retries: they
belong to the job layer), sends the timeouts with every call, and goes through the shared rate
limiter, call counting and metrics.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adapters._ratelimit import SharedRateLimiter
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.session import Answer, ErrorTable, VendorSession, rule
from core.errors import FatalError, SyncError

if TYPE_CHECKING:
    from redis import Redis

_EXISTING_ID = re.compile(r"Existing ID: (\d+)")
#: HubSpot's answers → the error tree
ERRORS = ErrorTable("hubspot", [
    rule("retryable", 429, what="rate limited"),
    rule("retryable", (500, 599), 0, what="server error"),
    rule("auth", 401, what="token refused"),
    rule("auth", 403, what="missing scope"),
    rule("fatal", (400, 499), what="request rejected"),
])


class ConflictError(FatalError):
    """A unique value already belongs to another object (HubSpot's 409); ``existing_id`` names it."""

    def __init__(self, message: str, existing_id: str | None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


def _kept_apis() -> Callable[[Any, str, dict[str, Any]], Any]:
    """The client's API factory, keeping each API it makes (with its ``ApiClient`` and connection pool).

    The official client builds a new ``ApiClient`` on every attribute access (``client.crm.objects.batch_api``):
    a new configuration, a package-metadata read for its user agent, and a new urllib3 pool, so every call
    opened a new connection. Its settings are this session's and never change, so one of each is kept.
    """
    from hubspot.discovery.discovery_base import DiscoveryBase

    kept: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def factory(package: Any, api_name: str, config: dict[str, Any]) -> Any:
        key = (package.__name__, api_name)
        with lock:
            if key not in kept:
                kept[key] = DiscoveryBase._default_api_factory(package, api_name, config)
            return kept[key]

    return factory


class HubSpotSession(VendorSession):
    """HubSpot's chokepoint: the official client, built with this session's settings (base URL, the
    token, no retries: they belong to the job layer); every call sends the session's timeouts.

    Args:
        credentials: the token and the API base URL.
        options: the adapter's options (timeouts, the account's rate limit).
        redis: the shared connection (the limiter and metrics).
    """

    def __init__(self, credentials: HubSpotCredentials, options: HubSpotOptions, redis: Redis | None) -> None:
        from hubspot import HubSpot
        from urllib3.util.retry import Retry

        limiter = SharedRateLimiter(redis, "hubspot", options.rate_limit.requests, options.rate_limit.per_seconds)
        super().__init__("hubspot", redis=redis, timeouts=options.timeouts(), errors=ERRORS, limiter=limiter)
        token = credentials.access_token.get_secret_value() if credentials.access_token else ""
        self.client = HubSpot(access_token=token, host=credentials.api_base.rstrip("/"),
                              retry=Retry(total=0, raise_on_status=False), api_factory=_kept_apis())

    def request(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call one method of the client, with the session's timeouts.

        Raises:
            As :meth:`VendorSession.call`; a 409 is a :class:`ConflictError`.
        """
        return self.call(operation, lambda: fn(*args, _request_timeout=self.timeouts.pair(), **kwargs))

    def translate(self, exc: Exception, operation: str) -> tuple[str, SyncError] | None:
        from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

        if isinstance(exc, HTTPError):
            # with retries off, urllib3 wraps the failure in a MaxRetryError (its ``reason``)
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, ReadTimeoutError) or isinstance(exc, ReadTimeoutError):
                return self.timed_out(operation, reading=True)
            if isinstance(reason, ConnectTimeoutError):
                return self.timed_out(operation, reading=False)
            return self.unreachable(operation, exc)
        return super().translate(exc, operation)

    def answer_of(self, exc: Exception) -> Answer | None:
        # Each sub-package of the client has its own ApiException, and newer ones raise subclasses of it
        # (ServiceException for 5xx, NotFoundException, UnauthorizedException…).
        if not (hasattr(exc, "status") and any(c.__name__ == "ApiException" for c in type(exc).__mro__)):
            return None
        try:
            body = json.loads(getattr(exc, "body", None) or "{}")
        except (TypeError, ValueError):
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("message", getattr(exc, "reason", "") or ""))
        return Answer(status=int(getattr(exc, "status", 0) or 0), code=str(body.get("category") or ""),
                      message=message, headers=dict(getattr(exc, "headers", None) or {}), body=body)

    def refused(self, answer: Answer, operation: str) -> SyncError:
        details = {"correlationId": (answer.body or {}).get("correlationId")}
        if answer.status == 409:
            found = _EXISTING_ID.search(answer.message)
            return ConflictError(f"hubspot: conflict ({answer.message[:160]})", found.group(1) if found else None)
        if answer.status == 429:
            retry_after = answer.headers.get("Retry-After")
            interval = answer.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            seconds = float(retry_after) if retry_after else (float(interval) / 1000 if interval else 10.0)
            return self.errors.error(answer, operation=operation, retry_after=seconds, details=details)
        if answer.status in (401, 403):
            return self.errors.error(answer, operation=operation, setting="HUBSPOT_ACCESS_TOKEN", details=details,
                                     hint="; check HUBSPOT_ACCESS_TOKEN and the private app's scopes")
        names = re.findall(r'\\?"name\\?":\\?"([^"\\]+)', answer.message)
        return self.errors.error(answer, operation=operation, field=names[0] if names else None, details=details)
