"""Installing the HubSpot app into a portal by OAuth, and keeping its access token fresh.

The install: the portal's admin opens ``{public_base_url}/crm/hubspot/install``; the relay sends them to
HubSpot's consent page (:meth:`HubSpotOAuth.authorize_url`), HubSpot sends them back with a code, and
:meth:`HubSpotOAuth.complete` exchanges it at ``POST /oauth/v1/token`` (form-encoded, as HubSpot's token
endpoint takes it) for an access token (about 30 minutes) and a refresh token, and reads the portal's id
from the token's metadata (``GET /oauth/v1/access-tokens/{token}``) when the token answer does not carry it.

Afterwards every call asks :meth:`HubSpotOAuth.access_token`: the stored token while it has more than
``margin`` seconds left (5 minutes), else a refresh, done by one worker at a time
(:meth:`adapters.hubspot.tokens.TokenStore.refresh_lock`); the others wait for it and use its result. A
refresh token HubSpot refuses (the app was uninstalled, access revoked) is an :class:`~core.errors.AuthError`
telling the admin to install the app again at ``{public_base_url}/crm/hubspot/install``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.tokens import Tokens, TokenStore
from adapters.inbox import OAuthInstall
from core.errors import AuthError, FatalError

log = logging.getLogger("chat2crm.hubspot.oauth")

#: what the app asks for: the custom channel (read, publish), the inboxes to connect it to, the contacts the
#: threads are associated with, and the file manager for patients' files; ``oauth`` is required of every app
SCOPES = ("oauth", "conversations.custom_channels.read", "conversations.custom_channels.write",
          "conversations.read", "crm.objects.contacts.read", "crm.objects.contacts.write", "files")
#: asked for when the portal allows it: reading hidden files (an agent's attachment may be stored hidden), and
#: assigning a thread to the contact's owner (reading the owner's user, writing the thread's assignee:
#: :mod:`adapters.hubspot.routing`; without them threads stay as the inbox routes them)
OPTIONAL_SCOPES = ("files.ui_hidden.read", "crm.objects.owners.read", "conversations.write")
#: a token with less than this left is refreshed before it is used (seconds)
REFRESH_MARGIN = 300.0
#: the path of the install page on the relay (the connector's web routes serve it)
INSTALL_PATH = "/crm/hubspot/install"


class HubSpotOAuth(OAuthInstall):
    """The app's OAuth: consent URL, code exchange, refresh.

    Args:
        rest: the session the token calls go through.
        store: where the tokens are kept.
        client_id: the app's client id.
        client_secret: the app's client secret.
        app_base: HubSpot's web app (``https://app.hubspot.com``; the consent page is there).
        public_base_url: where the relay is reached (named in the reinstall hint).
        clock: the time, in seconds since the epoch (tests move it).
    """

    def __init__(self, rest: HubSpotRest, store: TokenStore, *, client_id: str, client_secret: str, app_base: str,
                 public_base_url: str, clock: Callable[[], float] = time.time) -> None:
        self.rest = rest
        self.store = store
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_base = app_base.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock
        #: refresh a token that has less than this left (seconds)
        self.margin = REFRESH_MARGIN
        #: how long a worker waits for another one's refresh before it gives the job back (seconds)
        self.lock_wait = 10.0

    # -- the install ---------------------------------------------------------------------------
    def authorize_url(self, *, state: str, redirect_uri: str) -> str:
        query = urlencode({"client_id": self.client_id, "redirect_uri": redirect_uri, "scope": " ".join(SCOPES),
                           "optional_scope": " ".join(OPTIONAL_SCOPES), "state": state}, quote_via=quote)
        return f"{self.app_base}/oauth/authorize?{query}"

    def complete(self, *, code: str, redirect_uri: str) -> str:
        try:
            answer = self.rest.send("oauth_code", "POST", "/oauth/v1/token", auth="none", form={
                "grant_type": "authorization_code", "client_id": self.client_id, "client_secret": self.client_secret,
                "redirect_uri": redirect_uri, "code": code})
        except FatalError as exc:
            raise AuthError(f"hubspot: the authorization code was refused ({exc.details.get('code') or exc.message}); "
                            f"start the install again at {self.install_url()}", setting=_client_setting(exc),
                            details=exc.details) from None
        portal = _portal_of(answer)
        scopes: tuple[str, ...] = tuple(answer.get("scopes") or ())
        if portal is None:
            # HubSpot's v1 token answer does not name the portal: the token's metadata does
            info = self.rest.send("oauth_token_info", "GET", f"/oauth/v1/access-tokens/{answer['access_token']}",
                                  auth="none")
            portal = _portal_of(info)
            scopes = tuple(info.get("scopes") or scopes)
            if portal is None:
                raise FatalError("hubspot: the token's metadata names no portal (hub_id)")
        tokens = self._tokens(portal, answer, refresh_token=None, scopes=scopes)
        self.store.save(tokens, install=True)
        # a number, not a string: the log masks strings of digits as phone numbers
        log.info("hubspot app installed", extra={"portal": int(portal) if portal.isdigit() else portal})
        return portal

    def install_url(self) -> str:
        """The relay's page that starts an install."""
        return self.public_base_url + INSTALL_PATH

    def reinstall_hint(self) -> str:
        return f"install the HubSpot app again at {self.install_url()}"

    # -- the token every call uses -------------------------------------------------------------
    def tokens(self) -> Tokens:
        """The installed portal's tokens, as stored.

        Raises:
            AuthError: the app is not installed.
        """
        tokens = self.store.load()
        if tokens is None:
            raise AuthError(f"hubspot: the HubSpot app is not installed; {self.reinstall_hint()}",
                            setting="HUBSPOT_CLIENT_ID")
        return tokens

    def access_token(self) -> str:
        """A token with more than :attr:`margin` seconds left, refreshed first when it has less.

        Raises:
            AuthError: the app is not installed, or HubSpot refused its refresh token (install it again).
            RetryableError: HubSpot did not answer, or another worker's refresh took too long.
        """
        tokens = self.tokens()
        if tokens.fresh(self.clock(), self.margin):
            return tokens.access_token
        return self.refresh(stale=tokens.access_token)

    def refresh(self, stale: str | None = None) -> str:
        """Refresh the installed portal's access token, once for every worker: under the portal's lock, a token
        another worker already put in place of ``stale`` is used instead of refreshing again.

        Raises:
            As :meth:`access_token`.
        """
        portal = self.tokens().portal_id
        with self.store.refresh_lock(portal, wait=self.lock_wait):
            current = self.store.load(portal)
            if current is None:
                raise AuthError(f"hubspot: the HubSpot app is not installed; {self.reinstall_hint()}",
                                setting="HUBSPOT_CLIENT_ID")
            if current.access_token != stale and current.fresh(self.clock(), self.margin):
                return current.access_token
            try:
                answer = self.rest.send("oauth_refresh", "POST", "/oauth/v1/token", auth="none", form={
                    "grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self.client_secret,
                    "refresh_token": current.refresh_token})
            except FatalError as exc:
                setting = _client_setting(exc)
                if setting:
                    raise AuthError(f"hubspot: the app's client credentials were refused ({exc.details.get('code')}); "
                                    f"check {setting}", setting=setting, details=exc.details) from None
                raise AuthError(f"hubspot: HubSpot refused the app's refresh token ({exc.details.get('code') or 'refused'}"
                                f"): the app was uninstalled or its access revoked; {self.reinstall_hint()}",
                                details=exc.details) from None
            tokens = self._tokens(portal, answer, refresh_token=current.refresh_token, scopes=current.scopes)
            self.store.save(tokens)
            log.info("hubspot token refreshed", extra={"portal": portal})
            return tokens.access_token

    def _tokens(self, portal: str, answer: dict[str, Any], *, refresh_token: str | None,
                scopes: tuple[str, ...]) -> Tokens:
        access = answer.get("access_token") or answer.get("accessToken")
        if not access:
            raise FatalError("hubspot: the token answer holds no access token")
        seconds = float(answer.get("expires_in") or answer.get("expiresIn") or 1800)
        # HubSpot may hand out a new refresh token with a refresh; keep the old one when it does not
        refresh = answer.get("refresh_token") or answer.get("refreshToken") or refresh_token
        if not refresh:
            raise FatalError("hubspot: the token answer holds no refresh token")
        return Tokens(portal_id=portal, access_token=str(access), refresh_token=str(refresh),
                      expires_at=self.clock() + seconds, scopes=scopes)


def _portal_of(answer: dict[str, Any]) -> str | None:
    value = answer.get("hub_id") or answer.get("hubId")
    return str(value) if value else None


def _client_setting(exc: FatalError) -> str | None:
    """The setting to fix when the token endpoint refused the app's own credentials."""
    code = str(exc.details.get("code") or "")
    return {"BAD_CLIENT_ID": "HUBSPOT_CLIENT_ID", "BAD_CLIENT_SECRET": "HUBSPOT_CLIENT_SECRET",
            "BAD_REDIRECT_URI": "PUBLIC_BASE_URL"}.get(code)
