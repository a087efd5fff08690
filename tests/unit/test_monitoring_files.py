"""The Grafana dashboard and the Prometheus alert rules shipped in ``deploy/`` load in their tools and read only
what the relay exports.

- ``deploy/prometheus/alerts.yml``: ``promtool check rules`` (Prometheus's own loader and PromQL parser), and
  ``promtool test rules alerts.test.yml``, where each alert is fed the series a failure produces and must fire
  (and stay quiet otherwise).
- ``deploy/grafana/chat2crm.json``: validated against a JSON Schema of the dashboard model written from
  Grafana's dashboard kind (the fields Grafana requires, the 24-column grid), and every panel's query parsed by
  promtool (as a recording rule, Grafana's ``$__range``-style variables given values).
- Every series and label both use exists in the relay's registry of metrics (:func:`core.metrics.exposed_names`).

promtool comes with Debian's ``prometheus`` package (``./scripts/test`` installs it when it runs as root with
apt); without it the promtool checks skip, naming the package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from core.metrics import exposed_names
from tests.paths import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "chat2crm.json"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
#: Prometheus's own series that the rules may read (the scrape's health), with their labels
PROMETHEUS_SERIES = {"up": ("job", "instance")}
#: Grafana's variables in queries, and a value each takes (for parsing)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}

#: the dashboard model, after Grafana's dashboard kind: what Grafana requires, and the grid panels sit on
PANEL_GRID = {"type": "object", "required": ["h", "w", "x", "y"], "properties": {
    "h": {"type": "integer", "minimum": 1}, "w": {"type": "integer", "minimum": 1, "maximum": 24},
    "x": {"type": "integer", "minimum": 0, "maximum": 23}, "y": {"type": "integer", "minimum": 0}}}
DATASOURCE = {"type": "object", "required": ["type", "uid"], "properties": {"type": {"const": "prometheus"},
                                                                             "uid": {"const": "${datasource}"}}}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "time", "templating"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36, "maximum": 65535},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
        "templating": {"type": "object", "required": ["list"], "properties": {"list": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"]}}}},
        "panels": {"type": "array", "minItems": 1, "items": {"oneOf": [
            {"type": "object", "required": ["id", "type", "title", "gridPos"], "properties": {
                "type": {"const": "row"}, "id": {"type": "integer"}, "gridPos": PANEL_GRID}},
            {"type": "object", "required": ["id", "type", "title", "gridPos", "datasource", "targets"], "properties": {
                "type": {"enum": ["stat", "timeseries", "bargauge", "gauge", "table", "barchart", "piechart"]},
                "id": {"type": "integer"}, "title": {"type": "string", "minLength": 1}, "gridPos": PANEL_GRID,
                "datasource": DATASOURCE,
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr"],
                    "properties": {"refId": {"type": "string", "pattern": "^[A-Z]$"},
                                   "expr": {"type": "string", "minLength": 1}, "datasource": DATASOURCE}}}}},
        ]}},
    },
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title and refId, query)`` for every query of the dashboard."""
    return [(f"{panel['title']} {target['refId']}", target["expr"])
            for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def rule_queries() -> list[tuple[str, str]]:
    """``(alert, expression)`` for every rule of alerts.yml."""
    rules = YAML(typ="safe").load(RULES.read_text(encoding="utf-8"))
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def unknown_names(query: str) -> list[str]:
    """The series and labels ``query`` reads that the relay (or Prometheus's scrape) does not export."""
    known = {**exposed_names(), **PROMETHEUS_SERIES}
    series = set(re.findall(r"\b(?:chat2crm_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=!<>]|\s*\))", query))
    problems = [f"series {name}" for name in sorted(series) if name not in known]
    labels = {label for name in series if name in known for label in known[name]}
    used = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query))
    named = {part.strip() for group in used for part in group.split(",") if part.strip()}
    named |= set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"", query))
    problems += [f"label {label}" for label in sorted(named - labels)]
    return problems


def test_the_name_check_finds_a_series_or_label_the_relay_does_not_export() -> None:
    assert unknown_names('sum by (reason) (rate(chat2crm_handoffs_total{flow="x"}[5m]))') == []
    assert unknown_names("sum by (queue) (rate(chat2crm_handoff_total[5m]))") == ["series chat2crm_handoff_total",
                                                                                   "label queue"]
    assert unknown_names('sum by (reasons) (chat2crm_handoffs_total{flow="x"})') == ["label reasons"]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    data = dashboard()
    jsonschema.validate(data, DASHBOARD_SCHEMA)
    panels = data["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels), "a panel runs off the 24-column grid"
    assert [v["name"] for v in data["templating"]["list"]] == ["datasource"]


@pytest.mark.parametrize(("where", "query"), dashboard_queries() + rule_queries())
def test_every_query_reads_what_the_relay_exports(where: str, query: str) -> None:
    assert unknown_names(query) == [], where


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not found: install Debian's prometheus package (apt-get install prometheus)")
    return found


def test_the_alert_rules_load_in_prometheus() -> None:
    checked = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in checked.stdout


def test_each_alert_fires_on_the_failure_it_watches() -> None:
    tested = subprocess.run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    covered = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert covered == {alert for alert, _ in rule_queries()}, "an alert without a test"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each query as promtool reads it: a recording rule per query, Grafana's variables given values."""
    rules = []
    for n, (_where, query) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"a Grafana variable with no value for parsing: {query}"
        rules.append({"record": f"chat2crm:dashboard_query_{n}", "expr": query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    checked = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
