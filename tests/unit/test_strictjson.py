"""Webhook bodies are read as JSON strictly: no NaN, no Infinity, for the channels and the CRMs alike."""

from __future__ import annotations

import pytest

from core import strictjson


@pytest.mark.parametrize("body", ['{"a": NaN}', '[Infinity]', '{"a": {"b": -Infinity}}', '{"n": 1e999}'])
def test_non_finite_numbers_are_refused(body: str) -> None:
    with pytest.raises(strictjson.NotFinite):
        strictjson.loads(body)


def test_json_is_read_as_json() -> None:
    assert strictjson.loads(b'{"a": [1, 2.5, -3e10, "NaN", null, true]}') == {"a": [1, 2.5, -3e10, "NaN", None, True]}
    with pytest.raises(ValueError):
        strictjson.loads("{'a': 1}")
