"""The key registry: families build their keys, refuse wrong use, and find the family of a key."""

from __future__ import annotations

import pytest

from core.keys import KeyFamily, family, family_of, rkey


def test_a_family_builds_and_recognises_its_keys() -> None:
    conv = family("test-conv", "{conversation}", ttl="retention.conversation_hours", holds_pii=True, owner=__name__)
    key = conv.key("whatsapp:1065:905321112233")
    assert key == rkey("test-conv", "whatsapp:1065:905321112233") == "c2c:test-conv:whatsapp:1065:905321112233"
    assert conv.pattern == "c2c:test-conv:*" and conv.matches(key) and not conv.matches("c2c:other:x")
    with pytest.raises(ValueError, match="takes 1 value"):
        conv.key()


def test_the_most_specific_family_wins() -> None:
    family("test-lead", "{reference}", ttl=3600, holds_pii=True, owner=__name__)
    synced = family("test-lead", "{reference}:synced", ttl=3600, holds_pii=False, owner=__name__)
    assert family_of("c2c:test-lead:1042:synced") == synced
    assert family_of("c2c:test-lead:1042").shape == "{reference}"  # type: ignore[union-attr]
    assert family_of("c2c:nobody:1") is None


def test_declarations_must_agree_and_say_how_they_are_bounded() -> None:
    family("test-once", "{x}", ttl=60, holds_pii=False, owner=__name__)
    family("test-once", "{x}", ttl=60, holds_pii=False, owner=__name__)  # the same again: harmless
    with pytest.raises(ValueError, match="declared twice"):
        family("test-once", "{x}", ttl=120, holds_pii=False, owner=__name__)
    with pytest.raises(ValueError, match="bounded_by"):
        KeyFamily("test-forever", "{x}", None, False, __name__)
    with pytest.raises(ValueError, match="name must be"):
        KeyFamily("Bad Name", "", 60, False, __name__)
