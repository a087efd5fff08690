"""``chat2crm report [--since 7d] [--html out.html]``: the clinic's figures for a period, without Grafana.

Read from the relay's own hourly counts in Redis (:func:`core.metrics.read_period`, kept
:data:`core.metrics.REPORT_DAYS` days): conversations started, requests the bot finished, the share it completed
without a person (the completeness proxy), the hand-off rate and its reasons, the questions patients stopped at,
the time from the first message to the CRM record and from a finished request to the first agent reply (p50 and
p95), by language and campaign. Printed with bars of block characters, or written as one HTML page whose charts
are inline SVG (no script, nothing fetched from elsewhere). Counts only: nothing about any patient.
"""

from __future__ import annotations

import html
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import click

from connector.checks import plain_errors, reach_redis
from connector.commands.report_first_pass import FirstPass, first_pass_figures, html_parts, text_lines
from connector.logs import configure_logging
from connector.runtime import Runtime
from core import metrics
from core.settings import load_settings

_SINCE = re.compile(r"^(\d{1,4})([hdw])$")
_UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400}
_EIGHTHS = " ▏▎▍▌▋▊▉█"

#: a labelled count: the label, then the count (and for languages and campaigns, completed and handed over)
Row = tuple[str, float]


@dataclass
class Figures:
    """The figures of one period."""

    since: float
    until: float
    started: float = 0
    completed: float = 0
    handed_over: float = 0
    to_crm: metrics.Histogram = field(default_factory=metrics.Histogram)
    to_reply: metrics.Histogram = field(default_factory=metrics.Histogram)
    reasons: list[Row] = field(default_factory=list)
    #: (flow · question, drop-offs, share of the flow's conversations started)
    dropoffs: list[tuple[str, float, float | None]] = field(default_factory=list)
    #: (label, completed, handed over) by language and by campaign
    languages: list[tuple[str, float, float]] = field(default_factory=list)
    campaigns: list[tuple[str, float, float]] = field(default_factory=list)
    #: (rollout level, or level · split group; completed, handed over): docs/rollout.md
    rollouts: list[tuple[str, float, float]] = field(default_factory=list)
    #: completeness on first pass, time to CRM and to owner, by rollout level (:mod:`.report_first_pass`)
    first_pass: FirstPass = field(default_factory=FirstPass)

    @property
    def leads(self) -> float:
        """Requests the bot finished: completed, or handed to a person with what it had."""
        return self.completed + self.handed_over


def parse_since(text: str) -> float:
    """``7d``, ``24h``, ``2w`` as seconds (at most :data:`core.metrics.REPORT_DAYS` days).

    Raises:
        click.BadParameter: anything else.
    """
    found = _SINCE.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise click.BadParameter("a number of hours, days or weeks: 24h, 7d, 2w")
    seconds = int(found.group(1)) * _UNIT[found.group(2)]
    if seconds > metrics.REPORT_DAYS * 86400:
        raise click.BadParameter(f"the relay keeps {metrics.REPORT_DAYS} days of counts")
    return float(seconds)


def figures(period: metrics.Period, since: float, until: float) -> Figures:
    """The report's figures from the counts of a period."""
    found = Figures(since=since, until=until)
    started: dict[str, float] = defaultdict(float)
    for (flow, event), count in period.counter("flows").items():
        if event == "started":
            started[flow] += count
    found.started = sum(started.values())
    languages: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    campaigns: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    rollouts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for labels, count in period.counter("leads").items():
        # hours counted before the rollout labels have four labels: their leads are of no known level
        _flow, language, campaign, outcome, level, group = (*labels, "none", "none")[:6]
        slot = 0 if outcome == "completed" else 1
        languages[language][slot] += count
        campaigns[campaign][slot] += count
        rollouts[level if group == "none" else f"{level} · {group}"][slot] += count
        if slot == 0:
            found.completed += count
        else:
            found.handed_over += count
    found.languages = _ranked(languages)
    found.campaigns = _ranked(campaigns)
    found.rollouts = _ranked(rollouts)
    reasons: dict[str, float] = defaultdict(float)
    for (_flow, reason, *_rollout), count in period.counter("handoffs").items():
        reasons[reason] += count
    found.reasons = sorted(reasons.items(), key=lambda r: (-r[1], r[0]))
    stopped: dict[tuple[str, str], float] = defaultdict(float)
    for (flow, step, *_rollout), count in period.counter("dropoffs").items():
        stopped[(flow, step)] += count
    found.dropoffs = sorted(((f"{flow} · {step}", count, count / started[flow] if started.get(flow) else None)
                             for (flow, step), count in stopped.items()), key=lambda d: (-d[1], d[0]))
    found.to_crm = period.histogram("lead_seconds")
    found.to_reply = period.histogram("agent_reply_seconds")
    found.first_pass = first_pass_figures(period)
    return found


def _ranked(table: dict[str, list[float]]) -> list[tuple[str, float, float]]:
    return sorted(((label, done, handed) for label, (done, handed) in table.items()),
                  key=lambda r: (-(r[1] + r[2]), r[0]))


# -- words and pictures ---------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    """``45 s``, ``3.5 min``, ``2.1 h``, ``1.5 d``; ``-`` for nothing measured."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def share(part: float, whole: float) -> str:
    """``42%`` (``-`` of nothing)."""
    return f"{100 * part / whole:.0f}%" if whole else "-"


def bar(value: float, largest: float, width: int = 24) -> str:
    """``value`` as a bar of block characters, ``width`` long for ``largest`` (eighths of a block)."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(8 * width * value / largest))
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(moment))


def text_report(found: Figures) -> str:
    """The figures as text, with bars."""
    lines = [f"chat2crm report: {_when(found.since)} to {_when(found.until)} UTC", ""]
    lines += [f"  conversations started       {found.started:>6.0f}",
              f"  requests finished (leads)   {found.leads:>6.0f}",
              f"    completed by the bot      {found.completed:>6.0f}  {share(found.completed, found.leads):>4}"
              "  (completeness)",
              f"    handed to a person        {found.handed_over:>6.0f}  {share(found.handed_over, found.leads):>4}"
              "  (hand-off rate)",
              f"  time to CRM                 {_times(found.to_crm, 'lead')}",
              f"  time to first agent reply   {_times(found.to_reply, 'reply', 'replies')}"]
    lines += text_lines(found.first_pass, share, duration)
    lines += _section("Hand-off reasons", [(label, count, "") for label, count in found.reasons])
    lines += _section("Drop-off by question", [(label, count, f"{share(part, 1)} of started" if part is not None
                                                                 else "") for label, count, part in found.dropoffs])
    for title, rows in (("By language", found.languages), ("By campaign", found.campaigns),
                        ("By rollout level", found.rollouts)):
        lines += _section(title, [(label, done + handed, f"{done:.0f} completed, {handed:.0f} handed over")
                                  for label, done, handed in rows])
    return "\n".join(lines) + "\n"


def _times(histogram: metrics.Histogram, one: str, many: str = "") -> str:
    """``p50 2.1 s, p95 9.8 s, average 3.0 s (30 leads)``: the percentiles are estimated from the histogram's
    buckets (as Prometheus does); the average is exact."""
    count = histogram.count
    average = histogram.sum / count if count else None
    return (f"p50 {duration(metrics.quantile(0.5, histogram))}, p95 {duration(metrics.quantile(0.95, histogram))}, "
            f"average {duration(average)}  ({count:.0f} {one if count == 1 else many or one + 's'})")


def _section(title: str, rows: list[tuple[str, float, str]]) -> list[str]:
    lines = ["", title]
    if not rows:
        return [*lines, "  (none)"]
    width = max(len(label) for label, _, _ in rows)
    largest = max(count for _, count, _ in rows)
    for label, count, note in rows:
        lines.append(f"  {label:<{width}}  {bar(count, largest):<24}  {count:>5.0f}" + (f"  ({note})" if note else ""))
    return lines


def svg_bars(rows: list[tuple[str, float]], *, colour: str = "#3b7dd8") -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per row."""
    if not rows:
        return "<p class=none>none</p>"
    # the labels' column is as wide as the longest label (about 7.5 px a character at 13 px)
    label_width = min(max(120, int(7.5 * max(len(label) for label, _ in rows)) + 12), 480)
    largest, height, width = max(c for _, c in rows) or 1, 22, 360
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_width + width + 60}" '
             f'height="{height * len(rows) + 4}" viewBox="0 0 {label_width + width + 60} {height * len(rows) + 4}">']
    for i, (label, count) in enumerate(rows):
        y, length = i * height + 2, max(1.0, width * count / largest) if count else 0.0
        parts.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
                     f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{height - 6}" fill="{colour}"/>'
                     f'<text x="{label_width + length + 6:.1f}" y="{y + 15}">{count:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(found: Figures) -> str:
    """The figures as one self-contained HTML page (inline SVG charts, no script, nothing fetched)."""
    cards = [("Conversations started", f"{found.started:.0f}"), ("Requests finished", f"{found.leads:.0f}"),
             ("Completed by the bot", share(found.completed, found.leads)),
             ("Hand-off rate", share(found.handed_over, found.leads)),
             ("Time to CRM (p50 / p95)", f"{duration(metrics.quantile(0.5, found.to_crm))} / "
                                         f"{duration(metrics.quantile(0.95, found.to_crm))}"),
             ("First agent reply (p50 / p95)", f"{duration(metrics.quantile(0.5, found.to_reply))} / "
                                               f"{duration(metrics.quantile(0.95, found.to_reply))}")]
    more_cards, first_pass = html_parts(found.first_pass, share, duration)
    cards += more_cards
    charts = [("Hand-off reasons", svg_bars(found.reasons, colour="#d8843b")),
              ("Drop-off by question", svg_bars([(label, count) for label, count, _ in found.dropoffs],
                                                colour="#c0504d")),
              ("Requests by language", svg_bars([(label, d + h) for label, d, h in found.languages])),
              ("Requests by campaign", svg_bars([(label, d + h) for label, d, h in found.campaigns])),
              ("Requests by rollout level", svg_bars([(label, d + h) for label, d, h in found.rollouts]))]
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<title>chat2crm report</title><style>body{font:15px system-ui,sans-serif;margin:2em;color:#222}"
            ".cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;"
            "min-width:12em}.card b{display:block;font-size:1.6em}svg text{font:13px system-ui,sans-serif}"
            "</style></head><body>"
            f"<h1>chat2crm report</h1><p>{_when(found.since)} to {_when(found.until)} UTC</p><div class=cards>"
            + "".join(f"<div class=card>{html.escape(title)}<b>{html.escape(value)}</b></div>" for title, value in cards)
            + "</div>" + "".join(f"<h2>{html.escape(title)}</h2>{chart}" for title, chart in charts) + first_pass
            + "</body></html>\n")


@click.command("report")
@click.option("--since", "seconds", default="7d", show_default=True, callback=lambda _c, _p, value: parse_since(value),
              help="The period: 24h, 7d, 2w… (counted by the hour).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report as an HTML page with charts to this file instead of printing it.")
def command(seconds: float, html_path: Path | None) -> None:
    """The clinic's figures for a period: leads, completeness, hand-offs and their reasons, drop-off per question,
    time to CRM and to the first agent reply, by language and campaign."""
    settings = load_settings()
    configure_logging("text", "WARNING")
    runtime = Runtime(settings)
    until = time.time()
    with plain_errors(runtime):
        reach_redis(runtime)
        found = figures(metrics.read_period(runtime.redis, until - seconds, until), until - seconds, until)
    if html_path is None:
        click.echo(text_report(found), nl=False)
        return
    html_path.write_text(html_report(found), encoding="utf-8")
    click.echo(f"wrote {html_path}")
