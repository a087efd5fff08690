"""The emulated HubSpot app and its OAuth install: the consent page, the token endpoint, token metadata,
and the credentials each route takes.

The app (client id, client secret, app id, developer API key, scopes) is given to the emulator. The
emulator plays the portal's admin: ``GET /oauth/authorize`` with the right client id and scopes answers at
once with a redirect to ``redirect_uri?code=…&state=…``; a wrong client id, redirect URI or scope set gets
HubSpot's error page; optional scopes the portal does not allow (:meth:`HubSpotOAuth.withhold_scopes`) are
left out of what is granted. ``POST /oauth/v1/token`` (and the dated ``/oauth/v3/token``, ``/oauth/2026-03/token``)
exchanges a code once, and refreshes; its answers and errors are those of HubSpot's OAuth guide (``status``
and ``message`` with RFC 6749's ``error`` and ``error_description``). Access tokens expire after
``oauth_token_seconds``; an expired one gets HubSpot's 401 ``EXPIRED_AUTHENTICATION``.

Credentials by route (:meth:`HubSpotOAuth._authenticate`): CRM routes take the private app token or an
OAuth access token; conversations and files routes the same, an OAuth token needing the route's scope;
custom channel routes only an OAuth token (HubSpot does not support them for private apps: a private app
token gets 403 ``MISSING_SCOPES``); channel registration the developer API key (``hapikey``).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, g, jsonify, request

from emulators.hubspot.state import HubSpotState

#: what the emulated app asks for at install (HubSpot refuses an install whose ``scope`` lacks one)
APP_SCOPES = ("oauth", "conversations.read", "conversations.custom_channels.read",
              "conversations.custom_channels.write", "files", "crm.objects.contacts.read",
              "crm.objects.contacts.write")
#: what it may ask for besides (``optional_scope``, or in ``scope``)
OPTIONAL_SCOPES = ("conversations.write", "crm.objects.deals.read", "crm.objects.deals.write", "crm.objects.leads.read",
                   "crm.objects.leads.write", "tickets", "crm.schemas.contacts.write", "crm.schemas.deals.write",
                   "crm.objects.owners.read", "files.ui_hidden.read")
#: how long an authorization code can be exchanged (seconds)
CODE_SECONDS = 300.0
Route = tuple[tuple[str, ...], str, Callable[..., Any]]


class HubSpotOAuth(HubSpotState):
    """The app, its install by OAuth, and who may call what."""

    portal_id: int
    app_id: int
    client_id: str
    client_secret: str
    developer_api_key: str
    redirect_uris: tuple[str, ...] | None
    app_scopes: tuple[str, ...]
    oauth_token_seconds: float
    clock: Callable[[], float]
    #: code → what it was issued for (redirect URI, scopes, expiry, whether it was used)
    oauth_codes: dict[str, dict[str, Any]]
    #: access token → scopes, expiry, the refresh token it came from
    access_tokens: dict[str, dict[str, Any]]
    #: refresh token → scopes
    refresh_tokens: dict[str, dict[str, Any]]
    #: optional scopes the portal does not grant (its tier or the installer's permissions lack them): asked for,
    #: left out of the token, as HubSpot grants an optional scope only where the account allows it
    withheld_scopes: frozenset[str] = frozenset()

    def _init_oauth(self, *, portal_id: int, app_id: int, client_id: str, client_secret: str, developer_api_key: str,
                    redirect_uris: tuple[str, ...] | None, app_scopes: tuple[str, ...], oauth_token_seconds: float,
                    clock: Callable[[], float] | None) -> None:
        self.portal_id, self.app_id = portal_id, app_id
        self.client_id, self.client_secret, self.developer_api_key = client_id, client_secret, developer_api_key
        self.redirect_uris, self.app_scopes = redirect_uris, app_scopes
        self.oauth_token_seconds = oauth_token_seconds
        self.clock = clock or time.time
        self.oauth_codes, self.access_tokens, self.refresh_tokens = {}, {}, {}

    # -- for tests and the demo ------------------------------------------------------------------
    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (as if ``oauth_token_seconds`` had passed)."""
        with self.lock:
            for token in self.access_tokens.values():
                token["expires_at"] = min(token["expires_at"], self.clock() - 1)

    def withhold_scopes(self, *scopes: str) -> None:
        """Installs from now on are not granted these optional scopes (a portal that does not allow them)."""
        with self.lock:
            self.withheld_scopes = frozenset(scopes)

    def installer_user_id(self) -> int:
        """The HubSpot user who installed the app (the account's first owner)."""
        return int(self.owners[0]["userId"])

    # -- routes ----------------------------------------------------------------------------------
    def _extra_routes(self) -> list[Route]:
        """The routes the layers above the CRM API add (each layer extends its parent's list)."""
        return [
            (("GET",), "/oauth/authorize", self._serve_authorize),
            (("GET",), "/oauth/<int:portal>/authorize", self._serve_authorize),
            (("POST",), "/oauth/v1/token", self._serve_token),
            (("POST",), "/oauth/v3/token", self._serve_token),
            (("POST",), "/oauth/2026-03/token", self._serve_token),
            (("GET",), "/oauth/v1/access-tokens/<token>", self._serve_access_token_info),
            (("GET", "DELETE"), "/oauth/v1/refresh-tokens/<token>", self._serve_refresh_token),
            (("POST",), "/_emulator/oauth/expire", self._control_expire),
        ]

    def _serve_authorize(self, portal: int | None = None) -> Any:
        """The consent page; the emulated admin grants at once what a correct request asks for."""
        self._record_call()
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        asked = set(args.get("scope", "").split()) | set(args.get("optional_scope", "").split())
        if args.get("client_id") != self.client_id:
            return _page("Authorization failed because the client_id is invalid.")
        if not redirect_uri.startswith(("http://", "https://")) or (
                self.redirect_uris is not None and redirect_uri not in self.redirect_uris):
            return _page("Authorization failed because the redirect_uri does not match the app's redirect URLs.")
        required = set(self.app_scopes)
        if not required <= set(args.get("scope", "").split()) or not asked <= required | set(OPTIONAL_SCOPES):
            return _page("Authorization failed because there was a mismatch between the requested scopes and the "
                         "required scopes.")
        code = str(uuid.uuid4())
        with self.lock:
            granted = asked - (self.withheld_scopes - required)
            self.oauth_codes[code] = {"redirect_uri": redirect_uri, "scopes": sorted(granted), "used": False,
                                      "expires_at": self.clock() + CODE_SECONDS}
        query = {"code": code} | ({"state": args["state"]} if "state" in args else {})
        separator = "&" if "?" in redirect_uri else "?"
        return Response(status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(query)}"})

    def _serve_token(self) -> Any:
        """Exchange a code, or refresh (form-encoded, as HubSpot's token endpoint takes them)."""
        if early := self._before("none"):
            return early
        form = request.form
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            return _oauth_error("BAD_GRANT_TYPE", "unsupported_grant_type", "missing or invalid grant type")
        if form.get("client_id") != self.client_id:
            return _oauth_error("BAD_CLIENT_ID", "invalid_client", "missing or invalid client id")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error("BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret")
        with self.lock:
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self.refresh_tokens:
                    return _oauth_error("BAD_REFRESH_TOKEN", "invalid_grant",
                                        "refresh token is invalid, expired or revoked")
                scopes = self.refresh_tokens[refresh]["scopes"]
            else:
                code = self.oauth_codes.get(form.get("code", ""))
                if code is None or code["used"] or code["expires_at"] < self.clock():
                    return _oauth_error("BAD_AUTH_CODE", "invalid_grant", "missing or unknown auth code")
                if form.get("redirect_uri") != code["redirect_uri"]:
                    return _oauth_error("BAD_REDIRECT_URI", "invalid_grant", "redirect_uri does not match")
                code["used"] = True
                scopes = code["scopes"]
                refresh = f"na1-{uuid.uuid4()}"
                self.refresh_tokens[refresh] = {"scopes": scopes}
            access = "emu-" + secrets.token_urlsafe(48)
            self.access_tokens[access] = {"scopes": scopes, "refresh_token": refresh,
                                          "expires_at": self.clock() + self.oauth_token_seconds}
        return jsonify({"token_type": "bearer", "refresh_token": refresh, "access_token": access,
                        "expires_in": int(self.oauth_token_seconds), "hub_id": self.portal_id, "scopes": scopes,
                        "token_use": "access_token", "user_id": self.installer_user_id()}), 200

    def _serve_access_token_info(self, token: str) -> Any:
        """An access token's metadata (account, app, scopes, seconds left)."""
        if early := self._before("none"):
            return early
        with self.lock:
            info = self.access_tokens.get(token)
            left = info["expires_at"] - self.clock() if info else 0
        if info is None or left <= 0:
            return self._error(404, "The access token was not found or has expired.", "OBJECT_NOT_FOUND")
        owner = self.owners[0]
        return jsonify({"token": token, "user": owner["email"], "hub_domain": "clinic.example",
                        "scopes": info["scopes"], "hub_id": self.portal_id, "app_id": self.app_id,
                        "expires_in": int(left), "user_id": self.installer_user_id(), "token_type": "access",
                        "is_private_distribution": False}), 200

    def _serve_refresh_token(self, token: str) -> Any:
        """A refresh token's metadata, or its deletion (the app is disconnected)."""
        if early := self._before("none"):
            return early
        with self.lock:
            info = self.refresh_tokens.get(token)
            if info is None:
                return _oauth_error("BAD_REFRESH_TOKEN", "invalid_grant", "refresh token is invalid, expired or "
                                                                          "revoked", status_code=404)
            if request.method == "DELETE":
                del self.refresh_tokens[token]
                return "", 204
        return jsonify({"token": token, "user": self.owners[0]["email"], "hub_domain": "clinic.example",
                        "scopes": info["scopes"], "hub_id": self.portal_id, "client_id": self.client_id,
                        "user_id": self.installer_user_id(), "token_type": "refresh"}), 200

    def _control_expire(self) -> Any:
        self.expire_access_tokens()
        return jsonify({"expired": len(self.access_tokens)}), 200

    # -- credentials -----------------------------------------------------------------------------
    def _authenticate(self, auth: str, scopes: tuple[str, ...]) -> tuple[Response, int] | None:
        """Whether the call's credentials open a route taking ``auth``:

        - ``crm``: the private app token or an OAuth access token;
        - ``conversations``, ``files``: the same, an OAuth token having one of ``scopes``;
        - ``channels``: an OAuth access token having one of ``scopes``;
        - ``developer``: the developer API key (``hapikey``).

        The app's id for the call is left in ``g.hubspot_app_id`` (None for the private app).
        """
        g.hubspot_app_id = None
        if auth == "developer":
            if request.args.get("hapikey") != self.developer_api_key:
                return self._error(401, "The API key provided is invalid. View or manage your API key here: "
                                        "https://app.hubspot.com/l/api-key/", "INVALID_AUTHENTICATION")
            g.hubspot_app_id = self.app_id
            return None
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token and token == self.access_token:
            return self._missing_scopes(scopes) if auth == "channels" else None
        with self.lock:
            info = self.access_tokens.get(token)
        if info is None:
            return self._invalid_authentication()
        expired_for = self.clock() - info["expires_at"]
        if expired_for >= 0:
            return self._error(401, f"The OAuth token used to make this call expired {int(expired_for // 60)} "
                                    "minute(s) ago.", "EXPIRED_AUTHENTICATION")
        if scopes and auth != "crm" and not set(scopes) & set(info["scopes"]):
            return self._missing_scopes(scopes)
        g.hubspot_app_id = self.app_id
        return None

    def _missing_scopes(self, scopes: tuple[str, ...]) -> tuple[Response, int]:
        return self._error(403, "This app hasn't been granted all required scopes to make this call. Read more "
                                "about required scopes here: https://developers.hubspot.com/scopes.", "MISSING_SCOPES",
                           errors=[{"message": "One or more of the following scopes are required.",
                                    "context": {"requiredGranularScopes": list(scopes)}}],
                           links={"scopes": "https://developers.hubspot.com/scopes"})


def _page(reason: str) -> tuple[Response, int]:
    """HubSpot's consent-page error (an HTML page for the admin, not a redirect)."""
    html = f"<!doctype html><title>Authorization failed</title><h1>Couldn't complete the connection</h1><p>{reason}</p>"
    return Response(html, mimetype="text/html"), 400


def _oauth_error(status: str, error: str, message: str, *, status_code: int = 400) -> tuple[Response, int]:
    """The token endpoint's error body (HubSpot's ``status``/``message`` and RFC 6749's ``error``)."""
    return jsonify({"error": error, "error_description": message, "status": status, "message": message}), status_code
