"""Each rollout level against the whole relay (web app, real Redis, rq workers, the WhatsApp and HubSpot emulators).

Two patients of the meeting flow: a Turkish one from the ``meeting-tr`` campaign who completes a request, and an
English one who asks for a person. The mapping gets an owner hint (Turkish requests → an owner) so that the levels
that route can be told from those that do not. What HubSpot holds and what the patients were sent is read back:

- ``off``: no bot message at all, each patient handed over at the first message (``rollout_off``): contact,
  note and task, no deal; a later message makes nothing more;
- ``collect``: the bot asks; contact, note and task (the completed request's task says ``rollout_collect``),
  no deal;
- ``create``: deals in the first stage, no owner, the task at medium priority;
- ``full`` (no ``rollout:`` section): deals with the owner hint's owner, the task at high priority.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from click.testing import CliRunner

from connector import measures, rollout, sweeper
from connector.cli import main
from connector.mapping import load_mapping
from connector.mapping.model import OwnerHint
from core import metrics
from tests.e2e.conftest import Stack

TURKISH, ENGLISH = "905321112233", "447700900123"
LEVELS = ["off", "collect", "create", "full"]


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stack_config(level: str) -> dict[str, Any]:
    rollout: dict[str, Any] = {"rollout": {"default": level}}
    if level == "full":
        rollout = {}  # full: a deployment without the section
    elif level == "split":
        rollout = {"rollout": {"default": "collect",
                               "split": {"share": 0.5, "level": "full", "group": "b", "others": "a"}}}
    return {"default_flow": "meeting_request", **rollout}


def _bot_texts(patient: Any) -> list[str]:
    """What the relay sent the patient as messages (read receipts are not messages)."""
    return [str(s.payload) for s in patient.received() if s.payload.get("type")]


def _owner_hint(stack: Stack) -> str:
    """Give the mapping an owner hint for Turkish requests; returns the owner's id."""
    owner, runtime = "90001", stack.runtime
    config = runtime.config
    mapping = load_mapping(config.mapping_path, crm=config.crm, language=config.crm_language).model_copy(
        update={"owner_hints": [OwnerHint(when={"language": "tr"}, owner_id=owner)]})
    runtime.reset_cache()  # the files are loaded once per process: this one is loaded with the hint
    runtime.cached("mapping", lambda: mapping)
    assert runtime.mapping.owner_hints
    return owner


def _two_patients(stack: Stack) -> tuple[Any, Any]:
    click = requests.get(f"{stack.relay_url}/c/meeting-tr", allow_redirects=False, timeout=5)
    opening = parse_qs(urlparse(click.headers["Location"]).query)["text"][0]
    turkish = stack.whatsapp.patient(TURKISH, "Ayşe Yılmaz")
    for said in (opening, "Süreç otomasyonu ve raporlama.", "ABC Lojistik, info@abc.com", "Çarşamba 11:00 uygun."):
        assert turkish.send_text(said) == 200
        stack.work()
    english = stack.whatsapp.patient(ENGLISH, "Tom Baker")
    for said in ("Hello, I would like to book a meeting", "human"):
        assert english.send_text(said) == 200
        stack.work()
    return turkish, english


def test_each_level_writes_what_it_allows(stack: Stack, level: str) -> None:
    owner = _owner_hint(stack)
    turkish, english = _two_patients(stack)
    hubspot = stack.hubspot
    contacts = {c["properties"]["chat2crm_contact_key"]: c["properties"] for c in hubspot.records("contacts")}
    assert set(contacts) == {f"whatsapp:{TURKISH}", f"whatsapp:{ENGLISH}"}
    assert {c.get("chat2crm_rollout") for c in contacts.values()} == {level}
    # the requests' notes (the CRM's inbox keeps the conversation's messages as notes too)
    notes = [n["properties"]["hs_note_body"] for n in hubspot.records("notes")
             if ":note -->" in n["properties"]["hs_note_body"]]
    tasks = [t["properties"] for t in hubspot.records("tasks")]
    deals = [d["properties"] for d in hubspot.records("deals")]
    assert len(notes) == 2
    if level == "full":
        assert not any("Bot rollout" in n for n in notes)  # the note of a deployment without levels, as before
    else:
        assert all(f"Bot rollout: {level}" in n for n in notes)

    if level == "off":
        assert _bot_texts(turkish) == [] and _bot_texts(english) == []
        assert deals == [] and len(tasks) == 2
        assert all("rollout_off" in t["hs_task_body"] for t in tasks)
        assert turkish.send_text("Merhaba?") == 200  # the agents have it: nothing more is written, nothing said
        stack.work()
        assert (hubspot.count("tasks"), hubspot.count("deals"), _bot_texts(turkish)) == (2, 0, [])
        assert sum(":note -->" in n["properties"]["hs_note_body"] for n in hubspot.records("notes")) == 2
    else:
        assert _bot_texts(turkish) and _bot_texts(english)  # the bot asked its questions
    if level == "collect":
        assert deals == [] and len(tasks) == 2
        assert sorted("rollout_collect" in t["hs_task_body"] for t in tasks) == [False, True]
    if level in ("create", "full"):
        stages = {d["dealstage"] for d in deals}
        assert len(deals) == 2 and len(stages) == 1  # both in the first stage of the pipeline
        (task,) = tasks  # only the hand-over has a task
        turkish_deal = next(d for d in deals if "Ayşe" in d["dealname"])
        if level == "create":
            assert not any(d.get("hubspot_owner_id") for d in deals)
            assert task["hs_task_priority"] == "MEDIUM"
        else:
            assert turkish_deal.get("hubspot_owner_id") == owner
            assert task["hs_task_priority"] == "HIGH"

    leads = metrics.read(stack.runtime.redis, "leads")
    assert {labels[4:] for labels in leads} == {(level, "none")}
    assert sum(leads.values()) == 2


@pytest.mark.parametrize("level", ["off"])
def test_a_patient_who_stops_a_conversation_whose_bot_is_off_hears_it_was_taken(stack: Stack, level: str) -> None:
    patient = stack.whatsapp.patient(TURKISH, "Ayşe Yılmaz")
    assert patient.send_text("Merhaba") == 200
    stack.work()
    assert _bot_texts(patient) == []
    assert patient.send_text("stop") == 200
    stack.work()
    (confirmation,) = _bot_texts(patient)
    assert "mesaj göndermeyeceğiz" in confirmation or "not message you again" in confirmation


@pytest.mark.parametrize("level", ["split"])
def test_a_split_is_counted_by_group_in_the_metrics_and_the_report(stack: Stack, level: str) -> None:
    # the split (stack_config): half the new conversations at `full` (group b), the others at `collect` (group a)
    numbers = [f"4477009{n:05d}" for n in range(8)]
    keys = {number: f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{number}" for number in numbers}
    expected = {number: "b" if rollout.bucket(key) < 0.5 else "a" for number, key in keys.items()}
    assert set(expected.values()) == {"a", "b"}  # these eight numbers fall in both groups
    for number in numbers:
        assert stack.whatsapp.patient(number, "Tom Baker").send_text("Hello, I would like to book a meeting") == 200
        stack.work()
    client = stack.runtime.redis
    for key in keys.values():  # time passes: each resume window ends, and the sweeper counts where they stopped
        client.zadd(measures.IDLE.key(), {key: time.time() - 1})
    sweeper.sweep(stack.runtime)
    dropoffs = metrics.read(client, "dropoffs")
    by_group = {labels[2:]: count for labels, count in dropoffs.items()}
    assert by_group == {("full", "b"): list(expected.values()).count("b"),
                        ("collect", "a"): list(expected.values()).count("a")}
    first = numbers[0]
    assert stack.whatsapp.patient(first, "Tom Baker").send_text("human") == 200
    stack.work()
    group = expected[first]
    label = "full · b" if group == "b" else "collect · a"
    assert metrics.read(client, "handoffs") == {("meeting_request", "patient_request", *label.split(" · ")): 1.0}
    env = {"REDIS_URL": stack.settings.redis_url or "", "CHAT2CRM_CONFIG": str(stack.config_path)}
    printed = CliRunner().invoke(main, ["report", "--since", "1h"], env=env)
    assert printed.exit_code == 0, printed.output
    section = printed.output.split("By rollout level", 1)[1]
    assert label in section and "0 completed, 1 handed over" in section, printed.output
