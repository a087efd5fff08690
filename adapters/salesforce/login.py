"""The pieces of the Salesforce login: where simple-salesforce's login flows are sent, the ``requests``
session they and every later call use, how a refused token request is worded, and the key the access
token is sealed with when the workers share it through Redis.

:class:`~adapters.salesforce.session.SalesforceSession` puts them together.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from adapters.salesforce.options import AuthMode, SalesforceCredentials
from adapters.session import Timeouts
from core.errors import AuthError


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
        #: the identity URL the last token came with (``…/id/<org id>/<user id>``)
        self.identity: str | None = None

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
                    granted = response.json()
                    self.scopes = str(granted.get("scope") or "").split()
                    self.identity = str(granted.get("id") or "") or None
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


def _secret(value: Any) -> str:
    """A ``SecretStr`` setting's text ("" when unset)."""
    return value.get_secret_value() if value is not None else ""


def login_arguments(credentials: SalesforceCredentials, mode: AuthMode) -> dict[str, Any]:
    """The credentials simple-salesforce's ``SalesforceLogin`` takes for ``mode``'s flow."""
    c = credentials
    if mode == "jwt":
        return {"username": c.username, "consumer_key": c.client_id, "privatekey_file": str(c.private_key_file)}
    if mode == "password":
        # the password flow takes the password with the security token appended
        return {"username": c.username, "password": _secret(c.password) + _secret(c.security_token),
                "consumer_key": c.client_id, "consumer_secret": _secret(c.client_secret)}
    return {"consumer_key": c.client_id, "consumer_secret": _secret(c.client_secret)}


def refused_login(mode: AuthMode, error: str, description: str, status: int) -> AuthError:
    """The error of a refused token request, naming the setting to check and what the flow needs."""
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


def session_cipher(credentials: SalesforceCredentials) -> Any:
    """The Fernet key the shared access token is sealed with, derived from the credentials: Redis alone does
    not give the token away, and a token sealed for other (rotated) credentials does not open."""
    import base64
    import hashlib

    from cryptography.fernet import Fernet

    c = credentials
    material = "|".join([str(c.client_id), _secret(c.client_secret), _secret(c.password),
                         str(c.private_key_file or ""), str(c.login_url)])
    digest = hashlib.sha256(b"chat2crm salesforce session\0" + material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))
