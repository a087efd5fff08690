"""Mapped values become the shapes Pipedrive takes: standard fields, custom fields by key, option ids."""

from __future__ import annotations

import json

import pytest

from adapters.pipedrive import PipedriveAdapter
from core.errors import FatalError
from tests.conftest import make_settings

KEY = "a" * 40
LANGUAGE = "b" * 40
CONSENT = "c" * 40
TAGS = "d" * 40


def _spec(key: str, name: str, kind: str, options: dict[str, int] | None = None) -> dict[str, object]:
    return {"key": key, "name": name, "type": kind, "custom": True, "options": options or {}}


@pytest.fixture
def adapter() -> PipedriveAdapter:
    """An adapter with the field keys already cached (no Redis: its in-process cache)."""
    settings = make_settings("unix:///unused", pipedrive_api_token="t", pipedrive_api_base="http://127.0.0.1:9")
    made = PipedriveAdapter.from_settings(settings, options={"mapping_file": "mappings/pipedrive.yaml"})
    person = {s["name"]: s for s in (_spec(KEY, "chat2crm contact key", "varchar"),
                                     _spec(LANGUAGE, "chat2crm language", "varchar"))}
    deal = {s["name"]: s for s in (_spec(CONSENT, "chat2crm consent", "enum", {"true": 7, "false": 8}),
                                   _spec(TAGS, "chat2crm tags", "set", {"hair": 11, "lang:tr": 12}))}
    made.cache.set("fields", json.dumps(person), "person")
    made.cache.set("fields", json.dumps(deal), "deal")
    return made


def test_standard_and_custom_person_fields(adapter: PipedriveAdapter) -> None:
    standard, custom = adapter._split("person", {"name": "Ayşe", "phone": "+905321112233", "email": "a@b.c",
                                                  "owner_id": "5", "chat2crm language": "tr"})
    assert standard == {"name": "Ayşe", "owner_id": 5,
                        "phones": [{"value": "+905321112233", "primary": True, "label": "mobile"}],
                        "emails": [{"value": "a@b.c", "primary": True, "label": "work"}]}
    assert custom == {LANGUAGE: "tr"}


def test_options_become_their_ids(adapter: PipedriveAdapter) -> None:
    _, custom = adapter._split("lead", {"chat2crm consent": "true", "chat2crm tags": "hair;lang:tr"})
    assert custom == {CONSENT: 7, TAGS: [11, 12]}
    with pytest.raises(FatalError) as info:
        adapter._split("lead", {"chat2crm consent": "maybe"})
    assert info.value.field == "chat2crm consent"


def test_long_text_is_cut_to_what_a_text_field_holds(adapter: PipedriveAdapter) -> None:
    _, custom = adapter._split("person", {"chat2crm language": "x" * 300})
    assert len(custom[LANGUAGE]) == 255 and custom[LANGUAGE].endswith("…")


def test_lead_visibility_is_a_string_but_owner_an_integer(adapter: PipedriveAdapter) -> None:
    standard, _ = adapter._split("lead", {"visible_to": 3, "owner_id": "9", "title": "x"})
    assert standard == {"visible_to": "3", "owner_id": 9, "title": "x"}


def test_bad_rate_limit_is_refused() -> None:
    settings = make_settings("unix:///unused", pipedrive_api_token="t")
    with pytest.raises(ValueError, match="rate_limit"):
        PipedriveAdapter.from_settings(settings, options={"rate_limit": {"requests": 0}})
