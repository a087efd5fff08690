"""The Pipedrive adapter's app installed by OAuth and its side of the conversation after the bot: which inbox
the account gets, and the parts it is built from (the installation in Redis, the app's OAuth, the panel's
checks), built once per adapter.

The mode is the ``inbox`` option: ``panel`` (notes, and the app's custom panel where agents answer),
``notes`` (notes only), ``none``; ``auto`` picks ``panel`` when the app is configured
(PIPEDRIVE_CLIENT_ID, PIPEDRIVE_CLIENT_SECRET and PIPEDRIVE_JWT_SECRET), else ``none``, so an account on an
API token alone keeps its conversations with the bot as before.

With the app configured, every call of the adapter uses the installed company's OAuth token on its API
domain (:meth:`PipedriveApp.api_domain`, :meth:`PipedriveApp.access_token`: the session asks at each call),
in place of PIPEDRIVE_API_TOKEN. The parts read the adapter's ``deployment`` (the relay's public URL, the
token encryption key) when first built, which is after the runtime has set it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from adapters.inbox import CRMInbox, InboxLimits
from adapters.pipedrive.inbox import PipedriveInbox
from adapters.pipedrive.oauth import PipedriveOAuth, PipedriveTokenStore
from adapters.pipedrive.options import PipedriveCredentials
from adapters.pipedrive.panel import PanelGuard

if TYPE_CHECKING:
    from adapters.pipedrive.adapter import PipedriveAdapter

Mode = Literal["panel", "notes", "none"]


class PipedriveApp:
    """The installation, the OAuth, the panel's checks and the inbox of one Pipedrive adapter.

    Args:
        adapter: the adapter (credentials, options, Redis, deployment, session, note writing).
    """

    def __init__(self, adapter: PipedriveAdapter) -> None:
        self.adapter = adapter
        self.credentials = cast(PipedriveCredentials, adapter.credentials)
        self.options = adapter.options
        self.limits = InboxLimits()
        self._store: PipedriveTokenStore | None = None
        self._oauth: PipedriveOAuth | None = None
        self._guard: PanelGuard | None = None
        self._inbox: CRMInbox | None = None

    @property
    def configured(self) -> bool:
        """Whether the app's client id and secret are set (then it, not the API token, is used)."""
        return bool(self.credentials.client_id and self.credentials.client_secret
                    and self.credentials.client_secret.get_secret_value())

    @property
    def mode(self) -> Mode:
        """The inbox this configuration gives the account."""
        chosen = self.options.inbox
        if chosen == "auto":
            secret = self.credentials.jwt_secret
            return "panel" if self.configured and secret is not None and secret.get_secret_value() else "none"
        return chosen

    @property
    def store(self) -> PipedriveTokenStore:
        """The installation in Redis."""
        if self._store is None:
            self._store = PipedriveTokenStore(self.adapter.redis, self.adapter.deployment.encryption_key)
        return self._store

    @property
    def oauth(self) -> PipedriveOAuth | None:
        """The app's OAuth, or None when PIPEDRIVE_CLIENT_ID or PIPEDRIVE_CLIENT_SECRET is not set."""
        if self._oauth is None and self.configured:
            secret = self.credentials.client_secret
            assert secret is not None and self.credentials.client_id
            self._oauth = PipedriveOAuth(self.adapter.session, self.store, client_id=self.credentials.client_id,
                                         client_secret=secret.get_secret_value(),
                                         oauth_base=self.credentials.oauth_base,
                                         public_base_url=self.adapter.deployment.public_base_url)
        return self._oauth

    @property
    def guard(self) -> PanelGuard | None:
        """The panel's checks, or None without the app or without PIPEDRIVE_JWT_SECRET."""
        secret = self.credentials.jwt_secret
        if self._guard is None and self.configured and secret is not None and secret.get_secret_value():
            self._guard = PanelGuard(self.adapter.session, self.adapter.redis, jwt_secret=secret.get_secret_value(),
                                     company=self.store.account,
                                     public_base_url=self.adapter.deployment.public_base_url)
        return self._guard

    # -- the session's token source --------------------------------------------------------------
    def _installed(self) -> PipedriveOAuth:
        oauth = self.oauth
        assert oauth is not None  # the session uses the app only when it is configured
        return oauth

    def access_token(self) -> str:
        """The installed company's access token (refreshed first when it is about to expire)."""
        return self._installed().access_token()

    def refresh(self, stale: str | None = None) -> str:
        """A new access token in place of ``stale``."""
        return self._installed().refresh(stale)

    def api_domain(self) -> str:
        """The installed company's API domain."""
        return self._installed().api_domain()

    def reinstall_hint(self) -> str:
        """What the admin does when the app's tokens are refused."""
        return self._installed().reinstall_hint()

    # -- set-up ----------------------------------------------------------------------------------
    def setup(self) -> list[str]:
        """``crm setup`` for the inbox: what the admin still has to do in Pipedrive, one line each."""
        mode = self.mode
        if mode == "none":
            return []
        if mode == "notes":
            return ["inbox: notes (each patient message is a note on the person and the lead or deal)"]
        oauth, base = self.oauth, self.adapter.deployment.public_base_url.rstrip("/")
        if oauth is None or self.guard is None:
            return ["MISSING PIPEDRIVE_CLIENT_ID, PIPEDRIVE_CLIENT_SECRET, PIPEDRIVE_JWT_SECRET: the Pipedrive app's "
                    "settings (options.inbox is panel)"]
        lines = [f"to do in the Developer Hub: the app's callback URL is {base}/crm/pipedrive/oauth/callback; its "
                 f"custom panel (person and deal detail views) loads {base}/crm/pipedrive/panel with the JWT secret "
                 "of PIPEDRIVE_JWT_SECRET"]
        if self.store.account() is None:
            lines.append(f"MISSING the Pipedrive app is not installed in the company: open {oauth.install_url()}")
        return lines

    # -- the inbox -----------------------------------------------------------------------------
    def inbox(self) -> CRMInbox | None:
        """The account's inbox, built once (None: ``inbox: none``, or ``panel`` without the app).

        Raises:
            ConfigurationError: the app's tokens would have no encryption key (TOKEN_ENCRYPTION_KEY): said when
                the process starts, not at the first message.
        """
        if self._inbox is None:
            mode = self.mode
            if mode == "panel" and self.guard is not None:
                self.store.fernet()
                self._inbox = PipedriveInbox(self.adapter, mode=mode, oauth=self.oauth, store=self.store,
                                             guard=self.guard, limits=self.limits)
            elif mode == "notes":
                if self.configured:
                    self.store.fernet()
                self._inbox = PipedriveInbox(self.adapter, mode=mode, oauth=self.oauth, store=self.store, guard=None,
                                             limits=self.limits)
        return self._inbox
