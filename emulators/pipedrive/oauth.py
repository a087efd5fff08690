"""The emulated Pipedrive app and its OAuth install: the consent page, the token endpoint, and who may call
what with which token.

The app (client id, client secret, redirect URLs, scopes, JWT secret of its custom panel) is given to the
emulator, which plays the company's admin: ``GET /oauth/authorize`` with the app's client id and a
registered redirect URI answers at once with a redirect to ``redirect_uri?code=…&state=…`` (the consent is
given; :meth:`PipedriveOAuth.deny_next_install` makes the next one a refusal, ``error=access_denied``); a
wrong client id or redirect URI gets Pipedrive's error page. ``POST /oauth/token`` takes the app's
credentials as HTTP Basic and a form body; it exchanges a code once (within 5 minutes) and refreshes; its
answers are the documented ones (``access_token``, ``token_type``, ``expires_in``, ``refresh_token``,
``scope``, ``api_domain``) and its refusals the documented messages (``Invalid grant: authorization code is
invalid``…) in Pipedrive's OAuth error body, ``{"success": false, "message": …, "error": …}``.

API calls take the API token (``x-api-token``, or ``Bearer`` with it) or an OAuth access token (``Bearer``).
An access token lives ``oauth_token_seconds``; an expired one gets 401 ``Invalid token: access token has
expired``; an operation the token's scopes do not cover (the ``oauth2`` scopes its OpenAPI description
lists) gets 403 ``Scope and URL mismatch``. The company's API answers on ``api_domain`` with ``/api/v1`` as
well as ``/v1``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlparse

from flask import Response, request

from emulators.pipedrive.state import ERROR_INFO, PipedriveState

#: the scopes the emulated app was given in the Developer Hub (everything the relay does)
APP_SCOPES = ("base", "deals:full", "contacts:full", "leads:full", "activities:full", "users:read",
              "deal-fields:full", "contact-fields:full", "search:read")
#: how long an authorization code can be exchanged (seconds; Pipedrive: 5 minutes)
CODE_SECONDS = 300.0


class PipedriveOAuth(PipedriveState):
    """The app, its install by OAuth, and the credentials each call brings."""

    company_id: int
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] | None
    app_scopes: tuple[str, ...]
    oauth_token_seconds: float
    clock: Callable[[], float]
    #: where the emulator is reached (the token answer's ``api_domain``); None: the host the request came to
    public_url: str | None
    #: code → what it was issued for (redirect URI, expiry, whether it was used)
    oauth_codes: dict[str, dict[str, Any]]
    #: access token → scopes, expiry
    access_tokens: dict[str, dict[str, Any]]
    #: refresh token → scopes
    refresh_tokens: dict[str, dict[str, Any]]

    def _init_oauth(self, *, company_id: int, client_id: str, client_secret: str,
                    redirect_uris: tuple[str, ...] | None, app_scopes: tuple[str, ...], oauth_token_seconds: float,
                    clock: Callable[[], float] | None) -> None:
        self.company_id = company_id
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris, self.app_scopes = redirect_uris, app_scopes
        self.oauth_token_seconds = oauth_token_seconds
        self.clock = clock or time.time
        self.public_url = None
        self.oauth_codes, self.access_tokens, self.refresh_tokens = {}, {}, {}
        self._deny = False

    # -- for tests and the demo ------------------------------------------------------------------
    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (as if ``oauth_token_seconds`` had passed)."""
        with self.lock:
            for token in self.access_tokens.values():
                token["expires_at"] = min(token["expires_at"], self.clock() - 1)

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token (the app was uninstalled)."""
        with self.lock:
            self.refresh_tokens.clear()

    def deny_next_install(self) -> None:
        """The next consent is refused by the admin (``error=access_denied`` on the redirect)."""
        self._deny = True

    def api_domain(self) -> str:
        """The company's API domain, as the token answer gives it."""
        return (self.public_url or request.host_url).rstrip("/")

    # -- the consent page ------------------------------------------------------------------------
    def _serve_authorize(self) -> Response:
        """The consent page; the emulated admin allows and installs at once."""
        self._record_call()
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != self.client_id:
            return _page("The app could not be found. Check the client_id.")
        parsed = urlparse(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or (
                self.redirect_uris is not None and redirect_uri not in self.redirect_uris):
            return _page("Invalid request: redirect_uri is invalid")
        if self._deny:
            self._deny = False
            query = {"error": "access_denied"} | ({"state": args["state"]} if "state" in args else {})
        else:
            code = f"{self.company_id}.{uuid.uuid4().hex}"
            with self.lock:
                self.oauth_codes[code] = {"redirect_uri": redirect_uri, "used": False,
                                          "expires_at": self.clock() + CODE_SECONDS}
            query = {"code": code} | ({"state": args["state"]} if "state" in args else {})
        separator = "&" if "?" in redirect_uri else "?"
        return Response(status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(query)}"})

    # -- the token endpoint ----------------------------------------------------------------------
    def _serve_token(self) -> Response:
        """Exchange a code, or refresh (the app's credentials as HTTP Basic, a form body)."""
        self._record_call()
        if request.content_length and request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "Invalid request: content must be application/x-www-form-urlencoded")
        client = _basic(request.headers.get("Authorization", ""))
        form = request.form
        grant = form.get("grant_type")
        if not grant:
            return _oauth_error("invalid_request", "Missing parameter: grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            return _oauth_error("unsupported_grant_type", "Unsupported grant type: grant_type is invalid")
        if client is None:
            return _oauth_error("invalid_client", "Invalid client: cannot retrieve client credentials")
        if client != (self.client_id, self.client_secret):
            return _oauth_error("invalid_client", "Invalid client: client is invalid")
        with self.lock:
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self.refresh_tokens:
                    return _oauth_error("invalid_grant", "Invalid grant: refresh token is invalid")
            else:
                found = self.oauth_codes.get(form.get("code", ""))
                if found is None or found["used"]:
                    return _oauth_error("invalid_grant", "Invalid grant: authorization code is invalid")
                if found["expires_at"] < self.clock():
                    return _oauth_error("invalid_grant", "Invalid grant: authorization code has expired")
                redirect_uri = form.get("redirect_uri", "")
                if not urlparse(redirect_uri).netloc:
                    return _oauth_error("invalid_request", "Invalid request: redirect_uri is not a valid URI")
                if redirect_uri != found["redirect_uri"]:
                    return _oauth_error("invalid_request", "Invalid request: redirect_uri is invalid")
                found["used"] = True
                refresh = f"{self.company_id}:{secrets.token_hex(20)}"
                self.refresh_tokens[refresh] = {"scopes": list(self.app_scopes)}
            scopes = self.refresh_tokens[refresh]["scopes"]
            access = f"{self.company_id}:{secrets.token_hex(24)}"
            self.access_tokens[access] = {"scopes": scopes, "expires_at": self.clock() + self.oauth_token_seconds}
        return self._json({"access_token": access, "token_type": "Bearer",
                           "expires_in": int(self.oauth_token_seconds) - 1, "refresh_token": refresh,
                           "scope": ",".join(scopes), "api_domain": self.api_domain()})

    # -- who may call ----------------------------------------------------------------------------
    def _authenticate(self, scopes: tuple[str, ...]) -> Response | None:
        """Why the call's credentials do not open an operation needing one of ``scopes`` (None: they do)."""
        token = request.headers.get("x-api-token") or request.args.get("api_token") or ""
        header = request.headers.get("Authorization", "")
        bearer = header[7:] if header.startswith("Bearer ") else ""
        if token == self.api_token or (bearer and bearer == self.api_token):
            return None
        with self.lock:
            info = self.access_tokens.get(bearer) if bearer else None
        if info is None:
            return self._error(401, "unauthorized access", errorCode=401)
        if info["expires_at"] <= self.clock():
            return self._error(401, "Invalid token: access token has expired", errorCode=401)
        if scopes and not set(scopes) & set(info["scopes"]):
            return self._error(403, "Scope and URL mismatch", errorCode=403)
        return None


def _basic(header: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` of an HTTP Basic header (None: none, or not Basic)."""
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _page(reason: str) -> Response:
    """Pipedrive's consent-page error (an HTML page for the admin, not a redirect)."""
    html = ("<!doctype html><title>Pipedrive</title><h1>Something went wrong</h1>"
            f"<p>{reason}</p><p>{ERROR_INFO}</p>")
    return Response(html, status=400, mimetype="text/html")


def _oauth_error(error: str, message: str) -> Response:
    """The token endpoint's error body, as Pipedrive's OAuth server answers it."""
    return Response(json.dumps({"success": False, "message": message, "error": error}), status=400,
                    mimetype="application/json")
