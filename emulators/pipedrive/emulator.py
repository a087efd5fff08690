"""The emulated Pipedrive company account as one object: :class:`PipedriveEmulator` sets up the
account's state, runs every call through the account's pipeline (faults, token, rate limits and
daily token budget, the request checked against Pipedrive's OpenAPI files), hands it to the
operation it names, and serves it all as a Flask app with the control endpoints the tests and the
demo read.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from emulators._faults import FaultInjection
from emulators.pipedrive import openapi
from emulators.pipedrive.files import FilesOperations
from emulators.pipedrive.oauth import APP_SCOPES, PipedriveOAuth
from emulators.pipedrive.people import PeopleOperations
from emulators.pipedrive.routes import route
from emulators.pipedrive.sales import SalesOperations
from emulators.pipedrive.state import DEAL_FIELDS, ERROR_INFO, KINDS, PERSON_FIELDS, timestamp
from emulators.pipedrive.ui import PanelHost
from emulators.pipedrive.view import AgentView
from emulators.pipedrive.webhooks import RETRY_DELAYS, PipedriveWebhooks

#: the stages of the pipeline a new Pipedrive company starts with
DEFAULT_STAGES = ("Qualified", "Contact Made", "Demo Scheduled", "Proposal Made", "Negotiations Started")
#: the faults answered with a plain error: fault → (status, error, error_info)
_FAULT_ERRORS = {
    "500": (500, "Internal server error", ERROR_INFO),
    "502": (502, "Service unavailable", ERROR_INFO),
    "503": (503, "Service unavailable", ERROR_INFO),
    "400": (400, "Bad request", "Validation failed."),
    "403": (403, "You don't have permission to change this resource.", ERROR_INFO),
    "404": (404, "Entity was not found", "Object was not found."),
    "409": (409, "Conflict: the entity was changed by another request", ERROR_INFO),
}


class PipedriveEmulator(PeopleOperations, SalesOperations, FilesOperations, PipedriveOAuth, PanelHost, AgentView,
                        PipedriveWebhooks):
    """State and behaviour of one emulated Pipedrive company account.

    Args:
        api_token: the API token the relay must send (``x-api-token``; ``Bearer`` is accepted too).
        rate_limit: ``(requests, seconds)``: the burst limit per token; past it, 429.
        search_rate_limit: the same for the search endpoints (Pipedrive: 10 per 2 seconds).
        daily_tokens: the company's daily token budget (each call costs its ``x-token-cost``).
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the answer back.
        check_requests: check requests against the OpenAPI files.
        search_lag: seconds before a write shows in the search endpoints.
        company_id: the company's id (in users, tokens and the panel's JWT).
        client_id, client_secret: the app installed by OAuth (:mod:`emulators.pipedrive.oauth`).
        redirect_uris: the app's callback URLs (None: any http(s) URL is accepted).
        app_scopes: the scopes the app was given.
        oauth_token_seconds: an access token's lifetime (Pipedrive: an hour).
        jwt_secret: the custom panel's JWT secret (None: the client secret signs, as Pipedrive falls back to).
        panel_url: the custom panel's iframe URL (:mod:`emulators.pipedrive.ui`; settable later).
        clock: the time (epoch seconds) tokens and codes expire by.
        webhook_retry_delays: seconds before each retry of a failed webhook delivery (:mod:`~emulators.pipedrive.webhooks`).
    """

    FAULTS = FaultInjection.FAULTS | {"403", "daily"}

    def __init__(self, api_token: str = "pd-demo", *, rate_limit: tuple[int, float] | None = None,
                 search_rate_limit: tuple[int, float] | None = None, daily_tokens: int | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0,
                 check_requests: bool = True, search_lag: float = 0.0, company_id: int = 7001,
                 client_id: str = "c2c0ffee0000pd01", client_secret: str = "demo-pipedrive-client-secret-0001",
                 redirect_uris: tuple[str, ...] | None = None, app_scopes: tuple[str, ...] = APP_SCOPES,
                 oauth_token_seconds: float = 3600.0,
                 jwt_secret: str | None = "demo-pipedrive-panel-jwt-secret-0123456789-abcdefghijklmnopqrstu",
                 panel_url: str | None = None, clock: Callable[[], float] | None = None,
                 webhook_retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError(f"rate_limit must be (requests >= 1, seconds > 0), got {rate_limit!r}")
        self.api_token = api_token
        self._init_faults(latency=latency, timeout_seconds=timeout_seconds, rate_limit=rate_limit,
                          search_lag=search_lag)
        self._init_webhooks(retry_delays=webhook_retry_delays)
        self.search_rate_limit = search_rate_limit
        self.daily_tokens = daily_tokens
        self.tokens_used = 0
        #: requests are checked against Pipedrive's OpenAPI files (shipped in ``vendor_specs``) unless asked not to
        self.check_requests = check_requests
        self.ids = itertools.count(1001)
        self.search_window: deque[float] = deque()
        self.users = [{"id": 1, "name": "Deniz Koordinatör", "email": "coordinator@clinic.example",
                       "active_flag": True, "is_admin": 1, "lang": 1, "locale": "en_US", "timezone_name": "UTC",
                       "company_id": company_id, "company_name": "Clinic", "company_domain": "clinic"}]
        self._init_oauth(company_id=company_id, client_id=client_id, client_secret=client_secret,
                         redirect_uris=redirect_uris, app_scopes=app_scopes, oauth_token_seconds=oauth_token_seconds,
                         clock=clock)
        self.jwt_secret, self.panel_url = jwt_secret, panel_url
        self.file_contents, self.file_types = {}, {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.fields: dict[str, list[dict[str, Any]]] = {
            "person": [self._field(c, n, t, custom=False) for c, n, t in PERSON_FIELDS],
            "deal": [self._field(c, n, t, custom=False) for c, n, t in DEAL_FIELDS],
        }
        # a new company's account: one sales pipeline with Pipedrive's default stages (`crm setup` makes the clinic's)
        self.pipelines = [{"id": 1, "name": "Pipeline", "order_nr": 1, "is_deleted": False, "is_deal_probability_enabled":
                           False, "add_time": timestamp(), "update_time": timestamp(), "is_selected": True}]
        self.stages = [{"id": i + 1, "name": name, "pipeline_id": 1, "order_nr": i + 1, "deal_probability": 100,
                        "is_deal_rot_enabled": False, "days_to_rotten": None, "is_deleted": False,
                        "add_time": timestamp(), "update_time": timestamp()}
                       for i, name in enumerate(DEFAULT_STAGES)]
        self.app = self._make_app()

    # -- HTTP ----------------------------------------------------------------------------------
    def _rate_headers(self) -> dict[str, str]:
        limit, seconds = self.rate_limit or (80, 2.0)
        remaining = max(0, limit - len(self.window)) if self.rate_limit else limit - 1
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(max(1, int(seconds)))}

    def _too_many(self, daily: bool = False) -> Response:
        if daily:
            reset = 86400 - int(time.time()) % 86400  # the budget resets at midnight UTC
            response = self._error(429, "Request over limit", errorCode=429,
                                   error_info="Your company's daily API token budget is used up. "
                                              + ERROR_INFO)
            response.headers.update({"x-ratelimit-limit": str(self.daily_tokens or 0), "x-ratelimit-remaining": "0",
                                     "x-ratelimit-reset": str(reset), "Retry-After": str(reset)})
            return response
        response = self._error(429, "Request over limit", errorCode=429)
        seconds = self.rate_limit[1] if self.rate_limit else 2.0
        response.headers.update({**self._rate_headers(), "x-ratelimit-remaining": "0",
                                 "Retry-After": str(max(1, round(seconds)))})
        return response

    def _before(self, scopes: tuple[str, ...] = ()) -> Response | None:
        """What a call is answered with before its operation runs (None: it runs): an injected fault, a bad
        token (or an app's token without one of ``scopes``), or a rate limit."""
        self._record_call()
        fault = self._draw_fault()
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
        if fault == "429":
            return self._too_many()
        if fault == "daily":
            return self._too_many(daily=True)
        plain = _FAULT_ERRORS.get(fault or "")
        if plain is not None:
            return self._error(*plain)
        if fault == "401":
            return self._error(401, "unauthorized access", errorCode=401)
        if refused := self._authenticate(scopes):
            return refused
        return self._over_rate_limit()

    def _over_rate_limit(self) -> Response | None:
        """429 when the call does not fit the burst limit (or, for a search, the search limit); counted when
        it does."""
        with self.lock:
            now = time.monotonic()
            limits = [(self.rate_limit, self.window)]
            if request.path.endswith("/search"):
                limits.append((self.search_rate_limit, self.search_window))
            for limit, window in limits:
                if limit is None:
                    continue
                while window and now - window[0] > limit[1]:
                    window.popleft()
                if len(window) >= limit[0]:
                    return self._too_many()
            for limit, window in limits:
                if limit is not None:
                    window.append(now)
        return None

    def _violation(self, problems: list[str]) -> Response:
        with self.lock:
            self.violations.append({"method": request.method, "path": request.path, "problems": problems})
        return self._error(400, "Validation failed: " + "; ".join(problems)[:500], error_info="Validation failed.")

    def _dispatch(self, rest: str) -> Response:
        # the company's API domain serves v1 under /api/v1, as api.pipedrive.com serves it under /v1
        path = "/" + (rest[4:] if rest.startswith("api/v1/") else rest)
        found = openapi.find_operation(request.method, path) if self.check_requests else None
        if early := self._before(found[0].scopes if found else ()):
            return early
        routed = route(request.method, path)
        op = None
        if self.check_requests:
            if found is None:
                with self.lock:
                    self.violations.append({"method": request.method, "path": path,
                                            "problems": ["no such operation in Pipedrive's API descriptions"]})
                return self._error(404, f"Unknown method {request.method} {path}")
            op, params = found
        if routed is None:
            return self._error(501 if op else 404, f"{op.operation_id if op else path} is not emulated")
        operation_id, params, cost = routed
        body: Any = None
        if request.mimetype == "multipart/form-data":
            raw = b""  # a file upload: its fields are the body, its file the operation reads
            body = request.form.to_dict()
        else:
            raw = request.get_data()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._violation(["body: not JSON"])
        query = {k: request.args.getlist(k) for k in request.args if k != "api_token"}
        if op is not None:
            problems = openapi.request_errors(op, params, query, body, bool(raw))
            if problems:
                return self._violation(problems)
        with self.lock:
            if self.daily_tokens is not None and self.tokens_used + cost > self.daily_tokens:
                return self._too_many(daily=True)
            self.tokens_used += cost  # counted always: tests measure what a message costs
            handler = getattr(self, "_op_" + operation_id)
            args = {k: request.args.get(k) for k in request.args}
            result: Response = handler(params, args, body)
            return result

    def _make_app(self) -> Flask:
        app = Flask("pipedrive-emulator")

        @app.after_request
        def record_status(response: Response) -> Response:
            if not request.path.startswith("/_emulator"):
                self._record_status(response.status_code)
                with self.lock:
                    for key, value in self._rate_headers().items():
                        response.headers.setdefault(key, value)
            return response

        @app.get("/_emulator/view")
        def view() -> Response:
            return self._json(self.agent_view())

        @app.get("/_emulator/calls")
        def list_calls() -> Response:
            with self.lock:
                return self._json(list(self.calls)[-200:])

        @app.get("/_emulator/objects/<kind>")
        def list_objects(kind: str) -> Response:
            return self._json(self.records(kind) if kind in self.objects else [])

        app.add_url_rule("/oauth/authorize", "oauth_authorize", self._serve_authorize, methods=["GET"])
        app.add_url_rule("/oauth/token", "oauth_token", self._serve_token, methods=["POST"])
        app.add_url_rule("/_emulator/ui/host.js", "ui_host_js", self._serve_host_js, methods=["GET"])
        app.add_url_rule("/_emulator/ui/token", "ui_token", self._serve_ui_token, methods=["GET"])
        app.add_url_rule("/_emulator/ui/<resource>/<record>", "ui_detail", self._serve_ui, methods=["GET"])

        self._add_webhook_routes(app)

        @app.post("/_emulator/oauth/expire")
        def expire() -> Response:
            self.expire_access_tokens()
            return self._json({"expired": len(self.access_tokens)})

        @app.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def api(rest: str) -> Response:
            return self._dispatch(rest)

        return app


def create_app(api_token: str = "pd-demo", **kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator; the emulator is ``app.config['EMULATOR']``."""
    emulator = PipedriveEmulator(api_token, **kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
