"""``lead_forms.yaml`` (``version: 1``, schema ``schemas/lead_forms.schema.json``): how each Meta lead form
becomes a lead.

A form is named by its id (Meta's ``form_id``). Its answers are read by **question key** (``field_data[].name``),
never by the question's label: labels are translated and edited in Ads Manager, keys stay. A key may be any
text Meta allows, non-ASCII included (a custom question's key is often the question in the clinic's language).
The standard keys Meta uses for prefilled questions (:data:`STANDARD_KEYS`: ``full_name``, ``email``,
``phone_number``…) need no mapping; a form's ``fields`` may map them elsewhere. Multiple-choice answers come as
the option's key or its label: ``values`` turns either into what the lead holds (the flow's option id).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.yamlfile import load_model, write_schema

#: where a form's answer may go on the lead (``answers.<field>`` for any other answer)
TARGETS = ("contact.name", "contact.first_name", "contact.last_name", "contact.email", "contact.phone",
           "contact.city", "contact.country", "organization", "request.topic", "request.location",
           "request.preferred_time_text", "request.note")
_TARGET = re.compile(r"^(answers\.[a-z][a-z0-9_]{0,63}|" + "|".join(re.escape(t) for t in TARGETS) + ")$")

#: Meta's standard question keys (prefilled from the person's profile) and where each goes by default
STANDARD_KEYS: dict[str, str] = {
    "full_name": "contact.name", "first_name": "contact.first_name", "last_name": "contact.last_name",
    "email": "contact.email", "work_email": "contact.email", "phone_number": "contact.phone",
    "work_phone_number": "contact.phone", "city": "contact.city", "country": "contact.country",
    "company_name": "organization", "date_of_birth": "answers.date_of_birth", "gender": "answers.gender",
    "job_title": "answers.job_title", "state": "answers.state", "province": "answers.province",
    "zip": "answers.post_code", "post_code": "answers.post_code", "street_address": "answers.street_address",
    "marital_status": "answers.marital_status", "military_status": "answers.military_status",
    "relationship_status": "answers.relationship_status",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(_Section):
    """Where one question's answer goes, and what its choices mean."""

    to: str = Field(description="The lead field: `answers.<field>` (a flow's question, so the bot does not ask it "
                                "again), `contact.name`, `contact.first_name`, `contact.last_name`, `contact.email`, "
                                "`contact.phone`, `contact.city`, `contact.country`, `organization`, "
                                "`request.topic`, `request.location`, `request.preferred_time_text`, `request.note`.")
    values: dict[str, str] = Field(default_factory=dict, description=(
        "A multiple-choice question's answers (the option's key or its label, as Meta sends it) → the value the "
        "lead holds (the flow's option id). An answer not listed is kept as given."))

    @field_validator("to")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if not _TARGET.match(value):
            raise ValueError(f"{value!r} is not a lead field a form can fill (answers.<field>, or one of "
                             f"{', '.join(TARGETS)})")
        return value


class WhatsAppTemplate(_Section):
    """An approved WhatsApp template."""

    name: str = Field(min_length=1, description="The template's name, as approved in WhatsApp Manager.")
    language: str = Field(min_length=2, description="The template's language code (`en`, `de`, `pt_BR`).")
    params: list[str] = Field(default_factory=list, description=(
        "Its body parameters, in order, each a lead field (`contact.first_name`, `reference`…)."))


class Greeting(_Section):
    """The first WhatsApp message to a person who left a phone number and ticked the form's messaging consent."""

    consent: str = Field(min_length=1, description=(
        "The `checkbox_key` of the form's custom disclaimer checkbox that allows messaging on WhatsApp: without "
        "it ticked, nobody is messaged."))
    template: WhatsAppTemplate = Field(description="The approved template sent (outside the 24-hour window only a "
                                                   "template may be).")
    phone_number_id: str | None = Field(default=None, pattern=r"^\d{1,32}$", description=(
        "The business number it is sent from (default: `WHATSAPP_PHONE_NUMBER_ID`); the patient's reply reaches "
        "the bot there."))


class LeadForm(_Section):
    """One lead form."""

    name: str | None = Field(default=None, description="For people: the note and the log say which form.")
    flow: str = Field(description="The bot flow the form stands for: the lead's flow, and the questions the bot "
                                  "skips when the person then writes on WhatsApp.")
    language: str = Field(pattern=r"^[a-z]{2}$", description="The form's language: the lead's and the greeting's.")
    campaign: str | None = Field(default=None, description=(
        "The campaign slug the lead is attributed to; default: the ad's campaign name (Meta's `campaign_name`)."))
    fields: dict[str, FieldMap | str] = Field(default_factory=dict, description=(
        "Question key → lead field (shorthand) or `{to, values}`. Standard keys (`full_name`, `email`, "
        "`phone_number`, `city`…) are mapped without being listed."))
    greeting: Greeting | None = Field(default=None, description="Greet on WhatsApp when the consent is ticked.")

    def field_map(self, key: str) -> FieldMap | None:
        """Where the answer to question ``key`` goes: the form's own mapping, else the standard key's default;
        None for a key neither names (its answer is kept as ``answers.<key>`` when the key is a plain name)."""
        given = self.fields.get(key)
        if isinstance(given, str):
            return FieldMap(to=given)
        if given is not None:
            return given
        if key in STANDARD_KEYS:
            return FieldMap(to=STANDARD_KEYS[key])
        return None


class LeadForms(_Section):
    """``lead_forms.yaml``: every lead form the relay takes, by form id."""

    version: Literal[1] = Field(description="Always 1.")
    forms: dict[str, LeadForm] = Field(default_factory=dict, description="Meta's form id → the form's mapping.")
    default: LeadForm | None = Field(default=None, description=(
        "How a form not listed is taken (none: such a lead is still written, with the standard keys, the "
        "main file's `default_flow` and `fallback_language`)."))

    @field_validator("forms")
    @classmethod
    def _form_ids(cls, value: dict[str, LeadForm]) -> dict[str, LeadForm]:
        bad = [key for key in value if not (key.isascii() and key.isdigit())]
        if bad:
            raise ValueError(f"form ids are Meta's numeric ids; not {bad}")
        return value

    def form(self, form_id: str | None) -> LeadForm | None:
        """The mapping of form ``form_id``: its own, else ``default``."""
        return self.forms.get(form_id or "") or self.default


def load_lead_forms(path: Path) -> LeadForms:
    """Read and validate ``lead_forms.yaml``.

    Raises:
        ConfigurationError: every problem, with file and line.
    """
    forms, _ = load_model(path, LeadForms)
    return forms


def write_lead_forms_schema(path: Path) -> None:
    """Write the file's JSON Schema (published for editors, like the others)."""
    write_schema(LeadForms, path, "chat2crm lead forms")
