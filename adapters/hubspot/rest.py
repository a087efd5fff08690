"""The HubSpot calls the official client has no methods for (custom channels, conversations inboxes, OAuth
tokens, files by multipart), sent with ``requests`` through the same chokepoint as the adapter's other calls:
the shared rate limiter, the timeouts, call counting and metrics, HubSpot's error table.

Four ways a call is authorized, as HubSpot's endpoints require:

- ``oauth``: the installed app's access token (the custom channel's messages, inboxes, channel accounts, files);
  when HubSpot answers 401 ``EXPIRED_AUTHENTICATION`` (a token that expired under us, a clock off by a few
  seconds) the token is refreshed once and the call sent again;
- ``private``: the private app's token (HUBSPOT_ACCESS_TOKEN), for the timeline inbox on lower tiers;
- ``developer``: the developer account's API key in the ``hapikey`` query parameter (registering the channel);
- ``none``: the OAuth token endpoint, which takes the app's client id and secret in its form body.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, Protocol

import requests

from adapters._ratelimit import SharedRateLimiter
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.session import ERRORS, ConflictError
from adapters.session import Answer, RequestsSession
from core.errors import AuthError, RetryableError, SyncError
from core.http import session as http_session

if TYPE_CHECKING:
    from redis import Redis

Auth = Literal["oauth", "private", "developer", "none"]
#: the error category HubSpot answers a call made with an expired OAuth access token with
EXPIRED = "EXPIRED_AUTHENTICATION"


class TokenSource(Protocol):
    """Where the installed app's access token comes from (:class:`adapters.hubspot.oauth.HubSpotOAuth`)."""

    def access_token(self) -> str:
        """A token valid for a while yet (refreshed first when it is about to expire)."""

    def refresh(self, stale: str | None = None) -> str:
        """A new token, unless another worker already replaced ``stale``."""

    def reinstall_hint(self) -> str:
        """Where the admin installs the app again."""


class _Answered(Exception):
    """HubSpot answered with an error status."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class HubSpotRest(RequestsSession):
    """``requests`` calls to HubSpot through the adapter's chokepoint.

    Args:
        credentials: the adapter's credentials (API base, private app token, developer API key).
        options: the adapter's options (timeouts, the account's rate limit).
        redis: the shared connection (the limiter, metrics).
    """

    def __init__(self, credentials: HubSpotCredentials, options: HubSpotOptions, redis: Redis | None) -> None:
        # The app's OAuth calls have a budget of their own per portal, apart from the private app's: another window.
        limiter = SharedRateLimiter(redis, "hubspot", options.rate_limit.requests, options.rate_limit.per_seconds,
                                    window="app")
        super().__init__("hubspot", redis=redis, timeouts=options.timeouts(), errors=ERRORS, limiter=limiter)
        self.credentials = credentials
        self.base = credentials.api_base.rstrip("/")
        self.http = http_session()
        self.http.headers["Accept"] = "application/json"
        #: set by the adapter once the app's OAuth is built (None: the app is not configured)
        self.tokens: TokenSource | None = None

    # -- sending -------------------------------------------------------------------------------
    def send(self, operation: str, method: str, path: str, *, auth: Auth = "oauth", params: dict[str, Any] | None = None,
             json_body: Any = None, form: dict[str, str] | None = None,
             files: dict[str, Any] | None = None) -> Any:
        """One call; returns the decoded JSON answer (``{}`` for an empty one).

        Raises:
            RetryableError: 429, 5xx, a time-out, a connection error.
            AuthError: the credentials ``auth`` names were refused (naming the setting, or where to reinstall).
            ConflictError: a 409.
            FatalError: any other refusal.
        """
        if auth != "oauth":
            return self._send(operation, method, path, auth=auth, token=None, params=params, json_body=json_body,
                              form=form, files=files)
        if self.tokens is None:
            raise AuthError("hubspot: the HubSpot app is not configured (HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET)",
                            setting="HUBSPOT_CLIENT_ID")
        token = self.tokens.access_token()
        try:
            return self._send(operation, method, path, auth=auth, token=token, params=params, json_body=json_body,
                              form=form, files=files)
        except AuthError as exc:
            if exc.details.get("code") != EXPIRED:
                raise
        # expired under us (or our clock is behind HubSpot's): one refresh, one more try
        return self._send(operation, method, path, auth=auth, token=self.tokens.refresh(stale=token), params=params,
                          json_body=json_body, form=form, files=files)

    def _send(self, operation: str, method: str, path: str, *, auth: Auth, token: str | None,
              params: dict[str, Any] | None, json_body: Any, form: dict[str, str] | None,
              files: dict[str, Any] | None) -> Any:
        headers: dict[str, str] = {}
        query = dict(params or {})
        if auth == "oauth" and token:
            headers["Authorization"] = f"Bearer {token}"
        elif auth == "private":
            secret = self.credentials.access_token
            headers["Authorization"] = f"Bearer {secret.get_secret_value() if secret else ''}"
        elif auth == "developer":
            key = self.credentials.developer_api_key
            query["hapikey"] = key.get_secret_value() if key else ""

        def send() -> Any:
            response = self.http.request(method, self.base + path, params=query or None, json=json_body, data=form,
                                         files=files, headers=headers, timeout=self.timeouts.pair())
            if not response.ok:
                raise _Answered(response)
            if not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                raise RetryableError("hubspot: answer was not JSON", details={"operation": operation}) from None

        try:
            return self.call(operation, send)
        except AuthError as exc:
            raise self._auth_error(exc, auth) from None

    def _auth_error(self, exc: AuthError, auth: Auth) -> AuthError:
        """The refusal, naming what to fix for the credentials that were used."""
        if exc.details.get("code") == EXPIRED:
            return exc  # the caller refreshes
        if auth == "oauth":
            hint = self.tokens.reinstall_hint() if self.tokens is not None else ""
            return AuthError(f"{exc.message}; the app's access was refused: {hint}", setting="HUBSPOT_CLIENT_ID",
                             details=exc.details)
        setting = {"private": "HUBSPOT_ACCESS_TOKEN", "developer": "HUBSPOT_DEVELOPER_API_KEY",
                   "none": "HUBSPOT_CLIENT_SECRET"}[auth]
        return AuthError(f"{exc.message}; check {setting}", setting=setting, details=exc.details)

    # -- HubSpot's answers ---------------------------------------------------------------------
    def answer_of(self, exc: Exception) -> Answer | None:
        if not isinstance(exc, _Answered):
            return None
        response = exc.response
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        # The API's errors name a ``category``; the OAuth token endpoint names its error in ``status``.
        status_word = body.get("status")
        code = body.get("category") or (status_word if status_word not in (None, "error") else "") or ""
        return Answer(status=response.status_code, code=str(code), message=str(body.get("message") or response.reason
                                                                               or ""),
                      headers=dict(response.headers), body=body)

    def refused(self, answer: Answer, operation: str) -> SyncError:
        details = {"correlationId": (answer.body or {}).get("correlationId"),
                   "subCategory": (answer.body or {}).get("subCategory")}
        if answer.status == 409:
            return ConflictError(f"hubspot: conflict ({answer.message[:160]})", None)
        if answer.status == 429:
            retry_after = answer.headers.get("Retry-After")
            interval = answer.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            try:
                seconds = float(retry_after) if retry_after else (float(interval) / 1000 if interval else 10.0)
            except ValueError:
                seconds = 10.0
            return self.errors.error(answer, operation=operation, retry_after=seconds, details=details)
        return self.errors.error(answer, operation=operation, details=details)


def dumps(value: Any) -> str:
    """JSON for a multipart field (HubSpot's files API takes ``options`` as a JSON string)."""
    return json.dumps(value, separators=(",", ":"))
