"""The Pipedrive adapter's diagnosis and set-up: checking the token, describing the account's fields,
pipelines and lead labels, resolving the mapping's fields at worker start, and creating what a mapping needs
(``chat2crm crm setup``): the custom fields (with those the adapter writes itself), the status lead labels and
the deal pipeline with its stages, named in the clinic's language.
"""

from __future__ import annotations

from typing import Any, Literal

from adapters.base import CredentialReport, CRMSchema, FieldInfo, ObjectInfo
from adapters.pipedrive.common import STANDARD
from adapters.pipedrive.identity import OWN_FIELDS
from adapters.pipedrive.labels import LEAD_LABELS, PipedriveLabels
from core.errors import FatalError, RetryableError
from core.plan import opt_out_companions

_FIELD_TYPES = {"string": "varchar", "text": "text", "date": "date", "enumeration": "set", "bool": "enum",
                "number": "double", "varchar": "varchar"}


class PipedriveSchema(PipedriveLabels):
    """Credentials check, describe, prepare and set-up."""

    # -- diagnosis -----------------------------------------------------------------------------
    def prepare(self, required: CRMSchema) -> None:
        """Resolve every custom field the mapping names to its key (cached in Redis for every worker)."""
        from core.errors import ConfigurationError, Problem

        problems = []
        for obj, info in required.objects.items():
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            for name in info.fields:
                if name in STANDARD.get(obj, set()) or name in STANDARD[entity]:
                    continue
                try:
                    self._field(entity, name)
                except FatalError as exc:
                    problems.append(Problem(exc.message, file=self.options.mapping_file, path=f"{obj}.{name}",
                                            hint="run `chat2crm crm setup`"))
        if problems:
            raise ConfigurationError(problems)

    def check_credentials(self) -> CredentialReport:
        try:
            me = self._call("me", "GET", "/v1/users/me")
            self._fields("person", refresh=True)
        except (RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        data = me.get("data") or {}
        # An API token has its user's permissions, not scopes; an OAuth app's scopes are not listed here.
        return CredentialReport(ok=True, account=str(data.get("company_domain") or data.get("company_name")
                                                     or "pipedrive"))

    def describe(self, objects: list[str]) -> CRMSchema:
        """Fields by visible name (``label`` holds Pipedrive's key), pipelines → stage names, and for
        leads the lead labels as the pseudo-pipeline ``lead labels``.

        Pipedrive has no unique constraint on custom fields; the relay keeps key and reference
        values unique itself (an exact search before every create), so the searchable text fields
        that can serve as such keys are reported ``unique``.
        """
        schema = CRMSchema()
        for obj in objects:
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            info = ObjectInfo(name=obj)
            for name in sorted(STANDARD.get(obj, set())):
                info.fields[name] = FieldInfo(name=name, label=name, type="standard")
            for name, spec in self._fields(entity, refresh=True).items():
                if name != spec["name"]:
                    continue  # the entry by key
                info.fields[name] = FieldInfo(name=name, label=spec["key"], type=spec["type"],
                                              options=list(spec["options"]),
                                              unique=spec["custom"] and spec["type"] in ("varchar", "text"))
            if obj == "lead":
                info.pipelines[LEAD_LABELS] = list(self._labels(refresh=True))
            elif obj == "deal":
                info.pipelines = {name: list(p["stages"]) for name, p in self._pipelines(refresh=True).items()}
            schema.objects[obj] = info
        return schema

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Create the custom fields, lead labels, pipeline and stages the mapping needs, and the person fields the
        adapter writes itself (:func:`own_fields`); idempotent."""
        lines: list[str] = []
        required = own_fields(required)
        live = self.describe(list(required.objects))
        touched: set[Literal["person", "deal"]] = set()
        for obj, info in required.objects.items():
            entity: Literal["person", "deal"] = "person" if obj == "person" else "deal"
            have = live.objects[obj].fields
            for name, wanted in info.fields.items():
                if name in have:
                    lines.append(f"ok {obj}.{name}" + (f" ({have[name].label})" if have[name].label != name else ""))
                    continue
                kind = "text" if name in set(self.options.text_fields) else _FIELD_TYPES.get(wanted.type, "varchar")
                options = ["true", "false"] if wanted.type == "bool" else ["chat2crm"] if kind == "set" else []
                if not apply:
                    lines.append(f"would create {entity} field {name!r} ({kind})")
                    continue
                body: dict[str, Any] = {"field_name": name, "field_type": kind}
                if options:
                    body["options"] = [{"label": o} for o in options]
                created = self._call(f"{entity}_field_create", "POST", f"/api/v2/{entity}Fields", body=body)
                lines.append(f"created {entity} field {name!r} ({kind}, key {created['data']['field_code']})")
                touched.add(entity)
            for pipeline, stages in info.pipelines.items():
                if obj == "lead" and pipeline == LEAD_LABELS:
                    labels = live.objects[obj].pipelines.get(LEAD_LABELS, [])
                    for stage in stages:
                        if stage in labels:
                            lines.append(f"ok lead label {stage!r}")
                        elif apply:
                            self._create_label(stage, self.options.status_label_color)
                            lines.append(f"created lead label {stage!r}")
                        else:
                            lines.append(f"would create lead label {stage!r}")
                    continue
                lines += self._setup_pipeline(pipeline, stages, live.objects[obj].pipelines.get(pipeline),
                                              apply=apply)
        for made in sorted(touched):
            self._fields(made, refresh=True)  # the new keys, cached for every worker
        return lines

    def _setup_pipeline(self, pipeline: str, stages: list[str], have: list[str] | None, *, apply: bool) -> list[str]:
        """The deal pipeline ``pipeline`` with ``stages`` in order (the status scheme's, in the clinic's language):
        made when it does not exist; the stages it lacks added (Pipedrive puts a new stage last)."""
        if have is not None and all(s in have for s in stages):
            return [f"ok deal pipeline {pipeline} stage {', '.join(stages)}"]
        missing = [s for s in stages if have is None or s not in have]
        if not apply:
            what = f"pipeline {pipeline!r} with" if have is None else f"in pipeline {pipeline!r}"
            return [f"would create {what} stage {', '.join(map(repr, missing))}"]
        lines = []
        if have is None:
            created = self._call("pipeline_create", "POST", "/api/v2/pipelines", body={"name": pipeline})
            pipeline_id = int(created["data"]["id"])
            lines.append(f"created deal pipeline {pipeline!r} (id {pipeline_id})")
        else:
            pipeline_id = int(self._pipelines()[pipeline]["id"])
        for stage in missing:
            made = self._call("stage_create", "POST", "/api/v2/stages", body={"name": stage, "pipeline_id": pipeline_id})
            lines.append(f"created stage {stage!r} in pipeline {pipeline!r} (id {made['data']['id']})")
        self._pipelines(refresh=True)  # the new ids, cached for every worker
        return lines


def own_fields(required: CRMSchema) -> CRMSchema:
    """``required`` with the person fields the adapter itself writes: the identity conflict's two
    (:data:`~adapters.pipedrive.identity.OWN_FIELDS`), and, beside the mapping's opt-out flag (the one yes/no
    field a mapping asks of the person), when and on which channel the patient opted out
    (:func:`core.plan.opt_out_companions`)."""
    person = required.objects.get("person")
    if person is None:
        return required
    extra = {name: FieldInfo(name=name, type=kind) for name, kind in OWN_FIELDS.items()}
    for flag in [f.name for f in person.fields.values() if f.type == "bool"]:
        at_field, channel_field = opt_out_companions(flag)
        extra |= {at_field: FieldInfo(name=at_field), channel_field: FieldInfo(name=channel_field)}
    return required.model_copy(update={"objects": {**required.objects, "person": person.model_copy(
        update={"fields": {**person.fields, **extra}})}})
