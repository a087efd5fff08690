"""Installing the Pipedrive app into a company by OAuth, and keeping its access token fresh.

The install: the company's admin opens ``{public_base_url}/crm/pipedrive/install``; the relay sends them to
Pipedrive's consent page (``{oauth_base}/oauth/authorize`` with the client id, the redirect URI and a signed
``state``: :meth:`PipedriveOAuth.authorize_url`; the scopes are the app's, set in the Developer Hub, not in
the URL), Pipedrive sends them back with a code, and :meth:`PipedriveOAuth.complete` exchanges it at
``POST {oauth_base}/oauth/token`` (form-encoded, the app's client id and secret as HTTP Basic) for an access
token (an hour: ``expires_in``), a refresh token, the granted ``scope`` and the company's ``api_domain``
(``https://clinic.pipedrive.com``), where every API call of the app goes. The company's id comes from
``GET /api/v1/users/me`` with the new token. The tokens are kept encrypted for every worker
(:class:`adapters.oauth_tokens.OAuthTokenStore`, under :mod:`adapters.pipedrive.keys`).

Afterwards every call asks :meth:`PipedriveOAuth.access_token`: the stored token while it has more than
``margin`` seconds left (5 minutes), else a refresh (``grant_type=refresh_token``), done by one worker at a
time; the others wait and use its result. A refresh token Pipedrive refuses (the app was uninstalled, or the
token went unused for 60 days) is an :class:`~core.errors.AuthError` telling the admin to install the app
again. Pipedrive's token endpoint answers errors as ``{"success": false, "message": "Invalid grant: …",
"error": "invalid_grant"}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import requests

from adapters.inbox import OAuthInstall
from adapters.oauth_tokens import OAuthTokenStore, StoreKeys
from adapters.pipedrive.keys import APP, INSTALLS, TOKEN_LOCKS
from core.errors import AuthError, FatalError, RetryableError
from core.http import session as http_session

if TYPE_CHECKING:
    from pydantic import SecretStr
    from redis import Redis

    from adapters.pipedrive.session import PipedriveSession

log = logging.getLogger("chat2crm.pipedrive.oauth")

#: Pipedrive's key families; the app hash names the installed company in its ``company`` field
KEYS = StoreKeys(app=APP, installs=INSTALLS, locks=TOKEN_LOCKS, account_field="company")
#: a token with less than this left is refreshed before it is used (seconds)
REFRESH_MARGIN = 300.0
#: the path of the install page on the relay (the connector's web routes serve it)
INSTALL_PATH = "/crm/pipedrive/install"


@dataclass(frozen=True)
class PipedriveTokens:
    """One company's OAuth tokens; ``expires_at`` in seconds since the epoch."""

    company_id: str
    access_token: str
    refresh_token: str
    expires_at: float
    #: where the company's API is (``https://clinic.pipedrive.com``)
    api_domain: str
    scopes: tuple[str, ...] = ()

    def fresh(self, now: float, margin: float) -> bool:
        """Whether the access token is still good for ``margin`` seconds (else it is refreshed first)."""
        return self.expires_at - margin > now


class PipedriveTokenStore(OAuthTokenStore):
    """The Pipedrive app's installation in Redis: the account is the company."""

    def __init__(self, redis: Redis | None, encryption_key: SecretStr | None) -> None:
        super().__init__(redis, encryption_key, keys=KEYS, crm="pipedrive", app_name="the Pipedrive app")

    def load(self, company: str | None = None) -> PipedriveTokens | None:
        """The tokens of ``company`` (default: the installed one); None when the app is not installed.

        Raises:
            ConfigurationError, AuthError: as :meth:`OAuthTokenStore.load_sealed`.
        """
        data = self.load_sealed(company)
        if data is None:
            return None
        data["scopes"] = tuple(data.get("scopes") or ())
        return PipedriveTokens(**data)

    def save(self, tokens: PipedriveTokens, *, install: bool = False) -> None:
        """Keep ``tokens`` (encrypted); with ``install``, the company becomes the one the relay serves."""
        self.save_sealed(tokens.company_id, {**asdict(tokens), "scopes": list(tokens.scopes)}, install=install)


class PipedriveOAuth(OAuthInstall):
    """The app's OAuth: consent URL, code exchange, refresh.

    Args:
        session: the adapter's session (the company's id is read through it with the new token).
        store: where the tokens are kept.
        client_id: the app's client id.
        client_secret: the app's client secret.
        oauth_base: Pipedrive's OAuth server (``https://oauth.pipedrive.com``).
        public_base_url: where the relay is reached (named in the reinstall hint).
        clock: the time, in seconds since the epoch (tests move it).
    """

    def __init__(self, session: PipedriveSession, store: PipedriveTokenStore, *, client_id: str, client_secret: str,
                 oauth_base: str, public_base_url: str, clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.store = store
        self.client_id = client_id
        self.client_secret = client_secret
        self.oauth_base = oauth_base.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock
        #: refresh a token that has less than this left (seconds)
        self.margin = REFRESH_MARGIN
        #: how long a worker waits for another one's refresh before it gives the job back (seconds)
        self.lock_wait = 10.0
        self.http = http_session()

    # -- the install ---------------------------------------------------------------------------
    def authorize_url(self, *, state: str, redirect_uri: str) -> str:
        query = urlencode({"client_id": self.client_id, "redirect_uri": redirect_uri, "state": state},
                          quote_via=quote)
        return f"{self.oauth_base}/oauth/authorize?{query}"

    def complete(self, *, code: str, redirect_uri: str) -> str:
        answer = self._token("oauth_code", {"grant_type": "authorization_code", "code": code,
                                            "redirect_uri": redirect_uri})
        access, domain = str(answer.get("access_token") or ""), str(answer.get("api_domain") or "")
        if not access or not domain:
            raise FatalError("pipedrive: the token answer holds no access token or API domain")
        me = self.session.send_url("me", "GET", domain.rstrip("/") + "/api/v1/users/me", params=None, body=None,
                                files=None, read=lambda r: r.json(), token=access)
        company = (me.get("data") or {}).get("company_id")
        if not company:
            raise FatalError("pipedrive: the installing user's record names no company")
        tokens = self._tokens(str(company), answer, refresh_token=None)
        self.store.save(tokens, install=True)
        log.info("pipedrive app installed", extra={"company": int(company)})
        return str(company)

    def install_url(self) -> str:
        """The relay's page that starts an install."""
        return self.public_base_url + INSTALL_PATH

    def reinstall_hint(self) -> str:
        """What the admin does when the app's tokens are refused."""
        return f"install the Pipedrive app again at {self.install_url()}"

    # -- the token every call uses -------------------------------------------------------------
    def tokens(self) -> PipedriveTokens:
        """The installed company's tokens, as stored.

        Raises:
            AuthError: the app is not installed.
        """
        tokens = self.store.load()
        if tokens is None:
            raise AuthError(f"pipedrive: the Pipedrive app is not installed; {self.reinstall_hint()}",
                            setting="PIPEDRIVE_CLIENT_ID")
        return tokens

    def api_domain(self) -> str:
        """The installed company's API domain."""
        return self.tokens().api_domain

    def access_token(self) -> str:
        """A token with more than :attr:`margin` seconds left, refreshed first when it has less.

        Raises:
            AuthError: the app is not installed, or Pipedrive refused its refresh token (install it again).
            RetryableError: Pipedrive did not answer, or another worker's refresh took too long.
        """
        tokens = self.tokens()
        if tokens.fresh(self.clock(), self.margin):
            return tokens.access_token
        return self.refresh(stale=tokens.access_token)

    def refresh(self, stale: str | None = None) -> str:
        """Refresh the installed company's access token, once for every worker: under the company's lock, a
        token another worker already put in place of ``stale`` is used instead of refreshing again.

        Raises:
            As :meth:`access_token`.
        """
        company = self.tokens().company_id
        with self.store.refresh_lock(company, wait=self.lock_wait):
            current = self.store.load(company)
            if current is None:
                raise AuthError(f"pipedrive: the Pipedrive app is not installed; {self.reinstall_hint()}",
                                setting="PIPEDRIVE_CLIENT_ID")
            if current.access_token != stale and current.fresh(self.clock(), self.margin):
                return current.access_token
            answer = self._token("oauth_refresh", {"grant_type": "refresh_token",
                                                   "refresh_token": current.refresh_token})
            tokens = self._tokens(company, answer, refresh_token=current.refresh_token, domain=current.api_domain)
            self.store.save(tokens)
            log.info("pipedrive token refreshed", extra={"company": int(company) if company.isdigit() else company})
            return tokens.access_token

    # -- Pipedrive's token endpoint ------------------------------------------------------------
    def _token(self, operation: str, form: dict[str, str]) -> dict[str, Any]:
        """One call to ``POST /oauth/token`` (the app's credentials as HTTP Basic).

        Raises:
            AuthError: the code, the refresh token or the app's credentials were refused.
            RetryableError: Pipedrive did not answer, or answered 5xx or 429.
        """
        try:
            response = self.http.post(f"{self.oauth_base}/oauth/token", data=form,
                                      auth=(self.client_id, self.client_secret),
                                      headers={"Accept": "application/json"}, timeout=self.session.timeouts.pair())
        except requests.RequestException as exc:
            raise RetryableError(f"pipedrive: the OAuth server did not answer ({type(exc).__name__})",
                                 details={"operation": operation}) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"pipedrive: the OAuth server answered {response.status_code}",
                                 details={"operation": operation, "status": response.status_code})
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.ok:
            return body
        code = str(body.get("error") or "")
        said = str(body.get("message") or body.get("error_description") or response.reason or "")[:160]
        details = {"operation": operation, "status": response.status_code, "code": code or None}
        if code == "invalid_client":
            raise AuthError(f"pipedrive: the app's client credentials were refused ({said}); check "
                            "PIPEDRIVE_CLIENT_ID and PIPEDRIVE_CLIENT_SECRET", setting="PIPEDRIVE_CLIENT_SECRET",
                            details=details)
        if "redirect_uri" in said:
            raise AuthError(f"pipedrive: the redirect URI was refused ({said}); the app's callback URL in the "
                            "Developer Hub must be {PUBLIC_BASE_URL}/crm/pipedrive/oauth/callback",
                            setting="PUBLIC_BASE_URL", details=details)
        if operation == "oauth_code":
            raise AuthError(f"pipedrive: the authorization code was refused ({said}); start the install again at "
                            f"{self.install_url()}", details=details)
        raise AuthError(f"pipedrive: Pipedrive refused the app's refresh token ({said}): the app was uninstalled "
                        f"or its access revoked; {self.reinstall_hint()}", details=details)

    def _tokens(self, company: str, answer: dict[str, Any], *, refresh_token: str | None,
                domain: str | None = None) -> PipedriveTokens:
        access = answer.get("access_token")
        if not access:
            raise FatalError("pipedrive: the token answer holds no access token")
        # Pipedrive may hand out a new refresh token with a refresh; keep the old one when it does not
        refresh = answer.get("refresh_token") or refresh_token
        if not refresh:
            raise FatalError("pipedrive: the token answer holds no refresh token")
        scope = str(answer.get("scope") or "")
        return PipedriveTokens(company_id=company, access_token=str(access), refresh_token=str(refresh),
                               expires_at=self.clock() + float(answer.get("expires_in") or 3600),
                               api_domain=str(answer.get("api_domain") or domain or ""),
                               scopes=tuple(s for s in scope.replace(",", " ").split() if s))
