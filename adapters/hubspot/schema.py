"""The HubSpot adapter's diagnosis and set-up: checking the token, describing objects' properties (with their
labels) and pipelines, and creating the property group and custom properties a mapping needs, those the adapter
writes on contacts itself (an identity conflict, the time and channel of an opt-out), and the clinic's pipeline
(:mod:`adapters.hubspot.pipelines`) (``chat2crm crm setup``).
"""

from __future__ import annotations

from adapters.base import CredentialReport, CRMSchema, FieldInfo, ObjectInfo
from adapters.hubspot.identity import CONFLICTING_EMAIL, IDENTITY_CONFLICT
from adapters.hubspot.pipelines import PIPELINE_OBJECTS, HubSpotPipelines
from adapters.hubspot.session import ConflictError
from core.errors import FatalError, RetryableError
from core.plan import opt_out_companions


class HubSpotSchema(HubSpotPipelines):
    """Credentials check, describe and set-up."""

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            self._call("owners", self.client.crm.owners.owners_api.get_page, limit=1)
            self._call("properties", self.client.crm.properties.core_api.get_all, "contacts")
        except (RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        return CredentialReport(ok=True, account="hubspot", scopes=["crm.objects.contacts", "crm.schemas"])

    def describe(self, objects: list[str]) -> CRMSchema:
        schema = CRMSchema()
        for obj in objects:
            page = self._call("properties", self.client.crm.properties.core_api.get_all, obj)
            info = ObjectInfo(name=obj)
            for prop in page.results:
                info.fields[prop.name] = FieldInfo(name=prop.name, label=prop.label, type=prop.type,
                                                   options=[o.value for o in prop.options or []],
                                                   unique=bool(prop.has_unique_value))
            if obj in PIPELINE_OBJECTS:  # each pipeline by id and by label, its stages' ids and labels
                info.pipelines = self._pipeline_names(obj)
            schema.objects[obj] = info
        return schema

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create the property group and every custom property the mapping needs, and the adapter's own
        (:func:`own_fields`), and the mapping's pipeline with the stages it lacks, idempotently."""
        from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

        lines: list[str] = []
        group = self.options.property_group
        required = own_fields(required)
        live = self.describe(list(required.objects))
        for obj, info in required.objects.items():
            missing = [f for name, f in info.fields.items() if name not in live.objects[obj].fields]
            if missing and apply:
                try:
                    self._call("groups", self.client.crm.properties.groups_api.create, obj,
                               PropertyGroupCreate(name=group, label="chat2crm"))
                    lines.append(f"created property group {obj}.{group}")
                except ConflictError:
                    pass
            for wanted in missing:
                kind, field_type = {"enumeration": ("enumeration", "checkbox"), "datetime": ("datetime", "date"),
                                    "bool": ("enumeration", "booleancheckbox")}.get(wanted.type, ("string", "text"))
                options = [{"label": v, "value": v, "displayOrder": i, "hidden": False}
                           for i, v in enumerate(["true", "false"] if wanted.type == "bool" else [])]
                if not apply:
                    lines.append(f"would create {obj}.{wanted.name} ({kind}{', unique' if wanted.unique else ''})")
                    continue
                self._call("properties", self.client.crm.properties.core_api.create, obj, PropertyCreate(
                    name=wanted.name, label=wanted.name.replace("_", " ").title(), type=kind, field_type=field_type,
                    group_name=group, has_unique_value=wanted.unique, options=options))
                lines.append(f"created {obj}.{wanted.name} ({kind}{', unique' if wanted.unique else ''})")
            for name in info.fields:
                if name in live.objects[obj].fields:
                    lines.append(f"ok {obj}.{name}")
            for pipeline, stages in info.pipelines.items():
                lines += self._setup_pipeline(obj, pipeline, stages, apply=apply)
        return lines


def own_fields(required: CRMSchema) -> CRMSchema:
    """``required`` with what the adapter itself writes on contacts: the identity conflict's two properties
    (:mod:`adapters.hubspot.identity`), and, beside the mapping's opt-out flag (the one yes/no property a
    mapping asks of the contact), when and on which channel the patient opted out
    (:func:`core.plan.opt_out_companions`)."""
    contacts = required.objects.get("contacts")
    if contacts is None:
        return required
    extra = {name: FieldInfo(name=name) for name in (IDENTITY_CONFLICT, CONFLICTING_EMAIL)}
    for flag in [f.name for f in contacts.fields.values() if f.type == "bool"]:
        at_field, channel_field = opt_out_companions(flag)
        extra |= {at_field: FieldInfo(name=at_field, type="datetime"), channel_field: FieldInfo(name=channel_field)}
    fields = {**extra, **contacts.fields}
    return required.model_copy(update={"objects": {**required.objects, "contacts": contacts.model_copy(
        update={"fields": fields})}})
