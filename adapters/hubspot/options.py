"""What the HubSpot adapter reads: its mapping's ``options:`` block and its own settings.

Kept apart from the adapter so the session, the mapping schema and the adapter share one declaration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, SecretStr

from adapters.base import AdapterCredentials, AdapterOptions, RateLimit


class HubSpotOptions(AdapterOptions):
    """The HubSpot mapping's ``options:``."""

    model_config = ConfigDict(title="hubspot options")

    property_group: str = Field(default="chat2crm", min_length=1,
                                description="The property group `crm setup` puts the custom properties in.")
    rate_limit: RateLimit = Field(default=RateLimit(requests=100, per_seconds=10),
                                  description="The account's request budget, shared by every worker "
                                              "(HubSpot's ten-second limit of the account's tier).")
    inbox: Literal["auto", "custom_channel", "timeline", "none"] = Field(
        default="auto",
        description="Where agents answer patients: `custom_channel` (HubSpot's conversations inbox, through the "
                    "app's custom channel: Sales or Service Hub Professional and up), `timeline` (notes on the "
                    "contact, replies written in the contact's `chat2crm_reply` property: any tier), `none`; "
                    "`auto` is `custom_channel` when HUBSPOT_CLIENT_ID is set, else `timeline`.")
    inbox_id: str | None = Field(
        default=None, min_length=1,
        description="The conversations inbox (or help desk) `crm setup` connects the channel to; needed only when "
                    "the account has more than one.")
    file_folder: str = Field(default="/chat2crm", pattern=r"^/[^\\]*$",
                             description="The file manager folder patients' files are stored in (private files).")
    route_to_owner: bool = Field(
        default=True,
        description="Assign a thread the relay opens in HubSpot's inbox to the contact's owner when the inbox left "
                    "it unassigned (a help desk, no routing rule, no owner yet when it opened): up to 4 calls once "
                    "per thread. Needs the app's optional scopes `conversations.write` and "
                    "`crm.objects.owners.read`; without them threads are left as the inbox routes them.")


class HubSpotCredentials(AdapterCredentials):
    """What the HubSpot adapter may read of the settings."""

    settings_prefix = "hubspot_"

    access_token: SecretStr | None = None
    api_base: str = "https://api.hubapi.com"
    #: where a portal admin authorizes the app (the OAuth consent page)
    app_base: str = "https://app.hubspot.com"
    #: the public app (OAuth install, custom channel, webhook signatures)
    client_id: str | None = None
    client_secret: SecretStr | None = None
    app_id: str | None = None
    developer_api_key: SecretStr | None = None
    #: set by `chat2crm crm setup` in Redis; these override it
    channel_id: str | None = None
    channel_account_id: str | None = None
