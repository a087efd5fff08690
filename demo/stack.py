"""The emulators ``chat2crm demo`` runs, in its own process, on 127.0.0.1.

Each is the same product code the tests use; here they hold the demo's state. The CRM emulator is
prepared the way ``chat2crm crm setup`` prepares a real account. Each emulator also answers
``POST /_emulator/fail``, with which the demo page makes its next call fail. :func:`start_crm` is also what
the end-to-end tests use, so the demo and the tests start every CRM the same way.

Importing this module needs the ``demo`` extra: the emulators check every request against the vendors'
API descriptions (``jsonschema``, ``referencing``, ``PyYAML``) and Salesforce's serves HTTPS (``trustme``).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from flask import Flask, Response, jsonify, request
from ruamel.yaml import YAML

from adapters import load_adapter
from adapters.base import Deployment
from connector.mapping import load_mapping, required_schema
from connector.resources import shipped
from core.settings import Settings
from demo import DEMO_CRMS
from demo.providers import api_environment, whatsapp_emulator
from emulators.hubspot import HubSpotEmulator
from emulators.pipedrive import PipedriveEmulator
from emulators.salesforce import SalesforceCredentials, SalesforceEmulator, make_test_tls
from emulators.server import ServedApp
from emulators.telegram import TelegramEmulator

#: the environment variables holding each CRM's demo credentials (made fresh by the demo)
CRM_SECRETS = {
    "hubspot": ("HUBSPOT_ACCESS_TOKEN",),  # and, for the inbox, HUBSPOT_APP_SECRETS
    "salesforce": ("SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"),
    "pipedrive": ("PIPEDRIVE_API_TOKEN",),  # and, for the inbox, PIPEDRIVE_APP_SECRETS
}
#: the Pipedrive app's settings (its custom panel is where agents answer): the emulator accepts these when set
PIPEDRIVE_APP_SECRETS = ("PIPEDRIVE_CLIENT_ID", "PIPEDRIVE_CLIENT_SECRET", "PIPEDRIVE_JWT_SECRET")

#: the HubSpot app's settings (its custom channel is the agents' inbox): the emulator accepts these when set
HUBSPOT_APP_SECRETS = ("HUBSPOT_CLIENT_ID", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_APP_ID", "HUBSPOT_DEVELOPER_API_KEY")


def hubspot_app_environment() -> dict[str, str]:
    """Fresh settings of a HubSpot app (client id and secret, app id, developer key) and the key that encrypts
    its tokens: with them the relay installs the app by OAuth and the agents answer in the conversations
    inbox."""
    from cryptography.fernet import Fernet

    return {"HUBSPOT_CLIENT_ID": str(uuid.uuid4()), "HUBSPOT_CLIENT_SECRET": str(uuid.uuid4()),
            "HUBSPOT_APP_ID": str(secrets.randbelow(9_000_000) + 1_000_000),
            "HUBSPOT_DEVELOPER_API_KEY": str(uuid.uuid4()),
            "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def pipedrive_app_environment() -> dict[str, str]:
    """Fresh settings of a Pipedrive app (client id and secret, the panel's JWT secret) and the key that encrypts
    its tokens: with them the relay installs the app by OAuth and the agents answer in its panel."""
    from cryptography.fernet import Fernet

    return {"PIPEDRIVE_CLIENT_ID": secrets.token_hex(8), "PIPEDRIVE_CLIENT_SECRET": secrets.token_hex(20),
            "PIPEDRIVE_JWT_SECRET": secrets.token_urlsafe(48),
            "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def install_crm_app(relay_base: str, crm: str, *, timeout: float = 10.0) -> str:
    """Install the CRM's app as an account's admin does: open the relay's install page, consent (the emulator
    consents at once) and come back. Returns the relay's answer ("Installed: ...").

    Raises:
        RuntimeError: the install did not complete (the relay's answer says why).
    """
    answer = requests.get(f"{relay_base}/crm/{crm}/install", timeout=timeout)
    if answer.status_code != 200:
        raise RuntimeError(f"the {crm} app was not installed: {answer.status_code} {answer.text.strip()[:200]}")
    return answer.text.strip()


def add_fault_control(app: Flask, emulator: Any) -> None:
    """Give an emulator's app ``POST /_emulator/fail`` (``{"kind": "500", "count": 1}``), which makes its
    next calls fail through the emulator's own ``fail_next``: the demo page's "Simulate a failure".

    Args:
        app: the emulator's Flask app, not yet serving (Flask refuses new routes after a first request).
        emulator: the emulator (it has ``fail_next(count, kind)``).
    """

    @app.post("/_emulator/fail")
    def fail() -> tuple[Response, int]:
        data = request.get_json(silent=True) or {}
        try:
            emulator.fail_next(int(data.get("count", 1)), str(data.get("kind", "500")))
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"ok": True}), 200


@dataclass
class RunningCRM:
    """A CRM emulator served on 127.0.0.1, and the environment that points the relay at it.

    ``environment`` holds the ``*_API_BASE`` (or instance and login URLs) and, for an HTTPS
    emulator, ``REQUESTS_CA_BUNDLE`` naming a bundle that trusts its test certificate: every
    process that talks to it (web, worker, the demo page's back end) needs that variable.
    """

    name: str
    emulator: Any
    served: ServedApp
    environment: dict[str, str]
    #: what else serves the emulator (Salesforce's Pub/Sub API), stopped with it
    extra: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.served.url

    def stop(self) -> None:
        for other in reversed(self.extra):
            other.stop()
        self.extra.clear()
        self.served.stop()


def start_crm(crm: str, env: dict[str, str], *, directory: Path | None = None, **emulator_options: Any) -> RunningCRM:
    """Start the emulator of ``crm``, accepting the credentials named in ``env`` (see :data:`CRM_SECRETS`).

    Args:
        crm: hubspot, salesforce or pipedrive.
        env: the environment holding the credentials the emulator must accept.
        directory: where an HTTPS emulator keeps its test CA bundle (a new temporary folder if omitted).
        emulator_options: passed to the emulator (``rate_limit``, ``latency``, ``timeout_seconds``…); with
            Salesforce, ``package=True`` also serves the Pub/Sub API (gRPC with TLS, the same test CA) and sets
            ``SALESFORCE_PUBSUB_ENDPOINT``; with Pipedrive, the app's settings of
            :data:`PIPEDRIVE_APP_SECRETS` found in ``env`` make the emulator's OAuth app and panel.

    Raises:
        ValueError: no emulator ships for ``crm``.
        KeyError: ``env`` lacks a credential the CRM needs.
    """
    if crm == "hubspot":
        if env.get("HUBSPOT_CLIENT_ID"):  # the app whose custom channel is the agents' inbox
            emulator_options = {"client_id": env["HUBSPOT_CLIENT_ID"], "client_secret": env["HUBSPOT_CLIENT_SECRET"],
                                "app_id": int(env["HUBSPOT_APP_ID"]),
                                "developer_api_key": env["HUBSPOT_DEVELOPER_API_KEY"], **emulator_options}
        hubspot = HubSpotEmulator(env["HUBSPOT_ACCESS_TOKEN"], **emulator_options)
        add_fault_control(hubspot.app, hubspot)
        served = ServedApp(hubspot.app).start()
        hubspot.public_url = served.url
        # the emulator is both of HubSpot's hosts: the API, and the app's pages (the OAuth consent)
        return RunningCRM(crm, hubspot, served, {"HUBSPOT_API_BASE": served.url, "HUBSPOT_APP_BASE": served.url})
    if crm == "salesforce":
        tls = make_test_tls(directory or Path(tempfile.mkdtemp(prefix="chat2crm-tls-")))
        org = SalesforceEmulator(SalesforceCredentials(client_id=env["SALESFORCE_CLIENT_ID"],
                                                       client_secret=env["SALESFORCE_CLIENT_SECRET"]),
                                 **emulator_options)
        add_fault_control(org.app, org)
        served = ServedApp(org.app, ssl_context=tls.ssl_context).start()
        # Salesforce's client insists on https: the emulator's certificate comes from a test CA
        running = RunningCRM(crm, org, served, {"SALESFORCE_INSTANCE_URL": served.url,
                                                "SALESFORCE_LOGIN_URL": served.url,
                                                "REQUESTS_CA_BUNDLE": str(tls.ca_bundle)})
        if emulator_options.get("package"):  # the agents' replies come as change events, over gRPC
            from emulators.salesforce.pubsub_server import PubSubServer

            for sobject in ("Lead", "Contact"):  # the admin's step: people's edits count for completeness
                org.enable_changes(sobject)
            pubsub = PubSubServer(org, tls).start()
            running.extra.append(pubsub)
            running.environment["SALESFORCE_PUBSUB_ENDPOINT"] = pubsub.address
        return running
    if crm == "pipedrive":
        if env.get("PIPEDRIVE_JWT_SECRET"):  # the app whose panel is where agents answer
            emulator_options = {"client_id": env["PIPEDRIVE_CLIENT_ID"],
                                "client_secret": env["PIPEDRIVE_CLIENT_SECRET"],
                                "jwt_secret": env["PIPEDRIVE_JWT_SECRET"], **emulator_options}
        pipedrive = PipedriveEmulator(env["PIPEDRIVE_API_TOKEN"], **emulator_options)
        add_fault_control(pipedrive.app, pipedrive)
        served = ServedApp(pipedrive.app).start()
        pipedrive.public_url = served.url
        environment = {"PIPEDRIVE_API_BASE": served.url}
        if env.get("PIPEDRIVE_JWT_SECRET"):  # the emulator is also Pipedrive's OAuth server
            environment["PIPEDRIVE_OAUTH_BASE"] = served.url
        return RunningCRM(crm, pipedrive, served, environment)
    raise ValueError(f"no emulator ships for {crm!r}; available: {', '.join(DEMO_CRMS)}")


@dataclass
class DemoStack:
    """Running emulators and the environment that points the relay at them."""

    served: list[ServedApp] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    crm_url: str = ""
    crm: RunningCRM | None = None
    whatsapp: Any = None
    telegram: Any = None
    #: how the relay reaches WhatsApp (demo/providers.py): ``meta``, or ``360dialog``, whose webhook is registered
    whatsapp_provider: str = "meta"
    #: what preparing the CRM said (one line per field, and the inbox's lines)
    setup_lines: list[str] = field(default_factory=list)

    def connect(self, relay_base: str) -> None:
        """Point the emulated patients at the relay's webhooks (and Pipedrive's app at the relay's panel)."""
        if self.whatsapp_provider == "meta":  # 360dialog's webhook is registered through its API instead
            self.whatsapp.relay_url = f"{relay_base}/webhooks/whatsapp"
        self.telegram.relay_url = f"{relay_base}/webhooks/telegram"
        if self.crm is not None and self.crm.name == "pipedrive":
            self.crm.emulator.panel_url = f"{relay_base}/crm/pipedrive/panel"
            self.crm.emulator.redirect_uris = (f"{relay_base}/crm/pipedrive/oauth/callback",)

    def stop(self) -> None:
        if self.crm is not None:
            self.crm.stop()
        for served in reversed(self.served):
            served.stop()
        self.served.clear()


def start_emulators(crm: str, env: dict[str, str], *, directory: Path | None = None,
                    whatsapp_provider: str = "meta") -> DemoStack:
    """Start the WhatsApp (reached through ``whatsapp_provider``: demo/providers.py), Telegram and CRM emulators
    with the credentials in ``env``.

    Raises:
        ValueError: no emulator ships for ``crm``.
    """
    if crm not in DEMO_CRMS:
        raise ValueError(f"the demo has no {crm} emulator; available: {', '.join(DEMO_CRMS)}")
    stack = DemoStack(whatsapp_provider=whatsapp_provider)
    stack.whatsapp = whatsapp_emulator(whatsapp_provider, env)
    stack.telegram = TelegramEmulator(token=env["TELEGRAM_BOT_TOKEN"], secret_token=env["TELEGRAM_SECRET_TOKEN"])
    add_fault_control(stack.whatsapp.app, stack.whatsapp)
    add_fault_control(stack.telegram.app, stack.telegram)
    whatsapp = ServedApp(stack.whatsapp.app).start()
    telegram = ServedApp(stack.telegram.app).start()
    stack.served += [whatsapp, telegram]
    # the demo's Salesforce org has the chat2crm package deployed: the agents answer on the Lead's page
    running = start_crm(crm, env, directory=directory, **({"package": True} if crm == "salesforce" else {}))
    stack.crm = running
    stack.crm_url = running.url
    stack.environment = {**api_environment(whatsapp_provider, whatsapp.url), "TELEGRAM_API_BASE": telegram.url,
                         **running.environment}
    if whatsapp_provider == "meta":  # the bot's forms are published to the emulator's business account
        stack.environment["WHATSAPP_BUSINESS_ACCOUNT_ID"] = stack.whatsapp.waba_id
    stack.environment["CHAT2CRM_DEMO_EMULATORS"] = json.dumps(
        {"whatsapp": whatsapp.url, "whatsapp_provider": whatsapp_provider, "telegram": telegram.url,
         "crm": running.url, "crm_name": crm})
    if crm != "pipedrive" or not env.get("PIPEDRIVE_JWT_SECRET"):  # Pipedrive's app: once it is installed
        stack.setup_lines = prepare_crm(crm, {**env, **stack.environment})
    if crm == "salesforce":
        _add_demo_campaigns(running.emulator)
    running.emulator.calls.clear()
    return stack


def _add_demo_campaigns(org: Any) -> None:
    """The Campaigns a clinic's marketing team keeps in Salesforce, one per example campaign (named by its
    UTM campaign, as the shipped mapping looks them up), so the demo shows campaign membership."""
    data = YAML(typ="safe").load(shipped("campaigns.yaml").read_text(encoding="utf-8"))
    for campaign in data.get("campaigns") or []:
        name = (campaign.get("utm") or {}).get("campaign") or campaign["slug"]
        org.add_record("Campaign", {"Name": name, "IsActive": True})


def prepare_crm(crm: str, env: dict[str, str], mapping_path: Path | None = None, *, language: str = "en",
                ) -> list[str]:
    """Create the custom fields (and labels, and the clinic's pipeline and stages, labelled in ``language``: the
    configuration's ``clinic_language``) the mapping needs, as ``chat2crm crm setup`` does.

    Returns:
        The set-up's lines (one per field: created, or already there).
    """
    settings = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    mapping = load_mapping(mapping_path or shipped("mappings", f"{crm}.yaml"), crm=crm, language=language)
    # the inbox's set-up keeps what it registers (and reads the app's installation) in the relay's Redis
    store = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    adapter = load_adapter(crm).from_settings(settings, options=mapping.crm_options(), redis=store)
    adapter.deployment = Deployment(public_base_url=settings.public_base_url,
                                    encryption_key=settings.token_encryption_key)
    bundle = env.get("REQUESTS_CA_BUNDLE")
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle:  # requests lets this variable win over a session's `verify`
        os.environ["REQUESTS_CA_BUNDLE"] = bundle
    try:
        return adapter.setup(required_schema(mapping), apply=True)
    finally:
        if bundle:
            if previous is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = previous
