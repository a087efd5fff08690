"""The clinic's pipeline in HubSpot: `crm setup` creates it (or the stages it lacks) in the clinic's language, the
adapter writes records in it by label, the mapping's check finds it by label or id, and the emulator refuses
what HubSpot's pipelines API refuses.

Against the HubSpot emulator over HTTP, with real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from adapters.hubspot import HubSpotAdapter
from connector.mapping import Mapping, check_online, load_mapping, plan, required_schema
from core.errors import FatalError
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import make_lead
from tests.paths import MAPPINGS

TOKEN = "pat-pipeline"
TURKISH = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot", language="tr")
ENGLISH = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot", language="en")
STAGES_TR = ["Yeni", "İnceleniyor", "Planlandı", "Tamamlandı", "Beklemede"]


class Account:
    """The emulator served over HTTP, and adapters on it."""

    def __init__(self, emulator: HubSpotEmulator, url: str, redis_client: redis.Redis) -> None:
        self.emulator, self.url, self.redis = emulator, url, redis_client

    def adapter(self, mapping: Mapping = TURKISH) -> HubSpotAdapter:
        settings = make_settings("unix:///unused", hubspot_access_token=TOKEN, hubspot_api_base=self.url)
        return HubSpotAdapter.from_settings(settings, options={**mapping.crm_options(), "timeout_seconds": 2.0},
                                            redis=self.redis)

    def pipeline(self, obj: str, label: str) -> dict[str, Any]:
        return next(p for p in self.emulator.pipelines[obj] if p["label"] == label)

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", json=body, timeout=5,
                                headers={"Authorization": f"Bearer {TOKEN}"})

    def pipeline_reads(self) -> int:
        return sum(1 for c in self.emulator.calls if c["method"] == "GET" and c["path"].startswith("/crm/v3/pipelines"))


@pytest.fixture
def account(redis_client: redis.Redis) -> Iterator[Account]:
    emulator = HubSpotEmulator(TOKEN)
    served = ServedApp(emulator.app).start()
    try:
        yield Account(emulator, served.url, redis_client)
    finally:
        served.stop()
    assert not emulator.violations, emulator.violations


def tickets(mapping: Mapping) -> Mapping:
    """``mapping`` writing tickets (the same pipeline and statuses) instead of deals."""
    assert mapping.record is not None
    record = mapping.record.model_copy(update={"object": "tickets", "stage_property": "hs_pipeline_stage",
                                               "fields": {}})
    return mapping.model_copy(update={"record": record, "tags": mapping.tags.model_copy(update={"property": None})})


# -- crm setup ---------------------------------------------------------------------------------------
def test_crm_setup_creates_the_clinic_pipeline_in_the_clinics_language(account: Account) -> None:
    lines = account.adapter().setup(required_schema(TURKISH), apply=True)
    assert f"created deals pipeline Hasta talepleri with stages {', '.join(STAGES_TR)}" in lines
    made = account.pipeline("deals", "Hasta talepleri")
    assert [s["label"] for s in made["stages"]] == STAGES_TR
    assert [s["metadata"]["probability"] for s in made["stages"]] == ["0.2", "0.4", "0.6", "1.0", "0.0"]
    assert all(s["id"].isdigit() for s in made["stages"]) and made["id"].isdigit()  # ids are HubSpot's
    again = account.adapter().setup(required_schema(TURKISH), apply=True)
    assert [line for line in again if "pipeline" in line] == [
        f"ok deals pipeline Hasta talepleri stage {label}" for label in STAGES_TR]
    assert len(account.emulator.pipelines["deals"]) == 2  # the sales pipeline, and the clinic's once


def test_crm_setup_dry_run_says_what_it_would_create(account: Account) -> None:
    lines = account.adapter().setup(required_schema(TURKISH), apply=False)
    assert f"would create deals pipeline Hasta talepleri with stages {', '.join(STAGES_TR)}" in lines
    assert len(account.emulator.pipelines["deals"]) == 1


def test_crm_setup_adds_the_stages_an_existing_pipeline_lacks(account: Account) -> None:
    made = account.api("POST", "/crm/v3/pipelines/deals", {"label": "Hasta talepleri", "displayOrder": 1, "stages": [
        {"label": "yeni", "displayOrder": 0, "metadata": {"probability": "0.1"}}]})
    assert made.status_code == 201, made.text
    lines = account.adapter().setup(required_schema(TURKISH), apply=True)
    assert "ok deals pipeline Hasta talepleri stage Yeni" in lines  # labels compared as HubSpot does, case aside
    assert "added stage Beklemede to deals pipeline Hasta talepleri" in lines
    stages = account.pipeline("deals", "Hasta talepleri")["stages"]
    assert [s["label"] for s in stages] == ["yeni", *STAGES_TR[1:]]
    assert stages[0]["id"] == made.json()["stages"][0]["id"] and stages[3]["metadata"]["probability"] == "1.0"


def test_crm_setup_creates_a_ticket_pipeline_with_open_and_closed_stages(account: Account) -> None:
    account.adapter().setup(required_schema(tickets(ENGLISH)), apply=True)
    made = account.pipeline("tickets", "Patient enquiries")
    assert [(s["label"], s["metadata"]["ticketState"]) for s in made["stages"]] == [
        ("New", "OPEN"), ("Reviewing", "OPEN"), ("Planned", "OPEN"), ("Done", "CLOSED"), ("On hold", "CLOSED")]


# -- writing records ---------------------------------------------------------------------------------
def test_a_deal_is_written_in_the_clinic_pipeline_at_new_by_label(account: Account) -> None:
    account.adapter().setup(required_schema(TURKISH), apply=True)
    adapter = account.adapter()
    reads = account.pipeline_reads()
    first = adapter.sync(plan(make_lead("#1042"), TURKISH))
    second = adapter.sync(plan(make_lead("#1043", "4915100000000"), TURKISH))
    made = account.pipeline("deals", "Hasta talepleri")
    for result in (first, second):
        deal = next(d for d in account.emulator.records("deals") if d["id"] == result.record.id)
        assert (deal["properties"]["pipeline"], deal["properties"]["dealstage"]) == (made["id"], made["stages"][0]["id"])
    assert account.pipeline_reads() == reads + 1  # read once by this adapter, then kept


def test_pipeline_and_stage_ids_still_work(account: Account) -> None:
    assert ENGLISH.record is not None
    record = ENGLISH.record.model_copy(update={"pipeline": "default", "statuses": {"new": "appointmentscheduled"}})
    by_id = ENGLISH.model_copy(update={"record": record})
    account.adapter(by_id).setup(required_schema(by_id), apply=True)
    result = account.adapter(by_id).sync(plan(make_lead(), by_id))
    deal = next(d for d in account.emulator.records("deals") if d["id"] == result.record.id)
    assert (deal["properties"]["pipeline"], deal["properties"]["dealstage"]) == ("default", "appointmentscheduled")


def deleted_pipeline(account: Account) -> None:
    """The account set up, then the clinic's pipeline deleted in HubSpot by an admin."""
    account.adapter().setup(required_schema(TURKISH), apply=True)
    account.emulator.pipelines["deals"].remove(account.pipeline("deals", "Hasta talepleri"))


def test_a_pipeline_hubspot_does_not_have_fails_with_what_to_do(account: Account) -> None:
    deleted_pipeline(account)
    with pytest.raises(FatalError, match="crm setup") as failed:
        account.adapter().sync(plan(make_lead(), TURKISH))
    assert failed.value.field == "record.pipeline" and account.emulator.count("deals") == 0


def test_a_pipeline_created_after_the_adapter_read_them_is_found(account: Account) -> None:
    deleted_pipeline(account)
    adapter = account.adapter()
    with pytest.raises(FatalError):
        adapter.sync(plan(make_lead(), TURKISH))
    account.adapter().setup(required_schema(TURKISH), apply=True)
    assert adapter.sync(plan(make_lead(), TURKISH)).record is not None


# -- the mapping's check -----------------------------------------------------------------------------
def test_check_online_finds_the_pipeline_by_label_and_by_id(account: Account) -> None:
    problems = [p.message for p in check_online(TURKISH, account.adapter())]
    assert "deals pipeline 'Hasta talepleri' does not exist" in problems
    account.adapter().setup(required_schema(TURKISH), apply=True)
    assert not [p for p in check_online(TURKISH, account.adapter()) if "pipeline" in p.message or "stage" in p.message]
    described = account.adapter().describe(["deals"]).objects["deals"].pipelines
    made = account.pipeline("deals", "Hasta talepleri")
    assert described[made["id"]] == described["Hasta talepleri"]
    assert {"Yeni", made["stages"][0]["id"], "appointmentscheduled"} <= {*described[made["id"]], *described["default"]}


# -- what HubSpot refuses ----------------------------------------------------------------------------
def test_the_emulator_refuses_what_hubspots_pipelines_api_refuses(account: Account) -> None:
    def create(obj: str, stages: list[dict[str, Any]], label: str = "Clinic") -> requests.Response:
        return account.api("POST", f"/crm/v3/pipelines/{obj}", {"label": label, "displayOrder": 1, "stages": stages})

    no_probability = create("deals", [{"label": "New", "displayOrder": 0, "metadata": {}}])
    assert no_probability.status_code == 400 and no_probability.json()["category"] == "VALIDATION_ERROR"
    assert "probability" in no_probability.json()["message"]
    twice = create("deals", [{"label": "New", "displayOrder": 0, "metadata": {"probability": "0.2"}},
                             {"label": "new", "displayOrder": 1, "metadata": {"probability": "0.4"}}])
    assert twice.status_code == 400
    bad_state = create("tickets", [{"label": "New", "displayOrder": 0, "metadata": {"ticketState": "DONE"}}])
    assert bad_state.status_code == 400
    unknown_key = create("deals", [{"label": "New", "displayOrder": 0, "metadata": {"probability": "0.2"},
                                    "stageId": "new"}])
    assert unknown_key.status_code == 400  # ids are HubSpot's to give
    assert account.emulator.violations and "stageId" in account.emulator.violations[-1]["problem"]
    account.emulator.violations.clear()  # sent on purpose
    assert create("deals", [{"label": "New", "displayOrder": 0, "metadata": {"probability": "0.2"}}]).status_code == 201
    assert create("deals", [{"label": "X", "displayOrder": 0, "metadata": {"probability": "0.2"}}]).status_code == 409
    clinic = account.pipeline("deals", "Clinic")
    missing = account.api("POST", f"/crm/v3/pipelines/deals/{clinic['id']}/stages",
                          {"label": "Done", "displayOrder": 1, "metadata": {}})
    assert missing.status_code == 400
    stage = account.api("POST", f"/crm/v3/pipelines/deals/{clinic['id']}/stages",
                        {"label": "Done", "displayOrder": 1, "metadata": {"probability": "1.0"}})
    assert stage.status_code == 201 and stage.json()["metadata"]["isClosed"] == "true"
    assert [s["label"] for s in account.api("GET", f"/crm/v3/pipelines/deals/{clinic['id']}").json()["stages"]] == [
        "New", "Done"]
    # a deal's stage must be one of its pipeline's
    wrong = account.api("POST", "/crm/v3/objects/deals", {"properties": {
        "dealname": "x", "pipeline": clinic["id"], "dealstage": "appointmentscheduled"}, "associations": []})
    assert wrong.status_code == 400 and "INVALID_OPTION" in wrong.text
    right = account.api("POST", "/crm/v3/objects/deals", {"properties": {
        "dealname": "x", "pipeline": clinic["id"], "dealstage": stage.json()["id"]}, "associations": []})
    assert right.status_code == 201, right.text


# -- the demo's view of the account --------------------------------------------------------------------
def test_the_view_shows_property_labels_and_the_stage_label(account: Account) -> None:
    account.adapter().setup(required_schema(TURKISH), apply=True)
    account.adapter().sync(plan(make_lead(), TURKISH))
    view = account.api("GET", "/_emulator/view").json()
    assert view == account.emulator.agent_view()
    record, contact = view["records"][0], view["contacts"][0]
    assert record["stage"] == "Yeni"  # the clinic's label, not the stage's id
    assert record["labels"]["chat2crm_reference"] == "Chat2Crm Reference"
    assert contact["fields"]["phone"] == "+905321112233" and contact["labels"]["phone"] == "Phone Number"
    assert contact["labels"]["email"] == "Email" and contact["labels"]["chat2crm_contact_key"] == "Chat2Crm Contact Key"


def test_a_worker_reads_the_pipelines_when_it_starts_not_on_its_first_lead(account: Account,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    adapter = account.adapter()
    adapter.prepare(required_schema(TURKISH))
    assert "run `chat2crm crm setup`" in caplog.text  # the clinic's pipeline is not there yet
    account.adapter().setup(required_schema(TURKISH), apply=True)
    worker = account.adapter()
    worker.prepare(required_schema(TURKISH))
    reads = account.pipeline_reads()
    result = worker.sync(plan(make_lead(), TURKISH))
    # the contact, the tags' property read and its options added (once per account), the deal, the note
    assert result.calls == 5 and account.pipeline_reads() == reads
