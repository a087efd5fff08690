"""The installed HubSpot app's state in Redis: which portal it serves, its OAuth tokens (encrypted), its custom
channel and channel account.

The installation is kept by the generic store of CRM apps installed by OAuth
(:class:`adapters.oauth_tokens.OAuthTokenStore`: Fernet-encrypted tokens under TOKEN_ENCRYPTION_KEY, no TTL
so the refresh token outlives restarts and quiet months, one refresher at a time), under HubSpot's key
families (:mod:`adapters.hubspot.keys`): one hash for the app, one per portal it was installed into. This
module gives it HubSpot's names: the account is the portal, the tokens are :class:`Tokens`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from adapters.hubspot.keys import APP, INSTALLS, TOKEN_LOCKS
from adapters.oauth_tokens import OAuthTokenStore, StoreKeys

if TYPE_CHECKING:
    from pydantic import SecretStr
    from redis import Redis

#: HubSpot's key families; the app hash names the installed portal in its ``portal`` field
KEYS = StoreKeys(app=APP, installs=INSTALLS, locks=TOKEN_LOCKS, account_field="portal")


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


class TokenStore(OAuthTokenStore):
    """The app's installation in Redis.

    Args:
        redis: the shared connection.
        encryption_key: the Fernet key (TOKEN_ENCRYPTION_KEY); checked when tokens are first read or written.
    """

    def __init__(self, redis: Redis | None, encryption_key: SecretStr | None) -> None:
        super().__init__(redis, encryption_key, keys=KEYS, crm="hubspot", app_name="the HubSpot app")

    # -- which portal, which channel -----------------------------------------------------------
    def portal(self) -> str | None:
        """The portal the app was last installed into (the one the relay serves)."""
        return self.account()

    # -- tokens --------------------------------------------------------------------------------
    def load(self, portal: str | None = None) -> Tokens | None:
        """The tokens of ``portal`` (default: the installed one); None when the app is not installed.

        Raises:
            ConfigurationError: TOKEN_ENCRYPTION_KEY is missing or not a Fernet key.
            AuthError: the tokens cannot be decrypted with this key (it changed): the app must be installed again.
        """
        data = self.load_sealed(portal)
        if data is None:
            return None
        data["scopes"] = tuple(data.get("scopes") or ())
        return Tokens(**data)

    def save(self, tokens: Tokens, *, install: bool = False) -> None:
        """Keep ``tokens`` (encrypted); with ``install``, the portal becomes the one the relay serves."""
        self.save_sealed(tokens.portal_id, {**asdict(tokens), "scopes": list(tokens.scopes)}, install=install)
