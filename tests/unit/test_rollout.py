"""The staged rollout: the level a conversation gets (precedence, the split), kept with it; what the plan of a
lead holds at each level; the silent turn of a conversation whose bot is ``off``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from connector import measures, rollout
from connector.bot.engine import EngineContext, FlowStarted, HandedOver, LeadReady
from connector.bot.flows import load_flows
from connector.config import AppConfig, RolloutSettings
from connector.mapping import load_mapping, plan
from connector.mapping.model import OwnerHint
from connector.runtime import Runtime
from core.models import Conversation, InboundMessage, LeadRequest
from tests.conftest import make_settings
from tests.contract import make_lead
from tests.paths import FLOWS, MAPPINGS

HUBSPOT = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot")
ZONE = ZoneInfo("Europe/Istanbul")


def settings(**values: Any) -> RolloutSettings:
    return RolloutSettings.model_validate(values)


# -- the level a conversation gets ----------------------------------------------------------------
def test_without_a_rollout_section_every_conversation_is_full() -> None:
    found = rollout.assign(RolloutSettings(), key="whatsapp:1:2", channel="whatsapp", campaign="hair-tr")
    assert found == rollout.Assignment("full", None)


def test_precedence_campaign_over_channel_over_split_over_default() -> None:
    every = settings(default="create", campaigns={"hair-tr": "collect"}, channels={"telegram": "off"},
                     split={"share": 1.0, "level": "full", "group": "bot", "others": "ctl"})
    assert rollout.assign(every, key="telegram:b:1", channel="telegram", campaign="hair-tr").level == "collect"
    assert rollout.assign(every, key="telegram:b:1", channel="telegram", campaign="dental-de").level == "off"
    assert rollout.assign(every, key="whatsapp:a:1", channel="whatsapp", campaign=None) == rollout.Assignment(
        "full", "bot")
    nobody = every.model_copy(update={"split": every.split.model_copy(update={"share": 0.0})})  # type: ignore[union-attr]
    assert rollout.assign(nobody, key="whatsapp:a:1", channel="whatsapp", campaign=None) == rollout.Assignment(
        "create", "ctl")
    assert rollout.assign(settings(default="collect"), key="x", channel="whatsapp", campaign=None) == (
        rollout.Assignment("collect", None))


def test_the_split_is_deterministic_and_close_to_its_share_over_ten_thousand_keys() -> None:
    split = settings(default="create", split={"share": 0.2, "level": "full", "group": "b", "others": "a"})
    keys = [f"whatsapp:106540352242922:90532{n:07d}" for n in range(10_000)]
    first = [rollout.assign(split, key=k, channel="whatsapp", campaign=None) for k in keys]
    again = [rollout.assign(split, key=k, channel="whatsapp", campaign=None) for k in keys]
    assert first == again
    share = sum(a.group == "b" for a in first) / len(keys)
    assert 0.19 <= share <= 0.21, share  # 10,000 draws: the standard deviation is 0.4 points
    assert {a.level for a in first if a.group == "b"} == {"full"}
    assert {a.level for a in first if a.group == "a"} == {"create"}
    # a stable hash, not Python's salted one: the same key falls in the same place in every process
    assert rollout.bucket("whatsapp:106540352242922:905320000001") == pytest.approx(
        int.from_bytes(hashlib.sha256(b"whatsapp:106540352242922:905320000001").digest()[:8], "big")
        / 2**64)


def test_the_level_is_kept_with_the_conversation_when_the_configuration_changes() -> None:
    conversation = Conversation(key="whatsapp:a:1", channel="whatsapp", account="a", sender_id="1")
    assert rollout.settle(settings(default="collect"), conversation) == rollout.Assignment("collect")
    assert rollout.settle(settings(default="full", channels={"whatsapp": "off"}), conversation).level == "collect"
    split = settings(split={"share": 1.0, "level": "create", "group": "b", "others": "a"})
    other = Conversation(key="whatsapp:a:2", channel="whatsapp", account="a", sender_id="2")
    assert rollout.settle(split, other) == rollout.Assignment("create", "b")
    assert rollout.current(other) == rollout.Assignment("create", "b")


@pytest.mark.parametrize(("section", "message"), [
    ({"default": "manual"}, "unknown rollout level 'manual'"),
    ({"campaigns": {"hair-tr": "half"}}, "unknown rollout level 'half'"),
    ({"channels": {"sms": "off"}}, "unknown channel 'sms'"),
    ({"split": {"share": 1.5, "level": "full"}}, "less than or equal to 1"),
    ({"split": {"share": -0.1, "level": "full"}}, "greater than or equal to 0"),
    ({"split": {"share": 0.5, "level": "full", "group": "a"}}, "the split's two groups need two names"),
])
def test_a_broken_rollout_section_is_refused_with_its_reason(section: dict[str, Any], message: str) -> None:
    data = {"version": 1, "crm": "hubspot", "mapping": "m.yaml", "default_flow": "f", "rollout": section}
    with pytest.raises(ValidationError, match="rollout") as raised:
        AppConfig.model_validate(data)
    assert message in str(raised.value)


# -- what the CRM gets at each level --------------------------------------------------------------
def _mapping_with_owner_hint() -> Any:
    return HUBSPOT.model_copy(update={"owner_hints": [OwnerHint(when={"language": "tr"}, owner_id="77")]})


@pytest.mark.parametrize("level", ["off", "collect"])
def test_off_and_collect_write_the_contact_a_note_and_a_task_and_no_record(level: str) -> None:
    lead = make_lead(rollout=level, handoff_reason="rollout_off" if level == "off" else "rollout_collect")
    result = plan(lead, _mapping_with_owner_hint())
    assert result.record is None
    assert result.contact.properties["chat2crm_rollout"] == level
    assert result.note is not None and f"Bot rollout: {level}" in result.note.body
    assert result.task is not None and result.task.owner_id is None


def test_create_writes_the_record_in_the_first_status_without_priority_or_owner() -> None:
    lead = make_lead(rollout="create", rollout_group="b", status="reviewing", handoff_reason="patient_request",
                     request=LeadRequest(topic="Hair transplant", priority="urgent"))
    mapping = _mapping_with_owner_hint()
    mapping.record.fields["chat2crm_priority"] = mapping.record.fields["chat2crm_treatment"].model_copy(  # type: ignore[union-attr]
        update={"source": "request.priority"})
    result = plan(lead, mapping)
    assert result.record is not None and result.record.stage == plan(make_lead(), HUBSPOT).record.stage  # type: ignore[union-attr]
    assert result.record.owner_id is None and "chat2crm_priority" not in result.record.properties
    assert result.task is not None and result.task.owner_id is None and result.task.priority == "medium"
    assert result.note is not None and "Bot rollout: create · group b" in result.note.body
    full = plan(lead.model_copy(update={"rollout": "full"}), mapping)
    assert full.record is not None and full.record.owner_id == "77" and full.record.properties["chat2crm_priority"]
    assert full.record.stage != result.record.stage and full.task is not None and full.task.priority == "high"


def test_full_outside_a_split_and_a_lead_from_before_the_levels_plan_as_before() -> None:
    before = plan(make_lead(), HUBSPOT)
    full = plan(make_lead(rollout="full"), HUBSPOT)
    assert full.note == before.note and full.record == before.record and full.task == before.task
    assert "chat2crm_rollout" not in before.contact.properties and full.contact.properties["chat2crm_rollout"] == "full"


# -- off: the silent turn -------------------------------------------------------------------------
FLOW = load_flows(FLOWS)["meeting_request"]


def _ctx(now: datetime, *, inbox: bool = False) -> EngineContext:
    refs = count(1001)
    return EngineContext(now=now, timezone=ZONE, languages=["tr", "en"], fallback_language="en",
                         resume_window=timedelta(hours=2), handoff_release=timedelta(hours=24),
                         new_reference=lambda: f"#{next(refs)}", transcript_url=lambda c: None, inbox=inbox)


def _message(text: str, n: int, now: datetime) -> InboundMessage:
    return InboundMessage(channel="telegram", account="b", sender_id="42", message_id=f"m{n}", timestamp=now,
                          kind="text", text=text)


def test_off_hands_over_at_the_first_message_and_then_keeps_quiet() -> None:
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    conversation = Conversation(key="telegram:b:42", channel="telegram", account="b", sender_id="42")
    turn = rollout.off_turn(conversation, _message("Hello, I need an appointment", 1, now), flow=FLOW, ctx=_ctx(now))
    assert turn.replies == []
    assert [type(e) for e in turn.events] == [FlowStarted, HandedOver, LeadReady]
    lead = turn.events[2].lead  # type: ignore[union-attr]
    assert lead.handoff_reason == "rollout_off" and lead.reference == "#1001"
    assert [e.text for e in lead.transcript] == ["Hello, I need an appointment"]
    assert turn.conversation.status == "handoff"
    later = rollout.off_turn(turn.conversation, _message("hello?", 2, now + timedelta(minutes=5)), flow=FLOW,
                             ctx=_ctx(now + timedelta(minutes=5)))
    assert later.replies == [] and later.events == [] and len(later.conversation.transcript) == 2
    # past the hand-off release window a new message is a new request for the agents, still without the bot
    again = rollout.off_turn(later.conversation, _message("anyone?", 3, now + timedelta(days=2)), flow=FLOW,
                             ctx=_ctx(now + timedelta(days=2)))
    assert again.replies == [] and isinstance(again.events[1], HandedOver)
    assert rollout.engine_decides(_message("stop", 4, now), FLOW)
    assert not rollout.engine_decides(_message("Hello", 5, now), FLOW)


def test_the_rollout_labels_are_bounded_by_the_configuration() -> None:
    runtime = Runtime(make_settings("redis://127.0.0.1:1/0"))  # the shipped configuration: no split
    assert measures.rollout_labels(runtime, "collect", None) == {"rollout": "collect", "group": "none"}
    assert measures.rollout_labels(runtime, None, None) == {"rollout": "none", "group": "none"}  # a lead from before
    assert measures.rollout_labels(runtime, "<script>", "b") == {"rollout": "none", "group": "other"}
