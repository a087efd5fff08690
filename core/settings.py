"""Settings from the environment: secrets and endpoints (see docs/configuration.md).

Everything a deployment changes without editing YAML comes from here: credentials, the
vendors' base URLs (which tests and the demo point at the emulators), Redis, and a few
operational knobs. Secrets are :class:`~pydantic.SecretStr`, so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError, Problem

#: The environment file read from the current folder, if present (real environment variables win).
ENV_FILE = ".env"


class Settings(BaseSettings):
    """Process settings, read from environment variables (names are the field names upper-cased)."""

    # ``.env`` in the current folder is read as the twelve-factor convention expects; variables set in
    # the real environment win over it, so a platform's settings are never shadowed by a stray file.
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_file=ENV_FILE,
                                      env_file_encoding="utf-8")

    # -- the relay -----------------------------------------------------------------------------
    chat2crm_config: Path = Field(
        default=Path("chat2crm.yaml"),
        description="The main YAML file (default: `chat2crm.yaml` in the current folder); it names the CRM, "
                    "the mapping, the flows and the campaigns. `chat2crm init DIR` writes one.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis to use. Unset: the demo and the tests start a private Redis of their own.",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port `chat2crm serve` listens on.")
    web_concurrency: int = Field(default=2, ge=1, le=64, description="gunicorn worker processes.")
    worker_processes: int = Field(
        default=2, ge=1, le=64,
        description="Job processes one `chat2crm worker` runs (each runs one job at a time, in-process).")
    worker_max_memory_mb: int = Field(
        default=256, ge=16,
        description="How much a worker process may grow beyond its size at start before it is replaced "
                    "(after its job when it is over, at once when it is over twice as much).")
    worker_hang_grace_seconds: float = Field(
        default=30.0, gt=0,
        description="How long past its job's time-out a job process may stay busy before it is killed "
                    "and replaced (a job stuck where the time-out cannot reach it).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="`json` for production, `text` for a terminal; `auto` picks by TTY."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Root log level.")
    public_base_url: str = Field(
        default="http://localhost:8000",
        description="How the relay is reached from outside: used in transcript links and click links.",
    )
    chat2crm_insecure_demo: bool = Field(
        default=False,
        description="Accept unsigned webhooks, to try the relay by hand. Never in production: it is logged loudly.",
    )
    transcript_secret: SecretStr | None = Field(
        default=None, description="Key that signs transcript links (`/t/<token>`). Required in production."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for /metrics and other admin endpoints."
    )
    token_encryption_key: SecretStr | None = Field(
        default=None, description="Fernet key that encrypts CRM OAuth tokens kept in Redis "
                                  "(`chat2crm keygen` prints one). Required once a CRM is installed by OAuth.")
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest webhook body accepted.")
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="Longest a client may take to send a request's body under `chat2crm serve`; a slower one "
                    "gets 408 and its connection is closed.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        description="Addresses or networks (comma separated) of the reverse proxies whose `X-Forwarded-For` "
                    "names the client (rate limits of click links); `*` trusts any peer's last hop. gunicorn "
                    "reads the same variable for `X-Forwarded-Proto`.")
    queue_name: str = Field(default="chat2crm", description="Prefix of the rq queues.")
    chat2crm_demo_emulators: str | None = Field(
        default=None, description="Set by `chat2crm demo` only: the emulators' URLs; turns on the /demo page.")

    chat2crm_channels: str = Field(
        default="whatsapp,telegram", pattern=r"^\s*[a-z][a-z0-9_]{1,31}\s*(,\s*[a-z][a-z0-9_]{1,31}\s*)*$",
        description="The channels served, comma separated: each is a plug-in of the `chat2crm.channels` entry "
                    "points (`whatsapp`, `telegram`, `dialog360`, or another package's; docs/extending.md). A "
                    "channel not listed has no webhook and sends nothing; `chat2crm check` validates the "
                    "settings of those listed.")

    # -- WhatsApp Cloud API --------------------------------------------------------------------
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_api_base: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v23.0"
    whatsapp_business_account_id: str | None = Field(
        default=None, description="The WhatsApp Business Account (WABA) id: where `chat2crm forms` publishes the "
                                  "bot flows' forms (WhatsApp Flows); unset: forms are not published and their "
                                  "steps are asked as questions (docs/forms.md).")

    # -- Meta lead forms (Lead Ads) -------------------------------------------------------------
    meta_app_secret: SecretStr | None = Field(
        default=None, description="The Meta app's secret that signs `leadgen` webhooks (`X-Hub-Signature-256`); "
                                  "unset: `WHATSAPP_APP_SECRET` (one app serves both).")
    meta_verify_token: SecretStr | None = Field(
        default=None, description="The verify token of the `leadgen` webhook's subscription handshake; unset: "
                                  "`WHATSAPP_VERIFY_TOKEN`.")
    meta_page_access_token: SecretStr | None = Field(
        default=None, description="A Page access token with `leads_retrieval`: reads each lead a form sent "
                                  "(docs/ads.md).")
    meta_graph_base: str = Field(default="https://graph.facebook.com",
                                 description="The Graph API's base URL (lead retrieval).")
    meta_graph_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$",
                                    description="The Graph API version leads are read with.")
    meta_lead_reads_per_hour: int = Field(
        default=200, ge=1, le=1_000_000,
        description="Lead reads the relay allows itself per hour, shared by every worker. Meta allows 200 x 24 "
                    "x the Page's leads of the last 90 days per day: 200 an hour is within it for any Page that "
                    "has leads.")

    # -- Telegram Bot API ----------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_secret_token: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"

    # -- HubSpot -------------------------------------------------------------------------------
    hubspot_access_token: SecretStr | None = None
    hubspot_api_base: str = "https://api.hubapi.com"
    hubspot_app_base: str = Field(default="https://app.hubspot.com",
                                  description="Where a portal admin authorizes the app (the OAuth install page).")
    hubspot_client_id: str | None = Field(default=None, description="The HubSpot app's client id (OAuth install).")
    hubspot_client_secret: SecretStr | None = Field(
        default=None, description="The HubSpot app's client secret: OAuth, and the key of its webhook signatures.")
    hubspot_app_id: str | None = Field(default=None, description="The HubSpot app's id (registers the channel).")
    hubspot_developer_api_key: SecretStr | None = Field(
        default=None, description="The developer account's API key (registers the custom channel).")
    hubspot_channel_id: str | None = Field(
        default=None, description="The registered custom channel (set by `chat2crm crm setup`, or here).")
    hubspot_channel_account_id: str | None = Field(
        default=None, description="The channel account connected to an inbox (set by `chat2crm crm setup`, or here).")

    # -- Salesforce ----------------------------------------------------------------------------
    salesforce_instance_url: str | None = None
    salesforce_login_url: str = "https://login.salesforce.com"
    salesforce_api_version: str = "62.0"
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_private_key_file: Path | None = None
    salesforce_pubsub_endpoint: str = Field(
        default="api.pubsub.salesforce.com:7443",
        description="The Pub/Sub API endpoint (host:port) `chat2crm listen salesforce` subscribes to for agents' "
                    "replies; api.deu.pubsub.salesforce.com:7443 keeps event processing in Salesforce's service in "
                    "Germany (data in transit privacy).")

    # -- Pipedrive -----------------------------------------------------------------------------
    pipedrive_api_token: SecretStr | None = None
    pipedrive_oauth_token: SecretStr | None = None
    pipedrive_api_base: str = "https://api.pipedrive.com"
    pipedrive_client_id: str | None = Field(
        default=None, description="The Pipedrive app's client id (OAuth install, from the Developer Hub).")
    pipedrive_client_secret: SecretStr | None = Field(
        default=None, description="The Pipedrive app's client secret (OAuth token exchange and refresh).")
    pipedrive_jwt_secret: SecretStr | None = Field(
        default=None, description="The JWT secret of the app's custom panel: it signs the panel's `token` "
                                  "(Developer Hub, App extensions).")
    pipedrive_oauth_base: str = Field(
        default="https://oauth.pipedrive.com",
        description="Pipedrive's OAuth server (the consent page and the token endpoint).")


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (``overrides`` win, for tests).

    Raises:
        ConfigurationError: with one problem per bad variable, naming the variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper()
            problems.append(Problem(err["msg"], file="environment", path=name))
        raise ConfigurationError(problems) from None
