"""The clinic's statuses in Salesforce: `crm setup` adds the status scheme's values to Lead Status, Case Status and
Opportunity Stage through the Metadata API (simple-salesforce's client, SOAP), in the clinic's language and the
scheme's order, after the org's own values, with the scheme's closed / won / converted flags.

Against the Salesforce emulator's Metadata API endpoint over HTTPS (the WSDL's types checked, Salesforce's
result shapes and faults), with real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from connector.mapping import Mapping, check_online, load_mapping, plan, required_schema
from emulators.salesforce import LocalTLS
from emulators.salesforce.metadata_api import MD, SOAP, XSI
from tests.contract import make_lead
from tests.integration.test_salesforce_contract import (  # noqa: F401 - the module's fixtures
    Org,
    Switch,
    open_org,
    switch,
    tls,
)
from tests.paths import MAPPINGS

TR = ["Yeni", "İnceleniyor", "Planlandı", "Tamamlandı", "Beklemede"]


def clinic(name: str, language: str = "tr") -> Mapping:
    return load_mapping(MAPPINGS / name, crm="salesforce", language=language)


@pytest.fixture
def lead_org(switch: Switch, tls: LocalTLS, redis_client: redis.Redis,  # noqa: F811
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """An org with the mapping's custom fields and its English statuses; the tests set it up for a Turkish clinic."""
    current = open_org(switch, tls, redis_client, monkeypatch, clinic("salesforce.yaml", "en"))
    try:
        yield current
    finally:
        current.close()
    assert not current.emulator.violations, current.emulator.violations


def soap_calls(org: Org) -> list[str]:
    return [c["path"] for c in org.emulator.calls if c["path"].startswith("/services/Soap/m/")]


def test_setup_adds_the_clinics_lead_statuses_in_its_language_and_keeps_the_orgs_own(lead_org: Org) -> None:
    org, mapping = lead_org, clinic("salesforce.yaml")
    org.emulator.add_picklist_values("Lead", "Status", ["Nurturing"])  # the org's own value, added in Setup
    before = org.emulator.value_set("LeadStatus")
    assert any("Yeni" in p.message for p in check_online(mapping, org.adapter))  # doctor: not there yet

    dry = org.adapter.setup(required_schema(mapping), apply=False)
    assert "would add the Lead.Status values 'Yeni', 'İnceleniyor', 'Planlandı', 'Tamamlandı', 'Beklemede' " \
           "(standard value set LeadStatus, after the org's own values; none converted)" in dry
    assert org.emulator.value_set("LeadStatus") == before and soap_calls(org) == []  # the dry run changed nothing

    lines = org.adapter.setup(required_schema(mapping), apply=True)
    assert any(line.startswith("added the Lead.Status values 'Yeni', 'İnceleniyor'") for line in lines), lines
    after = org.emulator.value_set("LeadStatus")
    assert after[:len(before)] == before  # every value the org had, untouched, first
    assert [(v["fullName"], v["label"], v["default"], v["converted"]) for v in after[len(before):]] == [
        (name, name, False, False) for name in TR]
    assert len(soap_calls(org)) == 2  # readMetadata, updateMetadata
    assert not [p for p in check_online(mapping, org.adapter) if "Status" in p.message]  # doctor passes

    again = org.adapter.setup(required_schema(mapping), apply=True)  # idempotent: nothing to add, no SOAP call
    assert [line for line in again if "Lead.Status" in line] == [f"ok Lead.Status value {v!r}" for v in TR]
    assert org.emulator.value_set("LeadStatus") == after and len(soap_calls(org)) == 2

    result = org.adapter.sync(plan(make_lead(), mapping))  # a lead lands with the clinic's first status
    lead = next(r for r in org.emulator.records("Lead") if r["Id"] == result.contact.id)
    assert lead["Status"] == "Yeni"
    described = org.adapter.describe(["Lead"]).objects["Lead"].pipelines["Status"]
    assert described[-5:] == TR and "Nurturing" in described and "Open - Not Contacted" in described


@pytest.mark.parametrize(("name", "field", "value_set", "flags"), [
    ("salesforce-case.yaml", "Status", "CaseStatus",
     [{"closed": False}, {"closed": False}, {"closed": False}, {"closed": True}, {"closed": False}]),
    ("salesforce-opportunity.yaml", "StageName", "OpportunityStage", [
        {"closed": False, "won": False, "probability": 10, "forecastCategory": "Pipeline"},
        {"closed": False, "won": False, "probability": 20, "forecastCategory": "Pipeline"},
        {"closed": False, "won": False, "probability": 60, "forecastCategory": "BestCase"},
        {"closed": True, "won": True, "probability": 100, "forecastCategory": "Closed"},
        {"closed": True, "won": False, "probability": 0, "forecastCategory": "Omitted"}]),
])
def test_case_and_opportunity_values_follow_the_scheme(switch: Switch, tls: LocalTLS,  # noqa: F811
                                                       redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                                       name: str, field: str, value_set: str,
                                                       flags: list[dict[str, object]]) -> None:
    mapping = clinic(name, "de")
    org = open_org(switch, tls, redis_client, monkeypatch, clinic(name, "en"))
    try:
        before = org.emulator.value_set(value_set)
        lines = org.adapter.setup(required_schema(mapping), apply=True)
        sobject = mapping.record.object if mapping.record else ""
        assert any(line.startswith(f"added the {sobject}.{field} values 'Neu', 'In Prüfung'") for line in lines)
        after = org.emulator.value_set(value_set)
        assert after[:len(before)] == before
        added = after[len(before):]
        assert [v["fullName"] for v in added] == ["Neu", "In Prüfung", "Geplant", "Erledigt", "Zurückgestellt"]
        assert [{k: v[k] for k in f} for v, f in zip(added, flags, strict=True)] == flags
        assert not [p for p in check_online(mapping, org.adapter) if field in p.message]
        result = org.adapter.sync(plan(make_lead(), mapping))
        assert result.record is not None
        record = next(r for r in org.emulator.records(sobject) if r["Id"] == result.record.id)
        assert record[field] == "Neu"
    finally:
        org.close()
    assert not org.emulator.violations, org.emulator.violations


def test_a_refused_metadata_call_is_one_clear_line(lead_org: Org) -> None:
    org = lead_org
    org.emulator.can_customize = False  # no Customize Application / Modify Metadata for the integration user
    lines = org.adapter.setup(required_schema(clinic("salesforce.yaml")), apply=True)
    status = [line for line in lines if "Lead.Status" in line]
    assert len(status) == 1 and "\n" not in status[0]
    assert status[0].startswith("TO DO add the Lead.Status values 'Yeni'")
    assert "INSUFFICIENT_ACCESS: use of the Metadata API requires a user with the ModifyAllData or " \
           "ModifyMetadata permissions" in status[0]
    assert "Setup → Object Manager → Lead → Fields & Relationships → Lead Status → Values → New" in status[0]
    assert "Yeni" not in org.emulator.value_set("LeadStatus")[-1]["fullName"]


def test_an_expired_session_is_refreshed_once(lead_org: Org) -> None:
    org = lead_org
    org.emulator.fail_next(1, "expired", after=1)  # the describe passes, the session expires at readMetadata
    lines = org.adapter.setup(required_schema(clinic("salesforce.yaml")), apply=True)
    assert any(line.startswith("added the Lead.Status values") for line in lines), lines
    assert len(soap_calls(org)) == 3  # the refused read, the read again with a new session, the update


# -- the emulator's Metadata API, as Salesforce answers it -----------------------------------------------
def envelope(body: str, session: str | None) -> bytes:
    header = f"<soapenv:Header><m:SessionHeader><m:sessionId>{session}</m:sessionId></m:SessionHeader>" \
             "</soapenv:Header>" if session is not None else ""
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:m="{MD}" xmlns:xsi="{XSI}">{header}'
            f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


def post(org: Org, body: bytes, ca: Path) -> requests.Response:
    return requests.post(f"{org.served.url}/services/Soap/m/62.0", data=body, timeout=5, verify=str(ca),
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})


def test_the_emulator_answers_faults_and_save_errors_as_salesforce(lead_org: Org, tls: LocalTLS) -> None:  # noqa: F811
    org = lead_org
    token = org.adapter.session.login(fresh=True).token
    read = "<m:readMetadata><m:type>StandardValueSet</m:type><m:fullNames>CaseStatus</m:fullNames></m:readMetadata>"

    no_session = post(org, envelope(read, None), tls.ca_bundle)
    assert no_session.status_code == 500 and "<faultcode>sf:INVALID_SESSION_ID</faultcode>" in no_session.text

    answer = post(org, envelope(read, token), tls.ca_bundle)
    assert answer.status_code == 200 and '<records xsi:type="StandardValueSet"><fullName>CaseStatus</fullName>' \
        in answer.text and "<standardValue><fullName>Closed</fullName><default>false</default>" \
        "<label>Closed</label><closed>true</closed></standardValue>" in answer.text

    unknown = ('<m:updateMetadata><m:metadata xsi:type="m:StandardValueSet"><m:fullName>PatientMood</m:fullName>'
               "<m:sorted>false</m:sorted><m:standardValue><m:fullName>Calm</m:fullName><m:default>true</m:default>"
               "</m:standardValue></m:metadata></m:updateMetadata>")
    refused = post(org, envelope(unknown, token), tls.ca_bundle)
    assert refused.status_code == 200 and "<statusCode>INVALID_CROSS_REFERENCE_KEY</statusCode>" in refused.text
    assert "<success>false</success>" in refused.text

    bad = unknown.replace("<m:default>true</m:default>", "<m:default>yes</m:default>")
    typed = post(org, envelope(bad, token), tls.ca_bundle)
    assert typed.status_code == 500 and "'yes' is not a valid value for the type xsd:boolean" in typed.text
    stray = unknown.replace("<m:default>true</m:default>", "<m:colour>red</m:colour>")
    assert "invalid at this location in type StandardValue" in post(org, envelope(stray, token), tls.ca_bundle).text
    org.emulator.violations.clear()  # the malformed requests were recorded as violations, on purpose
