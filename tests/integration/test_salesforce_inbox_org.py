"""An emulated org with the chat2crm package, served as Salesforce serves it (REST over HTTPS, the Pub/Sub
API over gRPC with TLS, one test certificate authority), for the Salesforce inbox's tests; and the checks
that the emulated package, Files and change events behave as the relay relies on them to.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest

from adapters.salesforce.pubsub import pubsub_api_pb2 as pb
from adapters.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc
from emulators.salesforce import COORDINATOR_ID, ORG_ID, LocalTLS, SalesforceCredentials, SalesforceEmulator, make_test_tls
from emulators.salesforce.pubsub_server import PubSubServer
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS

TOPIC = "/data/Chat2CRM_Message__ChangeEvent"
CREDENTIALS = SalesforceCredentials(client_id=TEST_SECRETS["salesforce_client_id"],
                                    client_secret=TEST_SECRETS["salesforce_client_secret"])


@dataclass
class Org:
    """An emulated org with the package, its HTTPS and gRPC servers, and the settings that point at them."""

    emulator: SalesforceEmulator
    served: ServedApp
    pubsub: PubSubServer
    tls: LocalTLS
    #: the relay's settings for this org (lower-case names, as ``make_settings`` takes them)
    settings: dict[str, Any]

    @property
    def url(self) -> str:
        return self.served.url

    def token(self) -> str:
        """A fresh access token of the integration user (for raw calls)."""
        import requests

        answer = requests.post(f"{self.url}/services/oauth2/token", timeout=5, verify=str(self.tls.ca_bundle), data={
            "grant_type": "client_credentials", "client_id": CREDENTIALS.client_id,
            "client_secret": CREDENTIALS.client_secret})
        return str(answer.json()["access_token"])


@contextmanager
def running_org(directory: Path, *, keepalive_seconds: float = 0.3, idle_seconds: float = 60.0,
                **emulator_kwargs: Any) -> Iterator[Org]:
    """Start an org with the package (``package=False`` in ``emulator_kwargs`` for one without)."""
    tls = make_test_tls(directory)
    emulator = SalesforceEmulator(CREDENTIALS, **{"package": True, "timeout_seconds": 2.0, **emulator_kwargs})
    served = ServedApp(emulator.app, ssl_context=tls.ssl_context).start()
    pubsub = PubSubServer(emulator, tls, keepalive_seconds=keepalive_seconds, idle_seconds=idle_seconds).start()
    settings = {"salesforce_login_url": served.url, "salesforce_instance_url": served.url,
                "salesforce_pubsub_endpoint": pubsub.address}
    try:
        yield Org(emulator, served, pubsub, tls, settings)
    finally:
        pubsub.stop()
        served.stop()


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    with running_org(tmp_path / "tls") as found:
        yield found
    assert not found.emulator.violations, found.emulator.violations


# -- the emulated package, as the relay relies on it ---------------------------------------------------------
def _subscribe(org: Org, token: str, first: Any) -> Any:
    channel = grpc.secure_channel(org.pubsub.address, grpc.ssl_channel_credentials(root_certificates=org.tls.ca_pem))
    stub = pb_grpc.PubSubStub(channel)
    metadata = (("accesstoken", token), ("instanceurl", org.url), ("tenantid", ORG_ID))
    return channel, stub, stub.Subscribe(iter([first]), metadata=metadata), metadata


def test_an_agent_reply_with_files_is_a_draft_then_new_and_its_events_say_so(org: Org) -> None:
    lead = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    org.emulator._put("Chat2CRM_Message__c", {"Direction__c": "Inbound", "Lead__c": lead, "Channel__c": "whatsapp",
                                             "Conversation_Key__c": "c2c-" + "a" * 32, "Status__c": "Received"})
    reply = org.emulator.add_agent_reply(lead, "Fiyat listemiz ekte.", files=[("fiyat.pdf", b"%PDF-1.4")])
    (shown,) = [m for m in org.emulator.messages(lead) if m["Id"] == reply]
    assert shown["Status__c"] == "New" and shown["files"] == ["fiyat"]
    assert shown["Conversation_Key__c"] == "c2c-" + "a" * 32 and shown["Lead__c"] == lead
    events = org.emulator.change_events(TOPIC)
    channel = org.emulator.channels[TOPIC]
    names = [f["name"] for f in channel.schema["fields"]]
    created, updated = events[-2:]
    assert created.header["changeType"] == "CREATE" and created.header["changedFields"] == []
    assert created.fields["Status__c"] == "Draft" and created.header["commitUser"] == COORDINATOR_ID
    assert updated.header["changeType"] == "UPDATE" and set(updated.fields) == {
        "Status__c", "LastModifiedDate", "LastModifiedById"}
    bits = int(updated.header["changedFields"][0], 16)
    assert {names[n] for n in range(len(names)) if bits >> n & 1} == {"Status__c", "LastModifiedDate",
                                                                       "LastModifiedById"}
    decoded = fastavro.schemaless_reader(io.BytesIO(updated.payload), fastavro.parse_schema(channel.schema))
    assert decoded["Status__c"] == "New" and decoded["Body__c"] is None  # unchanged fields are null
    assert created.header["transactionKey"] != updated.header["transactionKey"]
    assert org.emulator.version_data(org.emulator.objects["ContentDocument"][
        next(iter(org.emulator.objects["ContentDocument"]))]["LatestPublishedVersionId"]) == b"%PDF-1.4"


def test_the_pubsub_api_refuses_what_salesforce_refuses(org: Org) -> None:
    token = org.token()
    first = pb.FetchRequest(topic_name=TOPIC, replay_preset=pb.ReplayPreset.CUSTOM,
                            replay_id=(5).to_bytes(8, "big"), num_requested=1)
    channel, stub, call, metadata = _subscribe(org, token, first)
    with pytest.raises(grpc.RpcError) as refused:
        list(call)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata())["error-code"] == \
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    assert "rpcId: " in refused.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetTopic(pb.TopicRequest(topic_name="/data/NothingChangeEvent"), metadata=metadata)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    org.emulator.expire_sessions()
    with pytest.raises(grpc.RpcError) as expired:
        stub.GetTopic(pb.TopicRequest(topic_name=TOPIC), metadata=metadata)
    assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(expired.value.trailing_metadata())["error-code"] == "sfdc.platform.eventbus.grpc.service.auth.error"
    channel.close()


def test_a_file_is_read_back_and_linked_once(org: Org) -> None:
    import requests

    token = org.token()
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{org.url}/services/data/v62.0"
    made = requests.post(f"{base}/sobjects/ContentVersion", headers=headers, timeout=5, verify=str(org.tls.ca_bundle),
                         json={"PathOnClient": "photo.jpg", "VersionData": base64.b64encode(b"\xff\xd8").decode()})
    version = made.json()["id"]
    data = requests.get(f"{base}/sobjects/ContentVersion/{version}/VersionData", headers=headers, timeout=5,
                        verify=str(org.tls.ca_bundle))
    assert data.content == b"\xff\xd8" and data.headers["Content-Type"] == "application/octet-stream"
    assert not org.emulator.violations
