"""What the HubSpot adapter reads: its mapping's ``options:`` block and its own settings.

Kept apart from the adapter so the session, the mapping schema and the adapter share one declaration.
"""

from __future__ import annotations

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


class HubSpotCredentials(AdapterCredentials):
    """What the HubSpot adapter may read of the settings."""

    settings_prefix = "hubspot_"

    access_token: SecretStr | None = None
    api_base: str = "https://api.hubapi.com"
