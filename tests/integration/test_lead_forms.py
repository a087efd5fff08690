"""Lead forms, piece by piece, on real Redis and the Meta emulator over real HTTP: the ``leadgen`` webhook's
handshake, signature (a known-answer vector) and de-duplication; the Graph read's errors and throttling (Meta's
limits and the relay's own bucket); the form's mapping by question key; ``chat2crm check`` on the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from pydantic import SecretStr, ValidationError

from connector import leads, queues
from connector.config import load_config
from connector.leadforms import graph as graph_module
from connector.leadforms import intake
from connector.leadforms.build import build
from connector.leadforms.checks import lead_form_problems
from connector.leadforms.graph import GraphClient, GraphLead, take_read
from connector.leadforms.model import LeadForm, LeadForms, load_lead_forms
from connector.runtime import Runtime, set_current_runtime
from core.errors import AuthError, RetryableError, SkippableError
from core.models import utcnow
from core.settings import Settings
from emulators.meta_graph import MetaGraphEmulator, sign
from tests.conftest import TEST_SECRETS, make_settings
from tests.leadform_fixtures import AD, FORM_ID, PAGE_TOKEN, answers, served_meta, write_lead_forms
from tests.paths import SHIPPED_CONFIG

#: a ``leadgen`` webhook body and its signature under ``TEST_SECRETS["whatsapp_app_secret"]``, computed with
#: ``printf '%s' BODY | openssl dgst -sha256 -hmac 'test-app-secret-0123456789'`` (not with the relay's code)
BODY = (b'{"object":"page","entry":[{"id":"109876543210987","time":1767225600,"changes":[{"field":"leadgen",'
        b'"value":{"leadgen_id":"1234567890123456","form_id":"555000111222333","page_id":"109876543210987",'
        b'"created_time":1767225600}}]}]}')
SIGNATURE = "sha256=f2e056c103b61139d100bc633e1ef27f9f2225fb61479f5a535b4f03bc2b2f91"


@pytest.fixture
def meta() -> Iterator[MetaGraphEmulator]:
    yield from served_meta(TEST_SECRETS["whatsapp_app_secret"])


@pytest.fixture
def forms_runtime(redis_url: str, redis_client: redis.Redis, tmp_path: Path, meta: MetaGraphEmulator,
                  ) -> Iterator[Runtime]:
    config = load_config(SHIPPED_CONFIG)
    config.lead_forms = write_lead_forms(tmp_path)
    settings: Settings = make_settings(redis_url, meta_graph_base=meta.url,  # type: ignore[attr-defined]
                                       meta_page_access_token=PAGE_TOKEN)
    runtime = Runtime(settings, config=config, redis_client=redis_client)
    set_current_runtime(runtime)
    try:
        yield runtime
    finally:
        set_current_runtime(None)


# -- the webhook ------------------------------------------------------------------------------------
def test_the_signature_vector_is_the_emulators_and_the_relays(client: Any, redis_client: redis.Redis) -> None:
    assert sign(BODY, TEST_SECRETS["whatsapp_app_secret"]) == SIGNATURE
    url = "/webhooks/meta/leadgen"
    headers = {"Content-Type": "application/json"}
    assert client.post(url, data=BODY, headers=headers).status_code == 401
    assert client.post(url, data=BODY, headers={**headers, "X-Hub-Signature-256": SIGNATURE[:-1] + "0"}
                       ).status_code == 403
    first = client.post(url, data=BODY, headers={**headers, "X-Hub-Signature-256": SIGNATURE})
    again = client.post(url, data=BODY, headers={**headers, "X-Hub-Signature-256": SIGNATURE})
    assert first.status_code == again.status_code == 200
    assert first.get_json() == {"queued": 1, "duplicates": 0} and again.get_json() == {"queued": 0, "duplicates": 1}
    assert redis_client.get("c2c:leadgen:1234567890123456") == b"1"


def test_the_handshake_and_bodies_that_are_no_page_webhook(client: Any) -> None:
    ok = client.get("/webhooks/meta/leadgen", query_string={
        "hub.mode": "subscribe", "hub.verify_token": TEST_SECRETS["whatsapp_verify_token"], "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = client.get("/webhooks/meta/leadgen", query_string={
        "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1158201444"})
    assert wrong.status_code == 403
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    refused = client.post("/webhooks/meta/leadgen", data=body,
                          headers={"X-Hub-Signature-256": sign(body, TEST_SECRETS["whatsapp_app_secret"])})
    assert refused.status_code == 400


# -- reading ----------------------------------------------------------------------------------------
def test_graph_errors_map_to_retry_give_up_or_skip(forms_runtime: Runtime, meta: MetaGraphEmulator) -> None:
    leadgen_id = meta.create_lead(FORM_ID, answers(), ad=AD)
    client = GraphClient(forms_runtime.settings)
    for kind, count in (("4", 1), ("17", 1), ("2", 3), ("500", 3)):  # a 5xx is tried 3 times in place first
        meta.fail_next(count, kind)
        with pytest.raises(RetryableError):
            client.lead(leadgen_id)
    meta.fail_next(1, "32")  # the Page's limit, with Meta's estimate of when access comes back (2 minutes)
    with pytest.raises(RetryableError) as throttled:
        client.lead(leadgen_id)
    assert throttled.value.retry_after == 120
    meta.fail_next(1, "190")
    with pytest.raises(AuthError, match="META_PAGE_ACCESS_TOKEN"):
        client.lead(leadgen_id)
    with pytest.raises(SkippableError):
        client.lead("999999999999999")
    forms_runtime.settings.meta_page_access_token = SecretStr("EAAGwrong")
    with pytest.raises(AuthError):
        GraphClient(forms_runtime.settings).lead(leadgen_id)
    read = client.lead(leadgen_id)
    assert read.ad_id == AD["ad_id"] and read.form_id == FORM_ID


def test_the_relays_own_bucket_holds_reads_back(redis_client: redis.Redis) -> None:
    start = 1_000_000.0
    assert take_read(redis_client, 2, now=start) == 0
    assert take_read(redis_client, 2, now=start) == 0
    wait = take_read(redis_client, 2, now=start)
    assert 1799 <= wait <= 1801  # one token every 30 minutes at 2 an hour
    assert take_read(redis_client, 2, now=start + wait) == 0


def test_a_throttled_read_is_retried_by_the_job_and_then_stored(forms_runtime: Runtime,
                                                                meta: MetaGraphEmulator) -> None:
    from connector.jobs import read_lead_form

    leadgen_id = meta.create_lead(FORM_ID, answers())  # organic: no ad_id
    meta.fail_next(1, "4")
    read_lead_form(leadgen_id)
    scheduled = forms_runtime.queue(queues.CRM).scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 1 and forms_runtime.redis.get(f"c2c:leadgen:{leadgen_id}") is None
    read_lead_form(leadgen_id, attempt=1)
    reference = forms_runtime.redis.get(f"c2c:leadgen:{leadgen_id}").decode()
    lead = leads.load(forms_runtime, reference)
    assert lead is not None and lead.first_touch.ad_source_id is None and lead.first_touch.utm_medium == "organic_social"
    assert lead.contact_key == "whatsapp:4917612345678" and lead.answers["treatment"] == "dental"
    read_lead_form(leadgen_id, attempt=2)  # run again: nothing more is read or stored
    assert len(meta.reads) == 2


def test_a_bucket_without_tokens_defers_the_read(forms_runtime: Runtime, meta: MetaGraphEmulator) -> None:
    forms_runtime.settings.meta_lead_reads_per_hour = 1
    first = meta.create_lead(FORM_ID, answers())
    second = meta.create_lead(FORM_ID, answers(phone="+90 532 111 22 33"))
    assert intake.take(forms_runtime, first) is not None
    with pytest.raises(RetryableError) as held:
        intake.take(forms_runtime, second)
    assert held.value.retry_after is not None and held.value.retry_after > 3000
    assert len(meta.reads) == 1, "a read the bucket holds back never reaches Meta"


# -- the mapping ------------------------------------------------------------------------------------
def test_answers_are_mapped_by_key_with_non_ascii_keys_and_choice_labels(tmp_path: Path) -> None:
    form = load_lead_forms(write_lead_forms(tmp_path)).form(FORM_ID)
    assert form is not None
    lead = GraphLead.model_validate({"id": "1", "form_id": FORM_ID, "created_time": "2026-03-01T10:00:00+0000",
                                     "field_data": [
                                         {"name": "full_name", "values": ["Anna Schäfer"]},
                                         {"name": "behandlung", "values": ["Haartransplantation"]},  # a label
                                         {"name": "wohnort_straße_stadt", "values": ["Köln"]},
                                         {"name": "bütçe", "values": ["5000 EUR"]},
                                         {"name": "lieblingsfarbe", "values": ["blau"]},  # in no mapping
                                         {"name": "phone_number", "values": ["not a number"]}]})
    made = build(lead, form, reference="#1042", sender=None, account="106540352242922", flow=None, now=utcnow(),
                 clinic_name="Clinic")
    assert made.lead.answers == {"treatment": "hair_transplant", "budget": "5000 EUR", "lieblingsfarbe": "blau",
                                 "phone_number": "not a number"}
    assert made.lead.contact.city == "Köln" and made.lead.contact.first_name == "Anna"
    assert made.lead.contact_key == "leadform:1" and made.wa_id is None  # no number WhatsApp can reach
    assert made.lead.transcript[0].text.startswith("Lead form: Zahnbehandlung DE")
    assert "bütçe: 5000 EUR" in [line.text for line in made.lead.transcript]
    assert made.known["treatment"] == "hair_transplant" and made.known["name"] == "Anna Schäfer"


def test_the_file_is_validated_with_lines(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        LeadForm(flow="x", language="de", fields={"q": {"to": "contact.password"}})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        LeadForms(version=1, forms={"form-1": LeadForm(flow="x", language="de")})
    path = tmp_path / "lead_forms.yaml"
    path.write_text('version: 1\nforms:\n  "1":\n    flow: nope\n    language: de\n  "2":\n'
                    '    flow: health_tourism_intake\n    language: xx\n    campaign: no-such\n', encoding="utf-8")
    config = load_config(SHIPPED_CONFIG)
    from connector.attribution.campaigns import load_campaigns
    from connector.bot.flows import load_flows

    flows = load_flows(config.flows_path)
    campaigns = load_campaigns(config.campaigns_path, flows=set(flows)) if config.campaigns_path else None
    problems = lead_form_problems(path, flows, campaigns)
    said = {(p.path, p.line) for p in problems}
    assert said == {("forms.1.flow", 4), ("forms.2.language", 8), ("forms.2.campaign", 9)}, problems


def test_the_emulator_refuses_a_read_the_real_api_would(forms_runtime: Runtime, meta: MetaGraphEmulator) -> None:
    leadgen_id = meta.create_lead(FORM_ID, answers(), ad=AD)
    url = f"{meta.url}/v23.0/{leadgen_id}"  # type: ignore[attr-defined]
    wrong = requests.get(url, params={"fields": "field_data,secret_field", "access_token": PAGE_TOKEN}, timeout=5)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == 100
    meta.violations.clear()
    fine = requests.get(url, params={"fields": "field_data", "access_token": PAGE_TOKEN}, timeout=5).json()
    assert set(fine) == {"id", "field_data"}
    assert graph_module.FIELDS  # the relay asks for every field of the brief's list
    with pytest.raises(ValueError, match="not among the options"):
        meta.create_lead(FORM_ID, answers(behandlung="nose job"))


def test_the_published_schema_is_current() -> None:
    import json

    from tests.paths import SCHEMAS

    current = json.loads((SCHEMAS / "lead_forms.schema.json").read_text(encoding="utf-8"))
    assert current["properties"] == LeadForms.model_json_schema()["properties"]
