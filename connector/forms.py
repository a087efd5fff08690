"""WhatsApp forms: each bot flow's form published as a WhatsApp Flow, and found again when the bot offers it.

:func:`publish` (``chat2crm forms``, and the demo at start) writes one WhatsApp Flow per flow with a ``form`` and
per language of that flow, through the Graph API's Flows endpoints, as Meta documents them: create the flow
(``POST /{WABA-ID}/flows``, multipart ``name`` and ``categories``), upload its Flow JSON
(``POST /{Flow-ID}/assets``, the file ``flow.json`` as ``FLOW_JSON``; the answer lists Meta's validation errors),
then ``POST /{Flow-ID}/publish``. A published flow cannot change, so the name carries a digest of its content
(:func:`connector.bot.form.form_name`): publishing again finds the flows already published under their names
(``GET /{WABA-ID}/flows``) and creates only what changed; a draft left by an interrupted run is finished, not
duplicated.

Each published form's id is kept in one Redis hash (:data:`PUBLISHED`, by name). The worker reads it at most
once a minute per process (:class:`Published`): a form is offered only when the hash has the name of the form as
the flow file describes it now, so a flow edited and not yet published again is simply asked as questions,
never answered through a form of other fields.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import requests

from connector.bot.form import form_json_text, form_name
from core.errors import ConfigurationError, Problem
from core.http import session as http_session
from core.keys import family

if TYPE_CHECKING:
    from connector.bot.flows import Flow
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.forms")

PUBLISHED = family("whatsapp_forms", ttl=None, holds_pii=False, owner=__name__,
                   bounded_by="one field per version of a flow's form in one language that was published")
#: how long a process trusts what it read of :data:`PUBLISHED`
REFRESH_SECONDS = 60.0
#: the category the forms are published under (Meta's list: SIGN_UP, LEAD_GENERATION, CONTACT_US, …)
CATEGORY = "LEAD_GENERATION"
TIMEOUT = (5.0, 30.0)
#: a flow in these states can be sent (a throttled one at a limited rate)
USABLE = frozenset({"PUBLISHED", "THROTTLED"})


class FormsError(Exception):
    """Meta refused a call (its message, never the token), or the forms cannot be published as configured."""


@dataclass(frozen=True)
class Outcome:
    """What publishing did for one form in one language."""

    flow: str
    language: str
    name: str
    flow_id: str
    #: ``published`` (now), ``already published``
    action: str


class _Graph:
    """The Flows endpoints of the Graph API, with the WhatsApp settings' base, version and token."""

    def __init__(self, runtime: Runtime, session: requests.Session | None = None) -> None:
        settings = runtime.settings
        self.base = f"{settings.whatsapp_api_base.rstrip('/')}/{settings.whatsapp_api_version}"
        token = settings.whatsapp_access_token.get_secret_value() if settings.whatsapp_access_token else ""
        self.session = session or http_session()
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, f"{self.base}/{path}", headers=self.headers, timeout=TIMEOUT,
                                            **kwargs)
        except requests.RequestException as exc:
            raise FormsError(f"WhatsApp could not be reached ({type(exc).__name__})") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not isinstance(body, dict):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            detail = error.get("error_user_msg") or error.get("message") or response.reason
            where = path.split("?", maxsplit=1)[0]
            raise FormsError(f"WhatsApp refused {method} {where}: {response.status_code} {detail}")
        return body

    def flows(self, waba: str) -> Iterator[dict[str, Any]]:
        """Every flow of the business account (following the pages)."""
        params: dict[str, Any] = {"fields": "id,name,status", "limit": 100}
        while True:
            page = self.call("GET", f"{waba}/flows", params=params)
            yield from page.get("data", [])
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not page.get("data") or not paging.get("next") or not after:
                return
            params = {**params, "after": after}

    def create(self, waba: str, name: str) -> str:
        body = self.call("POST", f"{waba}/flows", files={"name": (None, name),
                                                         "categories": (None, json.dumps([CATEGORY]))})
        return str(body["id"])

    def upload(self, flow_id: str, text: str) -> list[dict[str, Any]]:
        """Upload the Flow JSON; Meta's validation errors (empty when it is valid)."""
        body = self.call("POST", f"{flow_id}/assets", files={
            "file": ("flow.json", text.encode(), "application/json"),
            "name": (None, "flow.json"), "asset_type": (None, "FLOW_JSON")})
        return list(body.get("validation_errors") or [])

    def publish(self, flow_id: str) -> None:
        self.call("POST", f"{flow_id}/publish")


def wanted(flows: dict[str, Flow]) -> dict[tuple[str, str], str]:
    """Every form the flow files describe now: (flow, language) → the WhatsApp Flow's name."""
    return {(flow.name, language): form_name(flow, language)
            for flow in flows.values() if flow.form is not None for language in flow.languages}


def _usable(name: str, existing: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """The name in Meta under which the form ``name`` is (or is to be) published, and the flow there, if any.

    A flow deprecated or blocked in WhatsApp Manager keeps its name for ever, so the form is published again as
    ``<name>_2`` (then ``_3``…): the first of these names that is published, a draft, or free.
    """
    for n in range(1, 100):
        candidate = name if n == 1 else f"{name}_{n}"
        found = existing.get(candidate)
        if found is None or found.get("status") in USABLE or found.get("status") == "DRAFT":
            return candidate, found
    raise FormsError(f"WhatsApp holds 99 retired flows named {name}: delete some in WhatsApp Manager")


def publish(runtime: Runtime, *, session: requests.Session | None = None) -> list[Outcome]:
    """Publish every flow's form in every language (what is published already is found, not made again).

    Raises:
        ConfigurationError: no ``WHATSAPP_BUSINESS_ACCOUNT_ID`` or ``WHATSAPP_ACCESS_TOKEN``.
        FormsError: Meta refused a call, or a form's Flow JSON (with Meta's validation errors).
    """
    settings = runtime.settings
    waba = (settings.whatsapp_business_account_id or "").strip()
    if not waba or settings.whatsapp_access_token is None:
        raise ConfigurationError(Problem(
            "forms are published to a WhatsApp Business Account: WHATSAPP_BUSINESS_ACCOUNT_ID and "
            "WHATSAPP_ACCESS_TOKEN are needed", hint="WhatsApp Manager → Account tools → the account's id"))
    flows = runtime.flows
    graph = _Graph(runtime, session)
    # flow names are unique in a business account, deprecated flows included (Meta answers a duplicate name
    # with an error): a name is only ever there once
    existing = {str(item.get("name", "")): item for item in graph.flows(waba)}
    outcomes: list[Outcome] = []
    for (flow_name, language), name in wanted(flows).items():
        meta_name, found = _usable(name, existing)
        if found is not None and found.get("status") in USABLE:
            outcomes.append(Outcome(flow_name, language, name, str(found["id"]), "already published"))
            continue
        flow_id = str(found["id"]) if found is not None else graph.create(waba, meta_name)
        errors = graph.upload(flow_id, form_json_text(flows[flow_name], language))
        if errors:
            said = "; ".join(str(e.get("message", e)) for e in errors[:5])
            raise FormsError(f"WhatsApp found the form of {flow_name} ({language}) invalid: {said}")
        graph.publish(flow_id)
        outcomes.append(Outcome(flow_name, language, name, flow_id, "published"))
        log.info("form published", extra={"flow": flow_name, "language": language, "flow_id": flow_id})
    if outcomes:
        runtime.redis.hset(PUBLISHED.key(), mapping={o.name: o.flow_id for o in outcomes})
    return outcomes


class Published:
    """The published forms as one process knows them: read from Redis at most every :data:`REFRESH_SECONDS`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.names = wanted(runtime.flows)
        self._ids: dict[str, str] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def form_id(self, flow: str, language: str) -> str | None:
        """The published WhatsApp Flow of ``flow``'s form in ``language`` as its file describes it now, or None."""
        name = self.names.get((flow, language))
        if name is None:
            return None
        now = time.monotonic()
        if now - self._read_at >= REFRESH_SECONDS:
            with self._lock:
                if now - self._read_at >= REFRESH_SECONDS:
                    self._read_at = now
                    try:
                        raw = self.runtime.redis.hgetall(PUBLISHED.key())
                    except redis.RedisError as exc:  # no form is no failure: the steps are asked instead
                        log.warning("forms not read", extra={"error": type(exc).__name__})
                        raw = None
                    if raw is not None:
                        self._ids = {_text(k): _text(v) for k, v in raw.items()}
        return self._ids.get(name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def published(runtime: Runtime) -> Published:
    """This process's view of the published forms (one per runtime)."""
    return runtime.cached("forms:published", lambda: Published(runtime))
