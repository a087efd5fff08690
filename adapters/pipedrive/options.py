"""What the Pipedrive adapter reads: its mapping's ``options:`` block and its own settings.

Kept apart from the adapter so the session, the mapping schema and the adapter share one declaration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, SecretStr

from adapters.base import AdapterCredentials, AdapterOptions, RateLimit

LabelColor = Literal["green", "blue", "red", "yellow", "purple", "gray", "brown", "orange", "pink", "dark-gray"]


class PipedriveOptions(AdapterOptions):
    """The Pipedrive mapping's ``options:``."""

    model_config = ConfigDict(title="pipedrive options")

    rate_limit: RateLimit = Field(default=RateLimit(requests=20, per_seconds=2),
                                  description="The burst limit per API token, shared by every worker "
                                              "(the smallest plan's: 20 per 2 seconds).")
    search_rate_limit: RateLimit = Field(default=RateLimit(requests=10, per_seconds=2),
                                         description="Pipedrive's own, lower limit for the search endpoints.")
    activity_type: str = Field(default="task", min_length=1,
                               description="The activity type of the handoff task (task, call…).")
    label_color: LabelColor = Field(default="gray", description="The colour of the lead labels made for tags.")
    status_label_color: LabelColor = Field(default="green",
                                           description="The colour of the lead labels made for statuses.")
    text_fields: list[str] = Field(default_factory=list,
                                   description="Visible names `crm setup` creates as long text (over 255 "
                                               "characters) instead of 255-character text.")
    mapping_file: str = Field(default="the mapping file", description="The mapping's name in error messages.")
    inbox: Literal["auto", "panel", "notes", "none"] = Field(
        default="auto",
        description="Where agents follow and answer patients after the bot: `panel` (the app's custom panel in "
                    "the person's and the deal's detail view: the thread, a reply box, a close button; every "
                    "patient message is also a note on the person and the lead or deal), `notes` (the notes only: "
                    "agents read the conversation in Pipedrive and cannot answer from it), `none` (the bot keeps "
                    "the conversation); `auto` is `panel` when the app is configured (PIPEDRIVE_CLIENT_ID, "
                    "PIPEDRIVE_CLIENT_SECRET and PIPEDRIVE_JWT_SECRET set), else `none`.")


class PipedriveCredentials(AdapterCredentials):
    """What the Pipedrive adapter may read of the settings: an API token (or a fixed OAuth token), or the app
    installed by OAuth (its client id and secret; the installed company's token then wins over both), and the
    JWT secret of the app's custom panel."""

    settings_prefix = "pipedrive_"

    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    api_base: str = "https://api.pipedrive.com"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    oauth_base: str = "https://oauth.pipedrive.com"
