"""``chat2crm check``: everything that would otherwise break at run time, found before a patient finds it.

:func:`check_configuration` validates every file even when one of them fails (the main file's own mistakes do
not hide the flows', whose folder is then read from the file as written), resolves every cross-reference
(``default_flow``, the flows of WhatsApp numbers and campaigns, a campaign's language among the bot's and its
flow's, a campaign's known answers, ``when`` conditions against their question's options, the window templates'
languages, the mapping's statuses, the adapter's options that name mapped fields, the campaigns ``rollout:`` names),
fills every system text's placeholders and renders every template against sample leads in strict mode
(:mod:`connector.samples`), then plans the sample leads with the mapping as a CRM write would. Each problem is
reported once, with its file, line and path.

:func:`plain_errors` turns what stops a command that talks to Redis or the CRM (unreachable, refused
credentials, a failing CRM) into one line saying what to do, and exit status 1, instead of a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click
import redis
import requests

from connector.attribution.campaigns import CampaignRegistry, load_campaigns
from connector.attribution.targets import link_problems
from connector.bot.flows import Flow, load_flow, load_flows
from connector.channels import plugin as plugins
from connector.config import AppConfig
from connector.leadforms.checks import lead_form_problems
from connector.mapping import TEXT_TASK_BODIES, Mapping, lead_context, load_mapping, plan
from connector.samples import StrictRenderer, answer_names, sample_lead, suggest, summary_context, text_problem
from connector.yamlfile import YamlDoc, load_model, read_yaml
from core.errors import AuthError, ConfigurationError, FatalError, Problem, RetryableError
from core.models import Lead

if TYPE_CHECKING:
    from connector.runtime import Runtime

#: CRMs whose records take their stage from the status map alone (the others write it in ``stage_property``)
STAGE_WITHOUT_PROPERTY = frozenset({"pipedrive"})
#: adapter options that name fields of the mapping: (crm, option path, what it must name)
OPTION_FIELDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("salesforce", ("campaign_member", "field"), "a field the mapping writes on the contact or the record"),
    ("pipedrive", ("text_fields",), "a field the mapping writes"),
)


@dataclass
class Found:
    """The problems found so far, each once, in the order found."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, problems: Iterable[Problem]) -> None:
        """Add ``problems`` that were not found already."""
        for problem in problems:
            if problem not in self.problems:
                self.problems.append(problem)

    def at(self, doc: _Lines | None, path: Path, loc: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        """Add one problem at ``loc`` of the file ``path`` (its line read from ``doc``)."""
        line = doc.line_of(loc) if doc is not None else None
        self.add([Problem(message, file=str(path), line=line, path=".".join(map(str, loc)), hint=hint)])


@dataclass
class Files:
    """Where the configuration's files are, and the CRM it selects (from the main file, valid or not)."""

    crm: str | None = None
    flows: Path | None = None
    mapping: Path | None = None
    campaigns: Path | None = None


def check_configuration(runtime: Runtime) -> list[Problem]:
    """Every problem of the configuration (empty when all is well); see the module's description."""
    found = Found()
    config = _main_file(runtime, found)
    files = _files(runtime.settings.chat2crm_config, config)
    flows, flow_names = _flows(runtime, config, files, found)
    mapping = _mapping(runtime, config, files, found)
    campaigns = _campaigns(runtime, config, files, flows, flow_names=flow_names, found=found)
    if config is not None:
        _config_references(config, runtime.settings.chat2crm_config, flow_names, found)
    if campaigns is not None and files.campaigns is not None:
        _campaign_references(campaigns, files.campaigns, config, flows, found)
        if config is not None:  # the setting each campaign's chat link needs (docs/campaigns.md)
            found.add(link_problems(runtime.settings, config, campaigns, files.campaigns))
    if config is not None and (campaigns is not None or files.campaigns is None):
        _rollout_references(config, runtime.settings.chat2crm_config, campaigns, found)
    if config is not None and config.lead_forms_path is not None:  # lead_forms.yaml (docs/ads.md)
        found.add(lead_form_problems(config.lead_forms_path, flows, campaigns))
    renderer = StrictRenderer(answer_names(flows.values()))
    clinic = config.clinic_name if config is not None else "Clinic"
    samples = _samples(flows, campaigns, clinic, files, found)
    for flow in flows.values():
        if files.flows is not None and (flow.name, True) in samples:
            _flow_problems(flow, files.flows / f"{flow.name}.yaml", renderer, samples, clinic=clinic, found=found)
    if mapping is not None and files.mapping is not None:
        _mapping_problems(mapping, files.mapping, samples, renderer, found)
    found.add(_channel_problems(runtime, config))
    return found.problems


def _channel_problems(runtime: Runtime, config: AppConfig | None) -> list[Problem]:
    """The enabled channels (``CHAT2CRM_CHANNELS``): each one installed, its settings valid, nothing it needs missing."""
    try:
        enabled = plugins.enabled(runtime.settings)
    except ConfigurationError as exc:
        return exc.problems
    problems: list[Problem] = []
    for plugin in enabled:
        section = getattr(config.channels, plugin.name, None) if config is not None else None
        try:
            ctx = plugins.context(plugin, runtime.settings, section.model_dump() if section is not None else {})
        except ConfigurationError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(plugin.problems(ctx))
    return problems


def _samples(flows: dict[str, Flow], campaigns: CampaignRegistry | None, clinic: str, files: Files,
             found: Found) -> dict[tuple[str, bool], Lead]:
    """Two sample leads of each flow (every question answered; none), from one of its campaigns if it has one."""
    slugs = {c.flow: c.slug for c in campaigns.campaigns} if campaigns is not None else {}
    samples: dict[tuple[str, bool], Lead] = {}
    for name, flow in flows.items():
        try:
            made = {full: sample_lead(flow, full=full, clinic=clinic, campaign=slugs.get(name)) for full in (True, False)}
            samples.update({(name, full): lead for full, lead in made.items()})
        except Exception as exc:  # the bot would fail the same way on the first request of this flow
            where = str(files.flows / f"{name}.yaml") if files.flows else name
            found.add([Problem(f"the bot cannot make a lead of this flow: {exc}", file=where)])
    return samples


# -- the files ------------------------------------------------------------------------------------
def _main_file(runtime: Runtime, found: Found) -> AppConfig | None:
    try:
        return runtime.config
    except ConfigurationError as exc:
        found.add(exc.problems)
        return None


def _files(path: Path, config: AppConfig | None) -> Files:
    """The other files' paths: from the valid main file, else from the main file as written."""
    if config is not None:
        return Files(config.crm, config.flows_path, config.mapping_path, config.campaigns_path)
    try:
        data = read_yaml(path).plain()
    except ConfigurationError:
        return Files()  # not YAML at all: reported already
    if not isinstance(data, dict):
        return Files()
    base = path.resolve().parent

    def where(key: str, default: str | None = None) -> Path | None:
        value = data.get(key, default)
        return (base / value).resolve() if isinstance(value, str) and value else None

    crm = data.get("crm")
    return Files(crm if isinstance(crm, str) else None, where("flows", "bot_flows"), where("mapping"),
                 where("campaigns"))


def _flows(runtime: Runtime, config: AppConfig | None, files: Files, found: Found) -> tuple[dict[str, Flow], set[str]]:
    """The valid flows by name, and every flow name the folder declares (a flow file with mistakes still
    names a flow: what refers to it is not reported as well)."""
    if files.flows is None:
        return {}, set()
    try:
        flows = runtime.flows if config is not None else load_flows(files.flows)
        return dict(flows), set(flows)
    except ConfigurationError as exc:
        found.add(exc.problems)
    valid: dict[str, Flow] = {}
    names: set[str] = set()
    for path in sorted(files.flows.glob("*.yaml")) if files.flows.is_dir() else []:
        names.add(path.stem)
        with contextlib.suppress(ConfigurationError):  # its problems were reported above
            flow = load_flow(path)
            valid[flow.name] = flow
            names.add(flow.name)
    return valid, names


def _mapping(runtime: Runtime, config: AppConfig | None, files: Files, found: Found) -> Mapping | None:
    if files.mapping is None:
        return None
    try:
        if config is not None:
            return runtime.mapping
        crm = files.crm
        if crm is None:  # the main file names no CRM: the mapping is checked against its own
            data = read_yaml(files.mapping).plain()
            crm = str(data.get("crm", "")) if isinstance(data, dict) else ""
        return load_mapping(files.mapping, crm=crm)
    except ConfigurationError as exc:
        found.add(exc.problems)
    try:  # a mapping whose shape is right still has its templates checked
        return load_model(files.mapping, Mapping)[0]
    except ConfigurationError:
        return None


def _campaigns(runtime: Runtime, config: AppConfig | None, files: Files, flows: dict[str, Flow], *,
               flow_names: set[str], found: Found) -> CampaignRegistry | None:
    if files.campaigns is None:
        return None
    try:
        if config is not None and set(flows) == flow_names:
            return runtime.campaigns
        return load_campaigns(files.campaigns, flows=flow_names)
    except ConfigurationError as exc:
        found.add(exc.problems)
        return None


# -- cross-references -----------------------------------------------------------------------------
class _Lines:
    """The lines of a file's keys, read only when a problem needs one (parsing YAML with its lines is slow)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._doc: YamlDoc | None = None
        self._read = False

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """The line of ``loc`` (None when the file cannot be read)."""
        if not self._read:
            self._read = True
            with contextlib.suppress(ConfigurationError):
                self._doc = read_yaml(self.path)
        return self._doc.line_of(loc) if self._doc is not None else None


def _doc(path: Path) -> _Lines:
    return _Lines(path)


def _config_references(config: AppConfig, path: Path, flow_names: set[str], found: Found) -> None:
    doc, hint = _doc(path), "flows: " + ", ".join(sorted(flow_names))
    if config.default_flow not in flow_names:
        found.at(doc, path, ("default_flow",), f"{config.default_flow!r} is no flow", hint)
    for i, number in enumerate(config.channels.whatsapp.numbers):
        if number.flow is not None and number.flow not in flow_names:
            found.at(doc, path, ("channels", "whatsapp", "numbers", i, "flow"), f"unknown flow {number.flow!r}", hint)
    for language in config.inbox.window_templates:
        if language not in config.languages:
            found.at(doc, path, ("inbox", "window_templates", language),
                     f"a window template for {language!r}, which is not in languages", "languages: "
                     + ", ".join(config.languages))


def _rollout_references(config: AppConfig, path: Path, registry: CampaignRegistry | None, found: Found) -> None:
    """Every campaign ``rollout.campaigns`` names is in the registry (levels, channels and the split's share are
    validated with the file itself: docs/rollout.md)."""
    slugs = {c.slug for c in registry.campaigns} if registry is not None else set()
    doc = _doc(path)
    for slug in config.rollout.campaigns:
        if slug not in slugs:
            found.at(doc, path, ("rollout", "campaigns", slug),
                     f"rollout level for campaign {slug!r}, which the campaign registry does not have",
                     suggest(slug, slugs, "campaigns") if slugs else "no campaign registry (`campaigns:`)")


def _campaign_references(registry: CampaignRegistry, path: Path, config: AppConfig | None, flows: dict[str, Flow],
                         found: Found) -> None:
    doc = _doc(path)
    for i, campaign in enumerate(registry.campaigns):
        if config is not None and campaign.language not in config.languages:
            found.at(doc, path, ("campaigns", i, "language"),
                     f"language {campaign.language!r} is not one the bot speaks (chat2crm.yaml's languages)",
                     "languages: " + ", ".join(config.languages))
        flow = flows.get(campaign.flow)
        if flow is None:
            continue
        if campaign.language not in flow.languages:
            found.at(doc, path, ("campaigns", i, "language"),
                     f"flow {flow.name!r} has no texts in {campaign.language!r}",
                     "its languages: " + ", ".join(flow.languages))
        usable = {s.field for s in flow.steps} | {k for s in flow.steps for k in s.known_from}
        for key in campaign.known:
            if key not in usable:
                found.at(doc, path, ("campaigns", i, "known", key),
                         f"known answer {key!r}: no question of flow {flow.name!r} takes it",
                         suggest(key, usable, "questions"))


def _flow_problems(flow: Flow, path: Path, renderer: StrictRenderer, samples: dict[tuple[str, bool], Lead], *,
                   clinic: str, found: Found) -> None:
    """A flow's texts filled, its conditions against their question's options, its templates rendered."""
    doc = _doc(path)
    for key, texts in flow.texts.items():
        for language, text in texts.items():
            problem = text_problem(key, text)
            if problem is not None:
                found.at(doc, path, ("texts", key, language), problem.message, problem.hint)
    for i, step in enumerate(flow.steps):
        asked = flow.step(step.when.field) if step.when else None
        if step.when is None or asked is None or not asked.options:
            continue
        ids = {o.id for o in asked.options}
        values = [v for v in (step.when.equals, step.when.not_equals, *(step.when.is_in or [])) if v is not None]
        for value in values:
            if str(value) not in ids:
                found.at(doc, path, ("steps", i, "when"), f"{value!r} is no option of {asked.field!r}",
                         suggest(str(value), ids, "options"))
    templates = [(("summary",), flow.summary), *[(("tags", k), tag) for k, tag in enumerate(flow.tags)]]
    for full in (True, False):
        context = summary_context(samples[flow.name, full], flow, clinic)
        for loc, source in templates:
            for finding in renderer.check(source, context):
                found.at(doc, path, loc, finding.message, finding.hint)


def _mapping_problems(mapping: Mapping, path: Path, samples: dict[tuple[str, bool], Lead], renderer: StrictRenderer,
                      found: Found) -> None:
    doc = _doc(path)
    before = len(found.problems)
    _statuses(mapping, path, doc, found)
    _option_fields(mapping, path, doc, found)
    templates = list(_mapping_templates(mapping))
    for lead in samples.values():
        context = lead_context(lead)
        for loc, source, html in templates:
            for finding in renderer.check(source, context, html=html):
                found.at(doc, path, loc, finding.message, finding.hint)
    if len(found.problems) > before:
        return  # the planner would only fail on what is reported already
    for (flow, _full), lead in samples.items():
        try:
            plan(lead, mapping)
        except Exception as exc:  # whatever a CRM write of this lead would raise first, said here
            found.add([Problem(f"the mapping cannot plan a sample lead of flow {flow!r}: {exc}", file=str(path))])


def _mapping_templates(mapping: Mapping) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Every template of the mapping: where it is, its source, whether it renders HTML."""
    sections: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(("contact", "fields"), mapping.contact.fields)]
    if mapping.record is not None:
        sections.append((("record", "fields"), mapping.record.fields))
    if mapping.company is not None:
        sections += [(("company", "fields"), mapping.company.fields), (("company",), {"name": mapping.company.name})]
    for loc, fields in sections:
        for name, spec in fields.items():
            if spec.template is not None:
                yield (*loc, name), spec.template, False
    for i, tag in enumerate(mapping.tags.add):
        yield ("tags", "add", i), tag, False
    if mapping.note is not None:
        yield ("note", "template"), mapping.note.template, True
    if mapping.task is not None:
        yield ("task", "subject"), mapping.task.subject, False
        yield ("task", "body"), mapping.task.body, mapping.crm not in TEXT_TASK_BODIES


def _statuses(mapping: Mapping, path: Path, doc: _Lines, found: Found) -> None:
    """The status map with what writes it: the stage a new record is created in, and where it goes."""
    record = mapping.record
    if record is None:
        return
    if record.pipeline and "new" not in record.statuses:
        found.at(doc, path, ("record", "pipeline"), f"pipeline {record.pipeline!r} is set but no stage is mapped "
                 "for 'new'", "add statuses: {new: <the first stage>}: a new record is created in it")
    if record.stage_property and not record.statuses:
        found.at(doc, path, ("record", "stage_property"), f"stage_property {record.stage_property!r} is set but "
                 "no status is mapped, so it is never written", "add statuses: {new: <the first stage>}")
    if record.statuses and not record.stage_property and mapping.crm not in STAGE_WITHOUT_PROPERTY:
        found.at(doc, path, ("record", "statuses"), "statuses are mapped but stage_property is not set, so no "
                 "stage is written", "set stage_property (dealstage, hs_pipeline_stage, Status, StageName…)")


def _option_fields(mapping: Mapping, path: Path, doc: _Lines, found: Found) -> None:
    """The adapter's options that name fields of the mapping (a name the mapping does not write does nothing)."""
    written = set(mapping.contact.fields) | set(mapping.record.fields if mapping.record else {})
    if mapping.company is not None:
        written |= set(mapping.company.fields)
    for crm, option, what in OPTION_FIELDS:
        if mapping.crm != crm:
            continue
        value: Any = mapping.options
        for part in option:
            value = value.get(part) if isinstance(value, dict) else None
        names = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for name in names:
            if name not in written:
                found.at(doc, path, ("options", *option), f"{name!r} is not {what}",
                         "fields: " + ", ".join(sorted(written)))


# -- commands that talk to Redis and the CRM ------------------------------------------------------
def where_redis(url: str | None) -> str:
    """Redis's host and port (or socket) from ``url``, never its password."""
    if not url:
        return "(REDIS_URL is not set)"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def explain(exc: BaseException, runtime: Runtime) -> str | None:
    """One line: what went wrong talking to Redis or the CRM, and what to do. None for anything else."""
    crm = "the CRM"
    with contextlib.suppress(ConfigurationError):
        crm = runtime.config.crm
    if isinstance(exc, redis.AuthenticationError):
        return f"Redis at {where_redis(runtime.settings.redis_url)} refused the password: fix REDIS_URL"
    if isinstance(exc, redis.BusyLoadingError):
        return f"Redis at {where_redis(runtime.settings.redis_url)} is loading its data: run this again in a moment"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return (f"Redis at {where_redis(runtime.settings.redis_url)} cannot be reached ({_reason(exc)}): "
                "start it, or point REDIS_URL at it")
    if isinstance(exc, AuthError):
        said = f"{crm} refused the credentials: {exc.message}"
        return said if "check " in exc.message else f"{said}; check {exc.setting or 'its credentials'}"
    if isinstance(exc, RetryableError):
        return (f"{crm} cannot be reached or is failing ({exc.message}): check that it is up and that its "
                "API address is right, then run this again")
    if isinstance(exc, FatalError):
        what = f" ({exc.setting or exc.field})" if exc.setting or exc.field else ""
        return f"{crm} refused a request: {exc.message}{what}"
    if isinstance(exc, requests.RequestException | ConnectionError | TimeoutError):
        return f"{crm} cannot be reached ({_reason(exc)}): check that it is up and its API address, then run this again"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for words, said in (("refused", "connection refused"), ("timed out", "timed out"), ("timeout", "timed out"),
                        ("name or service", "unknown host"), ("nodename", "unknown host")):
        if words in text:
            return said
    return type(exc).__name__


@contextlib.contextmanager
def plain_errors(runtime: Runtime) -> Iterator[None]:
    """Run a command's work; Redis or the CRM failing ends it with one line saying what to do, and status 1."""
    try:
        yield
    except (redis.RedisError, FatalError, RetryableError, requests.RequestException, ConnectionError,
            TimeoutError) as exc:
        said = explain(exc, runtime)
        if said is None:
            raise
        click.echo(f"chat2crm: {said}", err=True)
        raise SystemExit(1) from None


def reach_redis(runtime: Runtime) -> None:
    """Ping Redis once, without waiting for it (the relay's own client rides out a restart for 20 s).

    Raises:
        redis.RedisError: it cannot be reached (:func:`plain_errors` says so in one line).
        ConfigurationError: REDIS_URL is not set.
    """
    runtime.redis_probe.ping()
