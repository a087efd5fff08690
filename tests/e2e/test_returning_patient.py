"""A returning patient through the whole relay (webhook, worker, bot, HubSpot emulator): where they live lands in
the CRM as a city and a country; a new request after a finished one, a request taken up again 30 hours later,
and a conversation that expired (the CRM's pre-fill) never ask again what is known."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from connector import conversations
from tests.e2e.conftest import Stack
from tests.paths import MAPPINGS

PATIENT = "905321112233"  # a Turkish number: the patient lives in the Netherlands
LOCATION_QUESTION = "Which country and city do you live in?"
TREATMENT_QUESTION = "Which treatment are you interested in?"
TRAVEL_QUESTION = "When are you thinking of travelling? (e.g. 10-17 March)"


@pytest.fixture
def stack_config(tmp_path: Path) -> dict[str, Any]:
    """The shipped HubSpot mapping, writing the contact's city as well (HubSpot's own `city` property)."""
    yaml = YAML(typ="rt")
    data = yaml.load((MAPPINGS / "hubspot.yaml").read_text(encoding="utf-8"))
    fields = data["contact"]["fields"]
    if "contact.city" not in {str(v) for v in fields.values()}:
        fields["city"] = "contact.city"
    path = tmp_path / "hubspot-city.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return {"mapping": str(path)}


def _said(stack: Stack) -> list[str]:
    texts = []
    for sent in stack.whatsapp.messages_to(PATIENT):
        payload = sent.payload
        texts.append(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])
    return texts


def _last_question(stack: Stack) -> str:
    return _said(stack)[-1].split("\n\n")[-1]


def _conversation(stack: Stack) -> Any:
    (conversation,) = [c for c in conversations.stored(stack.runtime) if c.sender_id == PATIENT]
    return conversation


def _age(stack: Stack, hours: float) -> None:
    """Move the conversation's last activity ``hours`` back, as if the patient had been away that long."""
    conversation = _conversation(stack)
    conversation.updated_at -= timedelta(hours=hours)
    pipe = stack.runtime.redis.pipeline()
    conversations.stage_save(stack.runtime, pipe, conversation)
    pipe.execute()


def _finish_first_request(stack: Stack, patient: Any) -> None:
    patient.send_text("Hello, I am interested in a hair transplant.")
    stack.work()
    assert _last_question(stack) == LOCATION_QUESTION
    for said in ("Amsterdam, Hollanda", "10-17 March", "hans@example.com"):
        patient.send_text(said)
        stack.work()
    patient.choose_from_list("en", "English")
    stack.work()
    patient.press_button("no", "I do not agree")
    stack.work()
    assert "recorded as" in _said(stack)[-1]


def test_a_returning_patient_is_not_asked_where_they_live_again(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _finish_first_request(stack, patient)
    (contact,) = stack.crm.contacts()
    assert contact["country"] == "NL" and contact["city"] == "Amsterdam"  # the answer's country, not the number's

    # a minute later, a new request (the CRM's inbox has the finished one: the restart command brings the bot
    # back): the treatment is asked, where they live is not
    patient.send_text("start over")
    stack.work()
    assert _last_question(stack) == TREATMENT_QUESTION
    patient.choose_from_list("dental", "Dental care")
    stack.work()
    assert _last_question(stack) == TRAVEL_QUESTION

    # 30 hours later the request goes on: greeted back, the travel dates taken, nothing answered asked again
    _age(stack, 30)
    patient.send_text("1-5 June")
    stack.work()
    greeting, *_ = _said(stack)[-1].split("\n\n")
    assert greeting == "Welcome back! Let us go on where we left off."
    assert _last_question(stack).startswith("Do you agree")
    patient.press_button("no", "I do not agree")
    stack.work()
    assert "recorded as" in _said(stack)[-1]
    assert LOCATION_QUESTION not in _said(stack)[-6:]

    # the conversation expired: the CRM's contact tells the city and country, so the bot does not ask them
    stack.runtime.redis.delete(*[k for k in stack.runtime.redis.scan_iter("c2c:conv:*")])
    patient.send_text("Hi, a question about dental implants")
    stack.work()
    assert _last_question(stack) == TRAVEL_QUESTION, _said(stack)[-1]
    answers = _conversation(stack).answers
    assert answers["location_city"] == "Amsterdam" and answers["location_country"] == "NL"


def test_in_a_spike_the_crm_look_up_is_skipped_not_waited_for(stack: Stack) -> None:
    """The look-up of a returning patient uses only the CRM budget nobody needs: with half of HubSpot's window
    spent (lead writes waiting for the rest), the bot answers at once and asks, and no look-up is made."""
    from adapters._ratelimit import SharedRateLimiter
    from adapters.hubspot.options import HubSpotOptions

    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _finish_first_request(stack, patient)
    stack.runtime.redis.delete(*[k for k in stack.runtime.redis.scan_iter("c2c:conv:*")])  # expired
    budget = HubSpotOptions.model_validate(stack.runtime.mapping.crm_options()).rate_limit
    spent = SharedRateLimiter(stack.runtime.redis, "hubspot", budget.requests, budget.per_seconds)
    for _ in range(budget.requests // 2):  # a spike: other workers' calls fill half the ten-second window
        spent.acquire()
    reads = len([c for c in stack.hubspot.calls if "/contacts/batch/read" in c["path"]])
    patient.send_text("Hi, a question about dental implants")
    stack.work()
    assert _last_question(stack) == LOCATION_QUESTION  # asked: what the CRM knows was not looked up
    assert len([c for c in stack.hubspot.calls if "/contacts/batch/read" in c["path"]]) == reads
