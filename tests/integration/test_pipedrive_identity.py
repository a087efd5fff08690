"""What lands in Pipedrive is right: persons matched without overwriting another person (Pipedrive allows two persons
one e-mail, so the relay looks), the patient's other channel identities, opt-outs on the persons the clinic already
has, organizations linked to the person and the record, and the clinic's pipeline and labels in its language.

Against the Pipedrive emulator over HTTP (its search lagging behind writes, as Pipedrive's does), with real Redis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests

from adapters.pipedrive import PipedriveAdapter
from adapters.pipedrive.identity import CONFLICTING_EMAIL, EMAIL_DIFFERS, IDENTITY_CONFLICT
from connector.mapping import Mapping, load_mapping, opt_out_plan, plan, required_schema
from core.models import Lead
from core.plan import OptOutMark
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import make_lead
from tests.paths import MAPPINGS

LEAD = load_mapping(MAPPINGS / "pipedrive.yaml", crm="pipedrive")
DEAL = load_mapping(MAPPINGS / "pipedrive-deal.yaml", crm="pipedrive")
BY_EMAIL = LEAD.model_copy(update={"contact": LEAD.contact.model_copy(update={"match_by": ["key", "phone", "email"]})})
TOKEN = "pd-identity"
#: the emulator's search lag: long enough that a write is not searchable at once, short enough to wait out
LAG = 0.3


class World:
    """The emulator and an adapter on it, set up as `crm setup` leaves an account."""

    def __init__(self, emulator: PipedriveEmulator, url: str, client: redis.Redis, mapping: Mapping = LEAD) -> None:
        self.emulator, self.url, self.redis = emulator, url, client
        self.adapter = self.fresh(mapping)
        self.lines = self.adapter.setup(required_schema(mapping), apply=True)

    def fresh(self, mapping: Mapping = LEAD) -> PipedriveAdapter:
        settings = make_settings("unix:///unused", pipedrive_api_token=TOKEN, pipedrive_api_base=self.url)
        options = {**mapping.crm_options(), "rate_limit": {"requests": 1000, "per_seconds": 1},
                   "search_rate_limit": {"requests": 1000, "per_seconds": 1}}
        return PipedriveAdapter.from_settings(settings, options=options, redis=self.redis)

    def sync(self, lead: Lead, mapping: Mapping = LEAD) -> Any:
        return self.adapter.sync(plan(lead, mapping))

    def person(self, person_id: str | int) -> dict[str, Any]:
        return next(p for p in self.emulator.records("persons") if str(p["id"]) == str(person_id))

    def custom(self, person_id: str | int, name: str) -> Any:
        key = self.emulator.field_key("person", name)
        return self.person(person_id)["custom_fields"].get(key) if key else None

    def seed(self, person_id: int, name: str, *, phones: list[str] = (), emails: list[str] = (),  # type: ignore[assignment]
             custom: dict[str, str] | None = None) -> None:
        """A person a clinic worker typed in long ago (search shows it at once)."""
        fields = {self.emulator.field_key("person", k): v for k, v in (custom or {}).items()}
        with self.emulator.lock:
            self.emulator.objects["persons"][str(person_id)] = {
                "id": person_id, "name": name, "owner_id": 1, "org_id": None, "visible_to": 3, "label_ids": [],
                "phones": [{"value": v, "primary": i == 0, "label": "work"} for i, v in enumerate(phones)],
                "emails": [{"value": v, "primary": i == 0, "label": "work"} for i, v in enumerate(emails)],
                "custom_fields": fields, "is_deleted": False, "add_time": "2026-01-01T00:00:00Z",
                "update_time": "2026-01-01T00:00:00Z"}


class _Current:
    """One server for the module, answering as the current test's emulator (a server per test costs 0.5 s)."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _Current]]:
    current = _Current()
    served = ServedApp(current).start()
    try:
        yield served.url, current
    finally:
        served.stop()


@pytest.fixture
def make_world(server: tuple[str, _Current], redis_client: redis.Redis) -> Iterator[Any]:
    emulators: list[PipedriveEmulator] = []

    def make(mapping: Mapping = LEAD, prepare: Any = None, **options: Any) -> World:
        emulator = PipedriveEmulator(TOKEN, search_lag=LAG, **options)
        if prepare is not None:
            with emulator.lock:
                prepare(emulator)
        emulators.append(emulator)
        redis_client.flushdb()  # another account: nothing cached from the last one
        server[1].app = emulator.app
        return World(emulator, server[0], redis_client, mapping)

    yield make
    for emulator in emulators:
        assert not emulator.violations, emulator.violations


@pytest.fixture
def world(make_world: Any) -> World:
    return make_world()


def lead(reference: str = "#1042", sender: str = "905321112233", *, email: str | None = None, **contact: Any) -> Lead:
    """A complete lead whose patient gave ``email`` (and the other contact fields given)."""
    made = make_lead(reference, sender)
    return made.model_copy(update={"contact": made.contact.model_copy(update={"email": email, **contact})})


def opt_out(sender: str, *, phone: str | None = None, email: str | None = None) -> Any:
    write = opt_out_plan(f"whatsapp:{sender}", LEAD)
    assert write is not None
    mark = OptOutMark(property="chat2crm opted out", at=datetime(2026, 11, 24, 8, 15, tzinfo=UTC), channel="whatsapp")
    return write.model_copy(update={"phone": phone, "email": email, "opt_out": mark})


# -- two patients, one e-mail -----------------------------------------------------------------------------
def test_a_second_patient_with_the_first_ones_email_never_overwrites_the_first(world: World) -> None:
    first = world.sync(lead("#1042", email="family@example.com"))
    time.sleep(LAG + 0.05)  # the first person is searchable now
    second = world.sync(lead("#1043", sender="4915100000000", email="family@example.com"))
    assert second.contact.id != first.contact.id and second.contact.created
    ayse = world.person(first.contact.id)
    assert [e["value"] for e in ayse["emails"]] == ["family@example.com"]
    assert world.custom(first.contact.id, IDENTITY_CONFLICT) is None
    other = world.person(second.contact.id)
    assert other["emails"] == [] and [p["value"] for p in other["phones"]] == ["+4915100000000"]
    assert world.custom(second.contact.id, CONFLICTING_EMAIL) == "family@example.com"
    assert f"ID {first.contact.id}" in world.custom(second.contact.id, IDENTITY_CONFLICT)
    note = next(n for n in world.emulator.records("notes") if "#1043" in n["content"])
    assert note["content"].startswith("<p><strong>Identity check:</strong> The e-mail the patient gave")
    # the patient's next request: the person is known, nothing is searched or written again, the note says it again
    again = world.sync(lead("#1044", sender="4915100000000", email="family@example.com"))
    assert again.contact.id == second.contact.id and again.calls == 2
    assert "Identity check:" in next(n for n in world.emulator.records("notes") if "#1044" in n["content"])["content"]
    assert world.emulator.count("persons") == 2


def test_a_person_made_with_the_email_is_someone_else_unless_email_matching_is_asked(make_world: Any) -> None:
    world = make_world()
    world.seed(77, "Ayşe (reception)", emails=["ayse@example.com"])
    result = world.sync(lead(email="AYSE@example.com"))  # match_by: [key, phone]: not adopted by e-mail
    assert result.contact.created and result.contact.id != "77"
    assert world.custom(result.contact.id, CONFLICTING_EMAIL) == "ayse@example.com"  # as the mapping writes it
    assert world.person(77)["custom_fields"] == {}  # their person is untouched

    world = make_world(BY_EMAIL)
    world.seed(77, "Ayşe (reception)", emails=["ayse@example.com"])
    adopted = world.sync(lead(email="ayse@example.com"), BY_EMAIL)
    person = world.person(77)
    assert adopted.contact.id == "77" and not adopted.contact.created and world.emulator.count("persons") == 1
    assert person["name"] == "Ayşe (reception)" and world.custom(77, IDENTITY_CONFLICT) is None
    assert world.custom(77, "chat2crm contact key") == "whatsapp:905321112233"


def test_a_person_made_by_email_with_another_number_is_another_person(make_world: Any) -> None:
    world = make_world(BY_EMAIL)
    world.seed(77, "Mehmet", phones=["+90 533 999 88 77"], emails=["family@example.com"])
    result = world.sync(lead(email="family@example.com"), BY_EMAIL)
    assert result.contact.created and world.custom(77, "chat2crm contact key") is None
    assert [p["value"] for p in world.person(77)["phones"]] == ["+90 533 999 88 77"]
    assert "ID 77" in world.custom(result.contact.id, IDENTITY_CONFLICT)


def test_adopting_by_phone_keeps_the_persons_email_and_flags_the_other(world: World) -> None:
    world.seed(77, "Ayşe Y.", phones=["0532 111 22 33"], emails=["ayse.y@example.com"])
    result = world.sync(lead(email="new@example.com"))
    person = world.person(77)
    assert result.contact.id == "77" and world.emulator.count("persons") == 1
    assert [p["value"] for p in person["phones"]] == ["0532 111 22 33"]  # typed nationally: the same number
    assert [e["value"] for e in person["emails"]] == ["ayse.y@example.com"]
    assert world.custom(77, CONFLICTING_EMAIL) == "new@example.com" and world.custom(77, IDENTITY_CONFLICT) == EMAIL_DIFFERS


def test_a_number_shared_with_another_country_is_not_the_patients(world: World) -> None:
    world.seed(77, "Someone in Germany", phones=["+49 532 111 22 33"])
    result = world.sync(lead())
    assert result.contact.created and world.custom(77, "chat2crm contact key") is None


def test_the_patients_own_person_keeps_what_people_added(world: World) -> None:
    first = world.sync(lead(email="ayse@example.com"))
    with world.emulator.lock:  # a coordinator adds a second number and an e-mail
        person = world.emulator.objects["persons"][first.contact.id]
        person["phones"].append({"value": "+90 212 555 00 00", "primary": False, "label": "home"})
    later = world.fresh()  # Redis lost: the key is searched again
    world.redis.flushdb()
    time.sleep(LAG + 0.05)
    again = later.sync(plan(lead("#1043", email="ayse.new@example.com", name="Ayşe Yılmaz-Demir"), LEAD))
    person = world.person(first.contact.id)
    assert again.contact.id == first.contact.id and person["name"] == "Ayşe Yılmaz-Demir"
    assert [p["value"] for p in person["phones"]] == ["+905321112233", "+90 212 555 00 00"]
    assert [(e["value"], e["primary"]) for e in person["emails"]] == [("ayse.new@example.com", True),
                                                                      ("ayse@example.com", False)]


# -- other channel identities -------------------------------------------------------------------------------
def test_a_patient_who_changed_their_number_is_found_by_their_whatsapp_user_id(world: World) -> None:
    first = world.sync(lead(whatsapp_user_id="TR.13491208655302741918"))
    assert world.custom(first.contact.id, "chat2crm whatsapp user id") == "TR.13491208655302741918"
    time.sleep(LAG + 0.05)
    moved = world.sync(lead("#1043", sender="905329998877", whatsapp_user_id="TR.13491208655302741918"))
    assert moved.contact.id == first.contact.id and world.emulator.count("persons") == 1
    # the person keeps the key it has (that number's way to it); the new number is added beside the old one
    assert world.custom(first.contact.id, "chat2crm contact key") == "whatsapp:905321112233"
    assert [p["value"] for p in world.person(first.contact.id)["phones"]] == ["+905321112233", "+905329998877"]
    again = world.sync(lead("#1044", sender="905329998877", whatsapp_user_id="TR.13491208655302741918"))
    assert again.contact.id == first.contact.id and again.calls == 2  # the key is cached for that person


def test_a_telegram_username_finds_the_person_made_on_whatsapp(world: World) -> None:
    first = world.sync(lead(telegram_username="ayse_y"))
    time.sleep(LAG + 0.05)
    telegram = make_lead("#1043", "905321112233").model_copy(update={
        "contact_key": "telegram:5550001", "conversation_key": "telegram:5550001"})
    telegram = telegram.model_copy(update={"contact": telegram.contact.model_copy(update={
        "channel": "telegram", "phone": None, "email": None, "telegram_username": "ayse_y"})})
    found = world.sync(telegram)
    assert found.contact.id == first.contact.id and world.emulator.count("persons") == 1


# -- opt-outs ---------------------------------------------------------------------------------------------
def test_an_opt_out_marks_every_person_the_clinic_could_message(world: World) -> None:
    own = world.sync(lead(email="ayse@example.com"))
    world.seed(77, "Ayşe (typed)", phones=["0532 111 22 33"])
    world.seed(78, "Ayşe (e-mail)", emails=["AYSE@example.com"])
    world.seed(79, "Her brother on Telegram", phones=["+90 532 111 22 33"],
               custom={"chat2crm contact key": "telegram:42"})
    before = world.emulator.count("persons")
    marked = world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233", email="ayse@example.com"))
    assert marked.id == own.contact.id and not marked.created and world.emulator.count("persons") == before
    for person_id in (own.contact.id, 77, 78):
        assert world.custom(person_id, "chat2crm opted out") is not None
        assert world.custom(person_id, "chat2crm opted out_at") == "2026-11-24T08:15:00+00:00"
        assert world.custom(person_id, "chat2crm opted out_channel") == "whatsapp"
    assert world.custom(79, "chat2crm opted out") is None  # another channel's identity: left alone
    flag = next(f for f in world.emulator.fields["person"] if f["field_name"] == "chat2crm opted out")
    assert {o["id"]: o["label"] for o in flag["options"]}[world.custom(77, "chat2crm opted out")] == "true"


def test_an_opt_out_of_someone_unknown_makes_one_person(world: World) -> None:
    made = world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233"))
    person = world.person(made.id)
    assert made.created and world.emulator.count("persons") == 1 and person["name"] == "+905321112233"
    assert world.custom(made.id, "chat2crm contact key") == "whatsapp:905321112233"
    assert world.custom(made.id, "chat2crm opted out_channel") == "whatsapp"
    again = world.adapter.upsert_contact(opt_out("905321112233", phone="+905321112233"))  # a retried job
    assert again.id == made.id and world.emulator.count("persons") == 1


def test_setup_makes_the_fields_the_adapter_writes_and_a_write_goes_on_without_them(make_world: Any) -> None:
    world = make_world()
    names = {f["field_name"]: f["field_type"] for f in world.emulator.fields["person"]}
    assert names[IDENTITY_CONFLICT] == "text" and names[CONFLICTING_EMAIL] == "varchar"
    assert names["chat2crm opted out_at"] == "varchar" and names["chat2crm opted out_channel"] == "varchar"
    assert names["chat2crm whatsapp user id"] == "varchar" and names["chat2crm telegram username"] == "varchar"
    # an account set up before these existed: the conflict is still kept off the other person
    with world.emulator.lock:
        world.emulator.fields["person"] = [f for f in world.emulator.fields["person"]
                                           if f["field_name"] not in (IDENTITY_CONFLICT, CONFLICTING_EMAIL)]
    world.redis.flushdb()
    world.seed(77, "Mehmet", phones=["+90 533 999 88 77"], emails=["family@example.com"])
    result = world.fresh().sync(plan(lead(email="family@example.com"), LEAD))
    assert result.contact.created and world.person(result.contact.id)["emails"] == []


# -- organizations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mapping", [LEAD, DEAL], ids=["lead", "deal"])
def test_an_organization_the_patient_named_is_linked_to_the_person_and_the_record(make_world: Any,
                                                                                  mapping: Mapping) -> None:
    world = make_world(mapping)
    result = world.sync(make_lead(organization="Acme Travel"), mapping)
    assert result.company is not None and result.company.created
    org = world.emulator.records("organizations")[0]
    assert org["name"] == "Acme Travel" and str(world.person(result.contact.id)["org_id"]) == result.company.id
    if mapping is LEAD:
        assert world.emulator.records("leads")[0]["organization_id"] == int(result.company.id)
    else:
        assert world.emulator.records("deals")[0]["org_id"] == int(result.company.id)
    colleague = world.sync(make_lead("#1043", sender="4915100000000", organization="acme travel"), mapping)
    assert colleague.company is not None and colleague.company.id == result.company.id
    assert world.emulator.count("organizations") == 1


def test_a_company_that_is_the_patients_own_name_is_none(world: World) -> None:
    result = world.sync(make_lead(organization="Yılmaz Ayşe"))
    assert result.company is None and world.emulator.count("organizations") == 0
    assert world.person(result.contact.id)["org_id"] is None
    assert world.emulator.records("leads")[0]["organization_id"] is None


# -- the clinic's pipeline and labels, in its language ---------------------------------------------------------
def test_setup_makes_the_clinics_pipeline_in_its_language_and_deals_land_in_it(make_world: Any) -> None:
    turkish = load_mapping(MAPPINGS / "pipedrive-deal.yaml", crm="pipedrive", language="tr")
    world = make_world(turkish)
    pipeline = next(p for p in world.emulator.pipelines if p["name"] == "Hastalar")
    stages = sorted((s for s in world.emulator.stages if s["pipeline_id"] == pipeline["id"]), key=lambda s: s["order_nr"])
    assert [s["name"] for s in stages] == ["Yeni talep", "İnceleniyor", "Planlandı", "Tamamlandı", "Beklemede"]
    assert any(line.startswith("created deal pipeline 'Hastalar'") for line in world.lines)
    assert not any(line.startswith("created") for line in world.adapter.setup(required_schema(turkish), apply=True))
    world.sync(make_lead(), turkish)
    assert world.emulator.records("deals")[0]["stage_id"] == stages[0]["id"]
    assert world.emulator.agent_view()["records"][0]["stage"] == "Yeni talep"


def test_setup_adds_only_the_stages_an_existing_pipeline_lacks(make_world: Any) -> None:
    def hand_made(emulator: PipedriveEmulator) -> None:  # the clinic made "Patients" by hand, with two of the stages
        emulator.pipelines.append({**emulator.pipelines[0], "id": 2, "name": "Patients", "is_selected": False})
        emulator.stages += [{**emulator.stages[0], "id": 20 + i, "name": n, "pipeline_id": 2, "order_nr": i + 1}
                            for i, n in enumerate(("New enquiry", "Done"))]

    world = make_world(DEAL, prepare=hand_made)
    assert [p["name"] for p in world.emulator.pipelines] == ["Pipeline", "Patients"]
    stages = sorted((s for s in world.emulator.stages if s["pipeline_id"] == 2), key=lambda s: s["order_nr"])
    assert [s["name"] for s in stages] == ["New enquiry", "Done", "Reviewing", "Planned", "On hold"]
    assert [s["id"] for s in stages[:2]] == [20, 21]  # the clinic's own stages stay as they are


def test_lead_labels_are_made_in_the_clinics_language(make_world: Any) -> None:
    german = load_mapping(MAPPINGS / "pipedrive.yaml", crm="pipedrive", language="de")
    world = make_world(german)
    assert {label["name"] for label in world.emulator.records("leadLabels")} == {
        "Neue Anfrage", "In Prüfung", "Geplant", "Erledigt", "Zurückgestellt"}
    world.sync(make_lead(), german)
    assert world.emulator.agent_view()["records"][0]["stage"] == "Neue Anfrage"


# -- the demo's CRM view --------------------------------------------------------------------------------------
def test_the_agent_view_shows_labels_and_names_not_keys_and_ids(make_world: Any) -> None:
    world = make_world(DEAL)
    result = world.sync(make_lead(organization="Acme Travel", handoff_reason="patient_request"), DEAL)
    view = requests.get(f"{world.url}/_emulator/view", timeout=5).json()
    shown = [view["contacts"][0]["fields"], view["records"][0]["fields"], view["tasks"][0]["fields"]]
    keys = [k for fields in shown for k in fields]
    assert not [k for k in keys if re.fullmatch(r"[0-9a-f]{40}|\w+_id", k)], keys  # no hash keys, no API names
    person, deal, task = shown
    assert person["Phone"] == "+905321112233" and person["Organization"] == "Acme Travel"
    assert person["chat2crm contact key"] == "whatsapp:905321112233" and person["chat2crm language"] == "tr"
    assert deal["Contact person"] == "Ayşe Yılmaz" and deal["Organization"] == "Acme Travel"
    assert deal["Pipeline"] == "Patients" and deal["chat2crm reference"] == "1042" and deal["Treatment"]
    assert view["records"][0]["stage"] == "New enquiry" and "hair_transplant" in view["records"][0]["tags"]
    assert task["Type"] == "task" and task["Deal"] == view["records"][0]["title"] and task["Owner"]
    assert {"kind": "organization", "title": "Acme Travel", "fields": {"Owner": "Deniz Koordinatör"}} in view["extras"]
    assert result.company is not None
