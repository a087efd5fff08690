"""The clinic's pipeline in HubSpot: creating it (``chat2crm crm setup``), describing it, and resolving the
pipeline and stage a mapping names by label to the ids HubSpot's records take.

A mapping names its pipeline and each status of the scheme (new, reviewing, planned, done, on hold) by id or by
label, the label in the clinic's language. ``crm setup`` creates a pipeline that does not exist, with the
scheme's stages in its order and the metadata HubSpot requires (a deal stage's ``probability``: Done 1.0, On
hold 0.0, the open stages in between; a ticket stage's ``ticketState``), and adds the stages an existing
pipeline lacks. Writing a record, the adapter reads the object's pipelines once per process and keeps them:
a label HubSpot does not know is read again once (a pipeline created meanwhile) before the write fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from adapters.base import CRMSchema, RecordWrite
from adapters.hubspot.common import HubSpotBase
from core.errors import FatalError

log = logging.getLogger("chat2crm.hubspot")

#: the objects that have pipelines (of those a mapping writes records to)
PIPELINE_OBJECTS = ("deals", "tickets", "leads")
#: a deal stage's probability by its place in the full status scheme (new, reviewing, planned, done, on hold):
#: HubSpot requires one (0.0 to 1.0 in steps of 0.1): 1.0 is won, 0.0 lost
SCHEME_PROBABILITY = ("0.2", "0.4", "0.6", "1.0", "0.0")
#: a ticket stage's state by its place in the full status scheme: done and on hold close the ticket
SCHEME_TICKET_STATE = ("OPEN", "OPEN", "OPEN", "CLOSED", "CLOSED")


@dataclass
class Stage:
    """One stage of a pipeline, as HubSpot describes it."""

    id: str
    label: str


@dataclass
class Pipeline:
    """One pipeline of an object and its stages, in HubSpot's order."""

    id: str
    label: str
    stages: list[Stage] = field(default_factory=list)

    def names(self) -> list[str]:
        """Every name a mapping may give one of its stages: their ids and labels."""
        return list(dict.fromkeys([s.id for s in self.stages] + [s.label for s in self.stages]))

    def stage(self, name: str) -> Stage | None:
        """The stage with this id, else with this label (labels are unique within a pipeline; case aside)."""
        return next((s for s in self.stages if s.id == name), None) or next(
            (s for s in self.stages if s.label.casefold() == name.casefold()), None)


def find_pipeline(pipelines: list[Pipeline], name: str) -> Pipeline | None:
    """The pipeline with this id, else with this label (case aside)."""
    return next((p for p in pipelines if p.id == name), None) or next(
        (p for p in pipelines if p.label.casefold() == name.casefold()), None)


def stage_metadata(obj: str, index: int, count: int) -> dict[str, str]:
    """The metadata HubSpot requires of the stage at ``index`` of a scheme of ``count`` stages: a complete
    scheme's places are known (Done won, On hold lost, or closed tickets); in a partial one they are not, and
    every stage is created open (a coordinator marks the closed ones in HubSpot)."""
    if obj == "deals":
        if count == len(SCHEME_PROBABILITY):
            return {"probability": SCHEME_PROBABILITY[index]}
        return {"probability": str(min(round(0.2 * (index + 1), 1), 0.8))}
    if obj == "tickets":
        return {"ticketState": SCHEME_TICKET_STATE[index] if count == len(SCHEME_TICKET_STATE) else "OPEN"}
    return {}


class HubSpotPipelines(HubSpotBase):
    """Pipelines: read once per process, resolved by id or label, created and completed by ``crm setup``."""

    def _pipelines(self, obj: str, *, refresh: bool = False) -> list[Pipeline]:
        """The object's pipelines and their stages (read once, kept by this adapter; ``refresh`` reads again)."""
        known: dict[str, list[Pipeline]] = self.__dict__.setdefault("_known_pipelines", {})
        if refresh or obj not in known:
            page = self._call("pipelines", self.client.crm.pipelines.pipelines_api.get_all, obj)
            known[obj] = [Pipeline(id=str(p.id), label=str(p.label or ""),
                                   stages=[Stage(id=str(s.id), label=str(s.label or ""))
                                           for s in sorted(p.stages or [], key=lambda s: s.display_order or 0)])
                          for p in page.results or []]
        return known[obj]

    def prepare(self, required: CRMSchema) -> None:
        """At worker start: read the pipelines of the objects the mapping writes records to, so the first lead
        does not; a pipeline or stage the mapping names and HubSpot lacks is logged (its leads would fail)."""
        for obj, info in required.objects.items():
            if obj not in PIPELINE_OBJECTS or not info.pipelines:
                continue
            try:
                pipelines = self._pipelines(obj, refresh=True)
            except FatalError as exc:  # a token without the schema scope: the writes say so, lead by lead
                log.warning("HubSpot's pipelines could not be read", extra={"object": obj, "error": exc.message})
                continue
            for name, stages in info.pipelines.items():
                pipeline = find_pipeline(pipelines, name)
                if pipeline is None or any(pipeline.stage(stage) is None for stage in stages):
                    log.warning("the mapping's pipeline or a stage is missing in HubSpot: run `chat2crm crm setup`",
                                extra={"object": obj})

    def _pipeline_names(self, obj: str) -> dict[str, list[str]]:
        """For ``describe``: each pipeline by its id and by its label, with its stages' ids and labels, so a
        mapping's check finds what it names either way."""
        out: dict[str, list[str]] = {}
        for pipeline in self._pipelines(obj, refresh=True):
            out[pipeline.id] = pipeline.names()
            out.setdefault(pipeline.label, pipeline.names())
        return out

    def _stage_ids(self, write: RecordWrite) -> tuple[str | None, str | None]:
        """The ids of the pipeline and stage ``write`` names by id or label; with no pipeline named, the stage
        is looked for in the object's default pipeline (HubSpot's first).

        Raises:
            FatalError: HubSpot has no such pipeline or stage (run ``chat2crm crm setup``).
        """
        if write.object not in PIPELINE_OBJECTS or not (write.pipeline or write.stage):
            return write.pipeline, write.stage
        for refresh in (False, True):
            pipelines = self._pipelines(write.object, refresh=refresh)
            pipeline = find_pipeline(pipelines, write.pipeline) if write.pipeline else next(iter(pipelines), None)
            stage = pipeline.stage(write.stage) if pipeline is not None and write.stage else None
            if pipeline is not None and (stage is not None or not write.stage):
                return (pipeline.id if write.pipeline else None), (stage.id if stage else None)
        if pipeline is None:
            raise FatalError(f"hubspot: {write.object} has no pipeline {write.pipeline!r}; run `chat2crm crm setup`",
                             field="record.pipeline")
        raise FatalError(f"hubspot: pipeline {pipeline.label!r} has no stage {write.stage!r}; run `chat2crm crm setup`",
                         field="record.statuses")

    def _setup_pipeline(self, obj: str, name: str, stages: list[str], *, apply: bool) -> list[str]:
        """Make ``name`` (an id or a label) a pipeline of ``obj`` with ``stages`` (the scheme's, in order): create
        it labelled ``name``, or add the stages it lacks. Returns what was done (or would be, without ``apply``)."""
        from hubspot.crm.pipelines import PipelineInput, PipelineStageInput

        if obj not in PIPELINE_OBJECTS:
            return [f"MISSING {obj} pipeline {name}: {obj} has no pipelines in HubSpot"]
        pipelines = self._pipelines(obj, refresh=True)
        pipeline = find_pipeline(pipelines, name)
        if pipeline is None:
            if not apply:
                return [f"would create {obj} pipeline {name} with stages {', '.join(stages)}"]
            body = PipelineInput(label=name, display_order=len(pipelines), stages=[
                PipelineStageInput(label=label, display_order=i, metadata=stage_metadata(obj, i, len(stages)))
                for i, label in enumerate(stages)])
            created = self._call("pipeline_create", self.client.crm.pipelines.pipelines_api.create, obj, body)
            self._pipelines(obj, refresh=True)
            log.info("pipeline created", extra={"object": obj, "pipeline_id": str(created.id)})
            return [f"created {obj} pipeline {name} with stages {', '.join(stages)}"]
        lines: list[str] = []
        for i, label in enumerate(stages):
            if pipeline.stage(label) is not None:
                lines.append(f"ok {obj} pipeline {name} stage {label}")
                continue
            if not apply:
                lines.append(f"would add stage {label} to {obj} pipeline {name}")
                continue
            self._call("pipeline_stage_create", self.client.crm.pipelines.pipeline_stages_api.create, obj,
                       pipeline.id, PipelineStageInput(label=label, display_order=i,
                                                       metadata=stage_metadata(obj, i, len(stages))))
            lines.append(f"added stage {label} to {obj} pipeline {name}")
        if apply and any(line.startswith("added") for line in lines):
            self._pipelines(obj, refresh=True)
        return lines

