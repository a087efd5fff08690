"""Lead labels, pipelines and stages, and the options of the deal field that holds tags: the Pipedrive
adapter's account lists, read once and cached in Redis for a day, with what is missing made once
(under a lock, so two workers do not make two labels of one name).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.pipedrive.common import PipedriveBase
from core.errors import FatalError

#: the pseudo-pipeline of lead mode: leads have no pipeline, their status is a lead label
LEAD_LABELS = "lead labels"


class PipedriveLabels(PipedriveBase):
    """Lead labels, pipelines and stages, and the multi-option deal field of tags."""

    # -- labels, pipelines ---------------------------------------------------------------------
    def _labels(self, *, refresh: bool = False) -> dict[str, str]:
        """Lead label name → id, cached a day."""
        cached = None if refresh else self.cache.get("labels")
        if cached:
            loaded: dict[str, str] = json.loads(cached)
            return loaded
        page = self._call("labels", "GET", "/v1/leadLabels")
        labels = {str(item["name"]): str(item["id"]) for item in page.get("data") or []}
        self.cache.set("labels", json.dumps(labels))
        return labels

    def _create_label(self, name: str, color: str) -> str:
        created = self._call("label_create", "POST", "/v1/leadLabels", body={"name": name, "color": color})
        labels = {**self._labels(), name: str(created["data"]["id"])}
        self.cache.set("labels", json.dumps(labels))
        return labels[name]

    def _label_ids(self, names: list[str], *, status: str | None = None) -> list[str]:
        """The ids of these lead labels, creating the missing ones (once: their ids are cached)."""
        wanted = list(dict.fromkeys(([status] if status else []) + names))
        labels = self._labels()
        if any(n not in labels for n in wanted):
            with self._exclusive("labels"):
                labels = self._labels(refresh=True)  # another worker may have made them meanwhile
                for label in wanted:
                    if label not in labels:
                        labels[label] = self._create_label(label, self.options.status_label_color if label == status
                                                           else self.options.label_color)
        return [labels[label] for label in wanted]

    def _pipelines(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Pipeline name (and id) → ``{id, stages: {stage name (and id): stage id}}``, cached a day."""
        cached = None if refresh else self.cache.get("pipelines")
        if cached:
            loaded: dict[str, dict[str, Any]] = json.loads(cached)
            return loaded
        pipelines = self._call("pipelines", "GET", "/api/v2/pipelines", params={"limit": 500}).get("data") or []
        stages = self._call("stages", "GET", "/api/v2/stages", params={"limit": 500}).get("data") or []
        found: dict[str, dict[str, Any]] = {}
        for pipeline in pipelines:
            entry = {"id": pipeline["id"], "stages": {}}
            for stage in stages:
                if stage["pipeline_id"] == pipeline["id"]:
                    entry["stages"][str(stage["name"])] = stage["id"]
                    entry["stages"][str(stage["id"])] = stage["id"]
            found[str(pipeline["name"])] = entry
            found[str(pipeline["id"])] = entry
        self.cache.set("pipelines", json.dumps(found))
        return found

    def _stage(self, pipeline: str | None, stage: str | None) -> tuple[int | None, int | None]:
        if not pipeline:
            return None, None
        pipelines = self._pipelines()
        if pipeline not in pipelines or (stage and stage not in pipelines[pipeline]["stages"]):
            pipelines = self._pipelines(refresh=True)
        if pipeline not in pipelines:
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the pipeline {pipeline!r}, which does not exist",
                             field="record.pipeline")
        entry = pipelines[pipeline]
        if stage and stage not in entry["stages"]:
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the stage {stage!r}, which is not in the "
                             f"pipeline {pipeline!r}", field="record.statuses")
        return int(entry["id"]), int(entry["stages"][stage]) if stage else None

    # -- the tags field of deals ---------------------------------------------------------------
    def _ensure_options(self, name: str, values: list[str]) -> dict[str, Any]:
        """The multi-option deal field ``name``, with an option for every value (missing ones added)."""
        spec = self._field("deal", name)
        if any(v not in spec["options"] for v in values):
            if spec["type"] not in ("set", "enum"):
                raise FatalError(f"pipedrive: the tags field {name!r} must be a multiple-options field", field=name)
            with self._exclusive(f"options:{spec['key']}"):
                spec = self._fields("deal", refresh=True).get(name, spec)
                missing = [v for v in dict.fromkeys(values) if v not in spec["options"]]
                if missing:
                    self._call("field_options", "POST", f"/api/v2/dealFields/{spec['key']}/options",
                               body=[{"label": v} for v in missing])
                    spec = self._fields("deal", refresh=True)[name]
        return spec
