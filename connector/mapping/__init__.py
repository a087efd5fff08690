"""YAML field mappings (``mappings/<crm>.yaml``, ``version: 1``) and the pure planner.

One schema serves every CRM. A mapping says which objects to write (the contact, an optional
company, the request record), how an existing contact is matched, and for each CRM field where its
value comes from: a canonical field path of the :class:`~core.models.Lead` (``contact.phone``,
``request.preferred_time``, ``last_touch.utm_campaign``, ``answers.treatment``), a constant, or a
sandboxed Jinja2 template, through a closed set of named transforms. It maps the status scheme
(new, reviewing, planned, done, on_hold) to the CRM's stages (the relay sets only the first), and
holds the tags, the note and the handoff task templates, owner hints and the opt-out property.

:func:`plan` turns a lead into a :class:`~adapters.base.SyncPlan` without any I/O.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters.base import (
    DEFAULT_MATCH,
    CompanyWrite,
    ContactWrite,
    CRMSchema,
    FieldInfo,
    MatchBy,
    NoteWrite,
    ObjectInfo,
    RecordWrite,
    SyncPlan,
    TaskWrite,
)
from connector.templating import check_template, render
from connector.yamlfile import YamlDoc, load_model, problems_from_validation
from core.errors import ConfigurationError, Problem
from core.models import Lead

if TYPE_CHECKING:
    from adapters.base import CRMAdapter

STATUSES = ("new", "reviewing", "planned", "done", "on_hold")
TRANSFORMS = ("upper", "lower", "title", "e164", "digits", "date", "truncate", "map", "bool", "join", "strip")


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    pipeline: str | None = None
    stage_property: str | None = Field(default=None, description="dealstage, hs_pipeline_stage, Status…")
    statuses: dict[str, str] = Field(default_factory=dict, description="Status scheme → the CRM's stage or value.")
    fields: dict[str, FieldSource] = Field(default_factory=dict)

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

    def crm_options(self) -> dict[str, Any]:
        """The options handed to the adapter's constructor."""
        return dict(self.options)


# -- canonical paths ------------------------------------------------------------------------------
def _valid_path(path: str) -> bool:
    """True when ``path`` names a field of the Lead (``answers.*`` may name any answer)."""
    parts = path.split(".")
    if parts[0] in ("reference_number",):
        return len(parts) == 1
    model: Any = Lead
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        if part == "answers":
            return True
        annotation = fields[part].annotation
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, BaseModel)), None)
        if model is None:
            return i == len(parts) - 1
    return True


def lead_context(lead: Lead) -> dict[str, Any]:
    """What paths and templates read: the lead as plain data, plus ``reference_number``."""
    data = lead.model_dump(mode="json")
    data["reference_number"] = lead.reference_number
    data["transcript"] = "\n".join(f"{'>' if e.direction == 'in' else '<'} {e.text}" for e in lead.transcript)
    return data


def resolve(path: str, data: dict[str, Any]) -> Any:
    """The value at ``path`` (None when any part is missing)."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def apply_transform(value: Any, transform: Transform) -> Any:
    """One named transform. None stays None (except map's default)."""
    name = transform.name
    if name == "map":
        key = "" if value is None else str(value)
        table = transform.table or {}
        return table.get(key, transform.default if transform.default is not None else (value if value else None))
    if value is None:
        return None
    if name == "join":
        return transform.separator.join(str(v) for v in value) if isinstance(value, list) else str(value)
    text = value if isinstance(value, str) else str(value)
    if name == "upper":
        return text.upper()
    if name == "lower":
        return text.lower()
    if name == "title":
        return text.title()
    if name == "strip":
        return text.strip()
    if name == "digits":
        return re.sub(r"\D", "", text)
    if name == "e164":
        try:
            number = phonenumbers.parse(text if text.startswith("+") else "+" + text, None)
        except phonenumbers.NumberParseException:
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(
            number) else None
    if name == "date":
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
        return moment.strftime(transform.format) if transform.format else moment.isoformat()
    if name == "truncate":
        limit = transform.length or 255
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if name == "bool":
        return "true" if value in (True, "true", "yes", "1", 1) else "false"
    return value


def field_value(spec: FieldSource, data: dict[str, Any]) -> Any:
    """The value of one mapped field for one lead."""
    if spec.source is not None:
        value = resolve(spec.source, data)
    elif spec.template is not None:
        value = render(spec.template, data) or None
    else:
        value = spec.value
    for transform in spec.transform:
        value = apply_transform(value, transform)
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    return value


def _fields(fields: dict[str, FieldSource], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    always: dict[str, Any] = {}
    create_only: dict[str, Any] = {}
    for name, spec in fields.items():
        value = field_value(spec, data)
        if value in (None, ""):
            continue
        (create_only if spec.on == "create" else always)[name] = value
    return always, create_only


# -- the planner ----------------------------------------------------------------------------------
#: CRMs that keep a task's body as plain text (Salesforce's Task Description); the others keep HTML
#: (HubSpot's hs_task_body, Pipedrive's activity note). Note bodies are HTML for every CRM: HubSpot's
#: hs_note_body and Pipedrive's note content are HTML, and the Salesforce adapter turns the HTML into
#: the plain text of a classic Note's Body (unescaping it). Subjects and fields are plain text everywhere.
TEXT_TASK_BODIES = frozenset({"salesforce"})


def with_marker(body: str, marker: str, *, html: bool) -> str:
    """``body`` carrying its idempotency marker where no agent reads it: an HTML comment ending an HTML
    body, the last line of a plain-text one."""
    return f"{body}\n<!-- {marker} -->" if html else f"{body}\n\n{marker}"


def plan(lead: Lead, mapping: Mapping) -> SyncPlan:
    """The CRM operations for ``lead`` (pure: no I/O).

    Note bodies (and task bodies where the CRM keeps HTML) are rendered with every value HTML-escaped,
    so what a patient wrote shows as written and is never markup; subjects and fields are plain text.
    """
    data = lead_context(lead)
    contact_props, contact_create = _fields(mapping.contact.fields, data)
    contact = ContactWrite(object=mapping.contact.object, key_property=mapping.contact.key_property,
                           key_value=lead.contact_key, match_by=mapping.contact.match_by, phone=lead.contact.phone,
                           email=lead.contact.email, properties=contact_props, create_only=contact_create)
    company = None
    if mapping.company is not None and lead.organization:
        name = field_value(mapping.company.name, data)
        if name:
            company_props, _ = _fields(mapping.company.fields, data)
            company = CompanyWrite(object=mapping.company.object, name=str(name),
                                   key_property=mapping.company.key_property, properties=company_props)
    owner = next((h.owner_id for h in mapping.owner_hints
                  if all(resolve(k, data) == v for k, v in h.when.items())), None)
    record = None
    if mapping.record is not None:
        section = mapping.record
        props, create_only = _fields(section.fields, data)
        record = RecordWrite(object=section.object, reference_property=section.reference_property,
                             reference=lead.reference_number, properties=props, create_only=create_only,
                             pipeline=section.pipeline, stage=section.statuses.get(lead.status),
                             stage_property=section.stage_property, owner_id=owner)
    tags = list(lead.tags) + [t for t in (render(tag, data) for tag in mapping.tags.add) if t]
    note = None
    if mapping.note is not None:
        marker = f"chat2crm:{lead.reference}:note"
        note = NoteWrite(body=with_marker(render(mapping.note.template, data, html=True), marker, html=True),
                         marker=marker)
    task = None
    if mapping.task is not None and lead.handoff_reason:
        marker, html = f"chat2crm:{lead.reference}:task", mapping.crm not in TEXT_TASK_BODIES
        task = TaskWrite(subject=render(mapping.task.subject, data),
                         body=with_marker(render(mapping.task.body, data, html=html), marker, html=html),
                         marker=marker, priority=mapping.task.priority, owner_id=owner,
                         due_at=lead.created_at + timedelta(hours=mapping.task.due_in_hours))
    return SyncPlan(crm=mapping.crm, lead_reference=lead.reference, contact=contact, company=company, record=record,
                    note=note, task=task, tags=list(dict.fromkeys(tags)), tags_property=mapping.tags.property,
                    extras=dict(mapping.options))


def opt_out_plan(contact_key: str, mapping: Mapping) -> ContactWrite | None:
    """The contact write that marks ``contact_key`` as opted out (None when the mapping names no property)."""
    if mapping.opt_out is None:
        return None
    return ContactWrite(object=mapping.contact.object, key_property=mapping.contact.key_property, key_value=contact_key,
                        match_by=["key"], properties={mapping.opt_out.property: mapping.opt_out.value})


def contact_key_field(mapping: Mapping) -> str:
    """The CRM field that holds the relay's contact key."""
    return mapping.contact.key_property


# -- loading and checking -------------------------------------------------------------------------
def _check(mapping: Mapping, path: Path, line_of: Any, crm: str) -> list[Problem]:
    problems: list[Problem] = []

    def problem(loc: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        problems.append(Problem(message, file=str(path), line=line_of(loc), path=".".join(map(str, loc)), hint=hint))

    if mapping.crm != crm:
        problem(("crm",), f"this mapping is for {mapping.crm!r} but chat2crm.yaml selects {crm!r}")
    sections: list[tuple[tuple[Any, ...], dict[str, FieldSource]]] = [(("contact", "fields"), mapping.contact.fields)]
    if mapping.record:
        sections.append((("record", "fields"), mapping.record.fields))
    if mapping.company:
        sections.append((("company", "fields"), mapping.company.fields))
        sections.append((("company",), {"name": mapping.company.name}))
    for loc, fields in sections:
        for name, spec in fields.items():
            where = (*loc, name)
            if spec.source is not None and not _valid_path(spec.source):
                problem(where, f"unknown field path {spec.source!r}",
                        hint="paths start with contact., request., first_touch., last_touch., answers., consent. …")
            if spec.template is not None and (error := check_template(spec.template)):
                problem(where, f"template error: {error}")
            for transform in spec.transform:
                if transform.name == "map" and not transform.table:
                    problem(where, "the map transform needs a table")
    for loc, source in [(("note", "template"), mapping.note.template if mapping.note else None),
                        (("task", "subject"), mapping.task.subject if mapping.task else None),
                        (("task", "body"), mapping.task.body if mapping.task else None),
                        *[(("tags", "add", i), t) for i, t in enumerate(mapping.tags.add)]]:
        if source and (error := check_template(source)):
            problem(loc, f"template error: {error}")
    for i, hint in enumerate(mapping.owner_hints):
        for key in hint.when:
            if not _valid_path(key):
                problem(("owner_hints", i, "when", key), f"unknown field path {key!r}")
    return problems


def _check_options(mapping: Mapping, doc: YamlDoc, crm: str) -> list[Problem]:
    """The ``options:`` block against the selected adapter's ``Options`` (a CRM no adapter is installed for
    is named at the mapping's ``crm:``)."""
    from adapters import load_adapter

    try:
        adapter = load_adapter(crm)
    except ConfigurationError as exc:
        return [Problem(p.message, file=str(doc.path), line=doc.line_of(("crm",)), path="crm", hint=p.hint)
                for p in exc.problems]
    try:
        adapter.Options.model_validate(mapping.options)
    except ValidationError as exc:
        return problems_from_validation(doc, exc, prefix=("options",))
    return []


def load_mapping(path: Path, *, crm: str) -> Mapping:
    """Read and validate a mapping, its ``options:`` against the ``crm`` adapter's.

    Raises:
        ConfigurationError: every problem, as file:line: path: message (hint).
    """
    mapping, doc = load_model(path, Mapping)
    problems = _check(mapping, path, doc.line_of, crm) + _check_options(mapping, doc, crm)
    if problems:
        raise ConfigurationError(problems)
    return mapping


def mapping_json_schema() -> dict[str, Any]:
    """The JSON Schema of mapping files: :class:`Mapping`, with each installed adapter's ``options``
    (``$defs/<crm>_options``), chosen by the file's ``crm``."""
    from adapters import available_adapters, load_adapter

    schema = Mapping.model_json_schema()
    definitions: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for name in available_adapters():
        try:
            adapter = load_adapter(name)
        except ConfigurationError:
            continue  # an adapter whose dependency is missing cannot be selected: it publishes nothing
        options = adapter.Options.model_json_schema(ref_template="#/$defs/{model}")
        for nested, definition in options.pop("$defs", {}).items():
            if definitions.setdefault(nested, definition) != definition:
                raise ValueError(f"two adapters' options define {nested!r} differently")
        definitions[f"{name}_options"] = options
        branches.append({"if": {"properties": {"crm": {"const": name}}, "required": ["crm"]},
                         "then": {"properties": {"options": {"$ref": f"#/$defs/{name}_options"}}}})
    if branches:
        schema["allOf"] = branches
    return schema


def write_mapping_schema(path: Path) -> None:
    """Publish the JSON Schema of mapping files (with every installed adapter's options)."""
    schema = mapping_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "chat2crm mapping"
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def required_schema(mapping: Mapping) -> CRMSchema:
    """The fields (and stages) the mapping needs the CRM to have: for ``crm setup`` and ``check --online``."""
    objects: dict[str, ObjectInfo] = {}

    def need(obj: str, name: str, unique: bool = False, kind: str = "string") -> None:
        info = objects.setdefault(obj, ObjectInfo(name=obj))
        current = info.fields.get(name)
        info.fields[name] = FieldInfo(name=name, type=kind, unique=unique or bool(current and current.unique))

    contact = mapping.contact
    need(contact.object, contact.key_property, unique=True)
    for name in contact.fields:
        need(contact.object, name)
    if mapping.opt_out:
        need(contact.object, mapping.opt_out.property, kind="bool")
    if mapping.record:
        record = mapping.record
        need(record.object, record.reference_property, unique=True)
        for name in record.fields:
            need(record.object, name)
        if record.pipeline and record.statuses:
            objects[record.object].pipelines[record.pipeline] = [record.statuses["new"]]
        if mapping.tags.property:
            need(record.object, mapping.tags.property, kind="enumeration")
    if mapping.company:
        for name in mapping.company.fields:
            need(mapping.company.object, name)
    return CRMSchema(objects=objects)


STANDARD_FIELDS = {
    "contacts": {"firstname", "lastname", "email", "phone", "mobilephone", "company", "country", "city",
                 "hs_language", "hubspot_owner_id", "lifecyclestage"},
    "deals": {"dealname", "dealstage", "pipeline", "amount", "closedate", "description", "hubspot_owner_id"},
    "tickets": {"subject", "content", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority", "hubspot_owner_id"},
}


def check_online(mapping: Mapping, adapter: CRMAdapter) -> list[Problem]:
    """Compare the mapping with the live CRM: every field exists, every mapped enum value is an option,
    the pipeline and the first stage exist."""
    required = required_schema(mapping)
    live = adapter.describe(list(required.objects))
    problems: list[Problem] = []
    for obj, info in required.objects.items():
        have = live.objects.get(obj)
        if have is None:
            problems.append(Problem(f"the CRM has no object {obj!r}", file=adapter.name))
            continue
        for name, field in info.fields.items():
            found = have.fields.get(name)
            if found is None:
                problems.append(Problem(f"{obj}.{name} does not exist in the CRM", file=adapter.name,
                                        hint="run `chat2crm crm setup` or create it by hand"))
            elif field.unique and not found.unique:
                problems.append(Problem(f"{obj}.{name} must hold unique values", file=adapter.name))
        for pipeline, stages in info.pipelines.items():
            if pipeline not in have.pipelines:
                problems.append(Problem(f"{obj} pipeline {pipeline!r} does not exist", file=adapter.name))
                continue
            for stage in stages:
                if stage not in have.pipelines[pipeline]:
                    problems.append(Problem(f"{obj} stage {stage!r} is not in pipeline {pipeline!r}", file=adapter.name))
    sections = [(mapping.contact.object, mapping.contact.fields)]
    if mapping.record:
        sections.append((mapping.record.object, mapping.record.fields))
    for obj, fields in sections:
        for name, spec in fields.items():
            found = live.objects.get(obj, ObjectInfo(name=obj)).fields.get(name)
            if not found or not found.options:
                continue
            for transform in spec.transform:
                values = list((transform.table or {}).values()) + ([transform.default] if transform.default else [])
                for value in values:
                    if value not in found.options:
                        problems.append(Problem(f"{obj}.{name}: {value!r} is not one of its options", file=adapter.name,
                                                hint="options: " + ", ".join(found.options[:10])))
    return problems
