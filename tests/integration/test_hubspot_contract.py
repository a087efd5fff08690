"""HubSpot passes the adapters' shared contract, against the HubSpot emulator over HTTP.

The emulator's search lags behind writes as HubSpot's does (a few seconds): every test runs with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from adapters.hubspot import HubSpotAdapter
from connector.mapping import load_mapping, plan, required_schema
from core.errors import RetryableError
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import AdapterContract, AdapterEnv, make_lead
from tests.paths import MAPPINGS

MAPPING = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot")
KINDS = {"contact": "contacts", "record": "deals", "note": "notes", "task": "tasks"}
#: the client gives up after a second (the emulator's time-out fault holds a call for 2 s, then writes; a
#: shorter wait times out real answers on a loaded machine)
FAST = {"timeout_seconds": 1.0, "connect_timeout_seconds": 1.0}
SEARCH_LAG = 5.0


@pytest.fixture
def hubspot(redis_client: redis.Redis) -> Iterator[tuple[HubSpotEmulator, HubSpotAdapter]]:
    emulator = HubSpotEmulator("pat-contract", timeout_seconds=2.0, search_lag=SEARCH_LAG)
    served = ServedApp(emulator.app).start()
    settings = make_settings("unix:///unused", hubspot_access_token="pat-contract", hubspot_api_base=served.url)
    adapter = HubSpotAdapter.from_settings(settings, options={**MAPPING.crm_options(), **FAST}, redis=redis_client)
    adapter.setup(required_schema(MAPPING), apply=True)
    try:
        yield emulator, adapter
    finally:
        served.stop()
    assert not emulator.violations, emulator.violations


@pytest.fixture
def env(hubspot: tuple[HubSpotEmulator, HubSpotAdapter]) -> AdapterEnv:
    emulator, adapter = hubspot

    def state(reference: str) -> dict[str, Any]:
        deal = next(d for d in emulator.records("deals") if d["properties"].get("chat2crm_reference") == reference)
        stages = {s["id"]: s["label"] for p in emulator.pipelines["deals"] for s in p["stages"]}
        return {"stage": stages.get(deal["properties"].get("dealstage")),  # the mapping names stages by label
                "tags": (deal["properties"].get("chat2crm_tags") or "").split(";")}

    return AdapterEnv(adapter=adapter, mapping=MAPPING, fail_next=emulator.fail_next,
                      count=lambda kind: emulator.count(KINDS[kind]), record_state=state)


class TestHubSpotContract(AdapterContract):
    """The shared contract, for HubSpot."""


def test_calls_per_lead(env: AdapterEnv) -> None:
    contract = AdapterContract()
    contract.sync(env, __import__("tests.contract", fromlist=["make_lead"]).make_lead("#1000", sender="4915100000000"))
    from tests.contract import make_lead

    new = contract.sync(env, make_lead("#1042"))
    returning = contract.sync(env, make_lead("#1043"))
    replay = contract.sync(env, make_lead("#1043"))
    assert (new.calls, returning.calls, replay.calls) == (3, 3, 3)


def test_note_and_deal_are_associated_with_the_contact(hubspot: tuple[HubSpotEmulator, HubSpotAdapter],
                                                       env: AdapterEnv) -> None:
    from tests.contract import make_lead

    emulator, _ = hubspot
    result = AdapterContract().sync(env, make_lead())
    assert result.record is not None and result.note is not None
    assert emulator.associated("deals", result.record.id, "contacts") == [result.contact.id]
    assert sorted(emulator.associated("notes", result.note.id, "contacts") +
                  emulator.associated("notes", result.note.id, "deals")) == sorted([result.contact.id, result.record.id])
    note = emulator.records("notes")[0]["properties"]["hs_note_body"]
    assert "#1042" in note and "https://relay.example/t/abc" in note


def test_a_contact_a_person_created_is_adopted_by_email(hubspot: tuple[HubSpotEmulator, HubSpotAdapter],
                                                        env: AdapterEnv) -> None:
    from tests.contract import make_lead

    emulator, _ = hubspot
    with emulator.lock:
        existing = emulator._create("contacts", {"email": "p905321112233@example.com", "firstname": "Ayse"}, [])
    result = AdapterContract().sync(env, make_lead())
    assert result.contact.id == existing["id"] and emulator.count("contacts") == 1
    assert emulator.records("contacts")[0]["properties"]["chat2crm_contact_key"] == "whatsapp:905321112233"


def test_rate_limit_is_honoured_not_a_failure(redis_client: redis.Redis) -> None:
    emulator = HubSpotEmulator("pat-rl", rate_limit=(5, 1.0))
    with ServedApp(emulator.app) as served:
        settings = make_settings("unix:///unused", hubspot_access_token="pat-rl", hubspot_api_base=served.url)
        adapter = HubSpotAdapter.from_settings(settings, options={"rate_limit": {"requests": 5, "per_seconds": 1.0}},
                                               redis=redis_client)
        for _ in range(12):
            adapter.describe(["contacts"])
    assert all(c["status"] == 200 for c in emulator.calls)  # the shared limiter kept under HubSpot's limit


def test_emulator_rejects_what_hubspot_would(hubspot: tuple[HubSpotEmulator, HubSpotAdapter]) -> None:
    import requests

    emulator, adapter = hubspot
    base = adapter.credentials.api_base
    headers = {"Authorization": "Bearer pat-contract"}
    no_associations = requests.post(f"{base}/crm/v3/objects/deals", json={"properties": {"dealname": "x"}},
                                    headers=headers, timeout=5)
    assert no_associations.status_code == 400  # HubSpot's create requires associations (send [])
    number = requests.post(f"{base}/crm/v3/objects/deals", json={"properties": {"amount": 5}, "associations": []},
                           headers=headers, timeout=5)
    assert number.status_code == 400  # property values are strings
    unknown = requests.post(f"{base}/crm/v3/objects/deals", json={"properties": {"nope": "x"}, "associations": []},
                            headers=headers, timeout=5)
    assert unknown.status_code == 400 and "PROPERTY_DOESNT_EXIST" in unknown.text
    emulator.violations.clear()


@pytest.mark.parametrize(("kind", "error"), [("500", "RetryableError"), ("503", "RetryableError"),
                                             ("404", "FatalError"), ("401", "AuthError")])
def test_errors_of_every_client_sub_package_are_mapped(hubspot: tuple[HubSpotEmulator, HubSpotAdapter], kind: str,
                                                       error: str) -> None:
    """The properties and pipelines packages raise their own exception subclasses (ServiceException for 5xx…):
    they must reach the error tree like the objects package's, or a 500 there would fail a lead for good."""
    from core import errors

    emulator, adapter = hubspot
    emulator.fail_next(1, kind)
    with pytest.raises(getattr(errors, error)):
        adapter._ensure_options("deals", "chat2crm_tags", ["new-tag"])
    emulator.fail_next(1, kind)
    with pytest.raises(getattr(errors, error)):
        adapter.describe(["deals"])


def test_a_timed_out_write_waits_before_its_retry(env: AdapterEnv) -> None:
    """HubSpot may still carry out a request the client gave up on: the retry waits as long again, so its
    look-up for the note's marker sees what the first attempt wrote."""
    from core.errors import RetryableError
    from tests.contract import make_lead

    env.fail_next(1, "timeout")
    with pytest.raises(RetryableError) as info:
        AdapterContract().sync(env, make_lead())
    assert info.value.retry_after == 2.0  # twice the read timeout the test sets, and at least 2 s
    env.fail_next(1, "503")
    with pytest.raises(RetryableError) as info:
        AdapterContract().sync(env, make_lead())
    assert info.value.retry_after is None  # nothing was written: the job layer's backoff alone decides


def test_a_note_whose_create_timed_out_is_not_written_twice_while_search_lags(
        hubspot: tuple[HubSpotEmulator, HubSpotAdapter], env: AdapterEnv) -> None:
    """The note create times out on our side, HubSpot writes the note anyway, and HubSpot's search does not
    show it yet: the retry finds it among the deal's associated notes (a strongly consistent read)."""
    emulator, adapter = hubspot
    AdapterContract().sync(env, make_lead("#1042"))
    # the contact upsert and the deal create pass; the note create is held 2 s, after the client gave up at 0.5 s
    emulator.fail_next(1, "timeout", after=2)
    with pytest.raises(RetryableError) as info:
        AdapterContract().sync(env, make_lead("#1043"))
    assert info.value.retry_after == 2.0 and emulator.calls[-1]["path"] == "/crm/v3/objects/notes"
    deadline = time.monotonic() + 5
    while emulator.count("notes") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the job layer waits retry_after; HubSpot lands the note meanwhile
    deal = next(d for d in emulator.records("deals") if d["properties"]["chat2crm_reference"] == "1043")
    assert emulator.count("notes") == 2
    searched = requests.post(f"{adapter.credentials.api_base}/crm/v3/objects/notes/search", timeout=5,
                             headers={"Authorization": "Bearer pat-contract"}, json={
                                 "filterGroups": [{"filters": [{"propertyName": "associations.deal", "operator": "EQ",
                                                                "value": deal["id"]}]}],
                                 "properties": ["hs_note_body"], "limit": 10, "after": "0", "sorts": []}).json()
    assert searched["results"] == []  # what a search-based look-up would have seen: no note, so a second one
    again = AdapterContract().sync(env, make_lead("#1043"))
    assert again.note is not None and not again.note.created
    assert again.calls == 2  # the deal's notes (v4 associations), then those notes by id; contact and deal resumed
    notes = [n for n in emulator.records("notes") if "chat2crm:#1043:note" in n["properties"]["hs_note_body"]]
    assert len(notes) == 1 and emulator.count("notes") == 2


def test_a_refused_create_leaves_nothing_pending(env: AdapterEnv, hubspot: tuple[HubSpotEmulator, HubSpotAdapter]) -> None:
    """A create HubSpot answered with a refusal wrote nothing: the retry writes at once, without looking."""
    emulator, _ = hubspot
    AdapterContract().sync(env, make_lead("#1042"))
    emulator.fail_next(1, "429", after=2)  # the note create of the next lead
    with pytest.raises(RetryableError):
        AdapterContract().sync(env, make_lead("#1043"))
    assert emulator.calls[-1]["path"] == "/crm/v3/objects/notes"
    again = AdapterContract().sync(env, make_lead("#1043"))
    assert again.note is not None and again.note.created and again.calls == 1 and emulator.count("notes") == 2


def test_the_bots_look_up_finds_a_contact_written_a_moment_ago(env: AdapterEnv,
                                                               hubspot: tuple[HubSpotEmulator, HubSpotAdapter]) -> None:
    """By the contact key the adapter reads by the unique property, not by search: no lag."""
    emulator, adapter = hubspot
    AdapterContract().sync(env, make_lead())
    found = adapter.find_contact(key=("chat2crm_contact_key", "whatsapp:905321112233"), object="contacts",
                                 properties=["firstname", "email"])
    assert found is not None and found.properties["firstname"] == "Ayşe"
    assert emulator.calls[-1]["path"] == "/crm/v3/objects/contacts/batch/read"
    assert adapter.find_contact(key=("chat2crm_contact_key", "whatsapp:1")) is None
    assert not [c["path"] for c in emulator.calls if "905321112233" in c["path"]]  # never in a URL


def test_forget_deletes_the_cached_keys_that_hold_the_identities(env: AdapterEnv, redis_client: redis.Redis) -> None:
    AdapterContract().sync(env, make_lead())
    AdapterContract().sync(env, make_lead("#1043", sender="4915100000000"))
    holding = [k for k in redis_client.scan_iter("c2c:hubspot:*") if b"905321112233" in k]
    assert holding  # the contact key's id is cached
    assert env.adapter.forget(["+905321112233", "p905321112233@example.com"]) == len(holding)
    assert not [k for k in redis_client.scan_iter("c2c:*") if b"905321112233" in k]
    assert [k for k in redis_client.scan_iter("c2c:hubspot:*") if b"4915100000000" in k]  # someone else's stay
    assert env.adapter.forget(["whatsapp:4915100000000"]) == 1 and env.adapter.forget(["whatsapp:1"]) == 0
    again = AdapterContract().sync(env, make_lead("#1044"))  # the relay still finds the contact, in HubSpot
    assert not again.contact.created and env.count("contact") == 2


def test_opt_out_updates_the_contact(env: AdapterEnv) -> None:
    from connector.mapping import opt_out_plan

    result = AdapterContract().sync(env, make_lead())
    write = opt_out_plan("whatsapp:905321112233", env.mapping)
    assert write is not None
    assert env.adapter.upsert_contact(write).id == result.contact.id and env.count("contact") == 1
    assert plan(make_lead(), env.mapping).contact.key_value == "whatsapp:905321112233"


def test_a_note_the_crm_writes_after_the_retry_looked_is_archived(env: AdapterEnv) -> None:
    """HubSpot takes no idempotency key: a note create it carries out after the client gave up can land after
    the retry looked for it and wrote it again. The retry then waits as long as a late write takes and
    archives the late copy, so the deal keeps one note."""
    contract = AdapterContract()
    contract.sync(env, make_lead("#1042"))
    calls = contract.sync(env, make_lead("#1044")).calls
    notes = env.count("note")
    env.fail_next(1, "timeout", after=calls - 1)  # the note create: written 2 s after it was sent
    with pytest.raises(RetryableError):
        contract.sync(env, make_lead("#1043"))
    assert env.count("note") == notes  # not landed yet when the retry looks (at once, not after retry_after)
    with pytest.raises(RetryableError) as info:  # written again; the late copy is looked for later
        contract.sync(env, make_lead("#1043"))
    assert info.value.retry_after  # type: ignore[attr-defined]
    assert env.count("note") == notes + 1
    time.sleep(info.value.retry_after)  # type: ignore[attr-defined]
    assert env.count("note") == notes + 2  # the late copy has landed
    again = contract.sync(env, make_lead("#1043"))
    assert again.note is not None and not again.note.created
    assert env.count("note") == notes + 1


def test_the_client_keeps_its_apis_and_their_connections(env: AdapterEnv,
                                                         hubspot: tuple[HubSpotEmulator, HubSpotAdapter]) -> None:
    """The official client makes a new API client, and a new connection pool, on every attribute access; the
    adapter keeps each one, so leads after the first open no connection."""
    _emulator, adapter = hubspot
    client = adapter.client
    assert client.crm.objects.batch_api is client.crm.objects.batch_api
    for number in range(4):
        AdapterContract().sync(env, make_lead(f"#12{number:02d}", sender=f"49151000000{number:02d}"))
    apis = [client.crm.objects.batch_api, client.crm.objects.basic_api, client.crm.objects.search_api,
            client.crm.associations.v4.basic_api]
    opened = [pool.num_connections for api in apis
              for pool in api.api_client.rest_client.pool_manager.pools._container.values()]
    assert opened and max(opened) == 1  # one connection per API, used by every call since
