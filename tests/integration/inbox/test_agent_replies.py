"""Agents' replies from the CRM's inbox to the patient: accepted once, sent once (even across a crash between
the channel's answer and the relay's record), refused with a reason an agent understands, and reported
back (sent, delivered, read, failed). A thread closed in the CRM hands the conversation back to the bot.

The relay runs over real HTTP (its web app, real Redis, rq workers) with the WhatsApp and Telegram emulators
and HubSpot's emulator for the leads; the CRM's inbox is a recording one (:mod:`tests.integration.inbox.conftest`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from connector import agent, conversations, outbox, queues, threads
from connector.channels.telegram import bot_id
from connector.conversations import CONVERSATION
from connector.crash import ENVIRONMENT_VARIABLE
from connector.jobs import deliver_outbox
from core import metrics
from core.inbox import thread_id
from core.models import utcnow
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack
from tests.integration.inbox.conftest import RecordingInbox, post_events

pytestmark = pytest.mark.weight(45)  # seconds, about: see pytest_collection_modifyitems

PATIENT = "4915177772222"
EXCHANGE = ("Hello, I would like a meeting", "Reporting", "Muster GmbH, hans@muster.de", "Thursday 15:00")


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request",
            "inbox": {"window_templates": {"de": {"name": "agent_reply", "language": "de"}}}}


def _key(stack: Stack, channel: str = "whatsapp", sender: str = PATIENT) -> str:
    account = stack.settings.whatsapp_phone_number_id if channel == "whatsapp" else bot_id(
        TEST_SECRETS["telegram_bot_token"])
    return f"{channel}:{account}:{sender}"


def _work_until(stack: Stack, done: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    stack.work()
    while not done():
        assert time.monotonic() < deadline, "the relay did not get there in time"
        time.sleep(0.1)
        stack.work()


def _with_the_agents(stack: Stack, patient: Any) -> None:
    """The patient completes a request: the conversation is the agents' from now on."""
    for said in EXCHANGE:
        assert patient.send_text(said) == 200
        stack.work()


def _reply(crm_message_id: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "reply", "crm_message_id": crm_message_id, "text": text, **fields}


def _statuses_settle(stack: Stack) -> None:
    """The WhatsApp emulator's status webhooks have reached the relay, and the reports the CRM."""
    stack.whatsapp.wait_for_webhooks(15.0)  # at once when the machine is idle; seconds under the suite's load
    stack.work()


def test_a_reply_is_sent_once_and_reported_even_when_the_webhook_is_redelivered(stack: Stack,
                                                                                crm: RecordingInbox) -> None:
    stack.whatsapp.status_webhooks = True
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    before = len(stack.whatsapp.messages_to(PATIENT))
    events = [_reply("m-1", "Yes, bring your colleague. Here is the map.", conversation=_key(stack),
                     attachments=[{"crm_file_id": "F9", "name": "map.pdf", "mime_type": "application/pdf"}])]
    first, again = post_events(stack.relay_url, events), post_events(stack.relay_url, events)
    assert (first.status_code, first.json()) == (200, {"accepted": 1, "duplicates": 0, "closed": 0, "unknown": 0})
    assert (again.status_code, again.json()["duplicates"]) == (200, 1)
    _work_until(stack, lambda: len(stack.whatsapp.messages_to(PATIENT)) > before)
    _statuses_settle(stack)
    (sent,) = stack.whatsapp.messages_to(PATIENT)[before:]  # once; the text as the file's caption
    assert sent.tracking == agent.entry_id("m-1") and sent.payload["type"] == "document"
    assert sent.payload["document"]["link"] == "https://files.crm.example/F9/map.pdf"
    assert sent.payload["document"]["caption"] == "Yes, bring your colleague. Here is the map."
    assert crm.statuses("m-1") == [("sent", None, None), ("delivered", None, None)]
    assert patient.read_all() >= 1
    _statuses_settle(stack)
    assert [s for s, _c, _r in crm.statuses("m-1")] == ["sent", "delivered", "read"]
    assert not outbox.pending(stack.runtime, _key(stack)) and not agent.reports(stack.runtime)
    post_events(stack.relay_url, events)  # days later, one more redelivery: nothing
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before + 1


def test_a_reply_is_routed_by_the_crm_s_contact_or_thread(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    contact = stack.hubspot.records("contacts")[0]["id"]
    crm_thread = f"T{thread_id(_key(stack))[-6:]}"  # what the recording CRM answered when the thread opened
    response = post_events(stack.relay_url, [_reply("m-2", "By contact", crm_contact_id=contact),
                                             _reply("m-3", "By thread", thread=crm_thread),
                                             _reply("m-4", "Nobody's", crm_contact_id="999999")])
    assert response.json() == {"accepted": 2, "duplicates": 0, "closed": 0, "unknown": 1}
    stack.work()
    texts = [m.payload["text"]["body"] for m in stack.whatsapp.messages_to(PATIENT)[-2:]]
    assert texts == ["By contact", "By thread"]


def test_a_bad_signature_is_refused_and_nothing_is_queued(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    events = [_reply("m-5", "Hello", conversation=_key(stack))]
    unsigned = post_events(stack.relay_url, events, sign=False)
    elsewhere = post_events(stack.relay_url, events, public_base_url="https://attacker.example")
    assert unsigned.status_code == 401 and elsewhere.status_code == 401
    assert not outbox.pending(stack.runtime, _key(stack))
    assert not stack.runtime.redis.exists(agent.SEEN.key("m-5"))
    assert metrics.read(stack.runtime.redis, "webhooks_rejected")[("hubspot", "401")] == 2
    assert post_events(stack.relay_url, events, crm="salesforce").status_code == 404  # not the configured CRM
    assert post_events(stack.relay_url, events).json()["accepted"] == 1  # signed for the URL it was given


def _age(stack: Stack, key: str, *, hours: float, language: str | None = None) -> None:
    """The patient last wrote ``hours`` ago (and speaks ``language``)."""
    conversation = conversations.load(stack.runtime, key)
    assert conversation is not None
    conversation.last_inbound_at = utcnow() - timedelta(hours=hours)
    conversation.language = language or conversation.language
    stack.runtime.redis.set(CONVERSATION.key(key), conversation.model_dump_json(), keepttl=True)


def test_outside_the_window_only_a_configured_template_goes(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    _age(stack, key, hours=25)  # an English speaker: no template is configured for English
    post_events(stack.relay_url, [_reply("m-6", "Are you still interested?", conversation=key)])
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before  # not sent
    ((status, code, reason),) = crm.statuses("m-6")
    assert (status, code) == ("failed", None)
    assert reason == ("the patient last wrote more than 24 hours ago; WhatsApp only allows an approved template; "
                      "none is configured for en")
    assert [job.description for _q, job in queues.failed_jobs(stack.runtime)] == ["reply"]  # set aside
    _age(stack, key, hours=25, language="de")
    post_events(stack.relay_url, [_reply("m-7", "Sind Sie noch interessiert?", conversation=key)])
    stack.work()
    (sent,) = stack.whatsapp.messages_to(PATIENT)[before:]
    template = sent.payload["template"]
    assert sent.payload["type"] == "template" and template["name"] == "agent_reply"
    assert template["language"]["code"] == "de"
    assert template["components"] == [{"type": "body", "parameters": [
        {"type": "text", "text": "Sind Sie noch interessiert?"}]}]
    assert crm.statuses("m-7") == [("sent", None, None)]


def test_a_refusal_by_the_channel_is_reported_failed_with_its_code(stack: Stack, crm: RecordingInbox) -> None:
    stack.whatsapp.status_webhooks = True
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    _statuses_settle(stack)
    stack.whatsapp.fail_next(1, "131047")  # refused at once
    post_events(stack.relay_url, [_reply("m-8", "First", conversation=_key(stack))])
    stack.work()
    ((status, code, reason),) = crm.statuses("m-8")
    assert (status, code) == ("failed", "131047") and "131047" in (reason or "")
    stack.whatsapp.fail_next(1, "131026")  # taken, then not delivered: a failed status webhook
    post_events(stack.relay_url, [_reply("m-9", "Second", conversation=_key(stack))])
    stack.work()
    _statuses_settle(stack)
    statuses = crm.statuses("m-9")
    # the failed webhook may overtake the send's own "sent": either way the CRM ends on failed, never after it
    assert {s[0] for s in statuses[:-1]} <= {"sent"} and statuses[-1][:2] == ("failed", "131026")
    assert statuses[-1][2] and "131026" not in statuses[-1][2]  # the reason is Meta's words, not only its code


def _killed_at(point: str, job: Callable[[], object]) -> None:
    """Run ``job`` in a child process that dies by SIGKILL when the work reaches ``point``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.environ[ENVIRONMENT_VARIABLE] = point
            job()
        finally:
            os._exit(0)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed at {point}"


def _dead_lock_expires(stack: Stack, key: str) -> None:
    """What ``delivery.job_timeout_seconds`` does to the killed job's delivery lock, without the wait."""
    stack.runtime.redis.delete(outbox.LOCK.key(key))


def test_a_crash_after_whatsapp_took_the_reply_does_not_send_it_twice(stack: Stack, crm: RecordingInbox) -> None:
    stack.whatsapp.status_webhooks = True
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    _statuses_settle(stack)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    post_events(stack.relay_url, [_reply("m-10", "We can do Friday.", conversation=key)])
    stack.whatsapp.fail_next(1, "status_delay")  # its statuses come a second late
    _killed_at("agent-sent", lambda: deliver_outbox(key))
    _dead_lock_expires(stack, key)
    assert len(stack.whatsapp.messages_to(PATIENT)) == before + 1  # WhatsApp has it; the relay did not record it
    (waiting,) = outbox.pending(stack.runtime, key)
    assert waiting.kind == "agent"
    deliver_outbox(key)  # before the status comes: not sent again, it waits for the confirmation
    assert len(stack.whatsapp.messages_to(PATIENT)) == before + 1 and outbox.pending(stack.runtime, key)
    stack.whatsapp.wait_for_webhooks()  # the tracked status confirms the send
    _work_until(stack, lambda: not outbox.pending(stack.runtime, key))
    _statuses_settle(stack)
    (sent,) = stack.whatsapp.messages_to(PATIENT)[before:]
    assert sent.tracking == agent.entry_id("m-10")
    assert [s for s, _c, _r in crm.statuses("m-10")] == ["sent", "delivered"]
    assert crm.reports[-1].channel_message_ids == [sent.id]


def test_a_crash_before_the_send_sends_it_once_after_the_grace(stack: Stack, crm: RecordingInbox,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "CONFIRM_GRACE_SECONDS", 0.5)
    stack.whatsapp.status_webhooks = True
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    post_events(stack.relay_url, [_reply("m-11", "See you Friday.", conversation=key)])
    _killed_at("agent-sending", lambda: deliver_outbox(key))
    _dead_lock_expires(stack, key)
    assert len(stack.whatsapp.messages_to(PATIENT)) == before  # marked as being sent, never sent
    _work_until(stack, lambda: not outbox.pending(stack.runtime, key))  # no status comes: sent after the grace
    _statuses_settle(stack)
    assert [m.payload["text"]["body"] for m in stack.whatsapp.messages_to(PATIENT)[before:]] == ["See you Friday."]
    assert crm.statuses("m-11")[0] == ("sent", None, None)


def test_on_telegram_an_unknown_outcome_is_reported_and_not_sent_again(stack: Stack, crm: RecordingInbox) -> None:
    user = stack.telegram.user(555001, "Ivan")
    _with_the_agents(stack, user)
    key = _key(stack, "telegram", "555001")
    before = len(stack.telegram.messages_to(555001))
    post_events(stack.relay_url, [_reply("m-12", "Friday works.", conversation=key)])
    _killed_at("agent-sent", lambda: deliver_outbox(key))
    _dead_lock_expires(stack, key)
    stack.work()
    assert len(stack.telegram.messages_to(555001)) == before + 1  # once: Telegram echoes nothing to confirm it
    assert crm.statuses("m-12") == [("failed", None, agent.UNKNOWN_REASON)]
    assert not outbox.pending(stack.runtime, key)


def test_a_thread_closed_in_the_crm_hands_the_conversation_back_to_the_bot(stack: Stack,
                                                                            crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    patient.send_text("One more question")
    stack.work()
    told = len(stack.whatsapp.messages_to(PATIENT))
    assert crm.published[crm.order()[-1]].text == "One more question"  # for the agents, not the bot
    closed = {"type": "closed", "event_id": "e-1", "crm_thread_id": f"T{thread_id(_key(stack))[-6:]}"}
    assert post_events(stack.relay_url, [closed]).json()["closed"] == 1
    assert post_events(stack.relay_url, [closed]).json()["closed"] == 0  # redelivered: already the bot's
    published = len(crm.order())
    patient.send_text("Hello, a new request")
    stack.work()
    texts = stack.whatsapp.messages_to(PATIENT)[told:]
    assert texts and "Welcome back" in str(texts[0].payload)
    assert len(crm.order()) == published and threads.pending(stack.runtime, _key(stack)) == []  # the bot's


def test_a_report_the_crm_refuses_for_now_is_written_later_in_order(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    crm.fail_next("report", 2)
    post_events(stack.relay_url, [_reply("m-13", "One", conversation=_key(stack)),
                                  _reply("m-14", "Two", conversation=_key(stack))])
    _work_until(stack, lambda: len(crm.reports) == 2)
    assert crm.faults["report"] == 0  # refused twice, then written: the second waited behind the first
    assert [(r.crm_message_id, r.status) for r in crm.reports] == [("m-13", "sent"), ("m-14", "sent")]
    assert not agent.reports(stack.runtime) and not stack.runtime.redis.exists(agent.REPORTS_HOLD.key())


def test_a_reply_to_a_patient_who_said_stop_is_not_sent_and_the_agent_is_told(stack: Stack,
                                                                             crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    patient.send_text("stop")
    stack.work()
    before = len(stack.whatsapp.messages_to(PATIENT))
    post_events(stack.relay_url, [_reply("m-s", "Are you sure?", conversation=_key(stack))])
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before
    assert crm.statuses("m-s") == [("failed", None, agent.OPTED_OUT_REASON)]


def test_files_outside_the_window_are_refused_with_the_reason_rather_than_dropped(stack: Stack,
                                                                                 crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    _age(stack, key, hours=25, language="de")  # a template is configured for German: text alone would go
    post_events(stack.relay_url, [_reply("m-f", "Die Karte", conversation=key, attachments=[
        {"crm_file_id": "F9", "name": "map.pdf", "mime_type": "application/pdf"}])])
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before
    assert crm.statuses("m-f") == [("failed", None, agent.WINDOW_FILES_REASON)]


def test_a_reply_sent_by_a_replay_after_its_failure_is_reported_sent(stack: Stack, crm: RecordingInbox) -> None:
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    _age(stack, key, hours=25)  # no template for English: refused and set aside
    post_events(stack.relay_url, [_reply("m-r", "Are you still interested?", conversation=key)])
    stack.work()
    assert [s for s, _c, _r in crm.statuses("m-r")] == ["failed"]
    # the patient writes again (the window opens) and the operator replays the failed job
    patient.send_text("Yes, still interested")
    stack.work()
    for queue, job in queues.failed_jobs(stack.runtime):
        queues.replay(queue, job)
    _work_until(stack, lambda: len(stack.whatsapp.messages_to(PATIENT)) > before)
    assert [s for s, _c, _r in crm.statuses("m-r")] == ["failed", "sent"]


def test_after_forget_an_agents_reply_is_not_sent_until_the_patient_writes_again(stack: Stack,
                                                                                crm: RecordingInbox) -> None:
    from connector.commands.forget import erase

    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    _with_the_agents(stack, patient)
    key, before = _key(stack), len(stack.whatsapp.messages_to(PATIENT))
    erase(stack.runtime, f"+{PATIENT}")
    # the thread is still in the CRM, and its event names the patient: the relay sends nothing
    post_events(stack.relay_url, [_reply("m-g", "Hello?", conversation=key)])
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == before
    assert crm.statuses("m-g") == [("failed", None, agent.FORGOTTEN_REASON)]
    assert stack.runtime.redis.keys(f"*{PATIENT}*") == []  # the mark names no one
    patient.send_text("Hello, it's me again")
    stack.work()
    sent = len(stack.whatsapp.messages_to(PATIENT))
    post_events(stack.relay_url, [_reply("m-h", "Welcome back", conversation=key)])
    stack.work()
    assert len(stack.whatsapp.messages_to(PATIENT)) == sent + 1
