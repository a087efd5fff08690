"""The HubSpot app's parts that need no HubSpot: tokens kept encrypted, when a token is refreshed, which
inbox a configuration gets, and HubSpot's webhook bodies (shaped as HubSpot's docs show them) read into the
relay's events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from adapters.base import Deployment
from adapters.hubspot import HubSpotAdapter
from adapters.hubspot.inbox import HubSpotInbox
from adapters.hubspot.keys import INSTALLS
from adapters.hubspot.timeline import HubSpotTimelineInbox
from adapters.hubspot.tokens import Tokens, TokenStore
from adapters.inbox import WebhookRequest
from core.errors import AuthError, ConfigurationError, WebhookRejectedError
from core.inbox import AgentReply, FieldsEdited, ThreadClosed
from tests.conftest import make_settings

KEY = "q5Zu6Wqf0lB0n5Qe2Ny3PnwEYMsx7nqJmzA3DXdWsU8="  # a Fernet key (32 url-safe base64 bytes)
SECRET = "app-client-secret-0123"
URL = "https://relay.example/crm/hubspot/webhooks"
NOW = 1_760_000_000.0


# -- tokens at rest ---------------------------------------------------------------------------
def test_tokens_round_trip_encrypted(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, SecretStr(KEY))
    tokens = Tokens(portal_id="62515", access_token="CJSP5qf1KhI-access", refresh_token="6f18f21e-refresh",
                    expires_at=NOW + 1800, scopes=("oauth", "files"))
    store.save(tokens, install=True)
    raw = redis_client.hget(INSTALLS.key("62515"), "tokens")
    assert raw is not None and b"access" not in raw and b"refresh" not in raw  # nothing readable in Redis
    assert redis_client.ttl(INSTALLS.key("62515")) == -1  # kept until replaced: a refresh token must last
    again = TokenStore(redis_client, SecretStr(KEY))  # another process, after a restart
    assert again.portal() == "62515" and again.load() == tokens


def test_tokens_sealed_with_another_key_ask_for_a_reinstall(redis_client: redis.Redis) -> None:
    TokenStore(redis_client, SecretStr(KEY)).save(Tokens("1", "a", "r", NOW), install=True)
    other = "x" * 43 + "="
    with pytest.raises(AuthError) as caught:
        TokenStore(redis_client, SecretStr(other)).load()
    assert caught.value.setting == "TOKEN_ENCRYPTION_KEY"


@pytest.mark.parametrize("key", [None, "not-a-fernet-key"])
def test_no_usable_key_is_a_configuration_error_naming_it(redis_client: redis.Redis, key: str | None) -> None:
    store = TokenStore(redis_client, SecretStr(key) if key else None)
    with pytest.raises(ConfigurationError) as caught:
        store.save(Tokens("1", "a", "r", NOW))
    assert "TOKEN_ENCRYPTION_KEY" in str(caught.value)


def test_a_token_is_refreshed_when_less_than_the_margin_is_left() -> None:
    tokens = Tokens("1", "a", "r", expires_at=NOW + 300)
    assert tokens.fresh(NOW - 1, 300) and not tokens.fresh(NOW, 300) and not tokens.fresh(NOW + 10, 300)
    assert Tokens("1", "a", "r", expires_at=NOW + 301).fresh(NOW, 300)


# -- which inbox ---------------------------------------------------------------------------------
def adapter(redis_url: str, **settings: Any) -> HubSpotAdapter:
    made = HubSpotAdapter.from_settings(make_settings(redis_url, **settings))
    made.deployment = Deployment(public_base_url="https://relay.example", encryption_key=SecretStr(KEY))
    return made


def test_auto_is_the_custom_channel_with_an_app_and_the_timeline_without(redis_url: str) -> None:
    with_app = adapter(redis_url, hubspot_client_id="cid", hubspot_client_secret=SECRET)
    assert isinstance(with_app.inbox(), HubSpotInbox) and with_app.installer() is not None
    without = adapter(redis_url)
    assert isinstance(without.inbox(), HubSpotTimelineInbox) and without.installer() is None
    assert HubSpotAdapter.from_settings(make_settings(redis_url), options={"inbox": "none"}).inbox() is None
    forced = HubSpotAdapter.from_settings(make_settings(redis_url, hubspot_client_id="cid",
                                                        hubspot_client_secret=SECRET), options={"inbox": "timeline"})
    assert isinstance(forced.inbox(), HubSpotTimelineInbox)


def test_the_custom_channel_without_an_encryption_key_is_refused_at_start(redis_url: str) -> None:
    keyless = HubSpotAdapter.from_settings(make_settings(redis_url, hubspot_client_id="cid",
                                                         hubspot_client_secret=SECRET))
    with pytest.raises(ConfigurationError) as caught:
        keyless.inbox()
    assert "TOKEN_ENCRYPTION_KEY" in str(caught.value)


def test_the_consent_url_asks_for_the_documented_scopes(redis_url: str) -> None:
    installer = adapter(redis_url, hubspot_client_id="cid-1", hubspot_client_secret=SECRET).installer()
    assert installer is not None
    url = installer.authorize_url(state="s t", redirect_uri="https://relay.example/crm/hubspot/oauth/callback")
    assert url.startswith("https://app.hubspot.com/oauth/authorize?client_id=cid-1&")
    assert ("scope=oauth%20conversations.custom_channels.read%20conversations.custom_channels.write%20"
            "conversations.read%20crm.objects.contacts.read%20crm.objects.contacts.write%20files") in url
    assert "redirect_uri=https%3A%2F%2Frelay.example%2Fcrm%2Fhubspot%2Foauth%2Fcallback" in url and "state=s%20t" in url


# -- HubSpot's webhook bodies ----------------------------------------------------------------
def signed(body: Any, *, secret: str = SECRET, at: float = NOW) -> WebhookRequest:
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    stamp = str(int(at * 1000))
    source = b"POST" + URL.encode() + raw + stamp.encode()
    signature = base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()
    return WebhookRequest(method="POST", url=URL, body=raw, received_at=at + 0.5,
                          headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp})


@pytest.fixture
def inbox(redis_url: str) -> HubSpotInbox:
    made = adapter(redis_url, hubspot_client_id="cid", hubspot_client_secret=SECRET).inbox()
    assert isinstance(made, HubSpotInbox)
    return made


#: an agent's message from HubSpot's inbox, as the custom channels webhook delivers it
OUTGOING = {
    "type": "OUTGOING_CHANNEL_MESSAGE_CREATED", "portalId": "62515", "channelId": "1007", "eventId": "evt-1",
    "eventTimestamp": "2025-10-09T10:00:01.000Z", "channelIntegrationThreadIds": ["c2c-0123456789abcdef"],
    "message": {
        "id": "b8d7c1e0f4a84e2c9f0e5e7a", "type": "MESSAGE", "channelId": "1007", "channelAccountId": "55001",
        "conversationsThreadId": "8091234567", "createdAt": "2025-10-09T10:00:00.000Z", "createdBy": "A-9001",
        "direction": "OUTGOING", "truncationStatus": "NOT_TRUNCATED", "text": "Your appointment is at 10:00.",
        "richText": "<p>Your appointment is at 10:00.</p>",
        "client": {"clientType": "HUBSPOT"},
        "senders": [{"actorId": "A-9001", "name": "Deniz Koordinatör",
                     "deliveryIdentifier": {"type": "CHANNEL_SPECIFIC_OPAQUE_ID", "value": "chat2crm-147"}}],
        "recipients": [{"deliveryIdentifier": {"type": "CHANNEL_SPECIFIC_OPAQUE_ID",
                                               "value": "whatsapp:106540352242922:905321112233"}}],
        "attachments": [{"type": "FILE", "fileId": "184811", "name": "directions.pdf", "url": "https://f.example/d"}],
        "status": {"statusType": "SENT"},
    },
}


def test_an_agents_message_becomes_a_reply_to_the_conversation_it_names(inbox: HubSpotInbox) -> None:
    [reply] = inbox.parse_webhook(signed(OUTGOING))
    assert isinstance(reply, AgentReply)
    assert reply.crm_message_id == "b8d7c1e0f4a84e2c9f0e5e7a" and reply.thread == "c2c-0123456789abcdef"
    assert reply.conversation == "whatsapp:106540352242922:905321112233"
    assert reply.text == "Your appointment is at 10:00." and reply.agent == "Deniz Koordinatör"
    [file] = reply.attachments
    assert (file.crm_file_id, file.name, file.mime_type, file.url) == ("184811", "directions.pdf", "application/pdf",
                                                                       "https://f.example/d")
    assert reply.at is not None and reply.at.isoformat() == "2025-10-09T10:00:00+00:00"


def test_a_message_an_integration_published_is_not_sent_back(inbox: HubSpotInbox) -> None:
    echoed = json.loads(json.dumps(OUTGOING))
    echoed["message"]["client"] = {"clientType": "INTEGRATION", "integrationAppId": 4321}
    assert inbox.parse_webhook(signed(echoed)) == []


def test_other_channel_events_are_ignored(inbox: HubSpotInbox) -> None:
    event = {"type": "CHANNEL_ACCOUNT_CREATED", "portalId": "62515", "channelId": "1007", "eventId": "e2",
             "channelAccount": {"id": "55001", "inboxId": "147", "name": "Patients", "authorized": True}}
    assert inbox.parse_webhook(signed(event)) == []


#: the app's webhook batch: a thread closed, another property, and a contact event
BATCH = [
    {"eventId": 1001, "subscriptionId": 25, "portalId": 62515, "appId": 4321, "occurredAt": 1760000000000,
     "subscriptionType": "conversation.propertyChange", "attemptNumber": 0, "objectId": 8091234567,
     "propertyName": "status", "propertyValue": "CLOSED", "changeSource": "CONVERSATIONS", "changeFlag": "UPDATED"},
    {"eventId": 1002, "subscriptionId": 25, "portalId": 62515, "appId": 4321, "occurredAt": 1760000000001,
     "subscriptionType": "conversation.propertyChange", "attemptNumber": 0, "objectId": 8091234568,
     "propertyName": "assignedTo", "propertyValue": "A-9001", "changeSource": "CONVERSATIONS"},
    {"eventId": 1003, "subscriptionId": 26, "portalId": 62515, "appId": 4321, "occurredAt": 1760000000002,
     "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 50001,
     "propertyName": "firstname", "propertyValue": "Ayşe", "changeSource": "CRM_UI"},
]


def test_a_closed_thread_in_the_apps_batch_hands_the_conversation_back(inbox: HubSpotInbox) -> None:
    edited = FieldsEdited(crm_object="contacts", crm_id="50001", fields=["firstname"], by_person=True,
                          source="CRM_UI", at=datetime.fromtimestamp(1760000000.002, tz=UTC), event_id="1003")
    assert inbox.parse_webhook(signed(BATCH)) == [ThreadClosed(event_id="1001", crm_thread_id="8091234567"), edited]


@pytest.mark.parametrize("body", [b"not json", b"42", b'"text"', b"[1, 2]", b'{"no": "type"}'])
def test_a_body_that_is_not_hubspots_is_400(inbox: HubSpotInbox, body: bytes) -> None:
    with pytest.raises(WebhookRejectedError) as caught:
        inbox.parse_webhook(signed(body))
    assert caught.value.status == 400


def test_an_unsigned_or_stale_event_is_401_before_anything_is_read(inbox: HubSpotInbox) -> None:
    forged = signed(OUTGOING, secret="someone-else")
    stale = signed(OUTGOING, at=NOW - 301)
    stale = WebhookRequest(stale.method, stale.url, stale.headers, stale.body, received_at=NOW)
    for request in (forged, stale):
        with pytest.raises(WebhookRejectedError) as caught:
            inbox.parse_webhook(request)
        assert caught.value.status == 401


def test_the_timeline_reads_an_agents_reply_from_the_contact_property(redis_url: str) -> None:
    timeline = adapter(redis_url, hubspot_client_secret=SECRET).inbox()
    assert isinstance(timeline, HubSpotTimelineInbox)
    edit = {"eventId": 2001, "subscriptionId": 27, "portalId": 62515, "appId": 777, "occurredAt": 1760000000500,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 50001,
            "propertyName": "chat2crm_reply", "propertyValue": "Yes, bring your X-ray.", "changeSource": "CRM_UI",
            "sourceId": "userId:9001"}
    cleared = {**edit, "eventId": 2002, "occurredAt": 1760000000900, "propertyValue": "", "changeSource": "INTEGRATION"}
    reply, edited = timeline.parse_webhook(signed([edit, cleared, BATCH[2]]))  # and a person's edit of a name
    assert isinstance(reply, AgentReply) and isinstance(edited, FieldsEdited) and edited.fields == ["firstname"]
    assert reply == AgentReply(crm_message_id="50001:1760000000500", crm_contact_id="50001",
                               text="Yes, bring your X-ray.", agent="userId:9001", at=reply.at)
    assert reply.conversation is None and reply.at is not None
    redelivered = {**edit, "attemptNumber": 1}
    assert [r.crm_message_id for r in timeline.parse_webhook(signed([redelivered]))] == ["50001:1760000000500"]


def test_a_signed_body_with_nan_or_infinity_is_refused(inbox: HubSpotInbox) -> None:
    body = json.dumps(OUTGOING).replace('"portalId": "62515"', '"portalId": NaN').encode()
    with pytest.raises(WebhookRejectedError) as refused:
        inbox.parse_webhook(signed(body))
    assert refused.value.status == 400
    with pytest.raises(WebhookRejectedError):
        inbox.parse_webhook(signed(b'[{"subscriptionType": "conversation.propertyChange", "objectId": Infinity}]'))
