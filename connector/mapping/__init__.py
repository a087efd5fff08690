"""YAML field mappings (``mappings/<crm>.yaml``, ``version: 1``) and the pure planner.

One schema serves every CRM. A mapping says which objects to write (the contact, an optional
company, the request record), how an existing contact is matched, and for each CRM field where its
value comes from: a canonical field path of the :class:`~core.models.Lead` (``contact.phone``,
``request.preferred_time``, ``last_touch.utm_campaign``, ``answers.treatment``), a constant, or a
sandboxed Jinja2 template, through a closed set of named transforms. It maps the status scheme
(new, reviewing, planned, done, on_hold) to the CRM's stages (the relay sets only the first), and
holds the tags, the note and the handoff task templates, owner hints and the opt-out property.

- :mod:`connector.mapping.model`: the file's schema (:class:`Mapping` and its sections);
- :mod:`connector.mapping.planner`: :func:`plan` turns a lead into a :class:`~core.plan.SyncPlan`
  without any I/O;
- :mod:`connector.mapping.checks`: loading a file with every problem located, what the mapping needs
  the CRM to have, and the comparison with the live CRM.

Everything is importable from this package, as the rest of the relay does.
"""

from __future__ import annotations

from connector.mapping.checks import (
    STANDARD_FIELDS,
    check_online,
    load_mapping,
    mapping_json_schema,
    required_schema,
    write_mapping_schema,
)
from connector.mapping.model import (
    STATUSES,
    TRANSFORMS,
    CompanySection,
    ContactSection,
    FieldSource,
    Mapping,
    NoteSection,
    OptOutSection,
    OwnerHint,
    RecordSection,
    TagsSection,
    TaskSection,
    Transform,
)
from connector.mapping.planner import (
    TEXT_TASK_BODIES,
    apply_transform,
    contact_key_field,
    field_value,
    lead_context,
    opt_out_plan,
    plan,
    resolve,
    with_marker,
)

__all__ = [
    "STANDARD_FIELDS", "STATUSES", "TEXT_TASK_BODIES", "TRANSFORMS", "CompanySection", "ContactSection", "FieldSource",
    "Mapping", "NoteSection", "OptOutSection", "OwnerHint", "RecordSection", "TagsSection", "TaskSection", "Transform",
    "apply_transform", "check_online", "contact_key_field", "field_value", "lead_context", "load_mapping",
    "mapping_json_schema", "opt_out_plan", "plan", "required_schema", "resolve", "with_marker",
    "write_mapping_schema",
]
