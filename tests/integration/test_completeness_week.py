"""A simulated week: 240 conversations through the real bot engine, their leads written (the CRM write's hook),
people's edits in the CRM taken as the CRM's events are (:func:`connector.crm_events.take`), agents' replies
measured as they are sent, split across rollout levels and groups, on a fixed clock, against real Redis.

The expected figures are computed here from the script alone, and compared exactly with the counters, the
histograms, the report's figures and its comparison by level.
"""

from __future__ import annotations

import types
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector import completeness, crm_events
from connector.bot.engine import EngineContext, LeadReady, handle
from connector.commands import report
from connector.config import RolloutSettings, RolloutSplit
from connector.runtime import Runtime
from core import metrics
from core.inbox import FieldsEdited
from core.models import Conversation, InboundMessage, SenderProfile
from core.plan import Ref, SyncResult

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
CONVERSATIONS = 240
COMPLETE = ("Hi", "A demo of the reporting", "Acme Travel Ltd, sales@acme.example", "Wednesday 11:00")
HANDED_OVER = ("Hi", "Pricing", "Acme", "nope", "still nope", "no")  # no e-mail, no time: too many attempts
REQUIRED = ["topic", "company", "email", "preferred_time"]
TIME_QUESTION = "Thanks for your request! Which day and time suit you best?"
EMAIL_QUESTION = "Hello. Could you write your e-mail address?"
NO_QUESTION = "Hello, we received your request and will call you tomorrow."


class Clock:
    """The relay's clock in the modules that read it (the rest of the process keeps the real one)."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def module(self) -> Any:
        import time

        return types.SimpleNamespace(time=lambda: self.now, strftime=time.strftime, gmtime=time.gmtime)


def level_of(i: int) -> tuple[str | None, str | None]:
    """The rollout level and group conversation ``i`` ran under."""
    if i % 10 == 9:
        return None, None  # a lead made before the rollout was configured
    return ("collect", "b") if i % 3 == 0 else ("full", "a")


def run_engine(runtime: Runtime, i: int) -> tuple[Conversation, Any]:
    """Conversation ``i`` through the bot engine, a minute between messages; its conversation and lead."""
    flow = runtime.flows["meeting_request"]
    sender = f"44770090{i:04d}"
    conv = Conversation(key=f"whatsapp:acc:{sender}", channel="whatsapp", account="acc", sender_id=sender,
                        language="en", language_source="detected")
    begin = START + timedelta(seconds=i * 7 * 86400 // CONVERSATIONS)
    lead = None
    for n, text in enumerate(COMPLETE if i % 5 else HANDED_OVER):
        now = begin + timedelta(minutes=n)
        ctx = EngineContext(now=now, timezone=UTC, languages=["tr", "en", "de", "ar", "ru"], fallback_language="en",
                            resume_window=timedelta(hours=2), handoff_release=timedelta(hours=24),
                            new_reference=lambda i=i: f"#{5000 + i}", transcript_url=lambda c: None)
        message = InboundMessage(channel="whatsapp", account="acc", sender_id=sender, message_id=f"m{i}-{n}",
                                 timestamp=now, kind="text", text=text, profile=SenderProfile(name=None))
        turn = handle(conv, message, flow=flow, ctx=ctx)
        conv = turn.conversation
        lead = next((e.lead for e in turn.events if isinstance(e, LeadReady)), lead)
    assert lead is not None, f"conversation {i} made no lead"
    level, group = level_of(i)
    return conv, lead.model_copy(update={"rollout": level, "rollout_group": group})


@pytest.fixture
def week(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Play the week; returns what the script says should be counted."""
    runtime._config = runtime.config.model_copy(update={"rollout": RolloutSettings(
        default="full", split=RolloutSplit(share=0.33, level="collect", group="b", others="a"))})
    clock = Clock()
    monkeypatch.setattr(metrics, "time", clock.module())
    monkeypatch.setattr(completeness, "time", clock.module())
    expected: dict[str, Any] = {"first_pass": Counter(), "missing": Counter(), "asked": Counter(),
                                "reopened": Counter(), "to_crm": defaultdict(list), "to_owner": defaultdict(list)}
    for i in range(CONVERSATIONS):
        conv, lead = run_engine(runtime, i)
        level, group = level_of(i)
        labels = (level or "none", group or "none")
        complete = i % 5 != 0
        first_at = lead.transcript[0].at.timestamp()
        # the CRM write succeeds a few seconds after the last message (a replay writes it again: counted once)
        to_crm = 60.0 * (len(COMPLETE if complete else HANDED_OVER) - 1) + 2 + (i % 7) * 3
        clock.now = first_at + to_crm
        written = SyncResult(contact=Ref(object="contacts", id=str(70000 + i)), record=Ref(object="deals", id=str(90000 + i)))
        completeness.lead_written(runtime, lead, written)
        completeness.lead_written(runtime, lead, written)
        expected["first_pass"][(*labels, "complete" if complete else "incomplete")] += 1
        if not complete:
            expected["missing"]["email"] += 1
            expected["missing"]["preferred_time"] += 1
        expected["to_crm"][labels].append(to_crm)
        asked: dict[str, str] = {}
        # the relay's own write of the e-mail comes back as an event too: never counted
        events: list[Any] = [FieldsEdited(crm_object="contacts", crm_id=str(70000 + i), fields=["email"], by_person=False)]
        if i % 4 == 1:  # a coordinator corrects the meeting time on the deal
            events.append(FieldsEdited(crm_object="deals", crm_id=str(90000 + i), fields=["chat2crm_preferred_time"],
                                       by_person=True, source="userId:7"))
            asked.setdefault("preferred_time", "crm_edit")
        if i % 8 == 3:  # the e-mail edited twice, and the deal renamed (a template: no lead field)
            events += [FieldsEdited(crm_object="contacts", crm_id=str(70000 + i), fields=["email"], by_person=True),
                       FieldsEdited(crm_object="contacts", crm_id=str(70000 + i), fields=["email"], by_person=True),
                       FieldsEdited(crm_object="deals", crm_id=str(90000 + i), fields=["dealname"], by_person=True)]
            asked.setdefault("email", "crm_edit")
        events.append(FieldsEdited(crm_object="deals", crm_id="1", fields=["chat2crm_preferred_time"], by_person=True))
        clock.now += 3600
        assert crm_events.take(runtime, "hubspot", events)["unknown"] == 0
        if i % 3 == 2:  # an agent answers, some hours later
            clock.now = first_at + 600 * (i % 11 + 1) + 3600
            text = {2: TIME_QUESTION, 5: NO_QUESTION}[i % 6] if i % 12 != 8 else EMAIL_QUESTION
            completeness.agent_replied(runtime, conv, text)
            completeness.agent_replied(runtime, conv, TIME_QUESTION)  # a later reply: not timed again
            expected["to_owner"][labels].append(clock.now - first_at)
            if text == TIME_QUESTION:
                asked.setdefault("preferred_time", "agent_question")
            elif text == EMAIL_QUESTION:  # the company's question asks for the e-mail address too
                asked.setdefault("email", "agent_question")
                asked.setdefault("company", "agent_question")
            asked.setdefault("preferred_time", "agent_question")  # the later reply asks for the time
        for name, via in asked.items():
            expected["asked"][(name, via, *labels)] += 1
        if asked:
            expected["reopened"][(*labels, "complete" if complete else "incomplete")] += 1
    expected["until"] = clock.now
    return expected


def test_a_week_of_conversations_gives_the_figures_the_script_says(runtime: Runtime, week: dict[str, Any]) -> None:
    client = runtime.redis
    base = ("meeting_request", "en", "none")
    assert metrics.read(client, "leads_first_pass") == {(*base, *k): float(v) for k, v in week["first_pass"].items()}
    assert metrics.read(client, "leads_missing_fields") == {("meeting_request", f): float(v)
                                                            for f, v in week["missing"].items()}
    assert metrics.read(client, "fields_asked_again") == {("meeting_request", *k): float(v)
                                                          for k, v in week["asked"].items()}
    assert metrics.read(client, "leads_asked_again") == {(*base, *k): float(v) for k, v in week["reopened"].items()}
    for name, key in (("time_to_crm_seconds", "to_crm"), ("time_to_owner_seconds", "to_owner")):
        raw = {k.decode(): float(v) for k, v in client.hgetall(metrics.SERIES.key(name)).items()}
        for labels, values in week[key].items():
            field = f'["meeting_request", "en", "none", "{labels[0]}", "{labels[1]}"]'
            assert raw[f"{field}|le=+Inf"] == len(values)
            assert raw[f"{field}|sum"] == pytest.approx(sum(values))
            for bound in metrics.METRICS[name].buckets:
                assert raw.get(f"{field}|le={bound}", 0.0) == sum(v <= bound for v in values)

    # the report of the week, and its comparison by level
    since = START.timestamp()
    found = report.figures(metrics.read_period(client, since, week["until"]), since, week["until"])
    first = found.first_pass
    leads = sum(week["first_pass"].values())
    complete = sum(v for k, v in week["first_pass"].items() if k[2] == "complete")
    reopened = sum(v for k, v in week["reopened"].items() if k[2] == "complete")
    assert (first.leads, first.complete, first.reopened) == (leads, complete, reopened)
    assert first.to_crm.count == sum(len(v) for v in week["to_crm"].values())
    by_level = {lv.label: lv for lv in first.levels}
    assert set(by_level) == {"full · a", "collect · b", "none"}
    for (level, group), values in week["to_crm"].items():
        shown = by_level[level if group == "none" else f"{level} · {group}"]
        assert shown.leads == len(values)
        assert shown.complete == sum(v for k, v in week["first_pass"].items() if k[:2] == (level, group)
                                     and k[2] == "complete")
        assert shown.reopened == sum(v for k, v in week["reopened"].items() if k[:2] == (level, group)
                                     and k[2] == "complete")
        assert shown.to_owner.count == len(week["to_owner"][(level, group)])
    text = report.text_report(found)
    expected_share = report.share(complete - reopened, leads)
    assert f"complete on first pass      {complete - reopened:>6.0f}  {expected_share:>4}" in text
    asked_time = sum(v for k, v in week["asked"].items() if k[0] == "preferred_time")
    edits = sum(v for k, v in week["asked"].items() if k[0] == "preferred_time" and k[1] == "crm_edit")
    assert (f"meeting_request · preferred_time  {asked_time:>5}  ({edits} by CRM edit, {asked_time - edits} by agent "
            "question)") in text
    assert "meeting_request · email" in text and "First pass and times by rollout level" in text
    level_a = by_level["full · a"]
    assert (f"full · a     {level_a.leads:>5.0f} leads, {report.share(level_a.first_pass, level_a.leads):>4} complete "
            "on first pass") in text
    page = report.html_report(found)
    assert "Complete on first pass" in page and "collect · b" in page and "<script" not in page
