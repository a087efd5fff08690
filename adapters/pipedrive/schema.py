"""The Pipedrive adapter's diagnosis and set-up: checking the token, describing the account's fields,
pipelines and lead labels, resolving the mapping's fields at worker start, and creating the custom
fields and lead labels a mapping needs (``chat2crm crm setup``).
"""

from __future__ import annotations

from typing import Any, Literal

from adapters.base import CredentialReport, CRMSchema, FieldInfo, ObjectInfo
from adapters.pipedrive.common import STANDARD
from adapters.pipedrive.labels import LEAD_LABELS, PipedriveLabels
from core.errors import FatalError, RetryableError

_FIELD_TYPES = {"string": "varchar", "text": "text", "date": "date", "enumeration": "set", "bool": "enum",
                "number": "double"}


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
        """Create the custom fields and lead labels the mapping needs (idempotent)."""
        lines: list[str] = []
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
                have_stages = live.objects[obj].pipelines.get(pipeline)
                state = "ok" if have_stages is not None and all(s in have_stages for s in stages) else \
                    "MISSING (create it in Pipedrive)"
                lines.append(f"{state} {obj} pipeline {pipeline} stage {', '.join(stages)}")
        for made in sorted(touched):
            self._fields(made, refresh=True)  # the new keys, cached for every worker
        return lines
