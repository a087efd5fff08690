"""The ``conversions:`` section of a mapping file: which CRM stage sends which conversion event to Meta.

It lives in the mapping because it names the CRM's stages, as the mapping's ``record.statuses`` do: a stage is
a status of the scheme (``reviewing``, ``planned``, ``done``, ``on_hold``), or the CRM's stage id or label, or a
label per language. The events are Meta's Conversions API events (:mod:`connector.capi`): ``LeadSubmitted``
sent by the relay when it first writes the lead (no ``stage``), the others when the CRM's record reaches their
stage. Event names are limited to those Meta's Conversions API for Business Messaging takes (a click-to-WhatsApp
conversation's events are business messaging events), checked here, so ``chat2crm check`` refuses the others.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the event names Meta's Conversions API takes for business messaging (``action_source: business_messaging``;
#: others, ``Lead`` and ``Schedule`` among them, are refused with subcode 2804066)
BUSINESS_MESSAGING_EVENTS = ("LeadSubmitted", "Purchase", "InitiateCheckout", "AddToCart", "ViewContent")
#: names only a lead-form lead's CRM events take (``action_source: system_generated``, whose names are the CRM's
#: stages): a click-to-WhatsApp conversation reaching such a stage sends nothing, with the reason logged
CRM_ONLY_EVENTS = ("QualifiedLead",)
EVENT_NAMES = BUSINESS_MESSAGING_EVENTS + CRM_ONLY_EVENTS
#: events that carry what the treatment is worth (Meta requires ``value`` and ``currency`` for a purchase)
VALUE_EVENTS = frozenset({"Purchase"})
#: the longest a Conversions API event may be old when it is sent (business messaging and CRM events: 7 days)
MAX_WINDOW_DAYS = 7

#: a CRM name people read: one text, or one per language (as the mapping's labels)
Label = str | dict[str, str]


class ConversionEvent(BaseModel):
    """One event: its name, the stage that sends it (none: at the lead's first write), and its worth."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Meta's event name: " + ", ".join(EVENT_NAMES) + " (QualifiedLead: lead-form "
                                   "leads only; business messaging does not take it).")
    stage: Label | None = Field(default=None, description=(
        "The stage that sends it: a status of the scheme (reviewing, planned, done, on_hold), or the CRM's stage "
        "id or label, or its label per language. None: sent when the relay first writes the lead (LeadSubmitted)."))
    value: float | None = Field(default=None, ge=0, description="What the booked treatment is worth (Purchase).")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code: EUR, TRY, USD…")

    @model_validator(mode="after")
    def _allowed(self) -> ConversionEvent:
        if self.name not in EVENT_NAMES:
            raise ValueError(f"event {self.name!r} is not one Meta's Conversions API takes from the relay; "
                             f"use one of {', '.join(EVENT_NAMES)}")
        if self.name in VALUE_EVENTS and (self.value is None or self.currency is None):
            raise ValueError(f"{self.name} needs a value and a currency")
        if (self.value is None) != (self.currency is None):
            raise ValueError("give value and currency together")
        if self.stage is None and self.name != "LeadSubmitted":
            raise ValueError(f"{self.name} needs the stage that sends it (only LeadSubmitted is sent at the first write)")
        if self.stage is not None and self.name == "LeadSubmitted":
            raise ValueError("LeadSubmitted is sent by the relay when it first writes the lead: give it no stage")
        return self


class ConversionsSection(BaseModel):
    """``conversions:``: the Meta dataset (pixel) the events go to, and the events."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(pattern=r"^\d{6,20}$", description="The Meta dataset (pixel) id the events are sent to.")
    whatsapp_business_account_id: str | None = Field(
        default=None, pattern=r"^\d{6,20}$",
        description="The WhatsApp Business Account of the click-to-WhatsApp ads (business messaging events need it).")
    access_token_env: str = Field(default="META_CONVERSIONS_TOKEN", pattern=r"^[A-Z][A-Z0-9_]*$", description=(
        "The environment variable holding the access token (a system user's, with ads_management on the dataset)."))
    consent: Literal["required", "not_required"] = Field(default="required", description=(
        "required: only leads whose patient gave the relay's consent (a lead form's submission counts, under the "
        "form's privacy policy); not_required: the clinic's legal basis covers every lead."))
    window_days: int = Field(default=MAX_WINDOW_DAYS, ge=1, le=MAX_WINDOW_DAYS, description=(
        "How long after the lead's first write its events may be sent (Meta refuses events older than 7 days)."))
    test_event_code: str | None = Field(default=None, description="Events Manager's test code (Test events tab).")
    events: list[ConversionEvent] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ConversionsSection:
        names = [e.name for e in self.events]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"each event is sent once per lead: {', '.join(doubled)} named twice")
        return self

    def at_write(self) -> ConversionEvent | None:
        """The event sent when the relay first writes a lead (LeadSubmitted), if configured."""
        return next((e for e in self.events if e.stage is None), None)

    def on_stages(self) -> list[ConversionEvent]:
        """The events a stage sends."""
        return [e for e in self.events if e.stage is not None]
