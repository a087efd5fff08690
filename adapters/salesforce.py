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

``allOrNone`` is false on purpose: each subrequest is idempotent on its own (upserts on External
IDs, notes and tasks checked by marker, a membership that exists answers ``DUPLICATE_VALUE``), so a
part that fails (a Campaign that does not exist, a membership already there) must not undo the
lead; what did fail is written by the next attempt, which sees in step 1 what exists.

Every call goes through :meth:`SalesforceAdapter._call`: the access token (obtained from
``/services/oauth2/token`` with client credentials, a JWT bearer assertion, or username-password,
refreshed once on ``INVALID_SESSION_ID``), the org's API usage read from ``Sforce-Limit-Info`` on
every response (the adapter stops spending past a share of the daily limit, so the clinic's own
integrations are not starved), the timeout, call counting and metrics, and the mapping of
Salesforce's error codes to the error tree.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from adapters.base import (
    ContactWrite,
    CredentialReport,
    CRMAdapter,
    CRMSchema,
    ErasureReport,
    FieldInfo,
    NoteWrite,
    ObjectInfo,
    RecordWrite,
    Ref,
    SyncPlan,
    SyncResult,
    TaskWrite,
    settle_after_timeout,
)
from connector import metrics
from connector.errors import AuthError, FatalError, RetryableError, SkippableError
from connector.runtime import rkey

log = logging.getLogger("chat2crm.salesforce")

TIMEOUT = (3.05, 20.0)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: error codes that name a problem with what we sent: retrying cannot help
FIELD_ERRORS = {"INVALID_FIELD", "REQUIRED_FIELD_MISSING", "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "MALFORMED_QUERY", "NOT_FOUND", "STRING_TOO_LONG",
                "INVALID_FIELD_FOR_INSERT_UPDATE", "INVALID_TYPE_ON_FIELD_IN_RECORD", "INVALID_EMAIL_ADDRESS",
                "JSON_PARSER_ERROR", "INVALID_TYPE", "FIELD_INTEGRITY_EXCEPTION", "INVALID_CROSS_REFERENCE_KEY",
                "DUPLICATE_VALUE", "CANNOT_UPDATE_CONVERTED_LEAD", "ENTITY_IS_LOCKED", "MALFORMED_ID"}
#: transient conditions Salesforce reports as 4xx
TRANSIENT = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
#: the child relationship of the contact object that holds the request records
RECORD_RELATIONSHIPS = {("Contact", "Case"): "Cases"}
#: request records linked to the contact by a junction object, not a lookup on the record: (object, field)
RECORD_JUNCTIONS = {("Contact", "Opportunity"): ("OpportunityContactRole", "OpportunityId")}
#: the field that holds each record object's status / stage (its "pipeline")
STAGE_FIELDS = {"Lead": "Status", "Case": "Status", "Opportunity": "StageName"}
PRIORITIES = {"high": "High", "medium": "Normal", "low": "Low"}
_TAGS = re.compile(r"<[^>]+>")
_BLOCKS = re.compile(r"</(p|li|div|h\d)>|<br\s*/?>", re.I)


class _Session:
    """An access token and the client built on it."""

    def __init__(self, token: str, instance_url: str, client: Any) -> None:
        self.token = token
        self.instance_url = instance_url
        self.client = client


class SalesforceAdapter(CRMAdapter):
    """Writes leads into Salesforce: a Lead (or a Contact and a Case or an Opportunity), a Note, a Task on
    handoff, a CampaignMember."""

    name = "salesforce"
    requires = ("simple_salesforce",)

    def __init__(self, settings: Any, *, options: dict[str, Any] | None = None, redis: Any = None) -> None:
        super().__init__(settings, options=options, redis=redis)
        self.version = str(self.options.get("api_version") or settings.salesforce_api_version).lstrip("v")
        if not re.match(r"^\d{2}\.0$", self.version):
            raise ValueError(f"api_version must look like 62.0, got {self.version!r}")
        assignment = self.options.get("assignment", "on")
        if assignment is True or str(assignment).lower() in ("on", "true"):
            self.assign_header = "TRUE"
        elif assignment is False or str(assignment).lower() in ("off", "false"):
            self.assign_header = "FALSE"
        elif re.match(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$", str(assignment)):
            self.assign_header = str(assignment)
        else:
            raise ValueError(f"assignment must be on, off or an AssignmentRule id, got {assignment!r}")
        share = self.options.get("api_usage_share", 0.9)
        self.usage_share = float(share)
        if not 0 < self.usage_share <= 1:
            raise ValueError(f"api_usage_share must be in (0, 1], got {share!r}")
        self.usage_backoff = float(self.options.get("api_usage_backoff_seconds", 900))
        self.campaign = self.options.get("campaign_member") or None
        if self.campaign is not None and not (isinstance(self.campaign, dict) and self.campaign.get("field")):
            raise ValueError(f"campaign_member must be {{field: <mapped field>, status: <member status>}}, "
                             f"got {self.campaign!r}")
        duplicates = str(self.options.get("duplicate_alerts", "save"))
        if duplicates not in ("save", "stop"):
            raise ValueError(f"duplicate_alerts must be save or stop, got {duplicates!r}")
        # Salesforce's standard duplicate rules "Allow" a person's save with an alert, but refuse an API save
        # unless the request acknowledges the alert. The relay has already matched by key, phone and e-mail;
        # a rule's fuzzy name match is another patient with the same name. "Block" rules still block.
        self.default_headers = {"Sforce-Duplicate-Rule-Header": "allowSave=true"} if duplicates == "save" else {}
        self.timeout_seconds = float(self.options.get("timeout_seconds", TIMEOUT[1]))
        #: how long workers share one access token (Salesforce's shortest session timeout is 15 minutes;
        #: an expired one is refreshed on its first refusal anyway)
        self.session_cache_seconds = float(self.options.get("session_cache_seconds", 1800))
        self.http = requests.Session()
        self.http.hooks["response"].append(self._on_response)
        self.session: _Session | None = None
        #: token requests made (they do not count against the org's API limits)
        self.token_calls = 0
        #: the OAuth scopes of the last token obtained
        self.scopes: list[str] = []
        #: the org's API usage as last reported (used, limit)
        self.usage: tuple[int, int] | None = None

    # -- credentials -----------------------------------------------------------------------------
    def auth_mode(self) -> Literal["jwt", "password", "client_credentials"]:
        """Which OAuth 2.0 flow the settings make: JWT bearer when a private key file is set, the
        username-password flow when a password is, client credentials otherwise.

        Raises:
            AuthError: the settings make no complete flow (naming what is missing).
        """
        s = self.settings
        has_secret = s.salesforce_client_secret is not None
        if s.salesforce_private_key_file:
            missing = [n for n, v in (("SALESFORCE_CLIENT_ID", s.salesforce_client_id),
                                      ("SALESFORCE_USERNAME", s.salesforce_username),
                                      ("SALESFORCE_PRIVATE_KEY_FILE", s.salesforce_private_key_file)) if not v]
            mode: Literal["jwt", "password", "client_credentials"] = "jwt"
        elif s.salesforce_password is not None:
            missing = [n for n, v in (("SALESFORCE_CLIENT_ID", s.salesforce_client_id),
                                      ("SALESFORCE_CLIENT_SECRET", has_secret),
                                      ("SALESFORCE_USERNAME", s.salesforce_username),
                                      ("SALESFORCE_PASSWORD", s.salesforce_password is not None)) if not v]
            mode = "password"
        else:
            missing = [n for n, v in (("SALESFORCE_CLIENT_ID", s.salesforce_client_id),
                                      ("SALESFORCE_CLIENT_SECRET", has_secret)) if not v]
            mode = "client_credentials"
        if missing:
            raise AuthError(f"salesforce: the {mode} flow needs {', '.join(missing)} (set a private key file for "
                            "JWT bearer, a username and password for the password flow, or a client id and secret "
                            "for client credentials)", setting=missing[0])
        return mode

    def _token_request(self) -> dict[str, Any]:
        s = self.settings
        mode = self.auth_mode()
        login = s.salesforce_login_url.rstrip("/")
        form: dict[str, str] = {}
        if mode == "jwt":
            import jwt

            path = Path(str(s.salesforce_private_key_file))
            try:
                key = path.read_bytes()
            except OSError as exc:
                raise AuthError(f"salesforce: cannot read the private key file ({exc.strerror})",
                                setting="SALESFORCE_PRIVATE_KEY_FILE") from None
            claims = {"iss": s.salesforce_client_id, "sub": s.salesforce_username, "aud": login,
                      "exp": int(time.time()) + 180}
            form = {"grant_type": JWT_GRANT, "assertion": jwt.encode(claims, key, algorithm="RS256")}
        elif mode == "password":
            form = {"grant_type": "password", "client_id": str(s.salesforce_client_id),
                    "client_secret": _secret(s.salesforce_client_secret), "username": str(s.salesforce_username),
                    "password": _secret(s.salesforce_password) + _secret(s.salesforce_security_token)}
        else:
            form = {"grant_type": "client_credentials", "client_id": str(s.salesforce_client_id),
                    "client_secret": _secret(s.salesforce_client_secret)}
        self.token_calls += 1
        outcome = "ok"
        try:
            response = self.http.post(f"{login}/services/oauth2/token", data=form, timeout=self._timeout())
        except requests.Timeout:
            outcome = "timeout"
            raise RetryableError("salesforce: the token endpoint timed out", details={"operation": "token"}) from None
        except requests.RequestException as exc:
            outcome = "network"
            raise RetryableError(f"salesforce: token endpoint unreachable ({type(exc).__name__})",
                                 details={"operation": "token"}) from None
        finally:
            if self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter="salesforce", operation="token", outcome=outcome)
        if response.status_code >= 500:
            raise RetryableError(f"salesforce: token endpoint error {response.status_code}",
                                 details={"status": response.status_code})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = str(body.get("error", response.status_code))
            setting = {"invalid_client_id": "SALESFORCE_CLIENT_ID", "invalid_client": "SALESFORCE_CLIENT_SECRET",
                       }.get(error) or {"jwt": "SALESFORCE_PRIVATE_KEY_FILE", "password": "SALESFORCE_PASSWORD",
                                        "client_credentials": "SALESFORCE_CLIENT_SECRET"}[mode]
            hint = {"password": " (the password flow sends the password with SALESFORCE_SECURITY_TOKEN appended)",
                    "jwt": " (the certificate on the connected app must match the key, and the user must be "
                           "pre-authorized)",
                    "client_credentials": " (the connected app needs a Run As user for client credentials; "
                                          "SALESFORCE_LOGIN_URL must be the org's My Domain URL)"}[mode]
            raise AuthError(f"salesforce: the {mode} token request was refused: {error}: "
                            f"{str(body.get('error_description', ''))[:120]}{hint}", setting=setting,
                            details={"status": response.status_code, "error": error})
        return dict(body)

    def _login(self, *, fresh: bool = False) -> _Session:
        """A session: the one the workers share (Redis, encrypted) unless ``fresh``, else a new token.

        rq runs every job in a fork, so a token kept only in memory would cost a token request per job.
        The shared copy is encrypted with a key derived from the credentials, so Redis alone does not
        give the token away.
        """
        from simple_salesforce import Salesforce

        cached = None if fresh else self._cached_session()
        if cached is not None:
            token, instance = cached
        else:
            body = self._token_request()
            self.scopes = str(body.get("scope") or "").split()
            token = str(body["access_token"])
            instance = (self.settings.salesforce_instance_url or body.get("instance_url") or "").rstrip("/")
            if not instance.startswith("https://"):
                raise AuthError("salesforce: SALESFORCE_INSTANCE_URL must be the org's https:// My Domain URL",
                                setting="SALESFORCE_INSTANCE_URL")
            self._store_session(token, instance)
            log.info("salesforce session opened", extra={"auth_mode": self.auth_mode()})
        client = Salesforce(instance_url=instance, session_id=token, version=self.version, session=self.http)
        self.session = _Session(token, instance, client)
        return self.session

    def _fernet(self) -> Any:
        import base64
        import hashlib

        from cryptography.fernet import Fernet

        s = self.settings
        material = "|".join([str(s.salesforce_client_id), _secret(s.salesforce_client_secret), _secret(s.salesforce_password),
                             str(s.salesforce_private_key_file or ""), str(s.salesforce_login_url)])
        digest = hashlib.sha256(b"chat2crm salesforce session\0" + material.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def _cached_session(self) -> tuple[str, str] | None:
        if self.redis is None or self.session_cache_seconds <= 0:
            return None
        from cryptography.fernet import InvalidToken

        sealed = self.redis.get(rkey("salesforce", "session"))
        if not sealed:
            return None
        try:
            token, _, instance = self._fernet().decrypt(sealed, ttl=int(self.session_cache_seconds)).decode() \
                .partition("\n")
        except InvalidToken:
            return None  # other credentials (rotated): log in again
        return token, instance

    def _store_session(self, token: str, instance: str) -> None:
        if self.redis is not None and self.session_cache_seconds > 0:
            sealed = self._fernet().encrypt(f"{token}\n{instance}".encode())
            self.redis.set(rkey("salesforce", "session"), sealed, ex=int(self.session_cache_seconds))

    def _drop_session(self, token: str) -> None:
        self.session = None
        cached = self._cached_session()
        if self.redis is not None and cached is not None and cached[0] == token:
            self.redis.delete(rkey("salesforce", "session"))

    # -- the chokepoint ------------------------------------------------------------------------
    def _timeout(self) -> tuple[float, float]:
        return TIMEOUT if TIMEOUT[1] != 20.0 else (TIMEOUT[0], self.timeout_seconds)  # tests shorten the default

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        found = re.search(r"api-usage=(\d+)/(\d+)", response.headers.get("Sforce-Limit-Info", ""))
        if not found:
            return
        self.usage = (int(found.group(1)), int(found.group(2)))
        if self.redis is not None:
            key = rkey("salesforce", "api-usage")
            self.redis.hset(key, mapping={"used": self.usage[0], "max": self.usage[1]})
            self.redis.expire(key, int(self.usage_backoff))

    def _guard_usage(self) -> None:
        """Refuse to spend the org's last API requests (they belong to the clinic's other integrations)."""
        usage = self.usage
        if self.redis is not None:
            shared = self.redis.hmget(rkey("salesforce", "api-usage"), "used", "max")
            if shared[0] is not None and shared[1] is not None:
                usage = (int(shared[0]), int(shared[1]))
        if usage and usage[1] and usage[0] / usage[1] >= self.usage_share:
            raise RetryableError(f"salesforce: the org has used {usage[0]} of its {usage[1]} daily API requests; the "
                                 f"relay keeps the last {round((1 - self.usage_share) * 100)}% for other integrations",
                                 retry_after=self.usage_backoff, details={"used": usage[0], "max": usage[1]})

    def _call(self, operation: str, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> Any:
        """One REST call (``path`` under ``/services/data/vXX.X/``); an expired session is refreshed once
        and the call tried again (tenacity): a second refusal is an :class:`AuthError`."""
        self._guard_usage()
        current = {"session": self.session or self._login()}

        def refresh(_state: RetryCallState) -> None:
            # another worker may already have logged in again: use its session, else log in afresh
            expired = current["session"]
            shared = self._cached_session()
            if shared is not None and shared[0] != expired.token:
                current["session"] = self._login()
            else:
                self._drop_session(expired.token)
                current["session"] = self._login(fresh=True)

        retrying = Retrying(stop=stop_after_attempt(2), retry=retry_if_exception_type(_SessionExpiredError),
                            before_sleep=refresh, reraise=True)
        for attempt in retrying:
            with attempt:
                return self._call_once(current["session"], operation, method, path, json=json, params=params,
                                       headers=headers, may_refresh=attempt.retry_state.attempt_number == 1)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True ends the loop with a return or raise

    def _call_once(self, session: _Session, operation: str, method: str, path: str, *, json: Any,
                   params: dict[str, Any] | None, headers: dict[str, str] | None, may_refresh: bool) -> Any:
        from simple_salesforce.exceptions import SalesforceError

        self.calls += 1
        outcome = "ok"
        try:
            return session.client.restful(path, params=params, method=method, json=json,
                                          headers={**self.default_headers, **(headers or {})},
                                          timeout=self._timeout())
        except SalesforceError as exc:
            outcome = str(exc.status)
            if exc.status == 401 and may_refresh and _error_code(exc.content) == "INVALID_SESSION_ID":
                raise _SessionExpiredError from None
            raise self._map(exc.status, exc.content, operation) from None
        except requests.Timeout as exc:
            outcome = "timeout"
            # A composite that timed out while Salesforce was reading it may still be carried out: the job
            # waits as long again before its retry, so the retry's query sees the Note and Task it wrote.
            settle = settle_after_timeout(float(self._timeout()[1])) if isinstance(exc, requests.ReadTimeout) else None
            raise RetryableError(f"salesforce: {operation} timed out", retry_after=settle,
                                 details={"operation": operation}) from None
        except requests.RequestException as exc:
            outcome = "network"
            raise RetryableError(f"salesforce: {type(exc).__name__}", details={"operation": operation}) from None
        finally:
            if self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter="salesforce", operation=operation, outcome=outcome)

    def _map(self, status: int, content: Any, operation: str) -> Exception:
        """Salesforce's ``[{"message", "errorCode", "fields"}]`` (or a composite subresponse) → the error tree."""
        errors = content if isinstance(content, list) else [content] if isinstance(content, dict) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = str(first.get("errorCode") or first.get("statusCode") or "")
        message = str(first.get("message") or (content if isinstance(content, str) else ""))[:240]
        fields = [str(f) for f in first.get("fields") or []]
        details = {"status": status, "errorCode": code, "operation": operation, "fields": fields}
        if code == "REQUEST_LIMIT_EXCEEDED":
            # TotalRequests: the daily budget (rolling 24 h); otherwise the concurrent-request limit
            wait = self.usage_backoff * 4 if "TotalRequests" in message else 20.0
            return RetryableError(f"salesforce: API request limit exceeded ({message[:80]})", retry_after=wait,
                                  details=details)
        if status >= 500 or code in TRANSIENT:
            return RetryableError(f"salesforce: server error {status} {code}", details=details)
        if status == 401:
            mode = self.auth_mode()
            setting = {"jwt": "SALESFORCE_PRIVATE_KEY_FILE", "password": "SALESFORCE_PASSWORD",
                       "client_credentials": "SALESFORCE_CLIENT_SECRET"}[mode]
            return AuthError(f"salesforce: the session was refused again after a refresh ({code}); check the "
                             f"{mode} credentials and the connected app's policies", setting=setting, details=details)
        if status == 403:
            return AuthError(f"salesforce: the integration user may not do this ({code}: {message[:120]}); check its "
                             "permission set", setting="SALESFORCE_USERNAME", details=details)
        if code == "DUPLICATES_DETECTED":
            # A duplicate rule blocked the save. We do not adopt its fuzzy match: two patients can share a name or
            # a phone, and merging health records is a person's decision.
            result = first.get("duplicateResult") or {}
            matches = [m.get("record", {}).get("Id") for r in result.get("matchResults") or []
                       for m in r.get("matchRecords") or []]
            return FatalError(f"salesforce: the duplicate rule {result.get('duplicateRule', '?')} blocked the save "
                              f"(matches: {', '.join(str(m) for m in matches) or 'none named'}); set the rule to "
                              "allow saves for the integration user, or merge in Salesforce",
                              field=result.get("duplicateRule"), details={**details, "matches": matches})
        if status == 300:
            return FatalError("salesforce: several records hold the same External ID; make the field Unique",
                              field=fields[0] if fields else None, details=details)
        if code == "INVALID_FIELD" and not fields:
            found = re.search(r"No such column '([^']+)'", message) or re.search(r"field[s]?:? ([A-Za-z0-9_]+__c)",
                                                                                 message)
            fields = [found.group(1)] if found else []
        return FatalError(f"salesforce: request rejected ({status} {code}: {message[:160]})",
                          field=fields[0] if fields else None, details=details)

    def _version_path(self, rest: str) -> str:
        return f"/services/data/v{self.version}/{rest}"

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            self.session = None
            session = self._login(fresh=True)
            limits = self._call("limits", "GET", "limits/") or {}
        except (AuthError, RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        daily = limits.get("DailyApiRequests") or {}
        problems = []
        if daily.get("Max"):
            used = int(daily["Max"]) - int(daily.get("Remaining", 0))
            if used / int(daily["Max"]) >= self.usage_share:
                problems.append(f"the org has used {used} of {daily['Max']} daily API requests")
        return CredentialReport(ok=not problems, account=session.instance_url, scopes=self.scopes, problems=problems)

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

    # -- the fine-grained writes (one call each; sync uses fewer) -------------------------------
    def upsert_contact(self, write: ContactWrite) -> Ref:
        """Upsert on the contact key. A write that cannot create (no name, e.g. an opt-out) only updates.

        Raises:
            SkippableError: nothing holds the key and the write cannot create a record.
        """
        required = {"Lead": ("LastName", "Company"), "Contact": ("LastName",)}.get(write.object, ())
        if any(not write.properties.get(f) for f in required):
            found = self.find_contact(key=(write.key_property, write.key_value), object=write.object,
                                      properties=[write.key_property])
            if found is None:
                raise SkippableError(f"salesforce: no {write.object} holds this contact key")
            self._call("contact_update", "PATCH", f"sobjects/{write.object}/{found.id}", json=dict(write.properties),
                       headers={"Sforce-Auto-Assign": "FALSE"})
            return Ref(object=write.object, id=found.id)
        body = self._one("contact_upsert", "PATCH",
                         f"sobjects/{write.object}/{write.key_property}/{quote(write.key_value, safe='')}",
                         body=dict({**write.properties, **write.create_only}),
                         headers={"Sforce-Auto-Assign": self.assign_header})
        return Ref(object=write.object, id=str(body["id"]), created=bool(body.get("created")))

    def upsert_record(self, write: RecordWrite, *, contact: Ref, company: Ref | None = None) -> Ref:
        values = {**write.properties, **write.create_only}
        if write.stage and write.stage_property:
            values[write.stage_property] = write.stage
        if write.object == "Case":
            values["ContactId"] = contact.id
        body = self._one("record_upsert", "PATCH",
                         f"sobjects/{write.object}/{write.reference_property}/{quote(write.reference, safe='')}",
                         body=dict(values), headers={"Sforce-Auto-Assign": self.assign_header})
        return Ref(object=write.object, id=str(body["id"]), created=bool(body.get("created")))

    def attach_note(self, note: NoteWrite, *, contact: Ref, record: Ref | None) -> Ref:
        parent = record or contact
        title = _note_title(note.marker)
        rows = self._soql("note_find", _select(["Id"], "Note", f"ParentId = {_quote(parent.id)} AND Title = "
                                                                f"{_quote(title)}", 1))
        if rows:
            return Ref(object="Note", id=str(rows[0]["Id"]))
        body = self._call("note_create", "POST", "sobjects/Note", json=_note_body(note, parent.id))
        return Ref(object="Note", id=str(body["id"]), created=True)

    def create_task(self, task: TaskWrite, *, contact: Ref, record: Ref | None) -> Ref:
        who = contact.id
        rows = self._soql("task_find", _select(["Id", "Description"], "Task", f"WhoId = {_quote(who)}"))
        for row in rows:
            if task.marker in str(row.get("Description") or ""):
                return Ref(object="Task", id=str(row["Id"]))
        what = record.id if record is not None and record.object in ("Case", "Opportunity") else None
        body = self._call("task_create", "POST", "sobjects/Task", json=_task_body(task, who, what, task.owner_id))
        return Ref(object="Task", id=str(body["id"]), created=True)

    def set_tags(self, tags: list[str], *, target: Ref, tags_property: str | None) -> None:
        if not tags_property:
            raise FatalError("salesforce: the mapping names no tags field", field="tags.property")
        row = self._call("record_get", "GET", f"sobjects/{target.object}/{target.id}",
                         params={"fields": tags_property}) or {}
        merged = _merge_tags(row.get(tags_property), tags)
        self._call("record_update", "PATCH", f"sobjects/{target.object}/{target.id}", json={tags_property: merged},
                   headers={"Sforce-Auto-Assign": "FALSE"})

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
        cached = self._cache_get("holders", key_field)
        if cached is not None:
            return [o for o in cached.split(",") if o]
        schema = self.describe(["Lead", "Contact"])
        holders = [name for name, info in schema.objects.items() if key_field in info.fields]
        self._cache_set(",".join(holders), "holders", key_field, days=1)
        return holders

    # -- the sync: 2 calls -----------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """One query for what exists, one composite request for what is missing."""
        start = self.calls
        if plan.company is not None:  # an Account is not written: map the organization to Lead.Company
            self.upsert_company(plan.company)
        c, r = plan.contact, plan.record
        single = r is None or r.object == c.object
        relationship = None if single or r is None else RECORD_RELATIONSHIPS.get((c.object, r.object))
        junction = None if single or r is None else RECORD_JUNCTIONS.get((c.object, r.object))
        if not single and relationship is None and junction is None:
            raise FatalError(f"salesforce: {r.object if r else '?'} records cannot hang off {c.object}; use Lead, "
                             "or Contact with Case or Opportunity", field="record.object")
        campaign_field = str(self.campaign.get("field")) if isinstance(self.campaign, dict) else None
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
        campaign_id = self._cache_get("campaign", campaign_name) if campaign_name else None
        members = {str(m.get("CampaignId")) for m in ((person or {}).get("CampaignMembers") or {}).get("records") or []}
        if campaign_name and (campaign_id is None or campaign_id not in members) and isinstance(self.campaign, dict):
            if campaign_id is None:
                subs.append({"method": "GET", "referenceId": "campaign", "url": self._version_path(
                    "query/?q=" + quote(_select(["Id"], "Campaign", f"Name = {_quote(campaign_name)}", 1)))})
            member = {"CampaignId": campaign_id or "@{campaign.records[0].Id}",
                      ("LeadId" if c.object == "Lead" else "ContactId"): contact_ref,
                      "Status": str(self.campaign.get("status", "Responded"))}
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
                self._cache_set(str(found[0]["Id"]), "campaign", campaign_name)

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

    # -- caches ----------------------------------------------------------------------------------
    def _cache_get(self, *parts: str) -> str | None:
        if self.redis is None:
            return None
        value = self.redis.get(rkey("salesforce", *parts))
        return value.decode() if isinstance(value, bytes) else value

    def _cache_set(self, value: str, *parts: str, days: int = 7) -> None:
        if self.redis is not None:
            self.redis.set(rkey("salesforce", *parts), value, ex=days * 86400)


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


class _SessionExpiredError(Exception):
    """Salesforce refused the session as expired (``INVALID_SESSION_ID``): log in again, then try once more."""


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
    body: dict[str, Any] = {"Subject": task.subject[:255], "Description": f"{task.body}\n\n{task.marker}"[:32000],
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
