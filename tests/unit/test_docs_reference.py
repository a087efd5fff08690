"""The generated reference in docs/configuration.md is current and names every variable."""

from __future__ import annotations

from connector.docsgen.configuration import render
from core.settings import Settings
from tests.paths import REPO

DOC = REPO / "docs" / "configuration.md"


def test_configuration_reference_is_current() -> None:
    current = DOC.read_text(encoding="utf-8")
    assert render(current) == current, "run: python -m connector.docsgen.configuration"


def test_every_environment_variable_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text]
    assert not missing
