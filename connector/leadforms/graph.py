"""Reading one lead from the Graph API: ``GET /{version}/{leadgen-id}?fields=…``, throttled and with Graph's
errors mapped to the relay's error tree.

The ``leadgen`` webhook carries ids only; the answers are read here with a Page access token
(``META_PAGE_ACCESS_TOKEN``, sent as a bearer header so it never sits in a URL). Meta allows a Page
200 x 24 x (its leads of the last 90 days) lead reads a day; the relay keeps under that with a token bucket
in Redis shared by every worker (:func:`take_read`): ``META_LEAD_READS_PER_HOUR`` reads an hour, refilled
continuously. A read the bucket refuses is retried when a token will be there.

Graph's error body (``error.code``, ``type``, ``error_subcode``, ``is_transient``) decides: the throttling
codes (4 application, 17 user, 32 Page, 613 custom limit, 80000-range business use case limits) and HTTP 429
are retried no sooner than Meta's estimate; ``is_transient``, codes 1 and 2 and 5xx are retried; 190 (token
expired or invalid) and the permission codes (10, 200-299) fail naming the setting; 100 with subcode 33 (the
lead does not exist, or no longer: Meta keeps leads 90 days) is moot; any other refusal fails with its code.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
import requests
from pydantic import BaseModel, ConfigDict, Field

from connector.channels.base import HttpChannel
from connector.logs import register_secret
from core import lua
from core.errors import AuthError, FatalError, RetryableError, SkippableError
from core.keys import family
from core.settings import Settings

log = logging.getLogger("chat2crm.leadforms")

#: the fields read for every lead (Meta's Lead object)
FIELDS = ("created_time", "field_data", "ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name",
          "form_id", "is_organic", "platform", "custom_disclaimer_responses")
#: Graph error codes that mean "too many calls": application, user, Page, custom and business use case limits
THROTTLING_CODES = frozenset({4, 17, 32, 613}) | frozenset(range(80000, 80015))
#: Graph error codes of a token that is expired, revoked or lacks a permission
AUTH_CODES = frozenset({102, 190, 10}) | frozenset(range(200, 300))
#: Graph's subcode of "object does not exist, cannot be loaded due to missing permissions, or does not support
#: this operation"
MISSING_SUBCODE = 33
#: the least a throttled read waits (Meta's limits are per hour and per day)
THROTTLED_WAIT_SECONDS = 60.0

#: the lead-read token bucket: tokens left and when it was last filled
#: seconds the bucket outlives its last read (a full bucket needs no key)
BUCKET_TTL = 7200
READS = family("leadgen-reads", ttl=BUCKET_TTL, holds_pii=False, owner=__name__)

# A token bucket: refill by elapsed time, take one token or answer how long until there is one (ms).
_TAKE = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('hmget', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / per_ms) end
redis.call('hset', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('expire', KEYS[1], ARGV[4])
return wait
"""


class FieldAnswer(BaseModel):
    """One question's answer: its key and the values given (one, or several for a multiple-select)."""

    model_config = ConfigDict(extra="allow")

    name: str
    values: list[str] = Field(default_factory=list)


class DisclaimerResponse(BaseModel):
    """A custom disclaimer checkbox's answer (``is_checked`` is ``"1"``/``"0"`` as Meta sends it, or a boolean)."""

    model_config = ConfigDict(extra="allow")

    checkbox_key: str
    is_checked: str | bool | int | None = None

    @property
    def checked(self) -> bool:
        """Whether the person ticked it."""
        return str(self.is_checked).lower() in ("1", "true")


class GraphLead(BaseModel):
    """A lead as the Graph API answers it (the fields of :data:`FIELDS`; others Meta adds are kept)."""

    model_config = ConfigDict(extra="allow")

    id: str
    created_time: str | None = None
    field_data: list[FieldAnswer] = Field(default_factory=list)
    ad_id: str | None = None
    ad_name: str | None = None
    adset_id: str | None = None
    adset_name: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    form_id: str | None = None
    is_organic: bool | None = None
    platform: str | None = None
    custom_disclaimer_responses: list[DisclaimerResponse] = Field(default_factory=list)

    def consented(self, checkbox_key: str) -> bool:
        """Whether the form's checkbox ``checkbox_key`` was ticked."""
        return any(r.checkbox_key == checkbox_key and r.checked for r in self.custom_disclaimer_responses)


def take_read(client: redis.Redis, per_hour: int, now: float | None = None) -> float:
    """Take one lead read from the shared bucket (``per_hour`` tokens, refilled continuously).

    Returns:
        0 when the read may go now, else the seconds until a token is there (nothing was taken).
    """
    moment = int((now if now is not None else time.time()) * 1000)
    wait_ms = lua.run(client, _TAKE, [READS.key()], [per_hour, per_hour / 3_600_000, moment, BUCKET_TTL])
    return int(wait_ms) / 1000.0


class GraphClient(HttpChannel):
    """Reads leads with the Page access token.

    Args:
        settings: ``META_PAGE_ACCESS_TOKEN``, ``META_GRAPH_BASE``, ``META_GRAPH_VERSION``.
    """

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__("meta", "META_PAGE_ACCESS_TOKEN", session)
        token = settings.meta_page_access_token.get_secret_value() if settings.meta_page_access_token else ""
        if token:
            register_secret(token)
        self.token = token
        self.graph = f"{settings.meta_graph_base.rstrip('/')}/{settings.meta_graph_version}"

    def lead(self, leadgen_id: str) -> GraphLead:
        """The lead ``leadgen_id`` with :data:`FIELDS`.

        Raises:
            AuthError: no token, or Meta refused it (names ``META_PAGE_ACCESS_TOKEN``).
            RetryableError: throttled, transient, 5xx, time-out.
            SkippableError: the lead does not exist (any more).
            FatalError: any other refusal, or an answer that is not a lead.
        """
        if not self.token:
            raise AuthError("meta: META_PAGE_ACCESS_TOKEN is not set: leads cannot be read",
                            setting="META_PAGE_ACCESS_TOKEN")
        if not (leadgen_id.isascii() and leadgen_id.isdigit()):
            raise FatalError("meta: a lead id is digits", details={"leadgen_id": leadgen_id[:40]})
        response = self.request("GET", f"{self.graph}/{leadgen_id}", params={"fields": ",".join(FIELDS)},
                                headers={"Authorization": f"Bearer {self.token}"})
        if response.status_code != 200:
            raise self.graph_error(response)
        try:
            return GraphLead.model_validate(response.json())
        except ValueError:
            raise FatalError("meta: the lead answer is not a lead", details={"leadgen_id": leadgen_id}) from None

    def graph_error(self, response: requests.Response) -> Exception:
        """The error-tree exception for a Graph API error answer (see the module's description)."""
        error: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
        except ValueError:
            pass
        code, subcode = error.get("code"), error.get("error_subcode")
        message = str(error.get("message", response.reason))[:200]
        details = {"status": response.status_code, "code": code, "subcode": subcode, "type": error.get("type")}
        if code in THROTTLING_CODES or response.status_code == 429:
            return RetryableError(f"meta: throttled ({code})", retry_after=_regain_seconds(response),
                                  details=details)
        if error.get("is_transient") is True or code in (1, 2) or response.status_code >= 500:
            return RetryableError(f"meta: transient error ({code}: {message})", details=details)
        if code in AUTH_CODES:
            return AuthError(f"meta: the token was refused ({code}: {message}); check META_PAGE_ACCESS_TOKEN and "
                             "its leads_retrieval permission", setting="META_PAGE_ACCESS_TOKEN", details=details)
        if code == 100 and subcode == MISSING_SUBCODE:
            return SkippableError("meta: the lead does not exist (any more)", details=details)
        return FatalError(f"meta: lead read refused ({code}: {message})", details=details)


def _regain_seconds(response: requests.Response) -> float:
    """How long Meta says to wait (``estimated_time_to_regain_access``, in minutes, of the business use case
    usage header), never less than :data:`THROTTLED_WAIT_SECONDS`."""
    minutes = 0.0
    raw = response.headers.get("X-Business-Use-Case-Usage")
    if raw:
        try:
            usage = json.loads(raw)
            for entries in usage.values() if isinstance(usage, dict) else ():
                for entry in entries if isinstance(entries, list) else ():
                    value = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        minutes = max(minutes, float(value))
        except ValueError:
            log.warning("unreadable X-Business-Use-Case-Usage header")
    return max(THROTTLED_WAIT_SECONDS, minutes * 60)
