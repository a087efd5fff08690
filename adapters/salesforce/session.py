"""Salesforce's chokepoint: every call of the adapter goes through :class:`SalesforceSession`.

It logs in with simple-salesforce's own flows (OAuth 2.0 JWT bearer, username-password, client
credentials), shares the access token with the other workers (encrypted, through Redis) and refreshes
it once on ``INVALID_SESSION_ID``; it reads the org's API usage from ``Sforce-Limit-Info`` on every
response and stops spending past a share of the daily limit, so the clinic's own integrations are not
starved; and it words Salesforce's refusals through the error table.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
from typing import TYPE_CHECKING, Any

import requests

from adapters.salesforce.errors import ERRORS, TRANSIENT
from adapters.salesforce.login import (
    _HTTP,
    _Login,
    login_arguments,
    login_domain,
    refused_login,
    session_cipher,
)
from adapters.salesforce.options import AuthMode, SalesforceCredentials, SalesforceOptions
from adapters.session import Answer, RequestsSession
from core import metrics
from core.errors import AuthError, FatalError, RetryableError, SyncError
from core.keys import family

#: the client id the relay's REST calls name in ``Sforce-Call-Options``: Salesforce ends the ``changeOrigin`` of
#: their change events with ``;client=chat2crm``, which tells the relay's saves from people's edits
CALL_CLIENT = "chat2crm"

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("chat2crm.salesforce")

#: the access token the workers share, encrypted (rq runs every job in a fork)
SESSION = family("salesforce", "session", ttl="options.session_cache_seconds", holds_pii=False, owner=__name__)
#: the org's API usage as Salesforce last reported it
API_USAGE = family("salesforce", "api-usage", ttl="options.api_usage_backoff_seconds", holds_pii=False,
                   owner=__name__)


class SalesforceSession(RequestsSession):
    """Salesforce's chokepoint: the login (simple-salesforce's flows; the token shared by the workers,
    encrypted, through Redis), the org's API usage, the timeouts, counting and metrics, and the error table.

    Args:
        credentials: the connected app's and the integration user's credentials, the login and instance URLs.
        options: the adapter's options.
        redis: the shared connection (the shared session, the API usage, metrics).
    """

    def __init__(self, credentials: SalesforceCredentials, options: SalesforceOptions, redis: Redis | None) -> None:
        super().__init__("salesforce", redis=redis, timeouts=options.timeouts(), errors=ERRORS)
        self.credentials = credentials
        self.version = str(options.api_version or credentials.api_version).lstrip("v")
        if not re.match(r"^\d{2}\.0$", self.version):
            raise ValueError(f"api_version must look like 62.0, got {self.version!r}")
        self.usage_share = options.api_usage_share
        self.usage_backoff = options.api_usage_backoff_seconds
        self.session_cache_seconds = options.session_cache_seconds
        # Salesforce's standard duplicate rules "Allow" a person's save with an alert, but refuse an API save
        # unless the request acknowledges the alert. The relay has already matched by key, phone and e-mail;
        # a rule's fuzzy name match is another patient with the same name. "Block" rules still block.
        self.default_headers = {"Sforce-Duplicate-Rule-Header": "allowSave=true"} \
            if options.duplicate_alerts == "save" else {}
        # the relay's saves name it as their client: their change events say so in changeOrigin, which tells
        # them from people's edits (adapters.salesforce.edits)
        self.default_headers["Sforce-Call-Options"] = f"client={CALL_CLIENT}"
        self.current: _Login | None = None
        #: token requests made (they do not count against the org's API limits)
        self.token_calls = 0
        #: the org's API usage as last reported (used, limit)
        self.usage: tuple[int, int] | None = None
        self._http: _HTTP | None = None

    # -- credentials -----------------------------------------------------------------------------
    def auth_mode(self) -> AuthMode:
        """The OAuth flow the credentials make (see :meth:`SalesforceCredentials.auth_mode`)."""
        return self.credentials.auth_mode()

    @property
    def http(self) -> _HTTP:
        """The ``requests`` session of every call (made when first needed: its login host depends on the flow)."""
        if self._http is None:
            try:
                mode = self.auth_mode()
            except AuthError:
                mode = "password"  # no complete flow: the login says which setting is missing
            self._http = _HTTP(self.timeouts, login_domain(self.credentials.login_url, mode)[1])
            self._http.hooks["response"].append(self._on_response)
        return self._http

    def _token(self) -> tuple[str, str]:
        """A new access token and the org's instance URL, from simple-salesforce's login flow.

        Raises:
            AuthError: the credentials are incomplete or refused (naming the setting).
            RetryableError: the token endpoint failed or did not answer.
        """
        from simple_salesforce import SalesforceLogin
        from simple_salesforce.exceptions import SalesforceAuthenticationFailed

        mode = self.auth_mode()
        domain = login_domain(self.credentials.login_url, mode)[0]
        kwargs: dict[str, Any] = {"session": self.http, "sf_version": self.version, "domain": domain}
        kwargs |= login_arguments(self.credentials, mode)
        self.token_calls += 1
        outcome = "ok"
        self.http.token_status = None
        try:
            token, instance = SalesforceLogin(**kwargs)
        except SalesforceAuthenticationFailed as exc:
            status = self.http.token_status or 0
            outcome = str(status or "refused")
            if status >= 500:
                raise RetryableError(f"salesforce: token endpoint error {status}", details={"status": status}) from None
            raise refused_login(mode, str(exc.code or ""), exc.auth_message, status) from None
        except requests.Timeout:
            outcome = "timeout"
            raise RetryableError("salesforce: the token endpoint timed out", details={"operation": "token"}) from None
        except requests.RequestException as exc:
            outcome = "network"
            raise RetryableError(f"salesforce: token endpoint unreachable ({type(exc).__name__})",
                                 details={"operation": "token"}) from None
        except (OSError, ValueError) as exc:  # the private key file: unreadable, or not a key
            outcome = "refused"
            raise AuthError(f"salesforce: the private key file cannot be used ({type(exc).__name__})",
                            setting="SALESFORCE_PRIVATE_KEY_FILE") from None
        finally:
            if self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter="salesforce", operation="token", outcome=outcome)
        return str(token), f"https://{instance}"

    def login(self, *, fresh: bool = False) -> _Login:
        """A session: the one the workers share (Redis, encrypted) unless ``fresh``, else a new token.

        rq runs every job in a fork, so a token kept only in memory would cost a token request per job.
        The shared copy is encrypted with a key derived from the credentials, so Redis alone does not
        give the token away.

        Raises:
            AuthError, RetryableError: as :meth:`_token`.
        """
        from simple_salesforce import Salesforce

        cached = None if fresh else self._shared()
        if cached is not None:
            token, instance = cached
        else:
            token, instance = self._token()
            instance = (self.credentials.instance_url or instance).rstrip("/")
            if not instance.startswith("https://"):
                raise AuthError("salesforce: SALESFORCE_INSTANCE_URL must be the org's https:// My Domain URL",
                                setting="SALESFORCE_INSTANCE_URL")
            self._share(token, instance)
            log.info("salesforce session opened", extra={"auth_mode": self.auth_mode()})
        client = Salesforce(instance_url=instance, session_id=token, version=self.version, session=self.http)
        self.current = _Login(token, instance, client)
        return self.current

    def _shared(self) -> tuple[str, str] | None:
        """The token and instance URL another worker shared, if any is still valid for these credentials."""
        if self.redis is None or self.session_cache_seconds <= 0:
            return None
        from cryptography.fernet import InvalidToken

        sealed = self.redis.get(SESSION.key())
        if not sealed:
            return None
        try:
            token, _, instance = session_cipher(self.credentials).decrypt(
                sealed, ttl=int(self.session_cache_seconds)).decode().partition("\n")
        except InvalidToken:
            return None  # other credentials (rotated): log in again
        return token, instance

    def _share(self, token: str, instance: str) -> None:
        if self.redis is not None and self.session_cache_seconds > 0:
            sealed = session_cipher(self.credentials).encrypt(f"{token}\n{instance}".encode())
            self.redis.set(SESSION.key(), sealed, ex=max(1, int(self.session_cache_seconds)))

    def _drop(self, token: str) -> None:
        self.current = None
        shared = self._shared()
        if self.redis is not None and shared is not None and shared[0] == token:
            self.redis.delete(SESSION.key())

    # -- the org's API usage -------------------------------------------------------------------
    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        found = re.search(r"api-usage=(\d+)/(\d+)", response.headers.get("Sforce-Limit-Info", ""))
        if not found:
            return
        self.usage = (int(found.group(1)), int(found.group(2)))
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(API_USAGE.key(), mapping={"used": self.usage[0], "max": self.usage[1]})
            pipe.expire(API_USAGE.key(), max(1, int(self.usage_backoff)))
            pipe.execute()

    def _guard_usage(self) -> None:
        """Refuse to spend the org's last API requests (they belong to the clinic's other integrations)."""
        usage = self.usage
        if self.redis is not None:
            shared = self.redis.hmget(API_USAGE.key(), "used", "max")
            if shared[0] is not None and shared[1] is not None:
                usage = (int(shared[0]), int(shared[1]))
        if usage and usage[1] and usage[0] / usage[1] >= self.usage_share:
            raise RetryableError(f"salesforce: the org has used {usage[0]} of its {usage[1]} daily API requests; the "
                                 f"relay keeps the last {round((1 - self.usage_share) * 100)}% for other integrations",
                                 retry_after=self.usage_backoff, details={"used": usage[0], "max": usage[1]})

    # -- calls ---------------------------------------------------------------------------------
    def path(self, rest: str) -> str:
        """``rest`` under the versioned REST root (``/services/data/v62.0/…``)."""
        return f"/services/data/v{self.version}/{rest}"

    def request(self, operation: str, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """One REST call (``path`` under ``/services/data/vXX.X/``). An expired session is refreshed once and the
        call sent again; a second refusal is an :class:`AuthError`.

        Raises:
            As :meth:`VendorSession.call`.
        """
        self._guard_usage()
        login = self.current or self.login()
        sent = {**self.default_headers, **(headers or {})}
        for attempt in (1, 2):
            try:
                return self.call(operation, lambda login=login: login.client.restful(  # type: ignore[misc]
                    path, params=params, method=method, json=json, headers=sent, timeout=self.timeouts.pair()))
            except AuthError as exc:
                if attempt == 2 or exc.details.get("code") != "INVALID_SESSION_ID":
                    raise
                login = self._refresh(login)
        raise AssertionError("unreachable")  # pragma: no cover - the second attempt returns or raises

    def download(self, operation: str, path: str) -> tuple[bytes, str]:
        """One REST read of raw bytes (a blob field: ``sobjects/ContentVersion/<id>/VersionData``) and their
        type; an expired session is refreshed once, as in :meth:`request`.

        Raises:
            As :meth:`VendorSession.call`.
        """
        self._guard_usage()
        login = self.current or self.login()
        for attempt in (1, 2):
            try:
                return self.call(operation, lambda login=login: self._bytes(login, path, operation))  # type: ignore[misc]
            except AuthError as exc:
                if attempt == 2 or exc.details.get("code") != "INVALID_SESSION_ID":
                    raise
                login = self._refresh(login)
        raise AssertionError("unreachable")  # pragma: no cover - the second attempt returns or raises

    def _bytes(self, login: _Login, path: str, operation: str) -> tuple[bytes, str]:
        from simple_salesforce.util import exception_handler

        response = self.http.get(f"{login.instance_url}{self.path(path)}", timeout=self.timeouts.pair(),
                                 headers={**self.default_headers, "Authorization": f"Bearer {login.token}"})
        if response.status_code >= 300:
            exception_handler(response, operation)  # raises simple-salesforce's exception for the status
        return response.content, response.headers.get("Content-Type", "application/octet-stream")

    def identity(self) -> tuple[str | None, str | None]:
        """The org's id and the integration user's id, from the identity URL of the last token this process
        asked for (``…/id/<org id>/<user id>``); (None, None) when it has used a shared session only."""
        parts = (self.http.identity or "").rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2].startswith("00D"):
            return parts[-2], parts[-1]
        return None, None

    def _refresh(self, expired: _Login) -> _Login:
        """Another worker may already have logged in again: use its session, else log in afresh."""
        shared = self._shared()
        if shared is not None and shared[0] != expired.token:
            return self.login()
        self._drop(expired.token)
        return self.login(fresh=True)

    # -- errors --------------------------------------------------------------------------------
    def answer_of(self, exc: Exception) -> Answer | None:
        from simple_salesforce.exceptions import SalesforceError

        if not isinstance(exc, SalesforceError):
            return None
        content = exc.content
        errors: list[Any] = content if isinstance(content, list) else [content] if isinstance(content, dict) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        return Answer(status=int(exc.status), code=str(first.get("errorCode") or first.get("statusCode") or ""),
                      message=str(first.get("message") or (content if isinstance(content, str) else "")),
                      body=first)

    def subresponse(self, status: int, body: Any, operation: str) -> SyncError:
        """The error of a composite subresponse: simple-salesforce's exception for its status (its own table),
        through the same error table as any call."""
        from simple_salesforce.util import exception_handler

        response = requests.Response()
        response.status_code = status
        response._content = jsonlib.dumps(body).encode()
        response.url = self.path(operation)
        try:
            exception_handler(response, operation)
        except Exception as exc:
            translated = self.translate(exc, operation)
            if translated is not None:
                return translated[1]
        return FatalError(f"salesforce: {operation} failed ({status})", details={"status": status})

    def refused(self, answer: Answer, operation: str) -> SyncError:
        fields = [str(f) for f in (answer.body or {}).get("fields") or []]
        details = {"errorCode": answer.code, "fields": fields}
        if answer.code == "REQUEST_LIMIT_EXCEEDED":
            # TotalRequests: the daily budget (rolling 24 h); otherwise the concurrent-request limit
            wait = self.usage_backoff * 4 if "TotalRequests" in answer.message else 20.0
            return self.errors.error(answer, operation=operation, retry_after=wait, details=details)
        if answer.status == 401 and answer.code not in TRANSIENT:
            try:
                mode: str = self.auth_mode()
            except AuthError:
                mode = "password"
            setting = {"jwt": "SALESFORCE_PRIVATE_KEY_FILE", "password": "SALESFORCE_PASSWORD"}.get(
                mode, "SALESFORCE_CLIENT_SECRET")
            return self.errors.error(answer, operation=operation, setting=setting, details=details,
                                     hint=f"; check the {mode} credentials and the connected app's policies")
        if answer.status == 403 and answer.code not in TRANSIENT:
            return self.errors.error(answer, operation=operation, setting="SALESFORCE_USERNAME", details=details,
                                     hint="; check the integration user's permission set")
        if answer.code == "DUPLICATES_DETECTED":
            return _duplicates_detected(answer, details)
        if answer.code == "INVALID_FIELD" and not fields:
            found = re.search(r"No such column '([^']+)'", answer.message) or re.search(
                r"field[s]?:? ([A-Za-z0-9_]+__c)", answer.message)
            fields = [found.group(1)] if found else []
        return self.errors.error(answer, operation=operation, field=fields[0] if fields else None, details=details)


def _duplicates_detected(answer: Answer, details: dict[str, Any]) -> FatalError:
    """A duplicate rule's block, naming the rule and the records it matched.

    We do not adopt a duplicate rule's fuzzy match: two patients can share a name or a phone, and
    merging health records is a person's decision.
    """
    result = (answer.body or {}).get("duplicateResult") or {}
    matches = [m.get("record", {}).get("Id") for r in result.get("matchResults") or []
               for m in r.get("matchRecords") or []]
    return FatalError(f"salesforce: the duplicate rule {result.get('duplicateRule', '?')} blocked the save "
                      f"(matches: {', '.join(str(m) for m in matches) or 'none named'}); set the rule to "
                      "allow saves for the integration user, or merge in Salesforce",
                      field=result.get("duplicateRule"),
                      details={**details, "status": answer.status, "matches": matches})
