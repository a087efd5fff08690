"""A CRM app's installation kept in Redis: which account it serves, its OAuth tokens (encrypted), values kept
for the app and for each account, and the lock that lets one worker at a time refresh a token.

Any adapter whose CRM app is installed by OAuth keeps its installation here (HubSpot's portal, Pipedrive's
company), under key families the adapter declares (:class:`StoreKeys`): one hash for the app (the account
it serves), one hash per account it was installed into (the sealed tokens and what the adapter keeps for
that account), and a short-lived lock per account.

Tokens are encrypted with Fernet (AES-128-CBC with an HMAC, from ``cryptography``) under
TOKEN_ENCRYPTION_KEY, so a copy of Redis (a backup, a replica, ``MONITOR``) does not hand out access to the
clinic's CRM. The hashes have no TTL on purpose: the refresh token must outlive restarts and quiet months,
or the admin would have to install the app again; they are bounded by one per account.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import lua
from core.errors import AuthError, ConfigurationError, Problem, RetryableError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr
    from redis import Redis

    from core.keys import KeyFamily

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class StoreKeys:
    """The key families of one CRM app's installation.

    Args:
        app: one hash, no placeholder: the account the relay serves (field ``account_field``) and the app's values.
        installs: one hash per account (one placeholder): its sealed tokens and the values kept for it.
        locks: one key per account (one placeholder, a short TTL): held by the worker refreshing its token.
        account_field: the app hash's field that names the account (``portal`` for HubSpot).
    """

    app: KeyFamily
    installs: KeyFamily
    locks: KeyFamily
    account_field: str = "account"


class OAuthTokenStore:
    """One CRM app's installation in Redis (see the module).

    Args:
        redis: the shared connection (None: a configuration error when first used).
        encryption_key: the Fernet key (TOKEN_ENCRYPTION_KEY); checked when tokens are first read or written.
        keys: the app's key families.
        crm: the CRM's name, at the start of messages (``hubspot``).
        app_name: the app as the admin knows it, in messages (``the HubSpot app``).
    """

    def __init__(self, redis: Redis | None, encryption_key: SecretStr | None, *, keys: StoreKeys, crm: str,
                 app_name: str) -> None:
        self.redis = redis
        self.encryption_key = encryption_key
        self.keys = keys
        self.crm = crm
        self.app_name = app_name
        self._fernet: Fernet | None = None

    # -- the pieces ----------------------------------------------------------------------------
    def _db(self) -> Redis:
        if self.redis is None:
            raise ConfigurationError(Problem(f"{self.app_name} keeps its installation in Redis; none is configured",
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
                    f"{self.app_name}'s OAuth tokens are kept encrypted, and no key is set", path="TOKEN_ENCRYPTION_KEY",
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

    # -- which account, and what is kept for it ------------------------------------------------
    def account(self) -> str | None:
        """The account the app was last installed into (the one the relay serves)."""
        return self._get(self.keys.app.key(), self.keys.account_field)

    def app_value(self, name: str) -> str | None:
        """A value kept for the app."""
        return self._get(self.keys.app.key(), name)

    def set_app_value(self, name: str, value: str) -> None:
        """Keep a value for the app."""
        self._db().hset(self.keys.app.key(), name, value)

    def install_value(self, account: str, name: str) -> str | None:
        """A value kept for one installed account."""
        return self._get(self.keys.installs.key(account), name)

    def set_install_value(self, account: str, name: str, value: str) -> None:
        """Keep a value for one installed account."""
        self._db().hset(self.keys.installs.key(account), name, value)

    # -- tokens, sealed ------------------------------------------------------------------------
    def load_sealed(self, account: str | None = None) -> dict[str, Any] | None:
        """The tokens of ``account`` (default: the installed one) as they were saved; None when not installed.

        Raises:
            ConfigurationError: TOKEN_ENCRYPTION_KEY is missing or not a Fernet key.
            AuthError: the tokens cannot be decrypted with this key (it changed): the app must be installed again.
        """
        from cryptography.fernet import InvalidToken

        account = account or self.account()
        if account is None:
            return None
        sealed = self._get(self.keys.installs.key(account), "tokens")
        if sealed is None:
            return None
        try:
            data: dict[str, Any] = json.loads(self.fernet().decrypt(sealed.encode()))
        except InvalidToken:
            raise AuthError(f"{self.crm}: the app's stored tokens cannot be decrypted with TOKEN_ENCRYPTION_KEY "
                            "(was the key changed?); install the app again", setting="TOKEN_ENCRYPTION_KEY") from None
        return data

    def save_sealed(self, account: str, data: dict[str, Any], *, install: bool = False) -> None:
        """Keep ``data`` (the tokens, encrypted) for ``account``; with ``install``, the account becomes the one
        the relay serves, in the same transaction."""
        sealed = self.fernet().encrypt(json.dumps(data).encode())
        pipe = self._db().pipeline(transaction=True)
        pipe.hset(self.keys.installs.key(account), mapping={"tokens": sealed.decode(), "saved_at": f"{time.time():.3f}"})
        if install:
            pipe.hset(self.keys.app.key(), self.keys.account_field, account)
        pipe.execute()

    # -- one refresher at a time ---------------------------------------------------------------
    @contextmanager
    def refresh_lock(self, account: str, *, wait: float, ttl_seconds: int | None = None) -> Iterator[None]:
        """Hold the account's refresh lock (waiting up to ``wait`` seconds for another worker's refresh).

        Raises:
            RetryableError: another worker held it all that time.
        """
        db = self._db()
        key, owner = self.keys.locks.key(account), secrets.token_hex(8)
        ttl = int(ttl_seconds or self.keys.locks.ttl)  # type: ignore[arg-type]
        deadline = time.monotonic() + wait
        while not db.set(key, owner, nx=True, ex=ttl):
            if time.monotonic() >= deadline:
                raise RetryableError(f"{self.crm}: another worker is refreshing the app's token", retry_after=1.0)
            time.sleep(0.05)
        try:
            yield
        finally:
            lua.run(db, _RELEASE, [key], [owner])
