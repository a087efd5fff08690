"""Field readers, and flow files: validation with file:line, the published schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.bot.fields import read_email, read_name, read_number, read_phone, read_yes_no, whatsapp_id_to_e164
from connector.bot.flows import Flow, load_flows
from core.errors import ConfigurationError
from tests.paths import FLOWS, SCHEMAS


@pytest.mark.parametrize(("text", "expected"), [
    ("info@ABC.com", "info@abc.com"), ("Mail: Ayse.Yilmaz@Example.COM.TR lütfen", "Ayse.Yilmaz@example.com.tr"),
    ("not an email", None), ("a@b", None)])
def test_email(text: str, expected: str | None) -> None:
    assert read_email(text)[0] == expected


@pytest.mark.parametrize(("text", "region", "expected"), [
    ("+90 532 111 22 33", None, "+905321112233"), ("0532 111 22 33", "TR", "+905321112233"),
    ("0532 111 22 33", None, None), ("+49 151 12345678", None, "+4915112345678"), ("12345", "TR", None)])
def test_phone(text: str, region: str | None, expected: str | None) -> None:
    assert read_phone(text, default_region=region)[0] == expected


def test_whatsapp_id_is_never_given_a_default_region() -> None:
    assert whatsapp_id_to_e164("905321112233") == "+905321112233"
    assert whatsapp_id_to_e164("12345") is None  # not a number anywhere: not guessed into one
    assert whatsapp_id_to_e164("TR.123") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("ayşe yılmaz", "Ayşe Yılmaz"), ("AYŞE YILMAZ", "Ayşe Yılmaz"), ("ismail yılmaz", "İsmail Yılmaz"),
    ("hans van der berg", "Hans van der Berg"), ("mary o'brien-smith", "Mary O'Brien-Smith"),
    ("Ronald McDonald", "Ronald McDonald"), ("мария иванова", "Мария Иванова"), ("محمد عبد الله", "محمد عبد الله"),
    ("  Jean-Luc  ", "Jean-Luc"), ("1234", None), ("x", None)])
def test_names(text: str, expected: str | None) -> None:
    assert read_name(text)[0] == expected


def test_number_and_yes_no() -> None:
    assert read_number("about 2,5 years", minimum=0)[0] == 2.5
    assert read_number("٣ kişi")[0] == 3
    assert read_number("200", maximum=100) == (None, "range")
    assert [read_yes_no(w)[0] for w in ("Evet", "ja!", "нет", "لا", "maybe")] == [True, True, False, False, None]


def test_shipped_flows_load() -> None:
    flows = load_flows(FLOWS)
    assert set(flows) == {"health_tourism_intake", "meeting_request"}
    for flow in flows.values():
        assert flow.languages == ["tr", "en", "de", "ar", "ru"]


def _write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


BAD_FLOW = """version: 1
name: demo
languages: [en, tr]
texts:
  greeting: {en: Hi}
summary: "{{ answers.topic "
steps:
  - field: topic
    type: choice
    prompt: {en: Topic?, tr: Konu?}
    options:
      - {id: a, title: {en: A, tr: A}}
  - field: when
    type: datetime
    prompt: {en: When?, tr: Ne zaman?}
    when: {field: later, equals: x}
  - field: Bad-Field
    type: sometype
    prompt: {en: x, tr: x}
"""


def test_flow_errors_are_all_reported_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_flows(_write(tmp_path, BAD_FLOW))
    rendered = [str(p) for p in info.value.problems]
    file = str(tmp_path / "demo.yaml")
    assert any(r.startswith(f"{file}:8: steps.0") and "at least two options" in r for r in rendered), rendered
    assert any(r.startswith(f"{file}:17: steps.2.field") for r in rendered), rendered
    assert any(r.startswith(f"{file}:18: steps.2.type") for r in rendered), rendered


def test_cross_references_are_checked(tmp_path: Path) -> None:
    text = BAD_FLOW.replace("      - {id: a, title: {en: A, tr: A}}\n",
                            "      - {id: a, title: {en: A, tr: A}}\n      - {id: b, title: {en: B}}\n")
    text = text.replace("  - field: Bad-Field\n    type: sometype\n    prompt: {en: x, tr: x}\n", "")
    with pytest.raises(ConfigurationError) as info:
        load_flows(_write(tmp_path, text))
    rendered = "\n".join(str(p) for p in info.value.problems)
    assert "steps.1.when.field: 'when' names 'later', which no earlier step collects" in rendered
    assert "steps.0.options.1.title: no text in tr" in rendered
    assert "system text 'done' is missing" in rendered
    assert "summary: template error" in rendered


def test_published_schema_is_current() -> None:
    current = json.loads((SCHEMAS / "flow.schema.json").read_text(encoding="utf-8"))
    assert current["properties"] == Flow.model_json_schema()["properties"]
    assert current["title"] == "chat2crm flow"
