"""The schema of mapping files (``mappings/<crm>.yaml``, ``version: 1``): :class:`Mapping` and its sections.

One schema serves every CRM: which objects to write (the contact, an optional company, the request
record), how an existing contact is matched, where each CRM field's value comes from
(:class:`FieldSource`, through named :class:`Transform` steps), the status scheme, tags, note, task,
owner hints and the opt-out property. Validation here is per field; what needs the whole file, the
Lead's field paths or the adapter's options is checked in :mod:`connector.mapping.checks`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.mapping.conversions import ConversionsSection
from core.plan import DEFAULT_MATCH, MatchBy

STATUSES = ("new", "reviewing", "planned", "done", "on_hold")
TRANSFORMS = ("upper", "lower", "title", "e164", "digits", "date", "truncate", "map", "bool", "join", "strip")


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: a CRM name people read: one text, or one per language (ISO 639-1 code → text)
Label = str | dict[str, str]


def pick_label(label: Label, language: str) -> str:
    """The text of ``label`` in ``language``, else English, else its first one."""
    if isinstance(label, str):
        return label
    return label.get(language) or label.get("en") or next(iter(label.values()))


class Transform(_Base):
    """A named transform with its arguments: ``{name: truncate, length: 255}``."""

    name: Literal["upper", "lower", "title", "e164", "digits", "date", "truncate", "map", "bool", "join", "strip"]
    format: str | None = Field(default=None, description="date: strftime format (default ISO 8601).")
    length: int | None = Field(default=None, ge=1, description="truncate: the most characters kept.")
    table: dict[str, str] | None = Field(default=None, description="map: value → CRM value.")
    default: str | None = Field(default=None, description="map: the CRM value for anything not in table.")
    separator: str = Field(default=";", description="join: between list items (HubSpot multi-select: ';').")


class FieldSource(_Base):
    """Where one CRM field's value comes from: exactly one of source, value, template."""

    source: str | None = Field(default=None, description="A canonical field path, e.g. contact.phone.")
    value: Any = Field(default=None, description="A constant.")
    template: str | None = Field(default=None, description="A Jinja2 template (sandboxed).")
    transform: list[Transform] = Field(default_factory=list)
    on: Literal["always", "create"] = Field(default="always", description="create: written only on creation.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"source": data}  # `phone: contact.phone`
        if isinstance(data, dict) and isinstance(data.get("transform"), str | dict):
            data = {**data, "transform": [data["transform"]]}
        if isinstance(data, dict) and isinstance(data.get("transform"), list):
            data = {**data, "transform": [{"name": t} if isinstance(t, str) else t for t in data["transform"]]}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> FieldSource:
        given = [k for k in ("source", "value", "template") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of source, value, template")
        return self


class ContactSection(_Base):
    object: str = Field(description="contacts (HubSpot), Lead or Contact (Salesforce), person (Pipedrive).")
    key_property: str = Field(description="Unique field holding the relay's contact key (channel identity).")
    match_by: list[MatchBy] = Field(default_factory=lambda: list(DEFAULT_MATCH))
    fields: dict[str, FieldSource] = Field(default_factory=dict)


class CompanySection(_Base):
    object: str
    name: FieldSource
    key_property: str | None = None
    fields: dict[str, FieldSource] = Field(default_factory=dict)


class RecordSection(_Base):
    object: str = Field(description="deals, tickets, leads (HubSpot); Lead, Case, Opportunity; lead, deal.")
    reference_property: str = Field(description="Unique field holding the lead reference (#1042 → 1042).")
    pipeline: Label | None = Field(default=None, description=(
        "The pipeline: its id or label, or its label per language (`{en: Patients, tr: Hastalar}`): "
        "`crm setup` creates a pipeline that does not exist, labelled in `clinic_language`."))
    stage_property: str | None = Field(default=None, description="dealstage, hs_pipeline_stage, Status…")
    statuses: dict[str, Label] = Field(default_factory=dict, description=(
        "Status scheme → the CRM's stage or value: its id or label, or its label per language "
        "(`new: {en: New, tr: Yeni}`), which `crm setup` creates in `clinic_language`, in the scheme's order."))
    fields: dict[str, FieldSource] = Field(default_factory=dict)

    def stage_labels(self) -> list[str]:
        """The stages of the status scheme, in its order (New → Reviewing → Planned → Done, On hold), after
        :meth:`Mapping.in_language`."""
        return [pick_label(self.statuses[s], "en") for s in STATUSES if s in self.statuses]

    @model_validator(mode="after")
    def _statuses(self) -> RecordSection:
        unknown = [s for s in self.statuses if s not in STATUSES]
        if unknown:
            raise ValueError(f"unknown statuses {unknown}; the scheme is {', '.join(STATUSES)}")
        if self.statuses and "new" not in self.statuses:
            raise ValueError("statuses must map 'new' (the stage the relay sets)")
        return self


class TagsSection(_Base):
    property: str | None = Field(default=None, description="Where tags go (a multi-select field), if not labels.")
    add: list[str] = Field(default_factory=list, description="Extra tags (templates).")


class NoteSection(_Base):
    template: str


class TaskSection(_Base):
    subject: str = Field(description="Template.")
    body: str = Field(description="Template.")
    due_in_hours: float = Field(default=2, ge=0)
    priority: Literal["low", "medium", "high"] = "high"


class OwnerHint(_Base):
    """Assign an owner when the CRM has no rule for it: the first hint that matches wins."""

    when: dict[str, Any] = Field(description="Canonical path → value (all must match).")
    owner_id: str


class OptOutSection(_Base):
    property: str
    value: str = "true"


class Mapping(_Base):
    """``mappings/<crm>.yaml``."""

    version: Literal[1]
    crm: str
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="The adapter's options (each CRM's are published below, by `crm`; "
                                                "`chat2crm check` validates them).")
    contact: ContactSection
    company: CompanySection | None = None
    record: RecordSection | None = None
    tags: TagsSection = Field(default_factory=TagsSection)
    note: NoteSection | None = None
    task: TaskSection | None = None
    owner_hints: list[OwnerHint] = Field(default_factory=list)
    opt_out: OptOutSection | None = None
    conversions: ConversionsSection | None = Field(default=None, description=(
        "Meta conversion events: the dataset (pixel) and which stage sends which event (docs/ads.md)."))

    @model_validator(mode="after")
    def _conversion_stages(self) -> Mapping:
        """A stage event needs the record's stage property; a status of the scheme it names must be mapped, and
        never ``new`` (the stage the relay itself sets: its own writes send no stage event)."""
        if self.conversions is None:
            return self
        for event in self.conversions.on_stages():
            if self.record is None or not self.record.stage_property:
                raise ValueError(f"conversions: {event.name} is sent on a stage: the record needs a stage_property")
            stage = event.stage
            if stage == "new":
                raise ValueError(f"conversions: {event.name} cannot be sent on 'new', the stage the relay sets "
                                 "(LeadSubmitted is sent at the first write)")
            if isinstance(stage, str) and stage in STATUSES and stage not in self.record.statuses:
                raise ValueError(f"conversions: {event.name} names status {stage!r}, which record.statuses does "
                                 "not map")
        return self

    def in_language(self, language: str) -> Mapping:
        """This mapping with every per-language label (pipeline, stages) in ``language`` (:func:`pick_label`):
        the names the CRM shows the clinic's people, and the ones the relay writes and ``crm setup`` creates."""
        if self.record is None:
            return self
        record = self.record.model_copy(update={
            "pipeline": pick_label(self.record.pipeline, language) if self.record.pipeline is not None else None,
            "statuses": {k: pick_label(v, language) for k, v in self.record.statuses.items()}})
        return self.model_copy(update={"record": record})

    def crm_options(self) -> dict[str, Any]:
        """The options handed to the adapter's constructor."""
        return dict(self.options)
