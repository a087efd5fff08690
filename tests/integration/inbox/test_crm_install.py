"""Installing the CRM app by OAuth through the relay: the consent page with a signed state, the callback that
checks it and exchanges the code (HubSpot's emulator plays the account's admin and its token endpoint)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests
from cryptography.fernet import Fernet
from pydantic import SecretStr

from connector.app import create_app
from connector.runtime import Runtime
from tests.e2e.conftest import Stack

CLIENT_ID = "c2c0ffee-0000-4000-8000-000000000001"  # the app HubSpot's emulator knows
CLIENT_SECRET = "demo-client-secret-0000-4000-8000-000000000002"


def _hubspot(stack: Stack) -> str:
    """Where HubSpot's emulator serves both its API and its app pages."""
    return str(stack.crm.running.environment["HUBSPOT_API_BASE"])


def _relay(stack: Stack) -> Runtime:
    """The stack's relay, with the HubSpot app's settings."""
    settings = stack.settings.model_copy(update={
        "hubspot_client_id": CLIENT_ID, "hubspot_client_secret": SecretStr(CLIENT_SECRET),
        "hubspot_app_base": _hubspot(stack), "token_encryption_key": SecretStr(Fernet.generate_key().decode())})
    return Runtime(settings, redis_client=stack.runtime.redis)


def test_the_app_is_installed_through_the_consent_page(stack: Stack) -> None:
    client = create_app({"TESTING": True}, runtime=_relay(stack)).test_client()
    start = client.get("/crm/hubspot/install")
    assert start.status_code == 302
    consent = start.headers["Location"]
    query = parse_qs(urlsplit(consent).query)
    assert consent.startswith(_hubspot(stack) + "/oauth/authorize?")
    assert query["redirect_uri"] == ["https://relay.example/crm/hubspot/oauth/callback"]
    admin = requests.get(consent, allow_redirects=False, timeout=5)  # the admin consents
    back = urlsplit(admin.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://relay.example/crm/hubspot/oauth/callback"
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 200 and done.get_data(as_text=True).startswith("Installed:"), done.get_data()
    again = client.get(f"{back.path}?{back.query}")  # a code is exchanged once
    assert again.status_code == 400 and again.get_data(as_text=True).startswith("Not installed:")


def test_a_forged_state_or_an_error_installs_nothing(stack: Stack) -> None:
    client = create_app({"TESTING": True}, runtime=_relay(stack)).test_client()
    state = parse_qs(urlsplit(client.get("/crm/hubspot/install").headers["Location"]).query)["state"][0]
    forged = client.get(f"/crm/hubspot/oauth/callback?code=abc&state={state[:-2]}xx")
    assert forged.status_code == 400 and "not valid" in forged.get_data(as_text=True)
    refused = client.get(f"/crm/hubspot/oauth/callback?error=access_denied&state={state}")
    assert refused.status_code == 400 and "access_denied" in refused.get_data(as_text=True)
    assert client.get("/crm/salesforce/install").status_code == 404  # not the configured CRM
    # a relay without the app's settings has no install
    plain = create_app({"TESTING": True}, runtime=Runtime(stack.settings, redis_client=stack.runtime.redis))
    assert plain.test_client().get("/crm/hubspot/install").status_code == 404
