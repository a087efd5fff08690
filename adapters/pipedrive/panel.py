"""Who is looking at the app's custom panel in Pipedrive, and whether they may: the panel's signed token, the
record's permitted users, and the short-lived links to files the panel and the channels fetch.

Pipedrive loads the panel (an iframe in a deal's, a person's or an organization's detail view) with a query
that names the record (``resource``, ``selectedIds``), the user and the company, and a ``token``: a JWT
signed HS256 with the panel's JWT secret (PIPEDRIVE_JWT_SECRET), claims ``userId``, ``companyId``, ``iat``
and ``exp`` (five minutes). The SDK's ``get_signed_token`` gives the page a fresh one with the same claims;
the page sends it with every request. The query's own ``userId`` and ``companyId`` are not trusted: only
the token's.

:meth:`PanelGuard.authenticate` accepts a token only when its signature is the secret's (HS256 and nothing
else; PyJWT compares signatures in constant time), it carries ``exp`` and has not expired (a few seconds of
leeway for clocks), and its company is the one the app is installed in (compared in constant time too).

The access rule (:meth:`PanelGuard.authorize`): a user may use the panel of a person or a deal when
Pipedrive lists them among the record's permitted users (``GET /v1/persons/{id}/permittedUsers``,
``/v1/deals/{id}/permittedUsers``: the record's visibility, owner, followers and the user's permission set,
as Pipedrive itself applies them). The answer is kept :data:`ACCESS_SECONDS` per user and record (the
panel polls; each check costs 10 of the company's API tokens); a refusal is kept as well.

File links: :meth:`PanelGuard.file_link` signs a Pipedrive file id (itsdangerous, salted, under the JWT
secret) into a URL on the relay that works for :data:`FILE_LINK_SECONDS`; the relay serves the file from
Pipedrive to whoever holds the link (WhatsApp fetching an agent's attachment, the agent opening a patient's
photo from the panel).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer

from adapters.pipedrive.keys import PANEL_ACCESS, PANEL_DEALS, PANEL_SECONDS
from core.errors import FatalError

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis import Redis

    from adapters.pipedrive.session import PipedriveSession

#: how long a user's access to a record, as Pipedrive answered it, is trusted (a panel token's lifetime)
ACCESS_SECONDS = 300
#: how long a signed file link works (the channel fetches an agent's file at once)
FILE_LINK_SECONDS = 900
#: clock difference tolerated on a token's ``exp`` and ``iat`` (seconds)
LEEWAY_SECONDS = 5
#: the records whose detail view has the panel
Resource = Literal["person", "deal"]
_FILE_SALT = "chat2crm.pipedrive-file.v1"


class PanelRefused(Exception):
    """The panel's request is refused: ``status`` (401 no valid token, 403 no access, 404 no such record) and a
    reason the panel shows."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class PanelUser:
    """The Pipedrive user a valid panel token names."""

    user_id: int
    company_id: int


@dataclass(frozen=True)
class FileLink:
    """What a signed file link names."""

    file_id: str
    name: str
    mime_type: str


class PanelGuard:
    """The panel's checks (see the module).

    Args:
        session: the adapter's session (the app's token: Pipedrive's permitted users are read through it).
        redis: the shared connection (access answers kept for every web process).
        jwt_secret: PIPEDRIVE_JWT_SECRET.
        company: the installed company's id (a callable: it is read when a token is checked).
        public_base_url: where the relay is reached (file links).
    """

    def __init__(self, session: PipedriveSession, redis: Redis | None, *, jwt_secret: str,
                 company: Callable[[], str | None], public_base_url: str) -> None:
        self.session = session
        self.redis = redis
        self.jwt_secret = jwt_secret
        self.company = company
        self.public_base_url = public_base_url.rstrip("/")

    # -- who is asking -------------------------------------------------------------------------
    def authenticate(self, token: str) -> PanelUser:
        """The user a panel token names.

        Raises:
            PanelRefused: 401, the token is missing, not signed with the JWT secret, expired, or of another
                company (or the app is not installed).
        """
        if not token or not self.jwt_secret:
            raise PanelRefused(401, "This panel needs the token Pipedrive signs; reload the page.")
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "userId", "companyId"], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise PanelRefused(401, "The panel's token has expired; reload the page.") from None
        except jwt.PyJWTError:
            raise PanelRefused(401, "The panel's token is not valid.") from None
        user, company = claims.get("userId"), claims.get("companyId")
        if not isinstance(user, int | str) or not str(user).isdigit() or not isinstance(company, int | str):
            raise PanelRefused(401, "The panel's token names no user.")
        installed = self.company()
        if not installed or not hmac.compare_digest(str(company).encode(), installed.encode()):
            raise PanelRefused(401, "This panel belongs to another Pipedrive company.")
        return PanelUser(user_id=int(user), company_id=int(company))

    # -- may they see this record --------------------------------------------------------------
    def authorize(self, user: PanelUser, resource: str, record: str) -> str:
        """Check that ``user`` may see the record; returns the person whose conversation the panel shows.

        Raises:
            PanelRefused: 404 not a person or a deal (or none such), 403 the user may not see it.
            RetryableError, AuthError: Pipedrive did not answer, or refused the app's token.
        """
        if resource not in ("person", "deal") or not record.isdigit():
            raise PanelRefused(404, "The chat2crm panel shows a person's or a deal's conversation.")
        if not self._permitted(user, resource, record):
            raise PanelRefused(403, "You do not have access to this record in Pipedrive.")
        if resource == "person":
            return record
        return self.deal_person(record)

    def _permitted(self, user: PanelUser, resource: str, record: str) -> bool:
        key = PANEL_ACCESS.key(user.user_id, resource, record)
        known = self.redis.get(key) if self.redis is not None else None
        if known is not None:
            return known in (b"1", "1")
        path = f"/v1/{'persons' if resource == 'person' else 'deals'}/{record}/permittedUsers"
        try:
            answer = self.session.request(f"{resource}_permitted_users", "GET", path)
        except FatalError as exc:
            if exc.details.get("status") == 404:
                raise PanelRefused(404, f"This {resource} does not exist in Pipedrive.") from None
            raise
        allowed = user.user_id in {int(u) for u in answer.get("data") or [] if str(u).isdigit()}
        if self.redis is not None:
            self.redis.set(key, "1" if allowed else "0", ex=ACCESS_SECONDS)
        return allowed

    def deal_person(self, deal: str) -> str:
        """The person of a deal: as the relay noted it when it published there, else as Pipedrive says.

        Raises:
            PanelRefused: 404, the deal has no person.
        """
        noted = self.redis.get(PANEL_DEALS.key(deal)) if self.redis is not None else None
        if noted:
            return noted.decode() if isinstance(noted, bytes) else str(noted)
        data = self.session.request("deal_get", "GET", f"/api/v2/deals/{deal}").get("data") or {}
        person = data.get("person_id")
        if not person:
            raise PanelRefused(404, "This deal has no person: there is no conversation to show.")
        if self.redis is not None:
            self.redis.set(PANEL_DEALS.key(deal), str(person), ex=PANEL_SECONDS)
        return str(person)

    def note_deal(self, deal: str, person: str) -> None:
        """Remember the person of a deal the relay published on (the deal's panel then asks nothing)."""
        if self.redis is not None:
            self.redis.set(PANEL_DEALS.key(deal), person, ex=PANEL_SECONDS)

    # -- file links ----------------------------------------------------------------------------
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.jwt_secret, salt=_FILE_SALT)

    def file_link(self, file_id: str, name: str, mime_type: str) -> str:
        """A URL on the relay serving Pipedrive file ``file_id`` for :data:`FILE_LINK_SECONDS`."""
        signed = self._serializer().dumps({"f": file_id, "n": name, "m": mime_type})
        return f"{self.public_base_url}/crm/pipedrive/files/{signed}"

    def open_file_link(self, signed: str) -> FileLink | None:
        """What a file link names, while it is valid (None: forged or expired)."""
        try:
            data = self._serializer().loads(signed, max_age=FILE_LINK_SECONDS)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict) or not str(data.get("f") or "").isdigit():
            return None
        return FileLink(file_id=str(data["f"]), name=str(data.get("n") or "file"),
                        mime_type=str(data.get("m") or "application/octet-stream"))
