"""The org's schema as the relay sees it, and its set-up: describing objects (fields, External IDs,
status/stage picklists) and creating the custom fields a mapping needs through the Tooling API (and its
status values through the Metadata API: :mod:`adapters.salesforce.metadata`), or saying exactly what an
admin must do in Setup.

These serve ``chat2crm doctor`` and ``chat2crm setup``; they call Salesforce through the adapter's session.
"""

from __future__ import annotations

from typing import Any

from adapters.base import CRMSchema, FieldInfo, ObjectInfo
from adapters.salesforce.metadata import status_lines
from adapters.salesforce.session import SalesforceSession
from core.errors import AuthError, FatalError

#: the field that holds each record object's status / stage (its "pipeline")
STAGE_FIELDS = {"Lead": "Status", "Case": "Status", "Opportunity": "StageName"}


def describe_objects(session: SalesforceSession, objects: list[str]) -> CRMSchema:
    """One composite call describes every object (fields, External IDs, status/stage picklists); an object the
    org does not have is left out.

    Raises:
        RetryableError, AuthError, FatalError: the call or a describe failed.
    """
    schema = CRMSchema()
    if not objects:
        return schema
    subrequests = [{"method": "GET", "url": session.path(f"sobjects/{obj}/describe"),
                    "referenceId": f"d{i}"} for i, obj in enumerate(objects)]
    response = session.request("describe", "POST", "composite", json={"allOrNone": False,
                                                                      "compositeRequest": subrequests})
    for obj, sub in zip(objects, response["compositeResponse"], strict=True):
        if sub["httpStatusCode"] >= 400:
            if sub["httpStatusCode"] == 404:
                continue  # check_online reports the missing object
            raise session.subresponse(sub["httpStatusCode"], sub["body"], "describe")
        schema.objects[obj] = _object_info(obj, sub["body"])
    return schema


def _object_info(obj: str, described: dict[str, Any]) -> ObjectInfo:
    """An object's describe answer as the SDK's :class:`ObjectInfo`."""
    info = ObjectInfo(name=obj)
    for f in described["fields"]:
        info.fields[f["name"]] = FieldInfo(
            name=f["name"], label=f.get("label"), type=f.get("type", "string"),
            options=[p["value"] for p in f.get("picklistValues") or [] if p.get("active", True)],
            unique=bool(f.get("externalId") and f.get("unique")) or f["name"] == "Id")
    stage = STAGE_FIELDS.get(obj)
    if stage and stage in info.fields:
        info.pipelines[stage] = list(info.fields[stage].options)
    return info


def with_own_fields(required: CRMSchema) -> CRMSchema:
    """``required`` with what the adapter itself writes on Leads and Contacts: the identity conflict's two fields
    and, beside the mapping's opt-out flag (the one checkbox a mapping asks of the contact object), when and on
    which channel the patient opted out (:func:`~adapters.salesforce.identity.own_fields`)."""
    from adapters.salesforce.identity import own_fields

    kinds = {"Text": "string", "Email": "email", "DateTime": "datetime"}
    objects = dict(required.objects)
    for obj in ("Lead", "Contact"):
        info = objects.get(obj)
        if info is None:
            continue
        flag = next((f.name for f in info.fields.values() if f.type == "bool"), None)
        extra = {name: FieldInfo(name=name, type=kinds[kind]) for name, kind in own_fields(flag).items()}
        objects[obj] = info.model_copy(update={"fields": {**info.fields, **extra}})
    return required.model_copy(update={"objects": objects})


def setup_lines(session: SalesforceSession, required: CRMSchema, live: CRMSchema, *, apply: bool) -> list[str]:
    """Say exactly which fields an admin must create, or create them through the Tooling API; add the status
    scheme's missing values to the status field's standard value set through the Metadata API
    (:func:`~adapters.salesforce.metadata.status_lines`).

    Each missing custom field is created (``apply``) when the integration user may customize
    the org; otherwise, and for every change the API cannot make, the line says what to do in
    Setup. Created fields still need field-level security for the integration user.

    Args:
        session: the adapter's session.
        required: what the mapping needs.
        live: what the org has (:func:`describe_objects` of the required objects).
        apply: create the missing custom fields and status values (else only say what would be created).
    """
    lines: list[str] = []
    created = False
    for obj, info in required.objects.items():
        have = live.objects.get(obj)
        if have is None:
            lines.append(f"MISSING object {obj}: this org has no {obj} (or the integration user cannot see it)")
            continue
        for name, wanted in info.fields.items():
            line, made = _field_line(session, obj, name, wanted, have.fields.get(name), apply=apply)
            lines.append(line)
            created = created or made
        for stage_field, values in info.pipelines.items():
            have_values = have.pipelines.get(stage_field, have.fields.get(stage_field, FieldInfo(name="")).options)
            lines += status_lines(session, obj, stage_field, values, have_values, apply=apply)
    if created:
        lines.append("then: give the integration user's permission set Read and Edit access to the created "
                     "fields (field-level security is not granted by the Tooling API)")
    return lines


def _field_line(session: SalesforceSession, obj: str, name: str, wanted: FieldInfo, found: FieldInfo | None, *,
                apply: bool) -> tuple[str, bool]:
    """The set-up line of one field the mapping needs, and whether this created it."""
    external = wanted.unique
    spec = _field_spec(name, wanted, external)
    if found is not None:
        if external and not found.unique:
            return (f"TO DO {obj}.{name}: edit the field and tick External ID and Unique "
                    f"(Setup → Object Manager → {obj} → Fields & Relationships)"), False
        return f"ok {obj}.{name}", False
    if not name.endswith("__c"):
        return (f"MISSING {obj}.{name}: a standard field this org does not show the integration "
                "user; check field-level security or the mapping"), False
    label = _describe_spec(spec)
    if not apply:
        return f"would create {obj}.{name}: {label}", False
    try:
        session.request("custom_field", "POST", "tooling/sobjects/CustomField",
                        json={"FullName": f"{obj}.{name}", "Metadata": spec})
    except (AuthError, FatalError) as exc:
        return (f"TO DO {obj}.{name}: create it in Setup → Object Manager → {obj} → Fields & "
                f"Relationships as {label} (the API refused: {exc.message[:100]})"), False
    return f"created {obj}.{name}: {label}", True


def _field_spec(name: str, wanted: FieldInfo, external: bool) -> dict[str, Any]:
    """The Tooling API ``Metadata`` of a custom field the mapping needs."""
    label = name.removesuffix("__c").replace("Chat2CRM_", "Chat2CRM ").replace("_", " ").strip()[:40]
    if wanted.type == "bool":
        return {"label": label, "type": "Checkbox", "defaultValue": "false"}
    if wanted.type == "datetime":
        return {"label": label, "type": "DateTime"}
    if wanted.type == "email":
        return {"label": label, "type": "Email"}
    lowered = name.lower()
    if not external and any(word in lowered for word in ("summary", "transcript_text", "description")):
        return {"label": label, "type": "LongTextArea", "length": 32768, "visibleLines": 5}
    if not external and lowered.endswith("url__c"):
        return {"label": label, "type": "Url"}
    spec: dict[str, Any] = {"label": label, "type": "Text", "length": 255}
    if external:
        spec.update(externalId=True, unique=True, caseSensitive=False)
    return spec


def _describe_spec(spec: dict[str, Any]) -> str:
    """A field spec in words, as Setup shows it (``Text(255), External ID, Unique (case-insensitive)``)."""
    kind = spec["type"]
    text = f"{kind}({spec['length']})" if "length" in spec else kind
    if spec.get("externalId"):
        text += ", External ID, Unique (case-insensitive)"
    return text
