"""The pure planner: a lead and a mapping in, the CRM operations (:class:`~core.plan.SyncPlan`) out.

Field values come from the lead's canonical paths (:func:`resolve` over :func:`lead_context`), constants
or sandboxed templates, through the named transforms (:func:`apply_transform`). Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from pydantic import BaseModel

from connector.mapping.model import FieldSource, Mapping, Transform, pick_label
from connector.templating import render
from core.models import Lead
from core.plan import CompanyWrite, ContactWrite, IdentityMatch, NoteWrite, RecordWrite, SyncPlan, TaskWrite


# -- canonical paths ------------------------------------------------------------------------------
def valid_path(path: str) -> bool:
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


def _e164(text: str, _transform: Transform) -> str | None:
    try:
        number = phonenumbers.parse(text if text.startswith("+") else "+" + text, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(
        number) else None


def _date(text: str, transform: Transform) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.strftime(transform.format) if transform.format else moment.isoformat()


def _truncate(text: str, transform: Transform) -> str:
    limit = transform.length or 255
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: the transforms that work on a value's text (a value that is not a string is turned into one first)
_TEXT_TRANSFORMS: dict[str, Callable[[str, Transform], Any]] = {
    "upper": lambda text, _: text.upper(),
    "lower": lambda text, _: text.lower(),
    "title": lambda text, _: text.title(),
    "strip": lambda text, _: text.strip(),
    "digits": lambda text, _: re.sub(r"\D", "", text),
    "e164": _e164,
    "date": _date,
    "truncate": _truncate,
}


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
    if name == "bool":
        return "true" if value in (True, "true", "yes", "1", 1) else "false"
    on_text = _TEXT_TRANSFORMS.get(name)
    if on_text is None:
        return value
    return on_text(value if isinstance(value, str) else str(value), transform)


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


#: the lead's fields that are channel identities: a contact field the mapping fills from one is matched on
IDENTITY_SOURCES = ("contact.whatsapp_user_id", "contact.telegram_username")


def _identities(mapping: Mapping, written: dict[str, Any]) -> list[IdentityMatch]:
    """The channel identities this contact write carries, in the CRM fields the mapping writes them to."""
    return [IdentityMatch(property=name, value=str(written[name])) for name, spec in mapping.contact.fields.items()
            if spec.source in IDENTITY_SOURCES and written.get(name) not in (None, "")]


#: the rollout levels (``Lead.rollout``, docs/rollout.md) whose leads get no record: an agent creates it from the
#: contact, the note and the task, which every such lead gets
NO_RECORD_LEVELS = frozenset({"off", "collect"})
#: the rollout level whose record is written in the first status, with no priority and no owner hint
PLAIN_RECORD_LEVEL = "create"
#: the lead's fields that say how urgent a request is: not written below the ``full`` level
PRIORITY_SOURCES = ("request.priority", "answers.priority", "answers.priority_label")


def _level_fields(fields: dict[str, FieldSource], level: str | None) -> dict[str, FieldSource]:
    """The mapped fields a lead of rollout ``level`` writes: below ``full``, none that carries a priority."""
    if level not in NO_RECORD_LEVELS and level != PLAIN_RECORD_LEVEL:
        return fields
    return {name: spec for name, spec in fields.items() if spec.source not in PRIORITY_SOURCES}


def _rollout_line(lead: Lead) -> str:
    """The note's line saying what the bot was allowed to do (none for ``full`` outside a split: today's note)."""
    if not lead.rollout or (lead.rollout == "full" and not lead.rollout_group):
        return ""
    group = f" · group {lead.rollout_group}" if lead.rollout_group else ""
    return render("<p>Bot rollout: {{ level }}{{ group }}</p>", {"level": lead.rollout, "group": group}, html=True)


def plan(lead: Lead, mapping: Mapping) -> SyncPlan:
    """The CRM operations for ``lead`` (pure: no I/O).

    Note bodies (and task bodies where the CRM keeps HTML) are rendered with every value HTML-escaped,
    so what a patient wrote shows as written and is never markup; subjects and fields are plain text.
    The lead's rollout level (docs/rollout.md) decides how much is written: ``off`` and ``collect`` write
    the contact, the note and a task (no record); ``create`` the record in its first status, with no
    priority and no owner hint; ``full`` (or no level) everything.
    """
    level = lead.rollout
    if level in NO_RECORD_LEVELS or level == PLAIN_RECORD_LEVEL:
        mapping = mapping.model_copy(update={"owner_hints": []})
    data = lead_context(lead)
    contact_props, contact_create = _fields(_level_fields(mapping.contact.fields, level), data)
    contact = ContactWrite(object=mapping.contact.object, key_property=mapping.contact.key_property,
                           key_value=lead.contact_key, match_by=mapping.contact.match_by, phone=lead.contact.phone,
                           email=lead.contact.email, identities=_identities(mapping, contact_props),
                           properties=contact_props, create_only=contact_create)
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
    if mapping.record is not None and level not in NO_RECORD_LEVELS:
        section = mapping.record
        props, create_only = _fields(_level_fields(section.fields, level), data)
        status = "new" if level == PLAIN_RECORD_LEVEL else lead.status
        record = RecordWrite(object=section.object, reference_property=section.reference_property,
                             reference=lead.reference_number, properties=props, create_only=create_only,
                             pipeline=pick_label(section.pipeline, "en") if section.pipeline else None,
                             stage=pick_label(section.statuses[status], "en")
                             if status in section.statuses else None,
                             stage_property=section.stage_property, owner_id=owner)
    tags = list(lead.tags) + [t for t in (render(tag, data) for tag in mapping.tags.add) if t]
    note = None
    if mapping.note is not None:
        marker = f"chat2crm:{lead.reference}:note"
        body = render(mapping.note.template, data, html=True) + _rollout_line(lead)
        note = NoteWrite(body=with_marker(body, marker, html=True), marker=marker)
    task = None
    if mapping.task is not None and (lead.handoff_reason or level in NO_RECORD_LEVELS):
        marker, html = f"chat2crm:{lead.reference}:task", mapping.crm not in TEXT_TASK_BODIES
        task = TaskWrite(subject=render(mapping.task.subject, data),
                         body=with_marker(render(mapping.task.body, data, html=html), marker, html=html),
                         marker=marker, priority=mapping.task.priority if level in (None, "full") else "medium",
                         owner_id=owner,
                         due_at=lead.created_at + timedelta(hours=mapping.task.due_in_hours))
    return SyncPlan(crm=mapping.crm, lead_reference=lead.reference, contact=contact, company=company, record=record,
                    note=note, task=task, tags=list(dict.fromkeys(tags)),
                    # the tags' field is the record's (`crm setup` makes it there): no record, no tags field
                    tags_property=mapping.tags.property if record is not None or mapping.record is None else None,
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
