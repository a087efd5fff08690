"""What the Salesforce adapter is configured with: the mapping's ``options:`` block and the settings it may read.

Both are pydantic models the adapter SDK validates (``chat2crm check`` names a bad option with file and
line); the credentials also decide which OAuth 2.0 flow the session logs in with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from adapters.base import AdapterCredentials, AdapterOptions
from core.errors import AuthError

AuthMode = Literal["jwt", "password", "client_credentials"]
_RULE_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


class CampaignMember(BaseModel):
    """Add the contact to the Campaign whose Name is the mapped ``field``'s value, with ``status``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, description="The mapped field holding the Campaign's Name.")
    status: str = Field(default="Responded", min_length=1, description="The member status.")


class SalesforceOptions(AdapterOptions):
    """The Salesforce mapping's ``options:``."""

    model_config = ConfigDict(title="salesforce options")

    api_version: str | None = Field(default=None, pattern=r"^v?\d{2}\.0$",
                                    description="The REST API version (62.0); default SALESFORCE_API_VERSION.")
    assignment: bool | str = Field(default="on", description='Assignment rules on creation: "on", "off", or the '
                                                             "id of an AssignmentRule (01Q…).")
    api_usage_share: float = Field(default=0.9, gt=0, le=1,
                                   description="Stop at this share of the org's daily API requests.")
    api_usage_backoff_seconds: float = Field(default=900, gt=0,
                                             description="How long the relay waits when that share is spent.")
    campaign_member: CampaignMember | None = Field(default=None, description="Campaign membership for the contact.")
    duplicate_alerts: Literal["save", "stop"] = Field(
        default="save", description="save: acknowledge a duplicate rule's alert (the relay has matched by key, "
                                    "phone and e-mail already); stop: let the alert stop the save.")
    session_cache_seconds: float = Field(default=1800, ge=0,
                                         description="How long workers share one access token (0: not shared).")
    inbox: Literal["auto", "package", "none"] = Field(
        default="auto",
        description="Where agents answer patients after the bot: package: the chat2crm package's chat messages "
                    "(deploy crm/salesforce; agents' replies reach the relay through `chat2crm listen salesforce`); "
                    "auto: the package when the org has its message object (looked up once an hour; restart the "
                    "relay after deploying it); none: no inbox in Salesforce (the bot keeps the conversation).")
    inbox_case_reference: str | None = Field(
        default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="The Case's External ID field that holds the lead's reference (Chat2CRM_Reference__c) when the "
                    "mapping writes Cases: chat messages are linked to the lead's Case too, and show on its page.")

    @field_validator("assignment")
    @classmethod
    def _assignment(cls, value: bool | str) -> bool | str:
        if isinstance(value, bool) or str(value).lower() in ("on", "off", "true", "false") or _RULE_ID.match(value):
            return value
        raise ValueError(f"assignment must be on, off or an AssignmentRule id, got {value!r}")

    def assign_header(self) -> str:
        """The ``Sforce-Auto-Assign`` header a create sends."""
        value = self.assignment
        if value is True or str(value).lower() in ("on", "true"):
            return "TRUE"
        if value is False or str(value).lower() in ("off", "false"):
            return "FALSE"
        return str(value)


class SalesforceCredentials(AdapterCredentials):
    """What the Salesforce adapter may read of the settings."""

    settings_prefix = "salesforce_"

    instance_url: str | None = None
    login_url: str = "https://login.salesforce.com"
    api_version: str = "62.0"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key_file: Path | None = None
    #: the Pub/Sub API (host:port) the inbox's listener subscribes to
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"

    def auth_mode(self) -> AuthMode:
        """Which OAuth 2.0 flow these make: JWT bearer when a private key file is set, the username-password
        flow when a password is, client credentials otherwise.

        Raises:
            AuthError: they make no complete flow (naming what is missing).
        """
        has_secret = self.client_secret is not None
        needed: tuple[tuple[str, object], ...]
        if self.private_key_file:
            needed = (("client_id", self.client_id), ("username", self.username),
                      ("private_key_file", self.private_key_file))
            mode: AuthMode = "jwt"
        elif self.password is not None:
            needed = (("client_id", self.client_id), ("client_secret", has_secret), ("username", self.username),
                      ("password", True))
            mode = "password"
        else:
            needed = (("client_id", self.client_id), ("client_secret", has_secret))
            mode = "client_credentials"
        missing = [self.setting(name) for name, value in needed if not value]
        if missing:
            raise AuthError(f"salesforce: the {mode} flow needs {', '.join(missing)} (set a private key file for "
                            "JWT bearer, a username and password for the password flow, or a client id and secret "
                            "for client credentials)", setting=missing[0])
        return mode
