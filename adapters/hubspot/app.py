"""The HubSpot adapter's side of the conversation after the bot: which inbox the account gets, and the parts
it is built from (the installation in Redis, the REST session, the app's OAuth), built once per adapter.

The mode is the ``inbox`` option: ``custom_channel`` (HubSpot's conversations inbox through the app's
custom channel: :mod:`adapters.hubspot.inbox`), ``timeline`` (notes and a reply property on the contact, for
tiers without custom channels: :mod:`adapters.hubspot.timeline`), ``none``; ``auto`` picks
``custom_channel`` when the app's client id is set, else ``timeline``.

The parts read the adapter's ``deployment`` (the relay's public URL, the token encryption key) when first
built, which is after the runtime has set it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from adapters.hubspot.channel_setup import ChannelSetup
from adapters.hubspot.inbox import HubSpotInbox
from adapters.hubspot.oauth import HubSpotOAuth
from adapters.hubspot.options import HubSpotCredentials
from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.timeline import HubSpotTimelineInbox
from adapters.hubspot.tokens import TokenStore
from adapters.inbox import CRMInbox, InboxLimits

if TYPE_CHECKING:
    from adapters.hubspot.records import HubSpotRecords

Mode = Literal["custom_channel", "timeline", "none"]


class HubSpotApp:
    """The inbox, the installer and the channel set-up of one HubSpot adapter.

    Args:
        adapter: the adapter (credentials, options, Redis, deployment, and its note writing for the timeline).
    """

    def __init__(self, adapter: HubSpotRecords) -> None:
        self.adapter = adapter
        self.credentials = cast(HubSpotCredentials, adapter.credentials)
        self.options = adapter.options
        self.limits = InboxLimits()
        self._rest: HubSpotRest | None = None
        self._store: TokenStore | None = None
        self._oauth: HubSpotOAuth | None = None
        self._inbox: CRMInbox | None = None

    @property
    def mode(self) -> Mode:
        """The inbox this configuration gives the account."""
        chosen = self.options.inbox
        if chosen == "auto":
            return "custom_channel" if self.credentials.client_id else "timeline"
        return chosen

    @property
    def rest(self) -> HubSpotRest:
        """The REST session (the app's OAuth token set on it once the app is configured)."""
        if self._rest is None:
            self._rest = HubSpotRest(self.credentials, self.options, self.adapter.redis)
            self._rest.tokens = self.oauth
        return self._rest

    @property
    def store(self) -> TokenStore:
        """The installation in Redis."""
        if self._store is None:
            self._store = TokenStore(self.adapter.redis, self.adapter.deployment.encryption_key)
        return self._store

    @property
    def oauth(self) -> HubSpotOAuth | None:
        """The app's OAuth, or None when HUBSPOT_CLIENT_ID or HUBSPOT_CLIENT_SECRET is not set."""
        credentials = self.credentials
        if self._oauth is None and credentials.client_id and credentials.client_secret:
            rest = self._rest or HubSpotRest(credentials, self.options, self.adapter.redis)
            self._rest = rest
            self._oauth = HubSpotOAuth(rest, self.store, client_id=credentials.client_id,
                                       client_secret=credentials.client_secret.get_secret_value(),
                                       app_base=credentials.app_base,
                                       public_base_url=self.adapter.deployment.public_base_url)
            rest.tokens = self._oauth
        return self._oauth

    def inbox(self) -> CRMInbox | None:
        """The account's inbox, built once (None: ``inbox: none``, or the custom channel without the app).

        Raises:
            ConfigurationError: the custom channel's tokens would have no encryption key (TOKEN_ENCRYPTION_KEY):
                said when the process starts, not at the first message.
        """
        if self._inbox is None:
            mode = self.mode
            if mode == "custom_channel" and self.oauth is not None:
                self.store.fernet()
                self._inbox = HubSpotInbox(self.rest, self.oauth, self.store, credentials=self.credentials,
                                           options=self.options, limits=self.limits)
            elif mode == "timeline":
                self._inbox = HubSpotTimelineInbox(self.adapter, self.rest, credentials=self.credentials,
                                                   options=self.options, limits=self.limits)
        return self._inbox

    def setup(self, *, apply: bool) -> list[str]:
        """``crm setup`` for the inbox: the channel and its account, or the timeline's reply property."""
        mode = self.mode
        if mode == "none":
            return []
        if mode == "timeline":
            inbox = self.inbox()
            assert isinstance(inbox, HubSpotTimelineInbox)
            return inbox.setup(apply=apply)
        if self.oauth is None:
            return ["MISSING HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET: the HubSpot app's settings (options.inbox is "
                    "custom_channel)"]
        return ChannelSetup(self.rest, self.store, credentials=self.credentials, options=self.options,
                            public_base_url=self.adapter.deployment.public_base_url,
                            limits=self.limits).run(apply=apply)
