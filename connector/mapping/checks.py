"""Loading and checking mapping files, and what a mapping needs the CRM to have.

:func:`load_mapping` validates a file as a whole: field paths name fields of the Lead, templates compile,
the ``options:`` block fits the selected adapter's ``Options``; every problem is reported with its file and
line. :func:`required_schema` lists the fields and stages the mapping writes (``chat2crm crm setup``
creates them), :func:`check_online` compares them with the live CRM (``chat2crm check --online``), and
:func:`mapping_json_schema` publishes the JSON Schema editors validate mapping files with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters import available_adapters, load_adapter
from adapters.base import CRMAdapter
from connector.mapping.model import FieldSource, Mapping, pick_label
from connector.mapping.planner import valid_path
from connector.templating import check_template
from connector.yamlfile import YamlDoc, load_model, problems_from_validation
from core.errors import ConfigurationError, Problem
from core.plan import CRMSchema, FieldInfo, ObjectInfo

#: one problem found in a mapping: where (a path into the file), what, and a hint (or None)
Found = tuple[tuple[Any, ...], str, str | None]


def _check(mapping: Mapping, path: Path, line_of: Any, crm: str) -> list[Problem]:
    problems: list[Found] = []
    if mapping.crm != crm:
        problems.append((("crm",), f"this mapping is for {mapping.crm!r} but chat2crm.yaml selects {crm!r}", None))
    problems += _field_problems(mapping)
    problems += _template_problems(mapping)
    problems += _owner_hint_problems(mapping)
    return [Problem(message, file=str(path), line=line_of(loc), path=".".join(map(str, loc)), hint=hint)
            for loc, message, hint in problems]


def _field_problems(mapping: Mapping) -> Iterator[Found]:
    """Mapped fields: paths that name no field of the Lead, templates that do not compile, map transforms
    without a table."""
    sections: list[tuple[tuple[Any, ...], dict[str, FieldSource]]] = [(("contact", "fields"), mapping.contact.fields)]
    if mapping.record:
        sections.append((("record", "fields"), mapping.record.fields))
    if mapping.company:
        sections.append((("company", "fields"), mapping.company.fields))
        sections.append((("company",), {"name": mapping.company.name}))
    for loc, fields in sections:
        for name, spec in fields.items():
            where = (*loc, name)
            if spec.source is not None and not valid_path(spec.source):
                yield (where, f"unknown field path {spec.source!r}",
                       "paths start with contact., request., first_touch., last_touch., answers., consent. …")
            if spec.template is not None and (error := check_template(spec.template)):
                yield where, f"template error: {error}", None
            for transform in spec.transform:
                if transform.name == "map" and not transform.table:
                    yield where, "the map transform needs a table", None


def _template_problems(mapping: Mapping) -> Iterator[Found]:
    """The note, the task and the extra tags: templates that do not compile."""
    for loc, source in [(("note", "template"), mapping.note.template if mapping.note else None),
                        (("task", "subject"), mapping.task.subject if mapping.task else None),
                        (("task", "body"), mapping.task.body if mapping.task else None),
                        *[(("tags", "add", i), t) for i, t in enumerate(mapping.tags.add)]]:
        if source and (error := check_template(source)):
            yield loc, f"template error: {error}", None


def _owner_hint_problems(mapping: Mapping) -> Iterator[Found]:
    """Owner hints whose conditions name no field of the Lead."""
    for i, hint in enumerate(mapping.owner_hints):
        for key in hint.when:
            if not valid_path(key):
                yield ("owner_hints", i, "when", key), f"unknown field path {key!r}", None


def _check_options(mapping: Mapping, doc: YamlDoc, crm: str) -> list[Problem]:
    """The ``options:`` block against the selected adapter's ``Options`` (a CRM no adapter is installed for
    is named at the mapping's ``crm:``)."""
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


def load_mapping(path: Path, *, crm: str, language: str = "en") -> Mapping:
    """Read and validate a mapping, its ``options:`` against the ``crm`` adapter's, with its per-language
    labels in ``language`` (the configuration's ``clinic_language``).

    Raises:
        ConfigurationError: every problem, as file:line: path: message (hint).
    """
    mapping, doc = load_model(path, Mapping)
    problems = _check(mapping, path, doc.line_of, crm) + _check_options(mapping, doc, crm)
    if problems:
        raise ConfigurationError(problems)
    return mapping.in_language(language)


def mapping_json_schema() -> dict[str, Any]:
    """The JSON Schema of mapping files: :class:`Mapping`, with each installed adapter's ``options``
    (``$defs/<crm>_options``), chosen by the file's ``crm``."""
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
            # every stage of the scheme, in its order: `crm setup` creates the clinic's pipeline from it
            objects[record.object].pipelines[pick_label(record.pipeline, "en")] = record.stage_labels()
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
    the pipeline and every stage of the status scheme exist."""
    required = required_schema(mapping)
    live = adapter.describe(list(required.objects))
    return _missing_in_crm(required, live, adapter.name) + _values_not_in_crm(mapping, live, adapter.name)


def _missing_in_crm(required: CRMSchema, live: CRMSchema, crm: str) -> list[Problem]:
    """The objects, fields (or their uniqueness), pipelines and stages the mapping needs and the CRM lacks."""
    problems: list[Problem] = []
    for obj, info in required.objects.items():
        have = live.objects.get(obj)
        if have is None:
            problems.append(Problem(f"the CRM has no object {obj!r}", file=crm))
            continue
        for name, field in info.fields.items():
            found = have.fields.get(name)
            if found is None:
                problems.append(Problem(f"{obj}.{name} does not exist in the CRM", file=crm,
                                        hint="run `chat2crm crm setup` or create it by hand"))
            elif field.unique and not found.unique:
                problems.append(Problem(f"{obj}.{name} must hold unique values", file=crm))
        for pipeline, stages in info.pipelines.items():
            if pipeline not in have.pipelines:
                problems.append(Problem(f"{obj} pipeline {pipeline!r} does not exist", file=crm))
                continue
            problems += [Problem(f"{obj} stage {stage!r} is not in pipeline {pipeline!r}", file=crm)
                         for stage in stages if stage not in have.pipelines[pipeline]]
    return problems


def _values_not_in_crm(mapping: Mapping, live: CRMSchema, crm: str) -> list[Problem]:
    """The values the mapping's transforms write into a CRM field with options that are not among them."""
    problems: list[Problem] = []
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
                problems += [Problem(f"{obj}.{name}: {value!r} is not one of its options", file=crm,
                                     hint="options: " + ", ".join(found.options[:10]))
                             for value in values if value not in found.options]
    return problems
