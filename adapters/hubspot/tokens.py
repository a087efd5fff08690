"""The installed app's state in Redis: which portal it serves, its OAuth tokens (encrypted), its custom
channel and channel account.

Tokens are encrypted with Fernet (AES-128-CBC with an HMAC, from ``cryptography``) under TOKEN_ENCRYPTION_KEY,
so a copy of Redis (a backup, a replica, ``MONITOR``) does not hand out access to the clinic's HubSpot. The
keys have no TTL on purpose: the refresh token must outlive restarts and quiet months, or the admin would
have to install the app again. They are bounded: one hash for the app, one per portal it was installed into
(:mod:`adapters.hubspot.keys`).

A refresh is done by one worker at a time (a Redis lock with an owner token and a short TTL): two workers
spending the same refresh token at once is at best a wasted call, and with rotating refresh tokens it would
log one of them out.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from adapters.hubspot.keys import APP, INSTALLS, TOKEN_LOCKS
from core.errors import AuthError, ConfigurationError, Problem, RetryableError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr
    from redis import Redis

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class Tokens:
    """One portal's OAuth tokens; ``expires_at`` in seconds since the epoch."""

    portal_id: str
    access_token: str
    refresh_token: str
    expires_at: float
    scopes: tuple[str, ...] = ()

    def fresh(self, now: float, margin: float) -> bool:
        """Whether the access token is still good for ``margin`` seconds (else it is refreshed first)."""
        return self.expires_at - margin > now


class TokenStore:
    """The app's installation in Redis.

    Args:
        redis: the shared connection.
        encryption_key: the Fernet key (TOKEN_ENCRYPTION_KEY); checked when tokens are first read or written.
    """

    def __init__(self, redis: Redis | None, encryption_key: SecretStr | None) -> None:
        self.redis = redis
        self.encryption_key = encryption_key
        self._fernet: Fernet | None = None

    # -- the pieces ----------------------------------------------------------------------------
    def _db(self) -> Redis:
        if self.redis is None:
            raise ConfigurationError(Problem("the HubSpot app keeps its installation in Redis; none is configured",
                                             path="REDIS_URL"))
        return self.redis

    def fernet(self) -> Fernet:
        """The cipher.

        Raises:
            ConfigurationError: TOKEN_ENCRYPTION_KEY is missing or not a Fernet key.
        """
        if self._fernet is None:
            from cryptography.fernet import Fernet

            key = self.encryption_key.get_secret_value() if self.encryption_key is not None else ""
            if not key:
                raise ConfigurationError(Problem(
                    "the HubSpot app's OAuth tokens are kept encrypted, and no key is set", path="TOKEN_ENCRYPTION_KEY",
                    hint="set TOKEN_ENCRYPTION_KEY to a Fernet key: `chat2crm keygen` prints one"))
            try:
                self._fernet = Fernet(key.encode())
            except ValueError:
                raise ConfigurationError(Problem(
                    "not a Fernet key (32 url-safe base64-encoded bytes)", path="TOKEN_ENCRYPTION_KEY",
                    hint="`chat2crm keygen` prints one")) from None
        return self._fernet

    def _get(self, key: str, name: str) -> str | None:
        value = self._db().hget(key, name)
        return value.decode() if isinstance(value, bytes) else value

    # -- which portal, which channel -----------------------------------------------------------
    def portal(self) -> str | None:
        """The portal the app was last installed into (the one the relay serves)."""
        return self._get(APP.key(), "portal")

    def app_value(self, name: str) -> str | None:
        """A value kept for the app (``channel_id``)."""
        return self._get(APP.key(), name)

    def set_app_value(self, name: str, value: str) -> None:
        """Keep a value for the app."""
        self._db().hset(APP.key(), name, value)

    def install_value(self, portal: str, name: str) -> str | None:
        """A value kept for one installed portal (``channel_account_id``, ``inbox_id``…)."""
        return self._get(INSTALLS.key(portal), name)

    def set_install_value(self, portal: str, name: str, value: str) -> None:
        """Keep a value for one installed portal."""
        self._db().hset(INSTALLS.key(portal), name, value)

    # -- tokens --------------------------------------------------------------------------------
    def load(self, portal: str | None = None) -> Tokens | None:
        """The tokens of ``portal`` (default: the installed one); None when the app is not installed.

        Raises:
            ConfigurationError: TOKEN_ENCRYPTION_KEY is missing or not a Fernet key.
            AuthError: the tokens cannot be decrypted with this key (it changed): the app must be installed again.
        """
        from cryptography.fernet import InvalidToken

        portal = portal or self.portal()
        if portal is None:
            return None
        sealed = self._get(INSTALLS.key(portal), "tokens")
        if sealed is None:
            return None
        try:
            data = json.loads(self.fernet().decrypt(sealed.encode()))
        except InvalidToken:
            raise AuthError("hubspot: the app's stored tokens cannot be decrypted with TOKEN_ENCRYPTION_KEY "
                            "(was the key changed?); install the app again", setting="TOKEN_ENCRYPTION_KEY") from None
        data["scopes"] = tuple(data.get("scopes") or ())
        return Tokens(**data)

    def save(self, tokens: Tokens, *, install: bool = False) -> None:
        """Keep ``tokens`` (encrypted); with ``install``, the portal becomes the one the relay serves."""
        sealed = self.fernet().encrypt(json.dumps({**asdict(tokens), "scopes": list(tokens.scopes)}).encode())
        pipe = self._db().pipeline(transaction=True)
        pipe.hset(INSTALLS.key(tokens.portal_id), mapping={"tokens": sealed.decode(),
                                                          "saved_at": f"{time.time():.3f}"})
        if install:
            pipe.hset(APP.key(), "portal", tokens.portal_id)
        pipe.execute()

    # -- one refresher at a time ---------------------------------------------------------------
    @contextmanager
    def refresh_lock(self, portal: str, *, wait: float, ttl_seconds: int | None = None) -> Iterator[None]:
        """Hold the portal's refresh lock (waiting up to ``wait`` seconds for another worker's refresh).

        Raises:
            RetryableError: another worker held it all that time.
        """
        db = self._db()
        key, owner = TOKEN_LOCKS.key(portal), secrets.token_hex(8)
        ttl = int(ttl_seconds or TOKEN_LOCKS.ttl)  # type: ignore[arg-type]
        deadline = time.monotonic() + wait
        while not db.set(key, owner, nx=True, ex=ttl):
            if time.monotonic() >= deadline:
                raise RetryableError("hubspot: another worker is refreshing the app's token", retry_after=1.0)
            time.sleep(0.05)
        try:
            yield
        finally:
            db.eval(_RELEASE, 1, key, owner)
