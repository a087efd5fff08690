"""The part of ``chat2crm report`` that says whether records reach the CRM complete and the right person sooner.

Read from the hourly counts :mod:`connector.completeness` keeps: leads complete on first pass (every required
field collected, none asked again since), the fields asked again (by a person's CRM edit or an agent's
question) and those missing at creation, the time from the first message to the CRM and to the first agent
reply (p50, p90), and the same by rollout level and group, so levels can be compared side by side. A lead
asked again is counted in the hour it was asked: over a period, the share compares the leads of the period
with the asking done in it.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from core import metrics

Share = Callable[[float, float], str]
Duration = Callable[[float | None], str]


@dataclass
class Level:
    """One rollout level and group's figures."""

    label: str
    leads: float = 0
    complete: float = 0
    reopened: float = 0
    to_crm: metrics.Histogram = field(default_factory=metrics.Histogram)
    to_owner: metrics.Histogram = field(default_factory=metrics.Histogram)

    @property
    def first_pass(self) -> float:
        """Leads complete on first pass and not asked again."""
        return max(self.complete - self.reopened, 0.0)


@dataclass
class FirstPass:
    """The period's completeness and time figures."""

    leads: float = 0
    complete: float = 0
    reopened: float = 0
    #: (flow · field, asked again, by CRM edit, by agent question)
    asked: list[tuple[str, float, float, float]] = field(default_factory=list)
    #: (flow · field, missing at creation)
    missing: list[tuple[str, float]] = field(default_factory=list)
    to_crm: metrics.Histogram = field(default_factory=metrics.Histogram)
    to_owner: metrics.Histogram = field(default_factory=metrics.Histogram)
    levels: list[Level] = field(default_factory=list)

    @property
    def first_pass(self) -> float:
        """Leads complete on first pass and not asked again."""
        return max(self.complete - self.reopened, 0.0)


def level_label(rollout: str, group: str) -> str:
    """``full``, or ``full · b`` when the level ran in a split group."""
    return rollout if group == "none" else f"{rollout} · {group}"


def first_pass_figures(period: metrics.Period) -> FirstPass:
    """The completeness and time figures of a period's counts."""
    found = FirstPass()
    levels: dict[str, Level] = {}

    def level(rollout: str, group: str) -> Level:
        label = level_label(rollout, group)
        return levels.setdefault(label, Level(label))

    for (_flow, _language, _campaign, rollout, group, outcome), count in period.counter("leads_first_pass").items():
        found.leads += count
        level(rollout, group).leads += count
        if outcome == "complete":
            found.complete += count
            level(rollout, group).complete += count
    for (_flow, _language, _campaign, rollout, group, first), count in period.counter("leads_asked_again").items():
        if first == "complete":
            found.reopened += count
            level(rollout, group).reopened += count
    asked: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (flow, name, via, _rollout, _group), count in period.counter("fields_asked_again").items():
        asked[f"{flow} · {name}"][0 if via == "crm_edit" else 1] += count
    found.asked = sorted(((label, edit + question, edit, question) for label, (edit, question) in asked.items()),
                         key=lambda r: (-r[1], r[0]))
    missing: dict[str, float] = defaultdict(float)
    for (flow, name), count in period.counter("leads_missing_fields").items():
        missing[f"{flow} · {name}"] += count
    found.missing = sorted(missing.items(), key=lambda r: (-r[1], r[0]))
    for name, attribute in (("time_to_crm_seconds", "to_crm"), ("time_to_owner_seconds", "to_owner")):
        getattr(found, attribute).add(period.histogram(name))
        for (_flow, _language, _campaign, rollout, group), part in period.histograms.get(name, {}).items():
            getattr(level(rollout, group), attribute).add(part)
    found.levels = sorted(levels.values(), key=lambda lv: lv.label)
    return found


def p50_p90(histogram: metrics.Histogram, duration: Duration) -> str:
    """``p50 40 s, p90 2.0 min (12)``: the percentiles estimated from the buckets, and how many were measured."""
    return (f"p50 {duration(metrics.quantile(0.5, histogram))}, p90 {duration(metrics.quantile(0.9, histogram))}"
            f"  ({histogram.count:.0f})")


def text_lines(found: FirstPass, share: Share, duration: Duration) -> list[str]:
    """The figures as the report's text lines (``share`` and ``duration`` are the report's own words)."""
    pct = share
    lines = [f"  complete on first pass      {found.first_pass:>6.0f}  {pct(found.first_pass, found.leads):>4}"
             f"  (of {found.leads:.0f} leads in the CRM; {found.reopened:.0f} complete ones asked again)",
             f"  first message to CRM        {p50_p90(found.to_crm, duration)}",
             f"  first message to owner      {p50_p90(found.to_owner, duration)}", "", "Asked again, by field"]
    if not found.asked:
        lines.append("  (none)")
    width = max((len(label) for label, *_ in found.asked), default=0)
    for label, count, edit, question in found.asked:
        lines.append(f"  {label:<{width}}  {count:>5.0f}  ({edit:.0f} by CRM edit, {question:.0f} by agent question)")
    lines += ["", "Missing when written, by field"]
    if not found.missing:
        lines.append("  (none)")
    width = max((len(label) for label, _ in found.missing), default=0)
    lines += [f"  {label:<{width}}  {count:>5.0f}" for label, count in found.missing]
    lines += ["", "First pass and times by rollout level"]
    if not found.levels:
        lines.append("  (none)")
    width = max((len(lv.label) for lv in found.levels), default=0)
    for lv in found.levels:
        lines.append(f"  {lv.label:<{width}}  {lv.leads:>5.0f} leads, {pct(lv.first_pass, lv.leads):>4} complete on "
                     f"first pass, to CRM p50 {duration(metrics.quantile(0.5, lv.to_crm))}, to owner p50 "
                     f"{duration(metrics.quantile(0.5, lv.to_owner))}")
    return lines


def html_parts(found: FirstPass, share: Share, duration: Duration) -> tuple[list[tuple[str, str]], str]:
    """The HTML page's cards and its section (a table by rollout level, the fields asked again)."""
    pct = share
    show = duration
    cards = [("Complete on first pass", pct(found.first_pass, found.leads)),
             ("First message to CRM (p50 / p90)", f"{show(metrics.quantile(0.5, found.to_crm))} / "
                                                  f"{show(metrics.quantile(0.9, found.to_crm))}"),
             ("First message to owner (p50 / p90)", f"{show(metrics.quantile(0.5, found.to_owner))} / "
                                                    f"{show(metrics.quantile(0.9, found.to_owner))}")]
    rows = "".join(f"<tr><td>{html.escape(lv.label)}</td><td>{lv.leads:.0f}</td>"
                   f"<td>{html.escape(pct(lv.first_pass, lv.leads))}</td>"
                   f"<td>{html.escape(show(metrics.quantile(0.5, lv.to_crm)))}</td>"
                   f"<td>{html.escape(show(metrics.quantile(0.5, lv.to_owner)))}</td></tr>" for lv in found.levels)
    asked = "".join(f"<tr><td>{html.escape(label)}</td><td>{count:.0f}</td><td>{edit:.0f}</td><td>{question:.0f}</td>"
                    "</tr>" for label, count, edit, question in found.asked)
    section = ("<h2>First pass and times by rollout level</h2><table><tr><th>level</th><th>leads</th>"
               "<th>complete on first pass</th>"
               f"<th>to CRM p50</th><th>to owner p50</th></tr>{rows}</table>"
               "<h2>Asked again, by field</h2><table><tr><th>field</th><th>asked again</th><th>by CRM edit</th>"
               f"<th>by agent question</th></tr>{asked}</table>")
    return cards, section
