"""``chat2crm check`` for ``lead_forms.yaml``: the file's shape, and every form's flow, language and campaign."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from connector.leadforms.model import LeadForm, load_lead_forms
from connector.yamlfile import read_yaml
from core.errors import ConfigurationError, Problem

if TYPE_CHECKING:
    from connector.attribution.campaigns import CampaignRegistry
    from connector.bot.flows import Flow


def lead_form_problems(path: Path, flows: dict[str, Flow], campaigns: CampaignRegistry | None) -> list[Problem]:
    """Every problem of the lead forms file at ``path``, with file and line (empty when all is well)."""
    try:
        forms = load_lead_forms(path)
    except ConfigurationError as exc:
        return list(exc.problems)
    doc = read_yaml(path)
    problems: list[Problem] = []
    named: list[tuple[tuple[str, ...], LeadForm]] = [(("forms", form_id), form) for form_id, form in forms.forms.items()]
    if forms.default is not None:
        named.append((("default",), forms.default))
    for loc, form in named:
        def at(field: str, message: str, *, loc: tuple[str, ...] = loc) -> None:
            problems.append(Problem(message, file=str(path), line=doc.line_of((*loc, field)), path=".".join((*loc, field))))

        flow = flows.get(form.flow)
        if flow is None:
            at("flow", f"no flow {form.flow!r} (the flows: {', '.join(sorted(flows)) or 'none'})")
        elif form.language not in flow.languages:
            at("language", f"flow {form.flow!r} does not speak {form.language!r}")
        if form.campaign and campaigns is not None and campaigns.get(form.campaign) is None:
            at("campaign", f"no campaign {form.campaign!r} in the campaign registry")
    return problems
