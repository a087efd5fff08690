"""The Salesforce adapter, on the official ``simple-salesforce`` client.

Calls for a lead: 2 API calls, whatever happens (new lead, returning patient, replay, handoff):

1. one SOQL query on the contact object (Lead, or Contact) that finds the person by the contact
   key (a custom External ID field), then by phone or e-mail (records people made), and returns
   in parent-child subqueries what idempotency needs: the note with this lead's marker, the
   tasks, the campaign memberships and, with Contact + Case, the request record with this
   reference and its own notes and tasks (with Contact + Opportunity, a second query in the same
   call finds the Opportunity, linked to the Contact by an OpportunityContactRole). It is sent as the subrequest of a
   composite request, like every request whose URL would name patient data (the contact key holds
   the phone number): URLs end up in HTTP debug logs, bodies do not;
2. one ``POST /composite`` request that writes only what is missing: the contact upserted on its
   External ID (``PATCH …/sobjects/Lead/Chat2CRM_Contact_Key__c/<key>``), the request record
   upserted on ``Chat2CRM_Reference__c`` (Contact + Case mode), the Note, the handoff Task, the
   CampaignMember, each referring to the earlier ones with ``@{ref.id}``.

SOQL reads the database itself (it is strongly consistent, unlike SOSL search, which the relay does
not use): every "did this write already happen?" decision is that query, or an upsert on an External
ID. ``allOrNone`` is false on purpose: each subrequest is idempotent on its own (upserts on External
IDs, notes and tasks checked by marker, a membership that exists answers ``DUPLICATE_VALUE``), so a
part that fails (a Campaign that does not exist, a membership already there) must not undo the
lead; what did fail is written by the next attempt, which sees in step 1 what exists.

Every call goes through :class:`SalesforceSession`: simple-salesforce's own login flows (OAuth 2.0
JWT bearer, username-password, client credentials; the access token shared by the workers,
encrypted, through Redis, and refreshed once on ``INVALID_SESSION_ID``), the org's API usage read
from ``Sforce-Limit-Info`` on every response (the adapter stops spending past a share of the daily
limit, so the clinic's own integrations are not starved), the timeouts, call counting and metrics,
and Salesforce's error table over simple-salesforce's exceptions.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from adapters.base import (
    AdapterCredentials,
    AdapterOptions,
    CredentialReport,
    CRMAdapter,
    CRMSchema,
    ErasureReport,
    FieldInfo,
    NoteWrite,
    ObjectInfo,
    Ref,
    SyncPlan,
    SyncResult,
    TaskWrite,
)
from adapters.session import Answer, ErrorTable, RequestsSession, Timeouts, rule
from core import metrics
from core.errors import AuthError, FatalError, RetryableError, SkippableError, SyncError
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("chat2crm.salesforce")

DAY = 86400
#: the access token the workers share, encrypted (rq runs every job in a fork)
SESSION = family("salesforce", "session", ttl="options.session_cache_seconds", holds_pii=False, owner=__name__)
#: the org's API usage as Salesforce last reported it
API_USAGE = family("salesforce", "api-usage", ttl="options.api_usage_backoff_seconds", holds_pii=False,
                   owner=__name__)
CAMPAIGNS = family("salesforce", "campaign:{name}", ttl=7 * DAY, holds_pii=False, owner=__name__)
HOLDERS = family("salesforce", "holders:{field}", ttl=DAY, holds_pii=False, owner=__name__)

AuthMode = Literal["jwt", "password", "client_credentials"]
#: transient conditions Salesforce reports as 4xx
TRANSIENT = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
#: Salesforce's answers → the error tree. simple-salesforce raises one exception class per status
#: (SalesforceMoreThanOneRecord 300, SalesforceMalformedRequest 400, SalesforceExpiredSession 401,
#: SalesforceRefusedRequest 403, SalesforceResourceNotFound 404, SalesforceGeneralError otherwise);
#: the error code in its content refines it.
ERRORS = ErrorTable("salesforce", [
    rule("retryable", codes={"REQUEST_LIMIT_EXCEEDED"}, what="API request limit exceeded"),
    rule("retryable", codes=TRANSIENT, what="server busy"),
    rule("retryable", (500, 599), what="server error"),
    rule("auth", 401, what="the session was refused"),
    rule("auth", 403, what="the integration user may not do this"),
    rule("fatal", 300, what="several records hold the same External ID; make the field Unique"),
    rule("fatal", codes={"DUPLICATES_DETECTED"}, what="a duplicate rule blocked the save"),
])
#: the child relationship of the contact object that holds the request records
RECORD_RELATIONSHIPS = {("Contact", "Case"): "Cases"}
#: request records linked to the contact by a junction object, not a lookup on the record: (object, field)
RECORD_JUNCTIONS = {("Contact", "Opportunity"): ("OpportunityContactRole", "OpportunityId")}
#: the field that holds each record object's status / stage (its "pipeline")
STAGE_FIELDS = {"Lead": "Status", "Case": "Status", "Opportunity": "StageName"}
#: fields a contact object cannot be created without
REQUIRED_TO_CREATE = {"Lead": ("LastName", "Company"), "Contact": ("LastName",)}
PRIORITIES = {"high": "High", "medium": "Normal", "low": "Low"}
_TAGS = re.compile(r"<[^>]+>")
_BLOCKS = re.compile(r"</(p|li|div|h\d)>|<br\s*/?>", re.I)
_RULE_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


class CampaignMember(BaseModel):
    """Add the contact to the Campaign whose Name is the mapped ``field``'s value, with ``status``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, description="The mapped field holding the Campaign's Name.")
    status: str = Field(default="Responded", min_length=1, description="The member status.")


class SalesforceOptions(AdapterOptions):
    """The Salesforce mapping's ``options:``."""

    model_config = ConfigDict(title="salesforce options")

    api_version: str | None = Field(default=None, pattern=r"^v?\d{2}\.0$",
                                    description="The REST API version (62.0); default SALESFORCE_API_VERSION.")
    assignment: bool | str = Field(default="on", description='Assignment rules on creation: "on", "off", or the '
                                                             "id of an AssignmentRule (01Q…).")
    api_usage_share: float = Field(default=0.9, gt=0, le=1,
                                   description="Stop at this share of the org's daily API requests.")
    api_usage_backoff_seconds: float = Field(default=900, gt=0,
                                             description="How long the relay waits when that share is spent.")
    campaign_member: CampaignMember | None = Field(default=None, description="Campaign membership for the contact.")
    duplicate_alerts: Literal["save", "stop"] = Field(
        default="save", description="save: acknowledge a duplicate rule's alert (the relay has matched by key, "
                                    "phone and e-mail already); stop: let the alert stop the save.")
    session_cache_seconds: float = Field(default=1800, ge=0,
                                         description="How long workers share one access token (0: not shared).")

    @field_validator("assignment")
    @classmethod
    def _assignment(cls, value: bool | str) -> bool | str:
        if isinstance(value, bool) or str(value).lower() in ("on", "off", "true", "false") or _RULE_ID.match(value):
            return value
        raise ValueError(f"assignment must be on, off or an AssignmentRule id, got {value!r}")

    def assign_header(self) -> str:
        """The ``Sforce-Auto-Assign`` header a create sends."""
        value = self.assignment
        if value is True or str(value).lower() in ("on", "true"):
            return "TRUE"
        if value is False or str(value).lower() in ("off", "false"):
            return "FALSE"
        return str(value)


class SalesforceCredentials(AdapterCredentials):
    """What the Salesforce adapter may read of the settings."""

    settings_prefix = "salesforce_"

    instance_url: str | None = None
    login_url: str = "https://login.salesforce.com"
    api_version: str = "62.0"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key_file: Path | None = None

    def auth_mode(self) -> AuthMode:
        """Which OAuth 2.0 flow these make: JWT bearer when a private key file is set, the username-password
        flow when a password is, client credentials otherwise.

        Raises:
            AuthError: they make no complete flow (naming what is missing).
        """
        has_secret = self.client_secret is not None
        needed: tuple[tuple[str, object], ...]
        if self.private_key_file:
            needed = (("client_id", self.client_id), ("username", self.username),
                      ("private_key_file", self.private_key_file))
            mode: AuthMode = "jwt"
        elif self.password is not None:
            needed = (("client_id", self.client_id), ("client_secret", has_secret), ("username", self.username),
                      ("password", True))
            mode = "password"
        else:
            needed = (("client_id", self.client_id), ("client_secret", has_secret))
            mode = "client_credentials"
        missing = [self.setting(name) for name, value in needed if not value]
        if missing:
            raise AuthError(f"salesforce: the {mode} flow needs {', '.join(missing)} (set a private key file for "
                            "JWT bearer, a username and password for the password flow, or a client id and secret "
                            "for client credentials)", setting=missing[0])
        return mode


class _Login:
    """An access token and the client built on it."""

    def __init__(self, token: str, instance_url: str, client: Any) -> None:
        self.token = token
        self.instance_url = instance_url
        self.client = client


class _HTTP(requests.Session):
    """``requests`` as simple-salesforce uses it. Its login flows call ``https://<domain>.salesforce.com``;
    when SALESFORCE_LOGIN_URL names another host (an emulator, a proxy) they go there instead. A request
    sent without a timeout (simple-salesforce's logins send none) gets the session's."""

    def __init__(self, timeouts: Timeouts, redirect: tuple[str, str] | None) -> None:
        super().__init__()
        self.timeouts = timeouts
        self.redirect = redirect
        #: the status of the last token request (simple-salesforce reports every refusal alike)
        self.token_status: int | None = None
        #: the OAuth scopes the last token granted
        self.scopes: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        if self.redirect and text.startswith(self.redirect[0] + "/"):
            text = self.redirect[1] + text[len(self.redirect[0]):]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeouts.pair()
        response = super().request(method, text, *args, **kwargs)
        if "/services/oauth2/token" in text:
            self.token_status = response.status_code
            if response.ok:
                try:
                    self.scopes = str(response.json().get("scope") or "").split()
                except ValueError:
                    self.scopes = []
        return response


def login_domain(login_url: str, mode: AuthMode) -> tuple[str, tuple[str, str] | None]:
    """simple-salesforce's ``domain`` for SALESFORCE_LOGIN_URL (``login``, ``test``, ``acme.my``), and, when that
    URL is not on salesforce.com, the login host to send to it instead."""
    host = (urlsplit(login_url).hostname or "").lower()
    if host.endswith(".salesforce.com"):
        return host.removesuffix(".salesforce.com"), None
    domain = "my-domain.my" if mode == "client_credentials" else "login"  # client credentials need a My Domain
    return domain, (f"https://{domain}.salesforce.com", login_url.rstrip("/"))


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

        c = self.credentials
        mode = self.auth_mode()
        domain = login_domain(c.login_url, mode)[0]
        kwargs: dict[str, Any] = {"session": self.http, "sf_version": self.version, "domain": domain}
        if mode == "jwt":
            kwargs |= {"username": c.username, "consumer_key": c.client_id, "privatekey_file": str(c.private_key_file)}
        elif mode == "password":
            # the password flow takes the password with the security token appended
            kwargs |= {"username": c.username, "password": _secret(c.password) + _secret(c.security_token),
                       "consumer_key": c.client_id, "consumer_secret": _secret(c.client_secret)}
        else:
            kwargs |= {"consumer_key": c.client_id, "consumer_secret": _secret(c.client_secret)}
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
            raise self._refused_login(mode, str(exc.code or ""), exc.auth_message, status) from None
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

    @staticmethod
    def _refused_login(mode: AuthMode, error: str, description: str, status: int) -> AuthError:
        setting = {"invalid_client_id": "SALESFORCE_CLIENT_ID", "invalid_client": "SALESFORCE_CLIENT_SECRET"}.get(
            error) or {"jwt": "SALESFORCE_PRIVATE_KEY_FILE", "password": "SALESFORCE_PASSWORD",
                       "client_credentials": "SALESFORCE_CLIENT_SECRET"}[mode]
        hint = {"password": " (the password flow sends the password with SALESFORCE_SECURITY_TOKEN appended)",
                "jwt": " (the certificate on the connected app must match the key, and the user must be "
                       "pre-authorized)",
                "client_credentials": " (the connected app needs a Run As user for client credentials; "
                                      "SALESFORCE_LOGIN_URL must be the org's My Domain URL)"}[mode]
        return AuthError(f"salesforce: the {mode} token request was refused: {error}: {description[:120]}{hint}",
                         setting=setting, details={"status": status, "error": error})

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

    def _fernet(self) -> Any:
        import base64
        import hashlib

        from cryptography.fernet import Fernet

        c = self.credentials
        material = "|".join([str(c.client_id), _secret(c.client_secret), _secret(c.password),
                             str(c.private_key_file or ""), str(c.login_url)])
        digest = hashlib.sha256(b"chat2crm salesforce session\0" + material.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def _shared(self) -> tuple[str, str] | None:
        if self.redis is None or self.session_cache_seconds <= 0:
            return None
        from cryptography.fernet import InvalidToken

        sealed = self.redis.get(SESSION.key())
        if not sealed:
            return None
        try:
            token, _, instance = self._fernet().decrypt(sealed, ttl=int(self.session_cache_seconds)).decode() \
                .partition("\n")
        except InvalidToken:
            return None  # other credentials (rotated): log in again
        return token, instance

    def _share(self, token: str, instance: str) -> None:
        if self.redis is not None and self.session_cache_seconds > 0:
            sealed = self._fernet().encrypt(f"{token}\n{instance}".encode())
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

    def _refresh(self, expired: _Login) -> _Login:
        """Another worker may already have logged in again: use its session, else log in afresh."""
        shared = self._shared()
        if shared is not None and shared[0] != expired.token:
            return self.login()
        self._drop(expired.token)
        return self.login(fresh=True)

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
            # We do not adopt a duplicate rule's fuzzy match: two patients can share a name or a phone, and
            # merging health records is a person's decision.
            result = (answer.body or {}).get("duplicateResult") or {}
            matches = [m.get("record", {}).get("Id") for r in result.get("matchResults") or []
                       for m in r.get("matchRecords") or []]
            return FatalError(f"salesforce: the duplicate rule {result.get('duplicateRule', '?')} blocked the save "
                              f"(matches: {', '.join(str(m) for m in matches) or 'none named'}); set the rule to "
                              "allow saves for the integration user, or merge in Salesforce",
                              field=result.get("duplicateRule"),
                              details={**details, "status": answer.status, "matches": matches})
        if answer.code == "INVALID_FIELD" and not fields:
            found = re.search(r"No such column '([^']+)'", answer.message) or re.search(
                r"field[s]?:? ([A-Za-z0-9_]+__c)", answer.message)
            fields = [found.group(1)] if found else []
        return self.errors.error(answer, operation=operation, field=fields[0] if fields else None, details=details)


class SalesforceAdapter(CRMAdapter):
    """Writes leads into Salesforce: a Lead (or a Contact and a Case or an Opportunity), a Note, a Task on
    handoff, a CampaignMember."""

    name = "salesforce"
    requires = ("simple_salesforce",)
    Options = SalesforceOptions
    Credentials = SalesforceCredentials
    cache_families = MappingProxyType({"campaign": CAMPAIGNS, "holders": HOLDERS})

    options: SalesforceOptions
    session: SalesforceSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = SalesforceSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.version = self.session.version
        self.assign_header = self.options.assign_header()

    def auth_mode(self) -> AuthMode:
        """Which OAuth 2.0 flow the credentials make.

        Raises:
            AuthError: they make no complete flow (naming what is missing).
        """
        return self.session.auth_mode()

    def _call(self, operation: str, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> Any:
        return self.session.request(operation, method, path, json=json, params=params, headers=headers)

    def _map(self, status: int, content: Any, operation: str) -> SyncError:
        """A composite subresponse's ``[{"message", "errorCode", "fields"}]`` → the error tree."""
        return self.session.subresponse(status, content, operation)

    def _version_path(self, rest: str) -> str:
        return self.session.path(rest)

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            login = self.session.login(fresh=True)
            limits = self._call("limits", "GET", "limits/") or {}
        except (AuthError, RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        daily = limits.get("DailyApiRequests") or {}
        problems = []
        if daily.get("Max"):
            used = int(daily["Max"]) - int(daily.get("Remaining", 0))
            if used / int(daily["Max"]) >= self.options.api_usage_share:
                problems.append(f"the org has used {used} of {daily['Max']} daily API requests")
        return CredentialReport(ok=not problems, account=login.instance_url, scopes=self.session.http.scopes,
                                problems=problems)

    def describe(self, objects: list[str]) -> CRMSchema:
        """One composite call describes every object (fields, External IDs, status/stage picklists)."""
        schema = CRMSchema()
        if not objects:
            return schema
        subrequests = [{"method": "GET", "url": self._version_path(f"sobjects/{obj}/describe"),
                        "referenceId": f"d{i}"} for i, obj in enumerate(objects)]
        response = self._call("describe", "POST", "composite", json={"allOrNone": False,
                                                                     "compositeRequest": subrequests})
        for obj, sub in zip(objects, response["compositeResponse"], strict=True):
            if sub["httpStatusCode"] >= 400:
                if sub["httpStatusCode"] == 404:
                    continue  # check_online reports the missing object
                raise self._map(sub["httpStatusCode"], sub["body"], "describe")
            info = ObjectInfo(name=obj)
            for f in sub["body"]["fields"]:
                info.fields[f["name"]] = FieldInfo(
                    name=f["name"], label=f.get("label"), type=f.get("type", "string"),
                    options=[p["value"] for p in f.get("picklistValues") or [] if p.get("active", True)],
                    unique=bool(f.get("externalId") and f.get("unique")) or f["name"] == "Id")
            stage = STAGE_FIELDS.get(obj)
            if stage and stage in info.fields:
                info.pipelines[stage] = list(info.fields[stage].options)
            schema.objects[obj] = info
        return schema

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Say exactly which fields an admin must create, or create them through the Tooling API.

        Each missing custom field is created (``apply``) when the integration user may customize
        the org; otherwise, and for every change the API cannot make, the line says what to do in
        Setup. Created fields still need field-level security for the integration user.
        """
        lines: list[str] = []
        live = self.describe(list(required.objects))
        created = False
        for obj, info in required.objects.items():
            have = live.objects.get(obj)
            if have is None:
                lines.append(f"MISSING object {obj}: this org has no {obj} (or the integration user cannot see it)")
                continue
            for name, wanted in info.fields.items():
                found = have.fields.get(name)
                external = wanted.unique
                spec = _field_spec(name, wanted, external)
                if found is not None:
                    if external and not found.unique:
                        lines.append(f"TO DO {obj}.{name}: edit the field and tick External ID and Unique "
                                     f"(Setup → Object Manager → {obj} → Fields & Relationships)")
                    else:
                        lines.append(f"ok {obj}.{name}")
                    continue
                if not name.endswith("__c"):
                    lines.append(f"MISSING {obj}.{name}: a standard field this org does not show the integration "
                                 "user; check field-level security or the mapping")
                    continue
                label = _describe_spec(spec)
                if not apply:
                    lines.append(f"would create {obj}.{name}: {label}")
                    continue
                try:
                    self._call("custom_field", "POST", "tooling/sobjects/CustomField",
                               json={"FullName": f"{obj}.{name}", "Metadata": spec})
                except (AuthError, FatalError) as exc:
                    lines.append(f"TO DO {obj}.{name}: create it in Setup → Object Manager → {obj} → Fields & "
                                 f"Relationships as {label} (the API refused: {exc.message[:100]})")
                    continue
                created = True
                lines.append(f"created {obj}.{name}: {label}")
            for stage_field, values in info.pipelines.items():
                have_values = have.pipelines.get(stage_field, have.fields.get(stage_field, FieldInfo(name="")).options)
                for value in values:
                    state = "ok" if value in have_values else f"TO DO add the value to {obj}.{stage_field} in Setup"
                    lines.append(f"{state} {obj}.{stage_field} value {value!r}")
        if created:
            lines.append("then: give the integration user's permission set Read and Edit access to the created "
                         "fields (field-level security is not granted by the Tooling API)")
        return lines


    # -- reading -------------------------------------------------------------------------------
    def _one(self, operation: str, method: str, path: str, *, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        """One request sent as a composite of one subrequest: a query or an upsert URL holds patient data
        (a phone in the contact key, an e-mail in a WHERE), and request lines end up in HTTP debug logs;
        a subrequest's URL travels in the body. Still one API call.
        """
        sub: dict[str, Any] = {"method": method, "url": self._version_path(path), "referenceId": "one"}
        if body is not None:
            sub["body"] = body
        response = self._call(operation, "POST", "composite", json={"allOrNone": True, "compositeRequest": [sub]},
                              headers=headers)
        result = response["compositeResponse"][0]
        if int(result["httpStatusCode"]) >= 300:
            raise self._map(int(result["httpStatusCode"]), result["body"], operation)
        return result["body"]

    def _soql_many(self, operation: str, texts: list[str]) -> list[list[dict[str, Any]]]:
        """Several queries in one composite call."""
        subs = [{"method": "GET", "url": self._version_path("query/?q=" + quote(text)), "referenceId": f"q{i}"}
                for i, text in enumerate(texts)]
        response = self._call(operation, "POST", "composite", json={"allOrNone": False, "compositeRequest": subs})
        out = []
        for result in response["compositeResponse"]:
            if int(result["httpStatusCode"]) >= 300:
                raise self._map(int(result["httpStatusCode"]), result["body"], operation)
            out.append(list((result["body"] or {}).get("records") or []))
        return out

    def _soql(self, operation: str, text: str) -> list[dict[str, Any]]:
        result = self._one(operation, "GET", "query/?q=" + quote(text)) or {}
        return list(result.get("records") or [])

    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None, email: str | None = None,
                     object: str | None = None, properties: list[str] | None = None) -> Ref | None:
        sobject = object or "Lead"
        where = []
        if key:
            where.append(f"{key[0]} = {_quote(key[1])}")
        if phone:
            where.append(_phone_filter(phone))
        if email:
            where.append(f"Email = {_quote(email)}")
        if not where:
            return None
        fields = list(dict.fromkeys(["Id", *([key[0]] if key else []), *(["Phone", "MobilePhone"] if phone else []),
                                     *(["Email"] if email else []), *(properties or ["FirstName", "LastName",
                                                                                     "Email", "Phone"])]))
        rows = self._soql("find", _select(fields, sobject, " OR ".join(where), 10))
        best = _pick(rows, key, phone, email)
        if best is None:
            return None
        values = {k: v for k, v in best.items() if k != "attributes"}
        return Ref(object=sobject, id=str(best["Id"]), properties=values)


    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Find the person wherever the key field lives (Lead, Contact) and delete them with their Cases (one
        collections call; Salesforce deletes their notes, tasks and memberships with them), or blank their
        identifying fields. 2 calls (3 when which objects hold the key field is not cached)."""
        holders = self._key_holders(key[0])
        if not holders:
            return ErasureReport(mode=mode, found=False)
        subrequests = []
        for sobject in holders:
            children = ["(SELECT Id FROM Cases)", "(SELECT OpportunityId FROM OpportunityContactRoles)"] \
                if sobject == "Contact" else []
            subrequests.append({"method": "GET", "referenceId": sobject.lower(), "url": self._version_path(
                "query/?q=" + quote(_select(["Id", *children], sobject, f"{key[0]} = {_quote(key[1])}")))})
        response = self._call("erase_find", "POST", "composite", json={"allOrNone": False,
                                                                       "compositeRequest": subrequests})
        found: list[tuple[str, str]] = []
        for sub in response["compositeResponse"]:
            if sub["httpStatusCode"] >= 400:
                raise self._map(sub["httpStatusCode"], sub["body"], "erase_find")
            for row in sub["body"].get("records") or []:
                for item in (row.get("Cases") or {}).get("records") or []:
                    found.append(("Case", str(item["Id"])))
                for item in (row.get("OpportunityContactRoles") or {}).get("records") or []:
                    if ("Opportunity", str(item["OpportunityId"])) not in found:
                        found.append(("Opportunity", str(item["OpportunityId"])))
                found.append((str(row["attributes"]["type"]), str(row["Id"])))
        if not found:
            return ErasureReport(mode=mode, found=False)
        if mode == "delete":
            for start in range(0, len(found), 200):
                ids = ",".join(i for _, i in found[start:start + 200])
                results = self._call("erase", "DELETE", "composite/sobjects",
                                     params={"ids": ids, "allOrNone": "true"}) or []
                failed = [r for r in results if not r.get("success")]
                if failed:
                    raise self._map(400, failed[0].get("errors") or [], "erase")
        else:
            for sobject, record_id in found:
                if sobject in ("Lead", "Contact"):
                    blank = {"FirstName": None, "LastName": "Erased", "Email": None, "Phone": None,
                             "MobilePhone": None, key[0]: f"erased:{record_id}"}
                    if sobject == "Lead":
                        blank["Company"] = "Erased"
                    self._call("anonymise", "PATCH", f"sobjects/{sobject}/{record_id}", json=blank,
                               headers={"Sforce-Auto-Assign": "FALSE"})
        return ErasureReport(mode=mode, erased=[f"{o}/{i}" for o, i in found])

    def _key_holders(self, key_field: str) -> list[str]:
        """Which of Lead and Contact have the contact key field (cached for a day)."""
        cached = self.cache.get("holders", key_field)
        if cached is not None:
            return [o for o in cached.split(",") if o and o != "-"]
        schema = self.describe(["Lead", "Contact"])
        holders = [name for name, info in schema.objects.items() if key_field in info.fields]
        self.cache.set("holders", ",".join(holders) or "-", key_field)
        return holders


    # -- the sync: 2 calls -----------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """One query for what exists, one composite request for what is missing."""
        start = self.calls
        if plan.company is not None:  # an Account is not written: map the organization to Lead.Company
            raise FatalError("the salesforce adapter does not write organizations; map the organization to a field "
                             "(Lead.Company)", field="company")
        c, r = plan.contact, plan.record
        single = r is None or r.object == c.object
        relationship = None if single or r is None else RECORD_RELATIONSHIPS.get((c.object, r.object))
        junction = None if single or r is None else RECORD_JUNCTIONS.get((c.object, r.object))
        if not single and relationship is None and junction is None:
            raise FatalError(f"salesforce: {r.object if r else '?'} records cannot hang off {c.object}; use Lead, "
                             "or Contact with Case or Opportunity", field="record.object")
        campaign = self.options.campaign_member
        campaign_field = campaign.field if campaign is not None else None
        values = {**c.properties, **(r.properties if r else {})}
        campaign_name = str(values[campaign_field]) if campaign_field and values.get(campaign_field) else None
        note_title = _note_title(plan.note.marker) if plan.note else None

        # 1. what exists
        fields = ["Id", c.key_property, "OwnerId"]
        where = [f"{c.key_property} = {_quote(c.key_value)}"]
        if "phone" in c.match_by and c.phone:
            fields += ["Phone", "MobilePhone"]
            where.append(_phone_filter(c.phone))
        if "email" in c.match_by and c.email:
            fields.append("Email")
            where.append(f"Email = {_quote(c.email)}")
        own = _children(note_title, plan.task is not None)
        if single:
            if r is not None:
                fields.append(r.reference_property)
            if plan.tags_property:
                fields.append(plan.tags_property)
        record_query = None
        if not single and r is not None:
            record_fields = ["Id", "OwnerId", r.reference_property] + ([plan.tags_property] if plan.tags_property else [])
            by_reference = f"{r.reference_property} = {_quote(r.reference)}"
            if relationship is not None:  # the record hangs off the contact: one query with nested subqueries
                own = ["(" + _select([*dict.fromkeys(record_fields), *own], relationship, by_reference) + ")"]
            else:  # linked through a junction object: a second query, in the same call
                record_query = _select([*dict.fromkeys(record_fields), *own], r.object, by_reference, 1)
                own = ["(" + _select(["Id", junction[1]], junction[0] + "s") + ")"] if junction else []
        if campaign_name:
            own.append("(SELECT CampaignId FROM CampaignMembers)")
        soql = _select(list(dict.fromkeys(fields + own)), c.object, " OR ".join(where), 20)
        if record_query is None:
            rows = self._soql("lookup", soql)
            record_rows: list[dict[str, Any]] = []
        else:
            rows, record_rows = self._soql_many("lookup", [soql, record_query])
        person = _pick(rows, (c.key_property, c.key_value), c.phone if "phone" in c.match_by else None,
                       c.email if "email" in c.match_by else None)
        adopt = person is not None and not person.get(c.key_property)
        only_contact = r is None and plan.note is None and plan.task is None and not plan.tags
        if person is None and only_contact and any(not {**c.properties, **c.create_only}.get(f)
                                                    for f in REQUIRED_TO_CREATE.get(c.object, ())):
            # a write that cannot create a record (an opt-out has no name): it only updates, and nothing holds the key
            raise SkippableError(f"salesforce: no {c.object} holds this contact key")
        existing = None
        if single:
            existing = person
        elif relationship is not None and person is not None:
            existing = next(iter((person.get(relationship) or {}).get("records") or []), None)
        elif junction is not None:
            existing = next(iter(record_rows), None)

        # 2. what is missing, in one composite request
        subs: list[dict[str, Any]] = []
        prefix = self._version_path("sobjects")
        contact_body = dict(c.properties)
        if person is None:
            contact_body.update(c.create_only)
        if single and r is not None:
            contact_body.update(r.properties)
            contact_body[r.reference_property] = r.reference
            if existing is None:
                contact_body.update(r.create_only)
                if r.stage and r.stage_property:
                    contact_body[r.stage_property] = r.stage  # the first status only; Salesforce owns the rest
                if r.owner_id:
                    contact_body["OwnerId"] = r.owner_id
        if single and plan.tags and plan.tags_property:
            contact_body[plan.tags_property] = _merge_tags((person or {}).get(plan.tags_property), plan.tags)
        if adopt and person is not None:
            contact_body[c.key_property] = c.key_value
            subs.append({"method": "PATCH", "url": f"{prefix}/{c.object}/{person['Id']}", "referenceId": "contact",
                         "body": dict(contact_body)})
            contact_ref = str(person["Id"])
        else:
            subs.append({"method": "PATCH", "url": f"{prefix}/{c.object}/{c.key_property}/"
                                                   f"{quote(c.key_value, safe='')}",
                         "referenceId": "contact", "body": dict(contact_body)})
            contact_ref = "@{contact.id}"
        record_ref = contact_ref
        if not single and r is not None:
            record_body = {**r.properties, **({"ContactId": contact_ref} if relationship else {})}
            if plan.tags and plan.tags_property:
                record_body[plan.tags_property] = _merge_tags((existing or {}).get(plan.tags_property), plan.tags)
            if existing is None:
                record_body.update(r.create_only)
                if r.stage and r.stage_property:
                    record_body[r.stage_property] = r.stage
                if r.owner_id:
                    record_body["OwnerId"] = r.owner_id
            subs.append({"method": "PATCH", "url": f"{prefix}/{r.object}/{r.reference_property}/"
                                                   f"{quote(r.reference, safe='')}",
                         "referenceId": "record", "body": dict(record_body)})
            record_ref = "@{record.id}"
            linked = {str(j.get(junction[1])) for j in ((person or {}).get(f"{junction[0]}s") or {}).get(
                "records") or []} if junction else set()
            if junction and (existing is None or str(existing["Id"]) not in linked):
                subs.append({"method": "POST", "url": f"{prefix}/{junction[0]}", "referenceId": "link", "body": {
                    junction[1]: record_ref, "ContactId": contact_ref, "IsPrimary": True}})
        holder = existing if not single else person
        note_id = _existing_note(holder, note_title)
        if plan.note is not None and note_id is None:
            subs.append({"method": "POST", "url": f"{prefix}/Note", "referenceId": "note",
                         "body": _note_body(plan.note, record_ref)})
        task_id = _existing_task(holder, plan.task.marker) if plan.task else None
        owner_from_record = False
        if plan.task is not None and task_id is None:
            owner = plan.task.owner_id or _user_owner(existing)
            if owner is None and existing is None:
                # the record's owner is decided by the org's assignment rules in this very request: read it back
                obj = c.object if single else (r.object if r else c.object)
                subs.append({"method": "GET", "referenceId": "owner", "url": prefix + f"/{obj}/"
                             + record_ref + "?fields=OwnerId"})
                owner = "@{owner.OwnerId}"
                owner_from_record = True
            what = record_ref if not single else None
            subs.append({"method": "POST", "url": f"{prefix}/Task", "referenceId": "task",
                         "body": _task_body(plan.task, contact_ref, what, owner)})
        campaign_id = self.cache.get("campaign", campaign_name) if campaign_name else None
        members = {str(m.get("CampaignId")) for m in ((person or {}).get("CampaignMembers") or {}).get("records") or []}
        if campaign_name and (campaign_id is None or campaign_id not in members) and campaign is not None:
            if campaign_id is None:
                subs.append({"method": "GET", "referenceId": "campaign", "url": self._version_path(
                    "query/?q=" + quote(_select(["Id"], "Campaign", f"Name = {_quote(campaign_name)}", 1)))})
            member = {"CampaignId": campaign_id or "@{campaign.records[0].Id}",
                      ("LeadId" if c.object == "Lead" else "ContactId"): contact_ref,
                      "Status": campaign.status}
            subs.append({"method": "POST", "url": f"{prefix}/CampaignMember", "referenceId": "member",
                         "body": member})
        # Assignment rules run when a Lead or Case is created, and again on every update sent with the
        # header on: an update must not take the lead away from the agent already working it.
        creating = existing is None if not single else person is None
        header = self.assign_header if creating else "FALSE"
        response = self._call("composite", "POST", "composite", json={"allOrNone": False, "compositeRequest": subs},
                              headers={"Sforce-Auto-Assign": header})
        results = {sub["referenceId"]: sub for sub in response["compositeResponse"]}
        failure: tuple[str, dict[str, Any]] | None = None
        for ref, sub in results.items():
            if sub["httpStatusCode"] < 400:
                continue
            code = _error_code(sub["body"])
            if ref == "member" and code == "DUPLICATE_VALUE":
                continue  # already a member of the campaign
            if ref == "member" and code == "PROCESSING_HALTED" and "campaign" in results and \
                    results["campaign"]["httpStatusCode"] < 400:
                log.warning("campaign not found in Salesforce; no campaign membership written",
                            extra={"lead_reference": plan.lead_reference})
                continue
            if code == "PROCESSING_HALTED":
                continue  # follows from an earlier failure, reported below
            if ref == "task" and owner_from_record and code in ("FIELD_INTEGRITY_EXCEPTION",
                                                                 "INVALID_CROSS_REFERENCE_KEY"):
                # the record went to a queue, which cannot own a Task: the next attempt (it sees the record
                # and its queue owner) creates the Task for the integration user
                failure = failure or (ref, {"httpStatusCode": 503, "body": [{
                    "errorCode": "SERVER_UNAVAILABLE", "message": "the record's owner is a queue; task retried"}]})
                continue
            failure = failure or (ref, sub)
        if failure is not None:
            raise self._map(int(failure[1]["httpStatusCode"]), failure[1]["body"], f"composite:{failure[0]}")
        if "campaign" in results:
            found = (results["campaign"]["body"] or {}).get("records") or []
            if found and campaign_name:
                self.cache.set("campaign", str(found[0]["Id"]), campaign_name)

        contact_sub = results["contact"]
        contact_id = str((contact_sub["body"] or {}).get("id") or contact_ref)
        contact = Ref(object=c.object, id=contact_id, created=bool((contact_sub["body"] or {}).get("created")))
        record: Ref | None = None
        if r is not None and single:
            record = Ref(object=r.object, id=contact.id, created=contact.created)
        elif r is not None:
            body = results["record"]["body"] or {}
            record = Ref(object=r.object, id=str(body["id"]), created=bool(body.get("created")))
        note = None
        if plan.note is not None:
            note = Ref(object="Note", id=str(results["note"]["body"]["id"]), created=True) if note_id is None else \
                Ref(object="Note", id=note_id)
        task = None
        if plan.task is not None:
            task = Ref(object="Task", id=str(results["task"]["body"]["id"]), created=True) if task_id is None else \
                Ref(object="Task", id=task_id)
        return SyncResult(contact=contact, record=record, note=note, task=task, calls=self.calls - start)



# -- helpers ------------------------------------------------------------------------------------
def _select(fields: list[str], sobject: str, where: str = "", limit: int | None = None) -> str:
    """A SOQL query. Field and object names come from the mapping; values in ``where`` went through
    :func:`_quote`, so a patient's text cannot change the query."""
    text = f"SELECT {', '.join(fields)} FROM {sobject}"  # noqa: S608 - SOQL, values quoted by _quote
    if where:
        text += f" WHERE {where}"
    if limit is not None:
        text += f" LIMIT {limit}"
    return text


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_code(content: Any) -> str:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode") or content[0].get("statusCode") or "")
    if isinstance(content, dict):
        return str(content.get("errorCode") or "")
    return ""


def _pick(rows: list[dict[str, Any]], key: tuple[str, str] | None, phone: str | None,
          email: str | None) -> dict[str, Any] | None:
    """The record that is this person: the one holding the key, else one a person made (no key yet)
    with the same phone, else with the same e-mail. A record holding another key is someone else."""
    if key:
        for row in rows:
            if str(row.get(key[0]) or "").lower() == key[1].lower():
                return row
    unkeyed = [row for row in rows if not key or not row.get(key[0])]
    if phone:
        variants = set(_phone_variants(phone))
        for row in unkeyed:
            if {str(row.get("Phone") or ""), str(row.get("MobilePhone") or "")} & variants:
                return row
    if email:
        for row in unkeyed:
            if str(row.get("Email") or "").lower() == email.lower():
                return row
    return None


def _phone_variants(phone: str) -> list[str]:
    """How a person may have typed this number: E.164, digits only, and the national format."""
    import phonenumbers

    digits = re.sub(r"\D", "", phone)
    out = [phone, f"+{digits}", digits]
    try:
        number = phonenumbers.parse(f"+{digits}", None)
        out += [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)]
    except phonenumbers.NumberParseException:
        pass
    return list(dict.fromkeys(out))


def _phone_filter(phone: str) -> str:
    """Phone or MobilePhone equal to one of the number's usual spellings (SOQL compares text as stored)."""
    values = [_quote(v) for v in _phone_variants(phone)]
    return "(" + " OR ".join(f"{field} = {value}" for field in ("Phone", "MobilePhone") for value in values) + ")"


def _children(note_title: str | None, task: bool) -> list[str]:
    out = []
    if note_title:
        out.append("(" + _select(["Id", "Title"], "Notes", f"Title = {_quote(note_title)}") + ")")
    if task:
        out.append("(SELECT Id, Description FROM Tasks)")
    return out


def _existing_note(holder: dict[str, Any] | None, title: str | None) -> str | None:
    for row in ((holder or {}).get("Notes") or {}).get("records") or []:
        if row.get("Title") == title:
            return str(row["Id"])
    return None


def _existing_task(holder: dict[str, Any] | None, marker: str) -> str | None:
    for row in ((holder or {}).get("Tasks") or {}).get("records") or []:
        if marker in str(row.get("Description") or ""):
            return str(row["Id"])
    return None


def _user_owner(record: dict[str, Any] | None) -> str | None:
    """The record's owner when it is a user (a Task cannot belong to a queue)."""
    owner = str((record or {}).get("OwnerId") or "")
    return owner if owner.startswith("005") else None


def _merge_tags(current: Any, tags: list[str]) -> str:
    existing = [t for t in str(current or "").split(";") if t]
    merged = ";".join(dict.fromkeys(existing + list(tags)))
    return merged[:255]


def _note_title(marker: str) -> str:
    return f"Conversation summary [{marker}]"[:80]


def _plain(html: str) -> str:
    """Classic Notes hold plain text."""
    from html import unescape

    text = _BLOCKS.sub("\n", html).replace("<li>", "- ")
    lines = [line.strip() for line in unescape(_TAGS.sub("", text)).splitlines()]
    return "\n".join(line for line in lines if line)[:32000]


def _note_body(note: NoteWrite, parent: str) -> dict[str, Any]:
    return {"ParentId": parent, "Title": _note_title(note.marker), "Body": _plain(note.body)}


def _task_body(task: TaskWrite, who: str, what: str | None, owner: str | None) -> dict[str, Any]:
    text = task.body.replace(task.marker, "").rstrip()  # the marker ends the Description, however long the text
    description = f"{text[:32000 - len(task.marker) - 2]}\n\n{task.marker}"
    body: dict[str, Any] = {"Subject": task.subject[:255], "Description": description,
                            "Status": "Not Started", "Priority": PRIORITIES[task.priority], "WhoId": who}
    if task.due_at is not None:
        body["ActivityDate"] = task.due_at.date().isoformat()
    if what:
        body["WhatId"] = what
    if owner:
        body["OwnerId"] = owner
    return body


def _field_spec(name: str, wanted: FieldInfo, external: bool) -> dict[str, Any]:
    """The Tooling API ``Metadata`` of a custom field the mapping needs."""
    label = name.removesuffix("__c").replace("Chat2CRM_", "Chat2CRM ").replace("_", " ").strip()[:40]
    if wanted.type == "bool":
        return {"label": label, "type": "Checkbox", "defaultValue": "false"}
    lowered = name.lower()
    if not external and any(word in lowered for word in ("summary", "transcript_text", "description")):
        return {"label": label, "type": "LongTextArea", "length": 32768, "visibleLines": 5}
    if not external and lowered.endswith("url__c"):
        return {"label": label, "type": "Url"}
    spec: dict[str, Any] = {"label": label, "type": "Text", "length": 255}
    if external:
        spec.update(externalId=True, unique=True, caseSensitive=False)
    return spec


def _describe_spec(spec: dict[str, Any]) -> str:
    kind = spec["type"]
    text = f"{kind}({spec['length']})" if "length" in spec else kind
    if spec.get("externalId"):
        text += ", External ID, Unique (case-insensitive)"
    return text
