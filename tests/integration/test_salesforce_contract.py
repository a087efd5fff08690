"""Salesforce passes the adapters' shared contract, against the Salesforce emulator over HTTPS.

Twice: with the default Lead mapping (``mappings/salesforce.yaml``) and, unmodified, with the
Contact + Case mapping (``mappings/salesforce-case.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.salesforce import SESSION, SalesforceAdapter
from adapters.salesforce.schema import with_own_fields
from connector.mapping import Mapping, check_online, load_mapping, plan, required_schema
from core.errors import AuthError, FatalError, RetryableError
from emulators.salesforce import (
    ASSIGNMENT_RULE_ID,
    COORDINATOR_ID,
    LocalTLS,
    SalesforceCredentials,
    SalesforceEmulator,
    make_test_tls,
)
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import AdapterContract, AdapterEnv, make_lead
from tests.paths import MAPPINGS

pytestmark = pytest.mark.weight(45)  # seconds, about: see pytest_collection_modifyitems

LEAD_MAPPING = load_mapping(MAPPINGS / "salesforce.yaml", crm="salesforce")
CASE_MAPPING = load_mapping(MAPPINGS / "salesforce-case.yaml", crm="salesforce")
OPPORTUNITY_MAPPING = load_mapping(MAPPINGS / "salesforce-opportunity.yaml", crm="salesforce")
CREDENTIALS = SalesforceCredentials(client_id="3MVG9contract", client_secret="contract-secret")
#: the client gives up after a second (the emulator's time-out fault holds a call for 2 s, then writes; a
#: shorter wait times out real answers on a loaded machine)
FAST = {"timeout_seconds": 1.0, "connect_timeout_seconds": 1.0}


class Switch:
    """One HTTPS server for the module, serving whichever emulated org a test mounts (a fresh one per test:
    starting and stopping a server per test costs half a second each)."""

    def __init__(self, tls: LocalTLS) -> None:
        self.app: Any = None
        self.served = ServedApp(self, ssl_context=tls.ssl_context).start()
        self.url = self.served.url

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)

    def mount(self, emulator: SalesforceEmulator) -> Switch:
        self.app = emulator.app
        return self


class Org:
    """One emulated org served over HTTPS, and an adapter pointed at it."""

    def __init__(self, emulator: SalesforceEmulator, served: Switch, adapter: SalesforceAdapter,
                 mapping: Mapping) -> None:
        self.emulator = emulator
        self.served = served
        self.adapter = adapter
        self.mapping = mapping

    def close(self) -> None:
        self.served.app = None

    def kinds(self) -> dict[str, str]:
        record = self.mapping.record.object if self.mapping.record else self.mapping.contact.object
        return {"contact": self.mapping.contact.object, "record": record, "note": "Note", "task": "Task"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return make_test_tls(tmp_path_factory.mktemp("salesforce-tls"))


@pytest.fixture(scope="module")
def switch(tls: LocalTLS) -> Iterator[Switch]:
    server = Switch(tls)
    try:
        yield server
    finally:
        server.served.stop()


def provision(emulator: SalesforceEmulator, mapping: Mapping) -> None:
    """Create the custom fields the mapping needs and those the adapter adds, as an admin would (``crm setup``
    has its own test)."""
    kinds = {"bool": "boolean", "datetime": "datetime", "email": "email"}
    for obj, info in with_own_fields(required_schema(mapping)).objects.items():
        for name, wanted in info.fields.items():
            if name.endswith("__c") and name not in emulator.schema[obj]:
                emulator.add_field(obj, name, kind=kinds.get(wanted.type, "string"),
                                   external_id=wanted.unique, unique=wanted.unique)
        for stage_field, values in info.pipelines.items():  # the clinic's statuses, as `crm setup` adds them
            emulator.add_picklist_values(obj, stage_field, values)


def open_org(switch: Switch, tls: LocalTLS, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
             mapping: Mapping, **emulator_kwargs: Any) -> Org:
    # requests lets REQUESTS_CA_BUNDLE win over verify=: trust the test CA through it
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))
    emulator = SalesforceEmulator(CREDENTIALS, timeout_seconds=2.0, **emulator_kwargs)
    served = switch.mount(emulator)
    settings = make_settings("unix:///unused", salesforce_login_url=served.url, salesforce_client_id="3MVG9contract",
                             salesforce_client_secret="contract-secret")
    adapter = SalesforceAdapter.from_settings(settings, options={**mapping.crm_options(), **FAST}, redis=redis_client)
    provision(emulator, mapping)
    emulator.add_record("Campaign", {"Name": "hair-tr", "IsActive": True, "Status": "In Progress"})
    return Org(emulator, served, adapter, mapping)


@pytest.fixture
def org(request: pytest.FixtureRequest, switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    mapping = getattr(request.cls, "MAPPING", LEAD_MAPPING) if request.cls else LEAD_MAPPING
    current = open_org(switch, tls, redis_client, monkeypatch, mapping)
    try:
        yield current
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


@pytest.fixture
def env(org: Org) -> AdapterEnv:
    emulator = org.emulator
    kinds = org.kinds()
    record_object = kinds["record"]

    def state(reference: str) -> dict[str, Any]:
        record = next(r for r in emulator.records(record_object) if r.get("Chat2CRM_Reference__c") == reference)
        return {"stage": record.get("Status") or record.get("StageName"),
                "tags": str(record.get("Chat2CRM_Tags__c") or "").split(";")}

    return AdapterEnv(adapter=org.adapter, mapping=org.mapping, fail_next=emulator.fail_next,
                      count=lambda kind: emulator.count(kinds[kind]), record_state=state)


class TestSalesforceLeadContract(AdapterContract):
    """The shared contract with the default Lead mapping (one Lead per patient)."""

    MAPPING = LEAD_MAPPING

    def test_returning_patient_gets_a_new_record_on_the_same_contact(self, env: AdapterEnv) -> None:
        """In Lead mode the Lead *is* both the contact and the request record: a returning patient's new
        request updates the same Lead (never a second Lead a coordinator would have to merge) and adds a
        second Note. So: the same record id, one record, two notes (the contract's (1, 2, 2) would mean a
        duplicate Lead)."""
        first = self.sync(env, make_lead("#1042"))
        second = self.sync(env, make_lead("#1043"))
        assert second.contact.id == first.contact.id and not second.contact.created
        assert second.record is not None and first.record is not None and second.record.id == first.record.id
        assert not second.record.created
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 1, 2)
        assert env.record_state("1043")["stage"] == "New"

    def test_retry_after_a_failure_midway_completes_without_duplicates(self, env: AdapterEnv) -> None:
        """As the contract's, with Lead mode's honest counts (see the returning-patient test): one Lead, two Notes."""
        self.sync(env, make_lead())
        lead = make_lead("#1043")
        env.fail_next(1, "500")
        with pytest.raises(RetryableError):
            self.sync(env, lead)
        self.sync(env, lead)
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 1, 2)


class TestSalesforceCaseContract(AdapterContract):
    """The shared contract, unmodified, with the Contact + Case mapping."""

    MAPPING = CASE_MAPPING


class TestSalesforceOpportunityContract(AdapterContract):
    """The shared contract, unmodified, with the Contact + Opportunity mapping."""

    MAPPING = OPPORTUNITY_MAPPING


# -- calls per lead ------------------------------------------------------------------------------
@pytest.mark.parametrize("mapping", [LEAD_MAPPING, CASE_MAPPING, OPPORTUNITY_MAPPING],
                         ids=["lead", "case", "opportunity"])
def test_calls_per_lead(switch: Switch, tls: LocalTLS, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                        mapping: Mapping) -> None:
    current = open_org(switch, tls, redis_client, monkeypatch, mapping)
    try:
        adapter = current.adapter
        adapter.sync(plan(make_lead("#1000", sender="4915100000000"), mapping))
        new = adapter.sync(plan(make_lead("#1042"), mapping))
        returning = adapter.sync(plan(make_lead("#1043"), mapping))
        replay = adapter.sync(plan(make_lead("#1043"), mapping))
        handoff = adapter.sync(plan(make_lead("#1044", handoff_reason="patient_request"), mapping))
        assert (new.calls, returning.calls, replay.calls, handoff.calls) == (2, 2, 2, 2)
        # one note per request, one task, one campaign membership per person
        assert current.emulator.count("Note") == 4 and current.emulator.count("Task") == 1
        assert current.emulator.count("CampaignMember") == 2
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


# -- what the org sees ---------------------------------------------------------------------------
def test_the_lead_its_note_and_campaign_membership(org: Org) -> None:
    result = org.adapter.sync(plan(make_lead(handoff_reason="patient_request"), org.mapping))
    lead = org.emulator.records("Lead")[0]
    assert lead["Id"] == result.contact.id and lead["Chat2CRM_Contact_Key__c"] == "whatsapp:905321112233"
    assert lead["LastName"] == "Yılmaz" and lead["Company"] == "[not provided]" and lead["Phone"] == "+905321112233"
    assert lead["Chat2CRM_Reference__c"] == "1042" and lead["Chat2CRM_Transcript_URL__c"] == "https://relay.example/t/abc"
    assert lead["OwnerId"] == COORDINATOR_ID  # the org's assignment rule ran
    note = org.emulator.records("Note")[0]
    assert note["ParentId"] == lead["Id"] and "chat2crm:#1042:note" in note["Title"]
    assert "#1042" in note["Body"] and "<p>" not in note["Body"] and "https://relay.example/t/abc" in note["Body"]
    task = org.emulator.records("Task")[0]
    assert task["WhoId"] == lead["Id"] and task["Priority"] == "High" and task["OwnerId"] == COORDINATOR_ID
    members = org.emulator.records("CampaignMember")
    campaign = org.emulator.records("Campaign")[0]
    assert [(m["CampaignId"], m["LeadId"], m["Status"]) for m in members] == [(campaign["Id"], lead["Id"], "Responded")]
    composite = [c for c in org.emulator.calls if c["path"].endswith("/composite") and c["method"] == "POST"][-1]
    assert composite["auto_assign"] == "TRUE"
    view = org.emulator.agent_view()
    assert view["crm"] == "salesforce" and view["contacts"][0]["object"] == "Lead"
    assert view["extras"][0]["kind"] == "campaign member" and view["extras"][0]["title"] == "hair-tr"
    assert "<p>" not in view["notes"][0]["body"]


def test_status_is_set_on_creation_only_and_assignment_is_not_rerun(org: Org) -> None:
    mapping = org.mapping.model_copy(deep=True)
    assert mapping.record is not None
    mapping.record.statuses["new"] = "Working - Contacted"
    org.adapter.sync(plan(make_lead("#1042"), mapping))
    lead = org.emulator.records("Lead")[0]
    assert lead["Status"] == "Working - Contacted"
    with org.emulator.lock:  # an agent moves the Lead on and takes it over
        org.emulator.objects["Lead"][lead["Id"]].update(Status="Closed - Not Converted", OwnerId="005000000000009AAA")
    org.adapter.sync(plan(make_lead("#1043"), mapping))
    lead = org.emulator.records("Lead")[0]
    assert lead["Status"] == "Closed - Not Converted" and lead["OwnerId"] == "005000000000009AAA"
    assert lead["Chat2CRM_Reference__c"] == "1043"
    composite = [c for c in org.emulator.calls if c["path"].endswith("/composite") and c["method"] == "POST"][-1]
    assert composite["auto_assign"] == "FALSE"


def test_assignment_off_and_a_rule_id(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for option, header, owner in (("off", "FALSE", None), (ASSIGNMENT_RULE_ID, ASSIGNMENT_RULE_ID, COORDINATOR_ID)):
        mapping = LEAD_MAPPING.model_copy(update={"options": {**LEAD_MAPPING.options, "assignment": option}})
        current = open_org(switch, tls, redis_client, monkeypatch, mapping)
        try:
            current.adapter.sync(plan(make_lead(), mapping))
            composite = [c for c in current.emulator.calls if c["path"].endswith("/composite")][-1]
            assert composite["auto_assign"] == header
            lead = current.emulator.records("Lead")[0]
            assert (lead["OwnerId"] == owner) if owner else lead["OwnerId"] != COORDINATOR_ID
        finally:
            current.close()
        assert not current.emulator.violations


def test_case_mode_links_contact_case_note_task(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    current = open_org(switch, tls, redis_client, monkeypatch, CASE_MAPPING)
    try:
        result = current.adapter.sync(plan(make_lead(handoff_reason="patient_request"), CASE_MAPPING))
        contact = current.emulator.records("Contact")[0]
        case = current.emulator.records("Case")[0]
        assert result.record is not None and case["Id"] == result.record.id and case["ContactId"] == contact["Id"]
        assert case["Status"] == "New" and case["Origin"] == "Web" and case["Chat2CRM_Reference__c"] == "1042"
        note = current.emulator.records("Note")[0]
        task = current.emulator.records("Task")[0]
        assert note["ParentId"] == case["Id"] and (task["WhoId"], task["WhatId"]) == (contact["Id"], case["Id"])
        member = current.emulator.records("CampaignMember")[0]
        assert member["ContactId"] == contact["Id"]
        assert case["OwnerId"] == COORDINATOR_ID
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


def test_a_lead_a_person_created_is_adopted_by_phone(org: Org) -> None:
    existing = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "-", "Phone": "+905321112233"})
    other = org.emulator.add_record("Lead", {"LastName": "Kaya", "Company": "-", "Email": "p905321112233@example.com",
                                             "Chat2CRM_Contact_Key__c": "telegram:42"})
    result = org.adapter.sync(plan(make_lead(), org.mapping))
    assert result.contact.id == existing and not result.contact.created and org.emulator.count("Lead") == 2
    adopted = next(r for r in org.emulator.records("Lead") if r["Id"] == existing)
    assert adopted["Chat2CRM_Contact_Key__c"] == "whatsapp:905321112233"
    assert adopted["Status"] == "Open - Not Contacted"
    assert next(r for r in org.emulator.records("Lead") if r["Id"] == other)["LastName"] == "Kaya"  # someone else


def test_find_contact_returns_the_properties_asked_for(org: Org) -> None:
    org.adapter.sync(plan(make_lead(), org.mapping))
    found = org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), object="Lead",
                                     properties=["FirstName", "LastName", "Email", "Company"])
    assert found is not None and found.properties["FirstName"] == "Ayşe"
    assert found.properties["Email"] == "p905321112233@example.com" and found.properties["Company"] == "[not provided]"
    assert org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:1"), object="Lead") is None


def test_a_missing_campaign_does_not_fail_the_lead(org: Org) -> None:
    lead = make_lead()
    lead.last_touch.campaign = "no-such-campaign"
    result = org.adapter.sync(plan(lead, org.mapping))
    assert result.note is not None and org.emulator.count("CampaignMember") == 0 and org.emulator.count("Note") == 1


def test_an_existing_membership_is_not_an_error(org: Org) -> None:
    campaign = org.emulator.records("Campaign")[0]["Id"]
    org.adapter.sync(plan(make_lead(), org.mapping))
    redis_client = org.adapter.redis
    assert redis_client is not None
    redis_client.flushdb()  # the campaign id cache is gone: the membership is tried again
    again = org.adapter.sync(plan(make_lead("#1043"), org.mapping))
    assert again.note is not None and org.emulator.count("CampaignMember") == 1
    assert org.emulator.records("CampaignMember")[0]["CampaignId"] == campaign


def test_an_expired_session_is_refreshed_once(org: Org) -> None:
    org.adapter.sync(plan(make_lead(), org.mapping))
    grants = len(org.emulator.token_grants)
    org.emulator.expire_sessions()
    result = org.adapter.sync(plan(make_lead("#1043"), org.mapping))
    assert result.calls == 3 and len(org.emulator.token_grants) == grants + 1  # one refused call, one new token
    org.emulator.fail_next(1, "expired")
    org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), object="Lead")
    org.emulator.fail_next(2, "expired")
    with pytest.raises(AuthError) as info:
        org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), object="Lead")
    assert info.value.setting == "SALESFORCE_CLIENT_SECRET"


@pytest.mark.parametrize(("kind", "code"), [("duplicates", "DUPLICATES_DETECTED"), ("limit", "REQUEST_LIMIT_EXCEEDED")])
def test_vendor_faults(org: Org, kind: str, code: str) -> None:
    if kind == "duplicates":  # the duplicate rule blocks the Lead's creation inside the composite request
        org.emulator.fail_next(1, kind)
        with pytest.raises(FatalError) as fatal:
            org.adapter.sync(plan(make_lead(), org.mapping))
        assert fatal.value.details["errorCode"] == code and "Standard_Lead_Duplicate_Rule" in fatal.value.message
        assert org.emulator.count("Lead") == 0 and org.emulator.count("Note") == 0
        return
    org.emulator.fail_next(1, kind)
    with pytest.raises(RetryableError) as retry:
        org.adapter.sync(plan(make_lead(), org.mapping))
    assert retry.value.details["errorCode"] == code and (retry.value.retry_after or 0) >= 900


def test_the_org_api_usage_is_respected(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    current = open_org(switch, tls, redis_client, monkeypatch, LEAD_MAPPING, daily_limit=1000, used_today=880)
    try:
        current.adapter.sync(plan(make_lead(), LEAD_MAPPING))  # 880 + setup + 2 < 900
        used = current.emulator.used
        while current.emulator.used < 900:
            current.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
        with pytest.raises(RetryableError) as info:
            current.adapter.sync(plan(make_lead("#1043"), LEAD_MAPPING))
        assert info.value.retry_after and current.emulator.used == 900 and used < 900
    finally:
        current.close()


def test_setup_prints_what_an_admin_must_create_when_the_api_may_not(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))
    emulator = SalesforceEmulator(CREDENTIALS, can_customize=False)
    served = switch.mount(emulator)
    settings = make_settings("unix:///unused", salesforce_login_url=served.url,
                             salesforce_client_id="3MVG9contract", salesforce_client_secret="contract-secret")
    adapter = SalesforceAdapter.from_settings(settings, options=LEAD_MAPPING.crm_options(), redis=redis_client)
    dry = adapter.setup(required_schema(LEAD_MAPPING), apply=False)
    assert "would create Lead.Chat2CRM_Contact_Key__c: Text(255), External ID, Unique (case-insensitive)" in dry
    assert "ok Lead.LastName" in dry and any(line.startswith(
        "would add the Lead.Status values 'New', 'Reviewing', 'Planned', 'Done', 'On hold'") for line in dry)
    refused = adapter.setup(required_schema(LEAD_MAPPING), apply=True)
    assert any(line.startswith("TO DO Lead.Chat2CRM_Reference__c: create it in Setup") for line in refused)
    problems = check_online(LEAD_MAPPING, adapter)
    assert any("Lead.Chat2CRM_Contact_Key__c does not exist" in p.message for p in problems)
    emulator.can_customize = True
    done = adapter.setup(required_schema(LEAD_MAPPING), apply=True)
    assert "created Lead.Chat2CRM_Opted_Out__c: Checkbox" in done
    assert check_online(LEAD_MAPPING, adapter) == []
    assert adapter.check_credentials().ok
    assert not emulator.violations, emulator.violations


def test_jwt_bearer_and_password_flows(switch: Switch, tls: LocalTLS, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "server.key").write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))
    creds = SalesforceCredentials(client_id="3MVG9jwt", client_secret="s3cret", username="api@clinic.example",
                                  password="pw", security_token="TOKEN", jwt_public_key=public)
    emulator = SalesforceEmulator(creds)
    served = switch.mount(emulator)
    common = {"salesforce_login_url": served.url, "salesforce_client_id": "3MVG9jwt",
              "salesforce_username": "api@clinic.example"}
    jwt_settings = make_settings("unix:///unused", salesforce_private_key_file=tmp_path / "server.key", **common)
    jwt_adapter = SalesforceAdapter.from_settings(jwt_settings, redis=redis_client)
    assert jwt_adapter.auth_mode() == "jwt" and jwt_adapter.check_credentials().ok
    password = make_settings("unix:///unused", salesforce_client_secret="s3cret", salesforce_password="pw",
                             salesforce_security_token="TOKEN", **common)
    assert SalesforceAdapter.from_settings(password, redis=redis_client).check_credentials().ok
    wrong = make_settings("unix:///unused", salesforce_client_secret="s3cret", salesforce_password="pw",
                          **common)  # no security token appended
    report = SalesforceAdapter.from_settings(wrong, redis=redis_client).check_credentials()
    assert not report.ok and "SALESFORCE_SECURITY_TOKEN" in report.problems[0]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "other.key").write_bytes(other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    forged = make_settings("unix:///unused", salesforce_private_key_file=tmp_path / "other.key", **common)
    with pytest.raises(AuthError) as info:
        SalesforceAdapter.from_settings(forged, redis=redis_client).find_contact(key=("Chat2CRM_Contact_Key__c", "x"))
    assert info.value.setting == "SALESFORCE_PRIVATE_KEY_FILE"
    assert emulator.token_grants.count("urn:ietf:params:oauth:grant-type:jwt-bearer") == 2
    assert not emulator.violations, emulator.violations


def test_missing_credentials_name_the_setting(redis_client: redis.Redis) -> None:
    settings = make_settings("unix:///unused", salesforce_client_id="3MVG9x", salesforce_client_secret=None)
    with pytest.raises(AuthError) as info:
        SalesforceAdapter.from_settings(settings, redis=redis_client).find_contact(key=("K__c", "x"))
    assert info.value.setting == "SALESFORCE_CLIENT_SECRET"


def test_emulator_rejects_what_salesforce_would(org: Org) -> None:
    adapter = org.adapter
    adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")  # opens a session
    assert adapter.session.current is not None
    base = f"{org.served.url}/services/data/v62.0"
    headers = {"Authorization": f"Bearer {adapter.session.current.token}"}
    unknown = requests.post(f"{base}/sobjects/Lead", json={"LastName": "x", "Company": "y", "Nope__c": "1"},
                            headers=headers, timeout=5)
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "Sforce-Limit-Info" in unknown.headers
    missing = requests.post(f"{base}/sobjects/Lead", json={"LastName": "x"}, headers=headers, timeout=5)
    assert missing.json()[0] == {"message": "Required fields are missing: [Company]",
                                 "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Company"]}
    picklist = requests.post(f"{base}/sobjects/Lead", json={"LastName": "x", "Company": "y", "Status": "Hot"},
                             headers=headers, timeout=5)
    assert picklist.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    not_external = requests.patch(f"{base}/sobjects/Lead/LastName/x", json={"Company": "y"}, headers=headers,
                                  timeout=5)
    assert not_external.status_code == 404
    in_body = requests.patch(f"{base}/sobjects/Lead/Chat2CRM_Contact_Key__c/k1",
                             json={"LastName": "x", "Company": "y", "Chat2CRM_Contact_Key__c": "k1"},
                             headers=headers, timeout=5)
    assert in_body.status_code == 400
    created = requests.patch(f"{base}/sobjects/Lead/Chat2CRM_Contact_Key__c/k1", json={"LastName": "x",
                                                                                      "Company": "y"},
                             headers=headers, timeout=5)
    assert created.status_code == 201 and created.json()["created"] is True
    updated = requests.patch(f"{base}/sobjects/Lead/Chat2CRM_Contact_Key__c/k1", json={"LastName": "z"},
                             headers=headers, timeout=5)
    assert updated.status_code == 200 and updated.json()["created"] is False
    old = requests.patch(f"{org.served.url}/services/data/v45.0/sobjects/Lead/Chat2CRM_Contact_Key__c/k1",
                         json={"LastName": "z"}, headers=headers, timeout=5)
    assert old.status_code == 204
    bad_version = requests.get(f"{org.served.url}/services/data/62.0/limits", headers=headers, timeout=5)
    assert bad_version.status_code == 404
    query = requests.get(f"{base}/query", params={"q": "SELECT Id FROM Lead ORDER BY Name"}, headers=headers,
                         timeout=5)
    assert query.json()[0]["errorCode"] == "MALFORMED_QUERY"
    composite = requests.post(f"{base}/composite", json={"allOrNone": "yes", "compositeRequest": [
        {"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": "a-b"},
        {"method": "GET", "url": "/services/data/v62.0/sobjects/Lead/@{nothing.id}", "referenceId": "b"}]},
        headers=headers, timeout=5)
    assert composite.status_code == 400
    too_many = requests.post(f"{base}/composite", json={"compositeRequest": [
        {"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": f"r{i}"} for i in range(26)]},
        headers=headers, timeout=5)
    assert too_many.status_code == 400
    no_auth = requests.get(f"{base}/limits", timeout=5)
    assert no_auth.status_code == 401 and no_auth.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    versions = requests.get(f"{org.served.url}/services/data/", timeout=5).json()
    assert {"label": "v62.0", "url": "/services/data/v62.0", "version": "62.0"} in versions
    assert len(org.emulator.violations) >= 9
    org.emulator.violations.clear()


def test_all_or_none_rolls_back(org: Org) -> None:
    org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    assert org.adapter.session.current is not None
    response = requests.post(f"{org.served.url}/services/data/v62.0/composite", headers={
        "Authorization": f"Bearer {org.adapter.session.current.token}"}, json={"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Lead", "referenceId": "lead",
             "body": {"LastName": "x", "Company": "y"}},
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Note", "referenceId": "note",
             "body": {"ParentId": "@{lead.id}"}}]}, timeout=5)
    results = response.json()["compositeResponse"]
    assert [r["httpStatusCode"] for r in results] == [400, 400]
    assert results[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert results[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert org.emulator.count("Lead") == 0
    org.emulator.violations.clear()


def test_erasure_in_case_mode_takes_the_cases_notes_and_tasks(switch: Switch, tls: LocalTLS,
                                                              redis_client: redis.Redis,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    current = open_org(switch, tls, redis_client, monkeypatch, CASE_MAPPING)
    try:
        current.adapter.sync(plan(make_lead(handoff_reason="patient_request"), CASE_MAPPING))
        current.adapter.sync(plan(make_lead("#1043"), CASE_MAPPING))
        other = plan(make_lead("#1044", sender="4915100000000"), CASE_MAPPING)
        current.adapter.sync(other)
        report = current.adapter.erase_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"),
                                               mode="delete")
        assert report.found and len(report.erased) == 3  # two Cases, one Contact
        emulator = current.emulator
        assert (emulator.count("Contact"), emulator.count("Case"), emulator.count("Note"), emulator.count("Task"),
                emulator.count("CampaignMember")) == (1, 1, 1, 0, 1)
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


def test_anonymise_and_opt_out(org: Org) -> None:
    org.adapter.sync(plan(make_lead(), org.mapping))
    from connector.mapping import opt_out_plan

    write = opt_out_plan("whatsapp:905321112233", org.mapping)
    assert write is not None
    ref = org.adapter.upsert_contact(write)
    lead = org.emulator.records("Lead")[0]
    assert ref.id == lead["Id"] and lead["Chat2CRM_Opted_Out__c"] in (True, "true")
    from core.errors import SkippableError

    unknown = opt_out_plan("whatsapp:1", org.mapping)
    assert unknown is not None
    with pytest.raises(SkippableError):
        org.adapter.upsert_contact(unknown)
    report = org.adapter.erase_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), mode="anonymise")
    lead = org.emulator.records("Lead")[0]
    assert report.found and lead["LastName"] == "Erased" and lead["Phone"] is None and lead["Email"] is None
    assert lead["Chat2CRM_Contact_Key__c"] == f"erased:{lead['Id']}"


def test_a_task_for_a_lead_that_went_to_a_queue(org: Org) -> None:
    queue = "00G000000000001AAA"
    org.emulator.assignment_rules[ASSIGNMENT_RULE_ID] = queue
    lead = make_lead(handoff_reason="patient_request")
    with pytest.raises(RetryableError):  # a queue cannot own a Task: the next attempt gives it to the integration user
        org.adapter.sync(plan(lead, org.mapping))
    result = org.adapter.sync(plan(lead, org.mapping))
    assert result.task is not None and org.emulator.count("Task") == 1 and org.emulator.count("Lead") == 1
    assert org.emulator.records("Lead")[0]["OwnerId"] == queue and org.emulator.count("Note") == 1


def test_crm_setup_and_doctor_commands(switch: Switch, tls: LocalTLS, redis_url: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from connector.cli import main

    clinic = tmp_path / "clinic"
    assert CliRunner().invoke(main, ["init", str(clinic), "--crm", "salesforce"]).exit_code == 0
    emulator = SalesforceEmulator(CREDENTIALS)
    switch.mount(emulator)
    env = {"CHAT2CRM_CONFIG": str(clinic / "chat2crm.yaml"), "REDIS_URL": redis_url,
           "SALESFORCE_LOGIN_URL": switch.url, "SALESFORCE_CLIENT_ID": "3MVG9contract",
           "SALESFORCE_CLIENT_SECRET": "contract-secret", "REQUESTS_CA_BUNDLE": str(tls.ca_bundle)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    doctor = CliRunner().invoke(main, ["crm", "doctor"])
    assert doctor.exit_code == 1 and "Lead.Chat2CRM_Contact_Key__c does not exist" in doctor.output
    dry = CliRunner().invoke(main, ["crm", "setup", "--dry-run"])
    assert dry.exit_code == 0 and "would create Lead.Chat2CRM_Reference__c: Text(255), External ID, Unique" in dry.output
    done = CliRunner().invoke(main, ["crm", "setup"])
    assert done.exit_code == 0 and "created Lead.Chat2CRM_Contact_Key__c" in done.output, done.output
    doctor = CliRunner().invoke(main, ["crm", "doctor"])
    assert doctor.exit_code == 0, doctor.output
    assert not emulator.violations, emulator.violations


def test_workers_share_one_encrypted_session(org: Org, redis_client: redis.Redis) -> None:
    org.adapter.sync(plan(make_lead(), org.mapping))
    assert org.adapter.session.current is not None
    token = org.adapter.session.current.token
    sealed = redis_client.get(SESSION.key())
    assert sealed and token.encode() not in sealed and token.split("!")[1].encode() not in sealed
    grants = len(org.emulator.token_grants)
    # another rq work-horse (a fresh adapter in a fresh fork) uses the shared session: no token request
    second = SalesforceAdapter(org.adapter.credentials, options=org.mapping.crm_options(), redis=redis_client)
    result = second.sync(plan(make_lead("#1043"), org.mapping))
    assert result.calls == 2 and len(org.emulator.token_grants) == grants
    # other credentials cannot read it: they log in
    other = make_settings("unix:///unused", salesforce_login_url=org.served.url, salesforce_client_id="3MVG9contract",
                          salesforce_client_secret="rotated-secret")
    with pytest.raises(AuthError):
        SalesforceAdapter.from_settings(other, redis=redis_client).find_contact(key=("Chat2CRM_Contact_Key__c", "x"))
    assert len(org.emulator.token_grants) == grants + 1


def test_no_patient_data_in_logs_or_urls(org: Org, caplog: pytest.LogCaptureFixture) -> None:
    """Queries and upserts name the phone (in the contact key) and the e-mail: they travel in composite bodies,
    never in a URL that an HTTP debug log would print."""
    import logging

    from connector.mapping import opt_out_plan

    caplog.set_level(logging.DEBUG)
    org.adapter.sync(plan(make_lead(handoff_reason="patient_request"), org.mapping))
    org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), phone="+905321112233",
                             email="p905321112233@example.com", object="Lead")
    write = opt_out_plan("whatsapp:905321112233", org.mapping)
    assert write is not None
    org.adapter.upsert_contact(write)
    org.adapter.erase_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), mode="delete")
    logs = "\n".join(record.getMessage() + " " + str(record.__dict__) for record in caplog.records)
    urls = "\n".join(call["path"] for call in org.emulator.calls)
    for secret in ("905321112233", "5321112233", "example.com", "Ayşe", "Yılmaz"):
        assert secret not in logs and secret not in urls, secret


def test_duplicate_rules_alert_and_block(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two patients who share a name are two Leads: the standard rule's alert is acknowledged
    (``allowSave=true``); a rule set to block, or ``duplicate_alerts: stop``, stops the second."""
    namesake = make_lead("#1043", sender="4915100000000")
    for rule, option, leads in (("alert", "save", 2), ("alert", "stop", 1), ("block", "save", 1)):
        mapping = LEAD_MAPPING.model_copy(update={"options": {**LEAD_MAPPING.options, "duplicate_alerts": option}})
        current = open_org(switch, tls, redis_client, monkeypatch, mapping, duplicate_rule=rule)
        try:
            current.adapter.sync(plan(make_lead(), mapping))
            if leads == 2:
                current.adapter.sync(plan(namesake, mapping))
            else:
                with pytest.raises(FatalError) as info:
                    current.adapter.sync(plan(namesake, mapping))
                assert info.value.details["errorCode"] == "DUPLICATES_DETECTED"
            assert current.emulator.count("Lead") == leads
        finally:
            current.close()
        assert not current.emulator.violations


def test_opportunity_mode_links_the_contact_by_a_contact_role(switch: Switch, tls: LocalTLS,
                                                              redis_client: redis.Redis,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    current = open_org(switch, tls, redis_client, monkeypatch, OPPORTUNITY_MAPPING)
    try:
        adapter, emulator = current.adapter, current.emulator
        result = adapter.sync(plan(make_lead(handoff_reason="patient_request"), OPPORTUNITY_MAPPING))
        adapter.sync(plan(make_lead(handoff_reason="patient_request"), OPPORTUNITY_MAPPING))  # a replay
        contact, opportunity = emulator.records("Contact")[0], emulator.records("Opportunity")[0]
        assert result.record is not None and opportunity["Id"] == result.record.id
        assert opportunity["StageName"] == "New" and opportunity["CloseDate"] == "2027-03-10"
        roles = emulator.records("OpportunityContactRole")
        assert [(r["OpportunityId"], r["ContactId"], r["IsPrimary"]) for r in roles] == [
            (opportunity["Id"], contact["Id"], True)]
        task = emulator.records("Task")[0]
        assert (task["WhoId"], task["WhatId"]) == (contact["Id"], opportunity["Id"])
        assert emulator.records("Note")[0]["ParentId"] == opportunity["Id"]
        report = adapter.erase_contact(key=("Chat2CRM_Contact_Key__c", "whatsapp:905321112233"), mode="delete")
        assert report.found and (emulator.count("Contact"), emulator.count("Opportunity"),
                                 emulator.count("OpportunityContactRole"), emulator.count("Note")) == (0, 0, 0, 0)
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


def test_a_session_another_worker_refreshed_is_reused(org: Org, redis_client: redis.Redis) -> None:
    first = org.adapter
    second = SalesforceAdapter(first.credentials, options=org.mapping.crm_options(), redis=redis_client)
    first.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    second.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    grants = len(org.emulator.token_grants)
    org.emulator.expire_sessions()
    first.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")  # refused once, refreshed
    second.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")  # refused once, takes the shared one
    assert len(org.emulator.token_grants) == grants + 1


def test_rate_limit_and_random_faults(org: Org) -> None:
    org.emulator.rate_limit = (3, 60.0)
    for _ in range(3):
        org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    with pytest.raises(RetryableError) as info:
        org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    assert info.value.retry_after == 20.0 and info.value.details["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    org.emulator.rate_limit = None
    org.emulator.fault_rate, org.emulator.fault_kinds = 1.0, ["503"]
    with pytest.raises(RetryableError):
        org.adapter.find_contact(key=("Chat2CRM_Contact_Key__c", "x"), object="Lead")
    org.emulator.fault_rate = 0.0
    statuses = [c["status"] for c in requests.get(f"{org.served.url}/_emulator/calls", timeout=5).json()]
    assert statuses[-2:] == [403, 503]
    view = requests.get(f"{org.served.url}/_emulator/view", timeout=5).json()
    assert view["crm"] == "salesforce" and view["records"] == []


def test_a_lead_typed_with_a_national_mobile_number_is_adopted(org: Org) -> None:
    existing = org.emulator.add_record("Lead", {"LastName": "Yilmaz", "Company": "-", "MobilePhone": "0532 111 22 33"})
    lead = make_lead()
    lead.contact.email = None
    result = org.adapter.sync(plan(lead, org.mapping))
    assert result.contact.id == existing and org.emulator.count("Lead") == 1


def test_forget_finds_nothing_to_delete_and_no_key_holds_the_patient(org: Org, redis_client: redis.Redis) -> None:
    """Salesforce's query answers every look-up: the adapter caches no person's identity (the campaign's id, the
    shared session and the org's API usage only)."""
    org.adapter.sync(plan(make_lead(handoff_reason="patient_request"), org.mapping))
    assert org.adapter.forget(["whatsapp:905321112233", "+905321112233", "p905321112233@example.com"]) == 0
    keys = [k.decode() for k in redis_client.scan_iter("c2c:salesforce:*")]
    assert keys and not [k for k in keys if "905321112233" in k or "example.com" in k]
    values = b"".join(redis_client.dump(k) or b"" for k in keys)
    assert b"905321112233" not in values


def test_the_login_flows_are_simple_salesforces(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session logs in through simple-salesforce's SalesforceLogin (client credentials: HTTP Basic)."""
    import simple_salesforce

    called: list[dict[str, object]] = []
    real = simple_salesforce.SalesforceLogin

    def spy(**kwargs: object) -> object:
        called.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(simple_salesforce, "SalesforceLogin", spy)
    assert org.adapter.check_credentials().ok
    assert called and called[0]["consumer_key"] == "3MVG9contract" and "username" not in called[0]
    assert org.emulator.token_grants[-1] == "client_credentials"
