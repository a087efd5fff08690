"""The Salesforce inbox's REST side against the emulated org with the chat2crm package, over HTTPS: publishing
a thread's messages (idempotent, with files and lookups), delivery reports, agents' files through the relay's
signed link, the set-up and diagnosis lines, and what the adapter's ``inbox`` option selects. Calls are counted
(the numbers ``docs/agents.md`` states).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from adapters.base import Deployment
from adapters.inbox import FileLinks
from adapters.salesforce import SalesforceAdapter
from adapters.salesforce.inbox import SalesforceInbox
from connector.app import create_app
from connector.runtime import Runtime, set_current_runtime
from core.errors import FatalError, WebhookRejectedError
from core.inbox import DeliveryReport, FileRef, ThreadMessage, thread_id
from tests.conftest import TEST_SECRETS, make_settings
from tests.e2e.conftest import write_config
from tests.integration.test_salesforce_inbox_org import Org, running_org
from tests.paths import MAPPINGS

KEY = "whatsapp:106540352242922:905321112233"
SECRET = TEST_SECRETS["transcript_secret"]


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    with running_org(tmp_path / "tls") as found:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(found.tls.ca_bundle))
        yield found
    assert not found.emulator.violations, found.emulator.violations


def adapter_for(org: Org, redis_client: redis.Redis, **options: Any) -> SalesforceAdapter:
    settings = make_settings("unix:///unused", **org.settings)
    adapter = SalesforceAdapter.from_settings(settings, options=options, redis=redis_client)
    adapter.deployment = Deployment(public_base_url="https://relay.example", link_secret=settings.transcript_secret)
    return adapter


@pytest.fixture
def inbox(org: Org, redis_client: redis.Redis) -> SalesforceInbox:
    found = adapter_for(org, redis_client).inbox()
    assert isinstance(found, SalesforceInbox)
    return found


def message(org: Org, message_id: str, text: str, *, contact: str | None = None, files: list[FileRef] | None = None,
            direction: str = "incoming", reference: str | None = "#1042") -> ThreadMessage:
    return ThreadMessage(id=message_id, thread=thread_id(KEY), conversation=KEY, channel="whatsapp",
                         direction=direction, text=text, at=datetime.now(UTC), identity="whatsapp:905321112233",
                         contact_id=contact, reference=reference, attachments=files or [])  # type: ignore[arg-type]


def calls(inbox: SalesforceInbox) -> int:
    return inbox.session.calls


def test_a_message_is_published_once_however_often_it_is_published(org: Org, inbox: SalesforceInbox) -> None:
    lead = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    inbox.session.login()
    before = calls(inbox)
    first = inbox.publish(message(org, "wamid.HBgM1", "Merhaba, fiyat alabilir miyim?", contact=lead))
    assert calls(inbox) == before + 1  # one composite call
    again = inbox.publish(message(org, "wamid.HBgM1", "Merhaba, fiyat alabilir miyim?", contact=lead))
    assert again.crm_message_id == first.crm_message_id
    (record,) = org.emulator.messages(lead)
    assert record["Id"] == first.crm_message_id and record["External_Id__c"] == "wamid.HBgM1"
    assert (record["Direction__c"], record["Type__c"], record["Status__c"], record["Channel__c"]) == (
        "Inbound", "Message", "Received", "whatsapp")
    assert record["Conversation_Key__c"] == thread_id(KEY) and "905321112233" not in record["Conversation_Key__c"]
    assert record["Body__c"] == "Merhaba, fiyat alabilir miyim?" and record.get("Contact__c") is None
    # the bot's side of the history is the clinic's
    bot = inbox.publish(message(org, "h-" + "1" * 32, "Size nasıl yardımcı olabilirim?", contact=lead,
                                direction="outgoing"))
    assert org.emulator.objects["Chat2CRM_Message__c"][bot.crm_message_id]["Direction__c"] == "Outbound"
    assert org.emulator.objects["Chat2CRM_Message__c"][bot.crm_message_id]["Status__c"] == "Received"


def test_a_patients_file_is_stored_once_and_linked_once(org: Org, inbox: SalesforceInbox) -> None:
    contact = org.emulator.add_record("Contact", {"LastName": "Müller"})
    inbox.session.login()
    before = calls(inbox)
    stored = inbox.upload("photo", "image/jpeg", b"\xff\xd8\xff\xe0 profile \xff\xd9")
    assert calls(inbox) == before + 1 and stored.name == "photo.jpg" and stored.crm_file_id
    sent = message(org, "wamid.PHOTO", "Profilden", contact=contact, files=[stored])
    published = inbox.publish(sent)
    inbox.publish(sent)  # a retry after the CRM answered: the link exists, nothing doubles
    assert calls(inbox) == before + 3
    links = [link for link in org.emulator.records("ContentDocumentLink")
             if link["LinkedEntityId"] == published.crm_message_id]
    assert len(links) == 1
    (record,) = org.emulator.messages(contact)
    assert record["files"] == ["photo"] and record["Contact__c"] == contact
    assert org.emulator.version_data(stored.crm_file_id or "") == b"\xff\xd8\xff\xe0 profile \xff\xd9"


def test_messages_are_linked_to_the_leads_case_when_the_mapping_writes_cases(org: Org,
                                                                            redis_client: redis.Redis) -> None:
    org.emulator.add_field("Case", "Chat2CRM_Reference__c", external_id=True, unique=True)
    contact = org.emulator.add_record("Contact", {"LastName": "Müller"})
    case = org.emulator.add_record("Case", {"Subject": "Hair", "ContactId": contact, "Chat2CRM_Reference__c": "1042"})
    inbox = adapter_for(org, redis_client, inbox_case_reference="Chat2CRM_Reference__c").inbox()
    assert inbox is not None
    published = inbox.publish(message(org, "wamid.CASE", "Hallo", contact=contact, reference="#1042"))
    record = org.emulator.objects["Chat2CRM_Message__c"][published.crm_message_id]
    assert (record["Contact__c"], record["Case__c"]) == (contact, case)
    with pytest.raises(FatalError, match="Foreign key external ID: 9999"):  # no such Case: said, not retried
        inbox.publish(message(org, "wamid.NOCASE", "Hallo", contact=contact, reference="#9999"))
    org.emulator.violations.clear()


def test_delivery_reports_are_written_to_the_reply(org: Org, inbox: SalesforceInbox) -> None:
    lead = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    inbox.publish(message(org, "wamid.IN", "Merhaba", contact=lead))
    reply = org.emulator.add_agent_reply(lead, "Merhaba Ayşe Hanım")
    before = calls(inbox)
    inbox.report(DeliveryReport(crm_message_id=reply, status="sent", channel_message_ids=["wamid.OUT"]))
    assert calls(inbox) == before + 1  # one PATCH per report
    record = org.emulator.objects["Chat2CRM_Message__c"][reply]
    assert record["Status__c"] == "Sent" and record["Sent_At__c"].endswith("Z") and record.get("Error__c") is None
    inbox.report(DeliveryReport(crm_message_id=reply, status="read"))
    assert record["Status__c"] == "Read"
    failed = org.emulator.add_agent_reply(lead, "Are you still interested?")
    inbox.report(DeliveryReport(crm_message_id=failed, status="failed", code="131047",
                                reason="Re-engagement message: more than 24 hours since the patient last wrote"))
    record = org.emulator.objects["Chat2CRM_Message__c"][failed]
    assert record["Status__c"] == "Failed"
    assert record["Error__c"] == "Re-engagement message: more than 24 hours since the patient last wrote (131047)"


def test_an_agents_file_reaches_the_channel_through_the_relays_signed_link(
        org: Org, redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    lead = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    version = org.emulator.add_file("fiyat listesi.pdf", b"%PDF-1.4 price list\n%%EOF\n")
    config = write_config(tmp_path, crm="salesforce", mapping=str(MAPPINGS / "salesforce.yaml"))
    runtime = Runtime(make_settings(redis_url, chat2crm_config=config, public_base_url="https://relay.example",
                                    **org.settings), redis_client=redis_client)
    set_current_runtime(runtime)
    try:
        inbox = runtime.inbox
        assert isinstance(inbox, SalesforceInbox)
        link = inbox.file_url(FileRef(crm_file_id=version, name="fiyat listesi.pdf", mime_type="application/pdf"))
        assert link.startswith("https://relay.example/crm/salesforce/files/") and version not in link
        client = create_app({"TESTING": True}, runtime=runtime).test_client()
        served = client.get(link.removeprefix("https://relay.example"))
        assert served.status_code == 200 and served.data == b"%PDF-1.4 price list\n%%EOF\n"
        assert served.mimetype == "application/pdf" and "fiyat%20listesi.pdf" in served.headers["Content-Disposition"]
        # a forged link, a link for another CRM, an expired link: nothing is served
        assert client.get(link.removeprefix("https://relay.example")[:-3] + "abc").status_code == 404
        other = FileLinks(SECRET, base_url="https://relay.example", crm="hubspot").url(FileRef(crm_file_id=version))
        assert client.get(other.replace("/crm/hubspot/", "/crm/salesforce/").removeprefix(
            "https://relay.example")).status_code == 404

        class Old(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - 3600

        old = URLSafeTimedSerializer(SECRET, salt=FileLinks.SALT, signer=Old).dumps(
            {"crm": "salesforce", "id": version, "name": "x.pdf", "type": "application/pdf"})
        assert client.get(f"/crm/salesforce/files/{old}").status_code == 404
        # a file gone from Salesforce: not found, and said in the log
        gone = inbox.file_url(FileRef(crm_file_id="068000000000999AAA", name="gone.pdf"))
        assert client.get(gone.removeprefix("https://relay.example")).status_code == 404
        org.emulator.violations.clear()
        assert org.emulator.count("Lead") == 1 and lead
    finally:
        set_current_runtime(None)


def test_there_are_no_webhooks(inbox: SalesforceInbox) -> None:
    from adapters.inbox import WebhookRequest

    with pytest.raises(WebhookRejectedError) as refused:
        inbox.parse_webhook(WebhookRequest(method="POST", url="https://relay.example/crm/salesforce/webhooks",
                                           headers={}, body=b"{}", received_at=time.time()))
    assert refused.value.status == 404


def test_setup_and_doctor_say_what_the_admin_must_do(tmp_path: Path, redis_client: redis.Redis,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.mapping import load_mapping, required_schema

    mapping = load_mapping(MAPPINGS / "salesforce.yaml", crm="salesforce")
    with running_org(tmp_path / "bare", package=False) as bare:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bare.tls.ca_bundle))
        adapter = adapter_for(bare, redis_client)
        assert adapter.inbox() is None  # auto: no package, no inbox
        assert isinstance(adapter_for(bare, redis_client, inbox="package").inbox(), SalesforceInbox)
        assert adapter_for(bare, redis_client, inbox="none").inbox() is None
        lines = adapter.setup(required_schema(mapping), apply=False)
        assert "inbox: the chat2crm package is deployed with the Salesforce CLI: " \
               "`sf project deploy start --source-dir crm/salesforce/force-app`" in lines
        assert any(line.startswith("inbox: MISSING the chat2crm package is not deployed") for line in lines)
        bare.emulator.install_package(assign_integration=False)
        lines = adapter.setup(required_schema(mapping), apply=False)  # deployed now: seen at once
        assert "inbox: ok Chat2CRM_Message__c and its 13 fields" in lines
        assert any("MISSING the integration user does not hold the permission set Chat2CRM_Integration" in line
                   for line in lines)
        assert isinstance(adapter.inbox(), SalesforceInbox)
    with running_org(tmp_path / "ready") as ready:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ready.tls.ca_bundle))
        inbox = adapter_for(ready, redis_client).inbox()
        assert inbox is not None
        lines = inbox.check()
        assert not [line for line in lines if "MISSING" in line], lines
        assert any(line.startswith("inbox: ok change events of Chat2CRM_Message__c reachable") for line in lines)
        assert "inbox: ok the integration user holds Chat2CRM_Integration" in lines
