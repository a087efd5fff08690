"""A flow's form (a WhatsApp Flow): its Flow JSON, its checks at load, and the engine offering it, reading what
comes back, and falling back to questions."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.bot.engine import FORM, EngineContext, LeadReady, handle
from connector.bot.flows import Flow, load_flow, load_flows
from connector.bot.form import SCREEN, flow_json, form_name
from connector.channels.whatsapp import parse_payload, render
from core.errors import ConfigurationError
from core.models import Conversation, FormOffer, InboundMessage, Reply, SenderProfile
from emulators._checks import whatsapp_message_errors
from tests.paths import FLOWS as SHIPPED_FLOWS

ZONE = ZoneInfo("Europe/Istanbul")
START = datetime(2026, 11, 23, 9, 30, tzinfo=ZONE)
FLOWS = load_flows(SHIPPED_FLOWS)
INTAKE = FLOWS["health_tourism_intake"]


class Chat:
    """One WhatsApp patient and the intake flow, with forms published in ``published`` languages."""

    def __init__(self, *, published: tuple[str, ...] = ("en", "de"), language: str = "en",
                 profile_name: str | None = None, flow: Flow = INTAKE) -> None:
        self.flow, self.now, self.published = flow, START, published
        self.refs, self.ids = itertools.count(2001), itertools.count(1)
        self.conv = Conversation(key="whatsapp:acc:4915112345678", channel="whatsapp", account="acc",
                                 sender_id="4915112345678", language=language, language_source="detected")
        self.profile_name = profile_name
        self.leads: list[Any] = []
        self.last: list[Reply] = []

    def ctx(self) -> EngineContext:
        return EngineContext(now=self.now, timezone=ZONE, languages=["tr", "en", "de", "ar", "ru"],
                             fallback_language="en", resume_window=timedelta(hours=2),
                             handoff_release=timedelta(hours=24), new_reference=lambda: f"#{next(self.refs)}",
                             transcript_url=lambda c: None, clinic_name="Demo Clinic",
                             form_id=lambda flow, lang: f"{flow}-{lang}-id" if lang in self.published else None)

    def send(self, text: str | None = None, **extra: Any) -> list[Reply]:
        self.now += timedelta(minutes=1)
        kind = extra.pop("kind", "choice" if extra.get("choice_id") else "text")
        message = InboundMessage(channel="whatsapp", account="acc", sender_id=self.conv.sender_id,
                                 message_id=f"m{next(self.ids)}", timestamp=self.now, kind=kind, text=text,
                                 profile=SenderProfile(name=self.profile_name), **extra)
        turn = handle(self.conv, message, flow=self.flow, ctx=self.ctx())
        self.conv = turn.conversation
        self.leads += [e.lead for e in turn.events if isinstance(e, LeadReady)]
        self.last = turn.replies
        return turn.replies

    def submit(self, values: dict[str, Any], token: str | None = None) -> list[Reply]:
        offered = self.conv.pending.get(FORM) or {}
        return self.send("Sent", kind="form", form=values, form_token=token or offered.get("token"))

    def offer(self) -> FormOffer:
        (reply,) = [r for r in self.last if r.form is not None]
        assert reply.form is not None
        return reply.form


def _to_form(chat: Chat) -> list[Reply]:
    return chat.send("Hi, price for hair transplant?")  # the treatment is taken from it: the location is next


def test_the_form_is_offered_with_the_first_question_and_its_answers_are_kept() -> None:
    chat = Chat()
    replies = _to_form(chat)
    offer = chat.offer()
    assert (offer.flow_id, offer.screen, offer.button) == ("health_tourism_intake-en-id", SCREEN, "Fill in the form")
    # the same message asks the first of the form's questions, for a patient who would rather write
    assert "Which country and city do you live in?" in replies[-1].text
    assert chat.conv.step == "location"
    assert chat.conv.pending[FORM]["open"] == ["location", "name", "email", "contact_language"]
    replies = chat.submit({"location": "Berlin, Germany", "name": "hans müller", "email": "hans@example.DE",
                           "contact_language": "de"})
    assert chat.conv.answers["location"] == "Berlin, Germany" and chat.conv.answers["name"] == "Hans Müller"
    assert chat.conv.answers["email"] == "hans@example.de"  # read as if typed: the same checks and tidying
    assert chat.conv.answers["contact_language_label"] == "German"
    assert chat.conv.step == "travel_dates"  # dates stay a question: they may need confirming
    assert [r.form for r in replies] == [None] and "travelling" in replies[-1].text
    assert chat.conv.transcript[-2].text.startswith("📝 location: Berlin, Germany")


def test_a_bad_or_empty_form_answer_is_asked_in_the_chat_afterwards() -> None:
    chat = Chat()
    _to_form(chat)
    chat.submit({"location": "Berlin, Germany", "name": "hans müller", "email": "not an address",
                 "contact_language": "de"})
    assert "email" not in chat.conv.answers and "name" in chat.conv.answers
    chat.send("10-17 March")
    assert chat.conv.step == "email"  # asked in its turn, as without a form
    assert "e-mail" in chat.last[-1].text.lower()


def test_a_patient_who_writes_instead_answers_the_first_question_and_gets_the_rest_as_questions() -> None:
    chat = Chat()
    _to_form(chat)
    replies = chat.send("Berlin, Germany")
    assert chat.conv.answers["location"] == "Berlin, Germany"
    assert all(r.form is None for r in replies) and chat.conv.step == "travel_dates"
    chat.send("10-17 March")
    assert chat.conv.step == "name" and all(r.form is None for r in chat.last)  # offered once per request
    # the form sent later still fills what is open, and not what was answered in the chat
    chat.submit({"location": "Paris, France", "name": "hans müller", "email": "hans@example.de",
                 "contact_language": "de"})
    assert chat.conv.answers["location"] == "Berlin, Germany" and chat.conv.answers["name"] == "Hans Müller"
    assert chat.conv.step == "consent"


def test_a_form_of_another_request_or_sent_twice_changes_nothing() -> None:
    chat = Chat()
    _to_form(chat)
    assert chat.submit({"location": "Berlin, Germany", "name": "A B"}, token="an-old-token") == []
    assert "location" not in chat.conv.answers
    chat.submit({"location": "Berlin, Germany", "name": "hans müller"})
    step = chat.conv.step
    assert chat.submit({"location": "Paris, France", "name": "x y", "email": "a@b.de"}) == []
    assert chat.conv.answers["location"] == "Berlin, Germany" and chat.conv.step == step


def test_an_option_that_hands_over_does_so_from_the_form() -> None:
    flow = FLOWS["health_tourism_intake"].model_copy(deep=True)
    assert flow.form is not None
    flow.form.steps = ["treatment", "location"]
    chat = Chat(flow=flow)
    chat.send("Hello")
    assert chat.offer().flow_id and chat.conv.step == "treatment"
    assert "1. Hair transplant" in chat.last[-1].text  # the question's options, numbered, for a written answer
    chat.submit({"treatment": "other", "location": "Berlin, Germany"})
    assert chat.conv.status == "handoff" and chat.leads[0].answers["treatment"] == "other"


@pytest.mark.parametrize("published", [(), ("de",)])
def test_without_a_published_form_in_the_language_the_steps_are_questions(published: tuple[str, ...]) -> None:
    chat = Chat(published=published)
    replies = _to_form(chat)
    assert all(r.form is None for r in replies) and replies[-1].text == "Which country and city do you live in?"
    assert FORM not in chat.conv.pending


def test_no_form_for_a_single_open_step() -> None:
    chat = Chat(profile_name="Hans Müller")  # the name is known: three of four open, the form is offered
    _to_form(chat)
    assert chat.conv.pending[FORM]["open"] == ["location", "email", "contact_language"]
    flow = INTAKE.model_copy(deep=True)
    assert flow.form is not None
    flow.form.steps = ["location", "name"]
    chat = Chat(profile_name="Hans Müller", flow=flow)
    replies = _to_form(chat)
    assert all(r.form is None for r in replies) and FORM not in chat.conv.pending


# -- the Flow JSON ------------------------------------------------------------------------------
def test_flow_json_has_one_component_per_step_and_sends_each_back_by_field() -> None:
    document = flow_json(INTAKE, "tr")
    (screen,) = document["screens"]
    assert screen["id"] == SCREEN and screen["terminal"] is True and document["version"] == "7.0"
    children = screen["layout"]["children"]
    kinds = [(c["type"], c.get("name"), c.get("input-type"), c.get("required")) for c in children]
    assert kinds == [("TextInput", "location", "text", True), ("TextInput", "name", "text", True),
                     ("TextInput", "email", "email", False), ("RadioButtonsGroup", "contact_language", None, True),
                     ("Footer", None, None, None)]
    assert children[3]["data-source"][0] == {"id": "tr", "title": "Türkçe"}
    assert children[-1]["on-click-action"] == {"name": "complete", "payload": {
        "location": "${form.location}", "name": "${form.name}", "email": "${form.email}",
        "contact_language": "${form.contact_language}"}}
    assert all(len(c["label"]) <= 20 for c in children if "label" in c and c["type"] != "Footer")


def test_the_form_name_changes_with_its_content_only() -> None:
    assert form_name(INTAKE, "en") == form_name(INTAKE, "en") != form_name(INTAKE, "de")
    changed = INTAKE.model_copy(deep=True)
    assert changed.form is not None
    changed.form.labels["contact_language"] = {**changed.form.labels["contact_language"], "en": "Language"}
    assert form_name(changed, "en") != form_name(INTAKE, "en")
    assert form_name(changed, "de") == form_name(INTAKE, "de")


_BAD_FORMS = {
    "a date_range step cannot be in a form": "steps: [location, travel_dates]",
    "'photos' is health information": "steps: [location, photos]",
    "no step collects 'nowhere'": "steps: [location, nowhere]",
    "the label of 'location' in en is longer than 20 characters": (
        "steps: [location, name]\n  labels: {location: {tr: Şehir, en: Your city and your country, de: Stadt, "
        "ar: المدينة, ru: Город}}"),
    "no label for 'treatment' in tr": "steps: [treatment, location]",
    "the form's button in de is longer than 20 characters": (
        "steps: [location, name]\n  button: {tr: Form, en: Form, de: Das Formular jetzt öffnen, ar: نموذج, "
        "ru: Форма}"),
}


@pytest.mark.parametrize("said", list(_BAD_FORMS))
def test_a_form_the_bot_or_whatsapp_cannot_use_is_refused_at_load(tmp_path: Path, said: str) -> None:
    text = (SHIPPED_FLOWS / "health_tourism_intake.yaml").read_text(encoding="utf-8")
    start = text.index("form:\n")
    end = text.index("steps:\n  - field", start)
    path = tmp_path / "health_tourism_intake.yaml"
    path.write_text(text[:start] + "form:\n  " + _BAD_FORMS[said] + "\n" + text[end:], encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_flow(path)
    assert said in "\n".join(str(p) for p in info.value.problems)


def test_a_form_step_may_not_hang_on_another_field_of_the_form(tmp_path: Path) -> None:
    text = (SHIPPED_FLOWS / "health_tourism_intake.yaml").read_text(encoding="utf-8")
    text = text.replace("  - field: email\n    type: email\n",
                        "  - field: email\n    type: email\n    when: {field: name, answered: true}\n")
    path = tmp_path / "health_tourism_intake.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_flow(path)
    assert "'email' depends on 'name', which the same form collects" in str(info.value.problems[0])


# -- on WhatsApp ---------------------------------------------------------------------------------
def test_the_offer_is_meta_s_interactive_flow_message() -> None:
    chat = Chat()
    replies = _to_form(chat)
    (message,) = render(replies[-1])
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915112345678", **message}
    assert whatsapp_message_errors(body) == []  # against Meta's own description of the messages endpoint
    parameters = message["interactive"]["action"]["parameters"]
    assert parameters["flow_id"] == "health_tourism_intake-en-id" and parameters["flow_message_version"] == "3"
    assert parameters["flow_action_payload"] == {"screen": SCREEN} and parameters["flow_token"]
    # without its id the form's question is plain text, as on any other channel
    assert render(Reply(text="Which city?"))[0]["type"] == "text"


def _nfm(response_json: str) -> dict[str, Any]:
    """Meta's documented flow response webhook ("Receiving Flow Response"), with the given ``response_json``."""
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"context": {"from": "16315558151", "id": "gBGGEiRVVgBPAgm7FUgc73noXjo"},
                          "from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUZFQ0E3QzE",
                          "type": "interactive", "timestamp": "1749416383",
                          "interactive": {"type": "nfm_reply", "nfm_reply": {
                              "name": "flow", "body": "Sent", "response_json": response_json}}}]}}]}]}


def test_a_flow_response_webhook_becomes_the_form_s_answers() -> None:
    (message,) = parse_payload(_nfm(json.dumps(
        {"flow_token": "<FLOW_TOKEN>", "optional_param1": "<value1>", "optional_param2": "<value2>"}))).messages
    assert (message.kind, message.form_token, message.text) == ("form", "<FLOW_TOKEN>", "Sent")
    assert message.form == {"optional_param1": "<value1>", "optional_param2": "<value2>"}
    assert message.reply_to == "gBGGEiRVVgBPAgm7FUgc73noXjo"
    for broken in ("not json", "[1, 2]"):
        (kept,) = parse_payload(_nfm(broken)).messages
        assert (kept.kind, kept.raw_type, kept.form) == ("unsupported", "nfm_reply", None)


def test_a_note_before_the_offer_joins_it_within_the_interactive_body() -> None:
    from connector.coalesce import coalesce

    offer = FormOffer(flow_id="1", token="t", screen=SCREEN, button="Fill in the form")
    joined = coalesce("whatsapp", [Reply(text="Hello!"), Reply(text="Which city?", form=offer)])
    assert [(r.text, r.form) for r in joined] == [("Hello!\n\nWhich city?", offer)]
    long = coalesce("whatsapp", [Reply(text="x" * 1020), Reply(text="Which city?", form=offer)])
    assert len(long) == 2 and long[1].form == offer  # 1024 characters at most in a form's message
    assert len(coalesce("whatsapp", [Reply(text="Which city?", form=offer), Reply(text="Bye")])) == 2
