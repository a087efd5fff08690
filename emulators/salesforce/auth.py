"""Authentication in the emulated org: the OAuth 2.0 token endpoint (client credentials, username-password
and JWT bearer grants, errors as ``{"error", "error_description"}``) and the ``Authorization: Bearer``
check of every REST call (unknown, expired or revoked sessions answer 401 ``INVALID_SESSION_ID``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

from flask import Response, request

from emulators.salesforce import contract
from emulators.salesforce.common import API_USER_ID, ORG_ID, json_response
from emulators.salesforce.state import OrgState

#: a grant's check of the token request's form (the second argument: the grant is refused after a ``401`` fault)
_GrantCheck = Callable[[Mapping[str, str], bool], Response | None]


class OrgAuth(OrgState):
    """The authentication layer of the emulated org."""

    def _authenticate(self, fault: str | None) -> Response | None:
        header = request.headers.get("Authorization")
        problem = contract.auth_problem(header)
        if problem:
            self._violation(problem)
            return self._reply(401, [problem.as_json()])
        token = (header or "")[7:].strip()
        with self.lock:
            issued = self.tokens.get(token)
            expired = issued is None or (self.session_seconds is not None
                                         and time.time() - issued > self.session_seconds)
            if fault in ("expired", "401"):
                self.tokens.pop(token, None)
                expired = True
                if fault == "401":
                    self._refuse_next_grant = True
        if expired:
            return self._reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        return None

    # -- OAuth 2.0 -----------------------------------------------------------------------------
    def _token(self) -> Response:
        self._record_call(auto_assign=None)
        if not (request.mimetype or "").startswith("application/x-www-form-urlencoded"):
            self._violation("the token request must be application/x-www-form-urlencoded")
            return _oauth_error("invalid_request", "unsupported content type")
        form = request.form
        grant = form.get("grant_type", "")
        self.token_grants.append(grant)
        with self.lock:
            refused = self._refuse_next_grant
            self._refuse_next_grant = False
        grants: dict[str, _GrantCheck] = {
            "client_credentials": self._client_credentials_grant, "password": self._password_grant,
            "urn:ietf:params:oauth:grant-type:jwt-bearer": self._jwt_bearer_grant}
        check = grants.get(grant)
        if check is None:
            self._violation(f"unsupported grant_type {grant!r}")
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        refusal = check(form, refused)
        if refusal is not None:
            return refusal
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(40)}"
        with self.lock:
            self.tokens[token] = time.time()
        base = request.host_url.rstrip("/")
        return json_response(200, {"access_token": token, "instance_url": base, "id": f"{base}/id/{ORG_ID}/{API_USER_ID}",
                                   "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)), "scope": "api",
                                   "signature": secrets.token_urlsafe(32)})

    def _client_credentials_grant(self, form: Mapping[str, str], refused: bool) -> Response | None:
        """Why a client credentials grant is refused (None: it is not). The client's id and secret come in the
        form or, as simple-salesforce sends them, in HTTP Basic authentication."""
        creds = self.credentials
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id, client_secret = request.authorization.username, request.authorization.password
        if client_id != creds.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if client_secret != creds.client_secret or refused:
            return _oauth_error("invalid_client", "invalid client credentials")
        return None

    def _password_grant(self, form: Mapping[str, str], refused: bool) -> Response | None:
        """Why a username-password grant is refused (None: it is not); the password ends with the security token."""
        creds = self.credentials
        if form.get("client_id") != creds.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != creds.client_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        expected = (creds.password or "") + (creds.security_token or "")
        if refused or creds.password is None or form.get("username") != creds.username or \
                form.get("password") != expected:
            return _oauth_error("invalid_grant", "authentication failure")
        return None

    def _jwt_bearer_grant(self, form: Mapping[str, str], refused: bool) -> Response | None:
        """Why a JWT bearer grant is refused (None: it is not): the assertion's RS256 signature is verified
        against the public key of the connected app's certificate."""
        import jwt

        creds = self.credentials
        if creds.jwt_public_key is None:
            return _oauth_error("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(form.get("assertion", ""), creds.jwt_public_key, algorithms=["RS256"],
                                audience=[request.host_url.rstrip("/"), "https://login.salesforce.com",
                                          "https://test.salesforce.com"],
                                options={"require": ["iss", "sub", "aud", "exp"]})
        except jwt.ExpiredSignatureError:
            return _oauth_error("invalid_grant", "expired authorization code")
        except jwt.InvalidTokenError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != creds.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != creds.username or refused:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return None


def _oauth_error(error: str, description: str) -> Response:
    """The token endpoint's refusal."""
    return json_response(400, {"error": error, "error_description": description})
