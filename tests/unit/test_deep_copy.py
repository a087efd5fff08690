"""A bot turn works on a copy of the conversation: nothing it changes reaches the original."""

from __future__ import annotations

from core.models import Attribution, Conversation, TranscriptEntry, utcnow


def test_a_deep_copy_shares_no_mutable_part_and_equals_the_original() -> None:
    original = Conversation(key="whatsapp:1:2", channel="whatsapp", account="1", sender_id="2",
                            answers={"name": "Ayşe", "when": {"date": "2026-12-03", "slots": [1, 2]}},
                            pending={"confirm": ["a"]}, first_touch=Attribution(ctwa_clid="x"),
                            transcript=[TranscriptEntry(direction="in", at=utcnow(), text="Merhaba", kind="text")])
    copy = original.deep_copy()
    assert copy == original and copy is not original
    copy.answers["when"]["slots"].append(3)
    copy.pending["confirm"].append("b")
    copy.transcript.append(TranscriptEntry(direction="out", at=utcnow(), text="?", kind="text"))
    copy.transcript[0].text = "changed"
    assert copy.first_touch is not None
    copy.first_touch.ctwa_clid = "y"
    assert original.answers["when"]["slots"] == [1, 2] and original.pending == {"confirm": ["a"]}
    assert [e.text for e in original.transcript] == ["Merhaba"]
    assert original.first_touch is not None and original.first_touch.ctwa_clid == "x"
