"""A flow's form as WhatsApp shows it: the Flow JSON of one WhatsApp Flow per language (pure, like the engine).

A flow's ``form`` (:class:`connector.bot.flows.Form`) names steps that WhatsApp can collect together, on one
screen inside the chat. :func:`flow_json` writes that screen in one language: each step becomes the component
Meta's Flow JSON reference gives for its kind of answer (a text input typed ``email``, ``phone`` or ``number``,
a text area for a note, radio buttons for a short choice or yes/no, a drop-down for a long one), required unless
the step is optional, and the footer's ``complete`` action sends every field back under the step's own name
(``${form.<field>}``): the webhook's ``response_json`` then reads as answers by field.

Published flows cannot change (Meta: a published flow and its assets are immutable), so each version of a form
is its own WhatsApp Flow: :func:`form_name` carries a digest of the Flow JSON, and a changed flow file is a new
name to publish (:mod:`connector.forms`), never a different form behind an old name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from connector.bot.flows import Flow, Step, Texts, form_label, form_text
from connector.bot.questions import YES_NO_TITLES

#: the form's one screen (a Flow JSON screen id; ``SUCCESS`` is reserved)
SCREEN = "DETAILS"
#: the Flow JSON version the forms are written in
FLOW_JSON_VERSION = "7.0"
#: a choice with at most this many options is shown as radio buttons, a longer one as a drop-down
RADIO_MAX = 5
#: Meta's limit on a text input's helper text
HELPER_MAX = 80
_INPUT_TYPES = {"email": "email", "phone": "phone", "number": "number"}


def form_steps(flow: Flow) -> list[Step]:
    """The steps the flow's form collects, in the form's order (none without a form)."""
    if flow.form is None:
        return []
    return [step for field in flow.form.steps if (step := flow.step(field)) is not None]


def _pick(texts: Texts | None, language: str) -> str:
    if not texts:
        return ""
    return texts.get(language) or next(iter(texts.values()))


def _component(flow: Flow, step: Step, language: str) -> dict[str, Any]:
    label = _pick(form_label(flow, step), language)
    component: dict[str, Any]
    if step.type in ("choice", "yes_no"):
        if step.type == "yes_no":
            yes, no = YES_NO_TITLES.get(language, ("Yes", "No"))
            source = [{"id": "yes", "title": yes}, {"id": "no", "title": no}]
        else:
            source = [{"id": o.id, "title": _pick(o.title, language)} for o in step.options]
        kind = "RadioButtonsGroup" if len(source) <= RADIO_MAX else "Dropdown"
        component = {"type": kind, "name": step.field, "label": label, "data-source": source}
    elif step.type == "note":
        component = {"type": "TextArea", "name": step.field, "label": label}
    else:
        component = {"type": "TextInput", "name": step.field, "label": label,
                     "input-type": _INPUT_TYPES.get(step.type, "text")}
    prompt = _pick(step.prompt, language)
    if component["type"] in ("TextInput", "TextArea") and prompt != label and len(prompt) <= HELPER_MAX:
        component["helper-text"] = prompt  # the question itself, under the short label
    component["required"] = not step.optional
    return component


def flow_json(flow: Flow, language: str) -> dict[str, Any]:
    """The Flow JSON of ``flow``'s form in ``language``: one terminal screen, every field sent back by name."""
    steps = form_steps(flow)
    children = [_component(flow, step, language) for step in steps]
    children.append({"type": "Footer", "label": _pick(form_text(flow, "submit"), language), "on-click-action": {
        "name": "complete", "payload": {step.field: f"${{form.{step.field}}}" for step in steps}}})
    return {"version": FLOW_JSON_VERSION, "screens": [{
        "id": SCREEN, "title": _pick(form_text(flow, "title"), language), "terminal": True, "success": True,
        "data": {}, "layout": {"type": "SingleColumnLayout", "children": children}}]}


def form_json_text(flow: Flow, language: str) -> str:
    """:func:`flow_json` as the exact text uploaded (stable key order, so the digest names this content)."""
    return json.dumps(flow_json(flow, language), ensure_ascii=False, sort_keys=True, indent=1)


def form_name(flow: Flow, language: str) -> str:
    """The WhatsApp Flow's name for this form in this language: ``<flow>_<language>_<digest>``."""
    digest = hashlib.sha256(form_json_text(flow, language).encode()).hexdigest()[:10]
    return f"{flow.name}_{language}_{digest}"
