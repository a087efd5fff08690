"""``crm setup`` subscribes HubSpot's app to changes of the mapped properties the relay fills from a lead's fields
(``contact.propertyChange``, ``deal.propertyChange``), idempotently, against the emulated webhooks API; ``crm
doctor`` names the ones missing."""

from __future__ import annotations

import redis

from connector.runtime import Runtime
from tests.integration._hubspot_emulator_env import (
    Env,
    env_fixture,  # noqa: F401 - the fixture
)


def test_crm_setup_subscribes_the_app_to_changes_of_the_mapped_properties(env: Env, runtime: Runtime,
                                                                          redis_client: redis.Redis) -> None:
    from pydantic import SecretStr

    from adapters.hubspot.channel_setup import edit_subscriptions, missing_edit_subscriptions
    from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
    from adapters.hubspot.rest import HubSpotRest
    from connector.edits import watched

    credentials = HubSpotCredentials(api_base=env.url, app_id=str(env.hubspot.app_id),
                                     developer_api_key=SecretStr(env.hubspot.developer_api_key))
    rest = HubSpotRest(credentials, HubSpotOptions(), redis_client)
    fields = watched(runtime.mapping)
    assert "dealname" not in fields["deals"] and "chat2crm_preferred_time" in fields["deals"]  # templates: none
    assert "email" in fields["contacts"]
    wanted = [("contact.propertyChange", p) for p in fields["contacts"]] + [
        ("deal.propertyChange", p) for p in fields["deals"]]
    assert missing_edit_subscriptions(rest, credentials, fields) == [
        f"edits: TO DO webhook subscription {e} of {p}: run `chat2crm crm setup`" for e, p in wanted]
    assert edit_subscriptions(rest, credentials, fields, apply=False) == [
        f"would subscribe the app's webhooks to {e} of {p}" for e, p in wanted]
    assert edit_subscriptions(rest, credentials, fields, apply=True) == [
        f"subscribed the app's webhooks to {e} of {p}" for e, p in wanted]
    assert edit_subscriptions(rest, credentials, fields, apply=True) == [
        f"ok webhook subscription {e} of {p}" for e, p in wanted]  # idempotent
    assert [(s["eventType"], s.get("propertyName"), s["active"]) for s in env.hubspot.webhook_subscriptions] == [
        (e, p, True) for e, p in wanted]
    assert missing_edit_subscriptions(rest, credentials, fields) == [
        f"edits: ok {len(wanted)} webhook subscriptions of the mapped properties"]
