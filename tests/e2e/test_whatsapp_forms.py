"""WhatsApp forms through the whole relay: `chat2crm forms` publishes the bundled flow's form in every language to
the WhatsApp emulator (which validates its Flow JSON as Meta does), the bot offers it in one message, the patient
fills it in the emulator, and the lead reaches HubSpot with the form's answers; a patient who writes instead is
asked the questions one by one."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from connector import conversations, forms
from connector.bot.form import form_name
from connector.cli import main
from connector.runtime import Runtime
from core.errors import ConfigurationError
from tests.e2e.conftest import Stack

PATIENT = "4915112345678"
LANGUAGES = {"tr", "en", "de", "ar", "ru"}
TRAVEL_QUESTION = "When are you thinking of travelling? (e.g. 10-17 March)"
LOCATION_QUESTION = "Which country and city do you live in?"


def _publisher(stack: Stack) -> Runtime:
    """A runtime with the business account's id, as `chat2crm forms` runs with it."""
    settings = stack.settings.model_copy(update={"whatsapp_business_account_id": stack.whatsapp.waba_id})
    return Runtime(settings, redis_client=stack.runtime.redis)


def _sent(stack: Stack) -> list[dict[str, Any]]:
    return [sent.payload for sent in stack.whatsapp.messages_to(PATIENT)]


def _text(payload: dict[str, Any]) -> str:
    return str(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])


def _conversation(stack: Stack) -> Any:
    (conversation,) = [c for c in conversations.stored(stack.runtime) if c.sender_id == PATIENT]
    return conversation


def _finish(stack: Stack, patient: Any) -> None:
    """Travel dates, consent, no photos, no note: the lead is written."""
    assert _text(_sent(stack)[-1]).endswith(TRAVEL_QUESTION)
    patient.send_text("10-17 March")
    stack.work()
    patient.press_button("yes", "I agree")
    stack.work()
    for _ in range(2):  # photos, then the note: both optional
        patient.send_text("Skip")
        stack.work()
    assert "recorded as" in _text(_sent(stack)[-1])


def test_forms_are_published_once_per_language_and_found_again(stack: Stack) -> None:
    publisher = _publisher(stack)
    first = forms.publish(publisher)
    assert {o.language for o in first} == LANGUAGES
    assert {o.action for o in first} == {"published"}
    flows = {f.name: f for f in stack.whatsapp.flows.all()}
    assert {o.name for o in first} == set(flows)
    assert {f.status for f in flows.values()} == {"PUBLISHED"}
    # the Flow JSON uploaded is what the bot's flow file describes now, and Meta found nothing to say about it
    assert all(not f.validation_errors for f in flows.values())
    assert stack.runtime.redis.hgetall(forms.PUBLISHED.key()) == {o.name.encode(): o.flow_id.encode() for o in first}

    again = forms.publish(publisher)
    assert {o.action for o in again} == {"already published"}
    assert {o.flow_id for o in again} == {o.flow_id for o in first}
    assert len(stack.whatsapp.flows.all()) == len(first)


def test_the_command_says_what_it_published(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**stack.env(), "WHATSAPP_BUSINESS_ACCOUNT_ID": stack.whatsapp.waba_id}.items():
        monkeypatch.setenv(key, value)
    first = CliRunner().invoke(main, ["forms"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == "5 forms (ar, de, en, ru, tr): 5 published now, 0 already published"
    again = CliRunner().invoke(main, ["forms"])
    assert again.output.splitlines()[-1] == "5 forms (ar, de, en, ru, tr): 0 published now, 5 already published"
    monkeypatch.delenv("WHATSAPP_BUSINESS_ACCOUNT_ID")
    missing = CliRunner().invoke(main, ["forms"])
    assert missing.exit_code != 0 and "WHATSAPP_BUSINESS_ACCOUNT_ID" in missing.output


def test_a_form_collects_several_answers_in_one_exchange_and_the_lead_has_them(stack: Stack) -> None:
    forms.publish(_publisher(stack))
    stack.runtime.redis.config_resetstat()
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    patient.send_text("Hi, what is the price for a hair transplant?")
    stack.work()
    (offer,) = _sent(stack)
    # one message: the intro, the first question, and the button that opens the form
    assert offer["type"] == "interactive" and offer["interactive"]["type"] == "flow"
    assert _text(offer).endswith(LOCATION_QUESTION)
    parameters = offer["interactive"]["action"]["parameters"]
    published = stack.whatsapp.flows.named(form_name(stack.runtime.flows["health_tourism_intake"], "en"))
    assert published is not None and parameters["flow_id"] == published.id

    status = patient.fill_flow({"location": "Berlin, Germany", "name": "Hans Müller", "email": "Hans@Example.com",
                                "contact_language": "de"})
    assert status == 200
    stack.work()
    answers = _conversation(stack).answers
    assert answers["email"] == "Hans@example.com"  # tidied exactly as a typed answer: the domain in lower case
    assert answers["contact_language"] == "de"
    assert "Berlin" in str(answers["location"])
    # the form took three questions: the next one is the travel dates
    assert len(_sent(stack)) == 2
    _finish(stack, patient)
    stack.work()

    (contact,) = stack.crm.contacts()
    assert contact[stack.crm.field("contact", "contact.email")].lower() == "hans@example.com"
    (record,) = stack.crm.records()
    assert record["_id"]
    (note,) = stack.crm.notes()
    assert "Berlin" in note
    # every script of the whole way ran by its digest (EVALSHA), never sent as text per call (EVAL)
    calls = stack.runtime.redis.info("commandstats")
    assert calls.get("cmdstat_evalsha", {}).get("calls", 0) > 10 and "cmdstat_eval" not in calls


def test_a_patient_who_writes_instead_is_asked_the_questions(stack: Stack) -> None:
    forms.publish(_publisher(stack))
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    patient.send_text("Hi, what is the price for a hair transplant?")
    stack.work()
    assert _sent(stack)[-1]["interactive"]["type"] == "flow"
    patient.send_text("Berlin, Germany")  # answers the form's first question
    stack.work()
    assert _text(_sent(stack)[-1]).endswith(TRAVEL_QUESTION)
    patient.send_text("10-17 March")
    stack.work()
    patient.send_text("hans@example.com")
    stack.work()
    patient.choose_from_list("en", "English")
    stack.work()
    # a form sent late fills nothing that was answered in the chat
    patient.fill_flow({"location": "Paris, France", "name": "Hans Müller", "contact_language": "ru"},
                      message=stack.whatsapp.messages_to(PATIENT)[0])
    stack.work()
    answers = _conversation(stack).answers
    assert "Berlin" in str(answers["location"])
    assert answers["contact_language"] == "en"
    assert answers["email"] == "hans@example.com"


def test_without_a_published_form_the_steps_are_questions(stack: Stack) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    patient.send_text("Hi, what is the price for a hair transplant?")
    stack.work()
    (first,) = _sent(stack)
    assert first["type"] == "text" and _text(first).endswith(LOCATION_QUESTION)


def test_a_draft_left_by_an_interrupted_run_is_finished_not_duplicated(stack: Stack,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = _publisher(stack)
    calls = {"n": 0}
    real_publish = forms._Graph.publish

    def cut_short(graph: Any, flow_id: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise forms.FormsError("WhatsApp could not be reached (ConnectionError)")
        real_publish(graph, flow_id)

    monkeypatch.setattr(forms._Graph, "publish", cut_short)
    with pytest.raises(forms.FormsError):
        forms.publish(publisher)
    assert [f.status for f in stack.whatsapp.flows.all()].count("DRAFT") == 1
    monkeypatch.setattr(forms._Graph, "publish", real_publish)
    outcomes = forms.publish(publisher)
    assert len(outcomes) == len(LANGUAGES) == len(stack.whatsapp.flows.all())
    assert {f.status for f in stack.whatsapp.flows.all()} == {"PUBLISHED"}


def test_a_deprecated_form_is_published_again_under_a_new_name(stack: Stack) -> None:
    publisher = _publisher(stack)
    first = {o.language: o for o in forms.publish(publisher)}
    stack.whatsapp.flows.deprecate(stack.whatsapp.flows.get(first["en"].flow_id))
    again = {o.language: o for o in forms.publish(publisher)}
    assert again["en"].action == "published" and again["en"].flow_id != first["en"].flow_id
    renewed = stack.whatsapp.flows.get(again["en"].flow_id)
    assert renewed is not None and renewed.name == f"{first['en'].name}_2"
    assert {again[lang].action for lang in LANGUAGES - {"en"}} == {"already published"}
    # the bot offers the new one
    assert stack.runtime.redis.hget(forms.PUBLISHED.key(), first["en"].name) == again["en"].flow_id.encode()


def test_meta_validation_errors_stop_publishing_with_its_message(stack: Stack,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(flow: Any, language: str) -> str:
        return '{"version": "7.0", "screens": [{"id": "DETAILS", "layout": {"type": "SingleColumnLayout"}}]}'

    monkeypatch.setattr(forms, "form_json_text", broken)
    with pytest.raises(forms.FormsError, match="invalid"):
        forms.publish(_publisher(stack))
    assert not any(f.status == "PUBLISHED" for f in stack.whatsapp.flows.all())
    assert stack.runtime.redis.hgetall(forms.PUBLISHED.key()) == {}


def test_publishing_needs_the_business_account(stack: Stack) -> None:
    with pytest.raises(ConfigurationError, match="WHATSAPP_BUSINESS_ACCOUNT_ID"):
        forms.publish(stack.runtime)
