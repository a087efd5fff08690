"""Pipedrive passes the adapters' shared contract, against the Pipedrive emulator over HTTP.

Both shipped mappings run it: person + Lead (the default) and person + Deal in a pipeline stage. The
emulator's search lags behind writes as Pipedrive's does: the contract runs with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from adapters.pipedrive import PipedriveAdapter
from connector.mapping import Mapping, check_online, load_mapping, required_schema
from core.errors import FatalError, RetryableError
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import AdapterContract, AdapterEnv, make_lead
from tests.paths import MAPPINGS as SHIPPED_MAPPINGS

pytestmark = pytest.mark.weight(35)  # seconds, about: see pytest_collection_modifyitems

MAPPINGS = {"lead": load_mapping(SHIPPED_MAPPINGS / "pipedrive.yaml", crm="pipedrive"),
            "deal": load_mapping(SHIPPED_MAPPINGS / "pipedrive-deal.yaml", crm="pipedrive")}
KINDS = {"contact": "persons", "note": "notes", "task": "activities"}
TOKEN = "pd-contract"
SEARCH_LAG = 5.0


def _adapter(url: str, mapping: Mapping, client: redis.Redis, **options: Any) -> PipedriveAdapter:
    """The adapter on the emulator; the shipped 20-per-2-seconds limit is lifted (the emulator has
    none unless a test sets one), so that the suite stays fast."""
    settings = make_settings("unix:///unused", pipedrive_api_token=TOKEN, pipedrive_api_base=url)
    options = {**mapping.crm_options(), "rate_limit": {"requests": 1000, "per_seconds": 1},
               "search_rate_limit": {"requests": 1000, "per_seconds": 1}, **options}
    return PipedriveAdapter.from_settings(settings, options=options, redis=client)


class _Current:
    """A WSGI app that forwards to the current test's emulator: one server for the module (starting
    and stopping a server per test costs half a second each)."""

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
def serve(server: tuple[str, _Current]) -> Any:
    """``serve(emulator) -> url``: the module's server now answers as this emulator."""
    url, current = server

    def switch(emulator: PipedriveEmulator) -> str:
        current.app = emulator.app
        return url

    return switch


@pytest.fixture(params=["lead", "deal"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pipedrive(redis_client: redis.Redis, mode: str, serve: Any) -> Iterator[tuple[PipedriveEmulator, PipedriveAdapter]]:
    emulator = PipedriveEmulator(TOKEN, timeout_seconds=2.0, search_lag=SEARCH_LAG)
    adapter = _adapter(serve(emulator), MAPPINGS[mode], redis_client)
    adapter.setup(required_schema(MAPPINGS[mode]), apply=True)
    yield emulator, adapter
    assert not emulator.violations, emulator.violations


def record_state(emulator: PipedriveEmulator, mode: str, reference: str) -> dict[str, Any]:
    """The record's status (the lead's status label, or the deal's stage name) and its tags."""
    key = emulator.field_key("deal", "chat2crm reference")
    if mode == "lead":
        lead = next(lead for lead in emulator.records("leads") if lead.get(key) == reference)
        names = emulator.label_names(lead["label_ids"])
        statuses = set(MAPPINGS["lead"].record.statuses.values())  # type: ignore[union-attr]
        return {"stage": next((n for n in names if n in statuses), None), "tags": names}
    deal = next(d for d in emulator.records("deals") if d["custom_fields"].get(key) == reference)
    stage = next(s["name"] for s in emulator.stages if s["id"] == deal["stage_id"])
    tags_field = next(f for f in emulator.fields["deal"] if f["field_name"] == "chat2crm tags")
    labels = {o["id"]: o["label"] for o in tags_field["options"]}
    return {"stage": stage, "tags": [labels[i] for i in deal["custom_fields"].get(tags_field["field_code"]) or []]}


@pytest.fixture
def env(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], mode: str) -> AdapterEnv:
    emulator, adapter = pipedrive
    # the client gives up after half a second (the emulator's time-out fault holds a call for 2 s, then writes)
    adapter = _adapter(adapter.base, MAPPINGS[mode], adapter.redis, timeout_seconds=0.5)  # type: ignore[arg-type]
    kinds = {**KINDS, "record": "leads" if mode == "lead" else "deals"}
    return AdapterEnv(adapter=adapter, mapping=MAPPINGS[mode], fail_next=emulator.fail_next,
                      count=lambda kind: emulator.count(kinds[kind]),
                      record_state=lambda reference: record_state(emulator, mode, reference))


class TestPipedriveContract(AdapterContract):
    """The shared contract, for Pipedrive (Lead mode and Deal mode)."""


def test_calls_per_lead(env: AdapterEnv, mode: str) -> None:
    contract = AdapterContract()
    contract.sync(env, make_lead("#1000", sender="4915100000000"))  # makes the tag labels, once per account
    new = contract.sync(env, make_lead("#1042"))
    returning = contract.sync(env, make_lead("#1043"))
    replay = contract.sync(env, make_lead("#1043"))
    handoff = contract.sync(env, make_lead("#1044", handoff_reason="patient_request"))
    # a new patient: key search, phone search, e-mail search (Pipedrive allows duplicates: another person may hold
    # it), person, lead/deal, note
    assert (new.calls, returning.calls, replay.calls, handoff.calls) == (6, 2, 0, 3)


def test_note_lead_and_activity_are_linked(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv,
                                           mode: str) -> None:
    emulator, _ = pipedrive
    result = AdapterContract().sync(env, make_lead(handoff_reason="patient_request"))
    assert result.record is not None and result.note is not None and result.task is not None
    record = emulator.records("leads" if mode == "lead" else "deals")[0]
    assert str(record["person_id"]) == result.contact.id
    note = emulator.records("notes")[0]
    assert note[f"{mode}_id"] == (result.record.id if mode == "lead" else int(result.record.id))
    assert str(note["person_id"]) == result.contact.id
    assert "#1042" in note["content"] and "https://relay.example/t/abc" in note["content"]
    activity = emulator.records("activities")[0]
    assert activity["type"] == "task" and activity["due_date"] == "2026-11-23" and str(activity["person_id"]) == \
        result.contact.id
    person = emulator.records("persons")[0]
    key = emulator.field_key("person", "chat2crm contact key")
    assert person["custom_fields"][key] == "whatsapp:905321112233"
    assert person["phones"] == [{"value": "+905321112233", "primary": True, "label": "mobile"}]


def test_a_person_a_clinic_worker_made_is_adopted_by_phone(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter],
                                                           env: AdapterEnv) -> None:
    emulator, _ = pipedrive
    with emulator.lock:
        existing = {"id": 77, "name": "Ayse Y.", "phones": [{"value": "+90 532 111 22 33", "primary": True,
                                                           "label": "work"}], "emails": [], "custom_fields": {},
                    "is_deleted": False}
        emulator.objects["persons"]["77"] = existing
    result = AdapterContract().sync(env, make_lead())
    assert result.contact.id == "77" and not result.contact.created and emulator.count("persons") == 1
    person = emulator.records("persons")[0]
    assert person["name"] == "Ayse Y."  # what the worker typed stays
    assert person["custom_fields"][emulator.field_key("person", "chat2crm contact key")] == "whatsapp:905321112233"
    assert [p["value"] for p in person["phones"]] == ["+90 532 111 22 33"]  # the same number, not added twice


def test_retry_after_a_timeout_finds_the_record_instead_of_duplicating(
        pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv, mode: str) -> None:
    emulator, _ = pipedrive
    contract = AdapterContract()
    contract.sync(env, make_lead("#1042"))
    # the record create times out on our side (0.5 s), but Pipedrive writes it (after 0.7 s)
    emulator.timeout_seconds = 0.7
    env.fail_next(1, "timeout")
    with pytest.raises(RetryableError):
        contract.sync(env, make_lead("#1043"))
    time.sleep(0.4)  # the job layer's back-off; by then Pipedrive has written it
    again = contract.sync(env, make_lead("#1043"))
    assert again.record is not None and not again.record.created
    assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 2, 2)


def test_find_contact_reads_back_what_the_mapping_names(env: AdapterEnv) -> None:
    AdapterContract().sync(env, make_lead())
    found = env.adapter.find_contact(key=("chat2crm contact key", "whatsapp:905321112233"),
                                     properties=["name", "email", "phone", "chat2crm language"])
    assert found is not None
    assert found.properties == {"name": "Ayşe Yılmaz", "email": "p905321112233@example.com",
                                "phone": "+905321112233", "chat2crm language": "tr"}
    assert env.adapter.find_contact(key=("chat2crm contact key", "whatsapp:1")) is None


def test_an_unknown_field_name_is_a_fatal_error_naming_it(redis_client: redis.Redis, serve: Any) -> None:
    emulator = PipedriveEmulator(TOKEN)
    url = serve(emulator)
    adapter = _adapter(url, MAPPINGS["lead"], redis_client)
    from connector.mapping import plan

    with pytest.raises(FatalError) as info:
        adapter.sync(plan(make_lead(), MAPPINGS["lead"]))
    assert info.value.field == "chat2crm language" and "mappings/pipedrive.yaml" in info.value.message
    assert "'chat2crm channel'" in info.value.message  # every missing field at once, not one per attempt
    assert [c["path"] for c in emulator.calls] == ["/api/v2/personFields"] * 2  # read once, refreshed once
    assert not emulator.violations


def test_setup_then_doctor_finds_everything(redis_client: redis.Redis, mode: str, serve: Any) -> None:
    emulator = PipedriveEmulator(TOKEN)
    url = serve(emulator)
    adapter = _adapter(url, MAPPINGS[mode], redis_client)
    before = check_online(MAPPINGS[mode], adapter)
    dry = adapter.setup(required_schema(MAPPINGS[mode]), apply=False)
    assert emulator.count("leadLabels") == 0 and len(emulator.fields["person"]) == 10  # a dry run changes nothing
    done = adapter.setup(required_schema(MAPPINGS[mode]), apply=True)
    again = adapter.setup(required_schema(MAPPINGS[mode]), apply=True)
    after = check_online(MAPPINGS[mode], adapter)
    report = adapter.check_credentials()
    assert any("chat2crm contact key" in str(p) for p in before)
    assert any(line.startswith("would create person field 'chat2crm contact key'") for line in dry)
    assert any(line.startswith("created deal field 'chat2crm reference'") for line in done)
    assert not any(line.startswith("created") for line in again)  # safe to run again
    assert after == [] and report.ok
    assert not emulator.violations


def test_rate_limit_is_honoured_not_a_failure(redis_client: redis.Redis, serve: Any) -> None:
    emulator = PipedriveEmulator(TOKEN, rate_limit=(4, 0.5))
    url = serve(emulator)
    adapter = _adapter(url, MAPPINGS["lead"], redis_client,
                       rate_limit={"requests": 4, "per_seconds": 0.5})
    for _ in range(6):
        adapter.check_credentials()
    assert all(c["status"] == 200 for c in emulator.calls)  # the shared limiter kept under the burst limit


def test_searches_keep_to_their_own_lower_limit(redis_client: redis.Redis, serve: Any) -> None:
    emulator = PipedriveEmulator(TOKEN, rate_limit=(100, 0.5), search_rate_limit=(3, 0.5))
    url = serve(emulator)
    adapter = _adapter(url, MAPPINGS["lead"], redis_client, rate_limit={"requests": 100, "per_seconds": 0.5},
                       search_rate_limit={"requests": 3, "per_seconds": 0.5})
    adapter.setup(required_schema(MAPPINGS["lead"]), apply=True)
    for sender in range(4):  # two searches each
        AdapterContract().sync(AdapterEnv(adapter, MAPPINGS["lead"], emulator.fail_next, emulator.count,
                                          lambda _: {}), make_lead(f"#{2000 + sender}", sender=f"4915100000{sender:03d}"))
    assert [c for c in emulator.calls if c["status"] >= 300] == [] and emulator.count("persons") == 4
    assert not emulator.violations


def test_anonymising_blanks_the_person(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv) -> None:
    emulator, adapter = pipedrive
    AdapterContract().sync(env, make_lead())
    report = adapter.erase_contact(key=("chat2crm contact key", "whatsapp:905321112233"), mode="anonymise")
    person = emulator.records("persons")[0]
    assert report.erased == [f"persons/{person['id']}"] and person["name"] == "Erased"
    assert person["phones"] == [] and person["emails"] == []
    assert person["custom_fields"][emulator.field_key("person", "chat2crm contact key")] == f"erased:{person['id']}"
    assert adapter.find_contact(key=("chat2crm contact key", "whatsapp:905321112233")) is None


def test_an_organization_is_found_by_name_or_made_once(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter],
                                                       env: AdapterEnv) -> None:
    from adapters.base import CompanyWrite

    emulator, _ = pipedrive
    adapter: PipedriveAdapter = env.adapter  # type: ignore[assignment]
    with emulator.lock:  # one a clinic worker made long ago (search shows it)
        emulator.objects["organizations"]["90"] = {"id": 90, "name": "Acme Travel", "owner_id": 1, "is_deleted": False,
                                                   "add_time": "2026-01-01T00:00:00Z", "custom_fields": {},
                                                   "update_time": "2026-01-01T00:00:00Z"}
    found = adapter._company(CompanyWrite(object="organization", name="acme travel"))
    first = adapter._company(CompanyWrite(object="organization", name="Beta Clinic"))
    again = adapter._company(CompanyWrite(object="organization", name="Beta Clinic"))
    assert found.id == "90" and not found.created
    assert first.created and not again.created and again.id == first.id and emulator.count("organizations") == 2
    # its create times out on our side, Pipedrive makes it anyway, and search does not show it yet
    emulator.timeout_seconds = 0.7
    emulator.fail_next(1, "timeout", after=1)  # the name search passes, the create is held
    with pytest.raises(RetryableError):
        adapter._company(CompanyWrite(object="organization", name="Gamma Travel"))
    time.sleep(0.4)
    retried = adapter._company(CompanyWrite(object="organization", name="Gamma Travel"))
    assert not retried.created and emulator.count("organizations") == 3
    assert emulator.calls[-1]["path"] == "/api/v2/organizations" and emulator.calls[-1]["method"] == "GET"


def test_a_429_carries_pipedrives_wait(env: AdapterEnv, pipedrive: tuple[PipedriveEmulator, PipedriveAdapter]) -> None:
    emulator, _ = pipedrive
    emulator.fail_next(1, "daily")
    with pytest.raises(RetryableError) as info:
        AdapterContract().sync(env, make_lead())
    assert info.value.retry_after is not None and info.value.retry_after > 0  # until midnight UTC


def test_the_daily_token_budget_is_enforced(redis_client: redis.Redis, serve: Any) -> None:
    emulator = PipedriveEmulator(TOKEN, daily_tokens=5)
    url = serve(emulator)
    adapter = _adapter(url, MAPPINGS["lead"], redis_client)
    adapter.check_credentials()  # /v1/users/me (2 tokens) + /api/v2/personFields (10 tokens): over
    assert [c["status"] for c in emulator.calls] == [200, 429]
    assert emulator.tokens_used == 2


def test_emulator_rejects_what_pipedrive_would(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter]) -> None:
    emulator, adapter = pipedrive
    base = adapter.base
    headers = {"x-api-token": TOKEN}
    wrong_type = requests.post(f"{base}/api/v2/persons", json={"name": "x", "owner_id": "1"}, headers=headers,
                               timeout=5)
    assert wrong_type.status_code == 400 and wrong_type.json()["success"] is False
    no_title = requests.post(f"{base}/v1/leads", json={"person_id": 1}, headers=headers, timeout=5)
    assert no_title.status_code == 400  # title is required
    bad_enum = requests.get(f"{base}/api/v2/persons/search", params={"term": "ab", "fields": "phone,nope"},
                            headers=headers, timeout=5)
    assert bad_enum.status_code == 400
    unknown_field = requests.post(f"{base}/api/v2/persons", json={"name": "x", "custom_fields": {"f" * 40: "y"}},
                                  headers=headers, timeout=5)
    assert unknown_field.status_code == 400 and "does not exist" in unknown_field.json()["error"]
    no_token = requests.get(f"{base}/api/v2/personFields", timeout=5)
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized access"
    unknown_path = requests.get(f"{base}/api/v2/nothing", headers=headers, timeout=5)
    assert unknown_path.status_code == 404
    assert len(emulator.violations) == 4  # the shape errors and the unknown path; the field error is not a shape error
    emulator.violations.clear()


def test_agent_view(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv, mode: str) -> None:
    emulator, adapter = pipedrive
    AdapterContract().sync(env, make_lead(handoff_reason="patient_request"))
    view = requests.get(f"{adapter.base}/_emulator/view", timeout=5).json()
    assert view["crm"] == "pipedrive" and view == emulator.agent_view()
    assert view["contacts"][0]["fields"]["chat2crm contact key"] == "whatsapp:905321112233"
    record = view["records"][0]
    assert record["object"] == mode and record["stage"] == "New enquiry"
    assert {"hair_transplant", "lang:tr"} <= set(record["tags"])
    assert "#1042" in view["notes"][0]["body"] and "<p>" not in view["notes"][0]["body"]
    assert len(view["tasks"]) == 1


def test_an_oauth_token_is_sent_as_bearer_and_named_when_refused(redis_client: redis.Redis, serve: Any) -> None:
    from core.errors import AuthError

    emulator = PipedriveEmulator(TOKEN)
    url = serve(emulator)

    def adapter(oauth: str) -> PipedriveAdapter:
        settings = make_settings("unix:///unused", pipedrive_api_token="not-this-one", pipedrive_oauth_token=oauth,
                                 pipedrive_api_base=url)
        return PipedriveAdapter.from_settings(settings, options=MAPPINGS["lead"].crm_options(), redis=redis_client)

    assert adapter(TOKEN).check_credentials().ok
    with pytest.raises(AuthError) as info:
        adapter("expired").describe(["person"])
    assert info.value.setting == "PIPEDRIVE_OAUTH_TOKEN"
    assert "expired" not in info.value.message and "expired" not in str(info.value.details)


def test_field_keys_are_resolved_at_worker_start_or_it_refuses_to_start(redis_client: redis.Redis,
                                                                         serve: Any) -> None:
    from core.errors import ConfigurationError

    emulator = PipedriveEmulator(TOKEN)
    adapter = _adapter(serve(emulator), MAPPINGS["lead"], redis_client)
    required = required_schema(MAPPINGS["lead"])
    with pytest.raises(ConfigurationError) as info:
        adapter.prepare(required)  # a new account: none of the mapping's custom fields exists yet
    missing = {p.path for p in info.value.problems}
    assert {"person.chat2crm contact key", "lead.chat2crm reference", "lead.Treatment"} <= missing
    assert all("crm setup" in str(p) for p in info.value.problems)
    adapter.setup(required, apply=True)
    redis_client.flushdb()  # a worker starting on an empty cache
    adapter.prepare(required)
    before = len(emulator.calls)
    adapter.prepare(required)  # the keys are in Redis now, for every worker
    assert len(emulator.calls) == before


def test_a_person_whose_create_timed_out_is_found_by_a_list_not_a_search(
        pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv) -> None:
    """The person create times out on our side, Pipedrive makes the person, and its search does not show it yet:
    the retry finds it among the persons updated since the create was sent (a list, which is current)."""
    emulator, _ = pipedrive
    AdapterContract().sync(env, make_lead("#1000", sender="4915100000000"))  # labels and options, once per account
    emulator.timeout_seconds = 0.7
    emulator.fail_next(1, "timeout", after=3)  # the key, phone and e-mail searches pass; the person create is held
    with pytest.raises(RetryableError):
        AdapterContract().sync(env, make_lead("#1042"))
    assert emulator.calls[-1]["path"] == "/api/v2/persons" and emulator.calls[-1]["method"] == "POST"
    time.sleep(0.4)
    assert emulator.count("persons") == 2
    again = AdapterContract().sync(env, make_lead("#1042"))
    assert not again.contact.created and emulator.count("persons") == 2
    listed = [c for c in emulator.calls if c["path"] == "/api/v2/persons" and c["method"] == "GET"]
    assert len(listed) == 1


def test_a_note_whose_create_timed_out_is_found_on_its_record(
        pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv) -> None:
    emulator, _ = pipedrive
    AdapterContract().sync(env, make_lead("#1042"))
    emulator.timeout_seconds = 0.7
    emulator.fail_next(1, "timeout", after=1)  # the returning patient's record passes; its note is held
    with pytest.raises(RetryableError):
        AdapterContract().sync(env, make_lead("#1043"))
    assert emulator.calls[-1]["path"] == "/v1/notes"
    time.sleep(0.4)
    again = AdapterContract().sync(env, make_lead("#1043"))
    assert again.note is not None and not again.note.created and again.calls == 1  # the record's notes, listed
    assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 2, 2)


def test_two_workers_make_one_person(pipedrive: tuple[PipedriveEmulator, PipedriveAdapter], env: AdapterEnv,
                                     mode: str, redis_client: redis.Redis) -> None:
    """Two leads of one new patient synced at once, while search lags: one person (one worker at a time
    finds or makes a given person; the other then finds it in the id cache)."""
    import threading

    emulator, adapter = pipedrive
    AdapterContract().sync(env, make_lead("#1000", sender="4915100000000"))
    emulator.latency = 0.05
    workers = [_adapter(adapter.base, MAPPINGS[mode], redis_client) for _ in range(2)]
    errors: list[BaseException] = []

    def work(worker: PipedriveAdapter, reference: str) -> None:
        try:
            from connector.mapping import plan

            worker.sync(plan(make_lead(reference), MAPPINGS[mode]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, f"#{1042 + i}")) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and emulator.count("persons") == 2 and env.count("record") == 3


def test_forget_deletes_the_cached_keys_that_hold_the_identities(env: AdapterEnv, redis_client: redis.Redis) -> None:
    AdapterContract().sync(env, make_lead())
    AdapterContract().sync(env, make_lead("#1043", sender="4915100000000"))
    holding = [k for k in redis_client.scan_iter("c2c:pipedrive:*") if b"905321112233" in k]
    assert holding
    assert env.adapter.forget(["905321112233"]) == len(holding)
    assert not [k for k in redis_client.scan_iter("c2c:*") if b"905321112233" in k]
    assert env.adapter.forget(["whatsapp:4915100000000", "nobody@example.com"]) == 1
