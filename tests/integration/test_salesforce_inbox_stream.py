"""The listener of Salesforce's change events (``chat2crm listen salesforce``) against the emulated org's real
Pub/Sub API (gRPC over TLS): replies taken in order with flow control, the checkpoint stored after taking and
moved by keep-alives, a listener stopped between taking and storing (nothing lost, nothing sent twice), a
dropped or unavailable stream, an expired session, an expired checkpoint, and a standby taking over.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.inbox import StreamBatch
from adapters.salesforce.inbox import SalesforceInbox
from connector import agent, outbox, threads
from connector.crm_events import UNKNOWN_REASON
from connector.listen import CHECKPOINT, LEASE, Backoff, Listener, wait_leading
from connector.runtime import Runtime, set_current_runtime
from core.inbox import ThreadMessage, thread_id
from emulators.salesforce.changes import replay_bytes
from tests.conftest import make_settings
from tests.e2e.conftest import write_config
from tests.integration.test_salesforce_inbox_org import TOPIC, Org, running_org
from tests.paths import MAPPINGS

KEY = "whatsapp:106540352242922:905321112233"
THREAD = thread_id(KEY)


class Crash(BaseException):
    """The listener's process dies here (nothing after this point runs, not even its orderly stop)."""


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    with running_org(tmp_path / "tls", keepalive_seconds=0.3) as found:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(found.tls.ca_bundle))
        yield found
    assert not found.emulator.violations, found.emulator.violations


@pytest.fixture
def runtime(org: Org, redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Runtime]:
    config = write_config(tmp_path, crm="salesforce", mapping=str(MAPPINGS / "salesforce.yaml"))
    found = Runtime(make_settings(redis_url, chat2crm_config=config, public_base_url="https://relay.example",
                                  **org.settings), redis_client=redis_client)
    set_current_runtime(found)
    # the thread was published for this conversation (as publishing records it)
    redis_client.set(threads.BY_THREAD.key(THREAD), json.dumps({"conversation": KEY}))
    try:
        yield found
    finally:
        set_current_runtime(None)


@pytest.fixture
def lead(org: Org, runtime: Runtime) -> str:
    """A Lead whose conversation the relay published (the agent's component copies its thread from it)."""
    lead_id = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    inbox = runtime.inbox
    assert isinstance(inbox, SalesforceInbox)
    inbox.publish(ThreadMessage(id="wamid.FIRST", thread=THREAD, conversation=KEY, channel="whatsapp",
                                direction="incoming", text="temsilci", at=datetime.now(UTC),
                                identity="whatsapp:905321112233", contact_id=lead_id))
    return lead_id


class Running:
    """A listener on its own thread (as ``chat2crm listen`` runs it), and what ended it."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        kwargs.setdefault("backoff", Backoff(base=0.05, ceiling=0.2))
        self.listener = Listener(runtime, "salesforce", lease_seconds=1.0, **kwargs)
        self.ended: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.run()
        except BaseException as exc:  # a simulated crash ends the thread; the test reads it
            self.ended = exc

    def stop(self) -> None:
        self.listener.stop()
        self.thread.join(timeout=10)


@pytest.fixture
def listeners() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        running.stop()


def start(listeners: list[Running], runtime: Runtime, **kwargs: Any) -> Running:
    running = Running(runtime, **kwargs)
    listeners.append(running)
    return running


def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def agent_entries(runtime: Runtime) -> list[outbox.Entry]:
    return [e for e in outbox.pending(runtime, KEY) if e.kind == "agent"]


def subscribed(org: Org, streams: int = 1) -> Callable[[], bool]:
    return lambda: org.pubsub.service.open_streams == streams


def checkpoint(runtime: Runtime) -> int | None:
    raw = runtime.redis.get(CHECKPOINT.key("salesforce"))
    return int.from_bytes(raw, "big") if raw else None


def test_replies_are_taken_in_order_with_their_files_and_the_checkpoint_follows(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    running = start(listeners, runtime)
    until(subscribed(org), "the listener subscribes")
    calls = runtime.inbox.session.calls  # type: ignore[union-attr]
    first = org.emulator.add_agent_reply(lead, "Merhaba Ayşe Hanım, ben Deniz.")
    until(lambda: len(agent_entries(runtime)) == 1, "the first reply is taken")
    assert runtime.inbox.session.calls == calls  # type: ignore[union-attr]  # complete in its event: no REST call
    second = org.emulator.add_agent_reply(lead, "Fiyat listemiz ekte.", files=[("fiyat-listesi.pdf", b"%PDF-1.4")])
    until(lambda: len(agent_entries(runtime)) == 2, "the reply with a file is taken")
    assert runtime.inbox.session.calls == calls + 1  # type: ignore[union-attr]  # its record and files: one call
    replies = agent_entries(runtime)
    assert [(e.crm_message_id, e.text) for e in replies] == [(first, "Merhaba Ayşe Hanım, ben Deniz."),
                                                              (second, "Fiyat listemiz ekte.")]
    (file,) = replies[1].files
    assert file.name == "fiyat-listesi.pdf" and file.mime_type == "application/pdf"
    assert org.emulator.version_data(file.crm_file_id or "") == b"%PDF-1.4"
    # the checkpoint is the last event taken; the flow control asked for 100, then for what each batch took
    events = org.emulator.change_events(TOPIC)
    until(lambda: checkpoint(runtime) == events[-1].replay, "the checkpoint reaches the last event")
    # the next FetchRequest is sent once a batch is taken and stored, so it reaches the server a moment later
    service = org.pubsub.service
    until(lambda: sum(service.requested[1:]) == len(service.delivered), "each batch taken is asked for again")
    assert service.requested[0] == 100
    assert running.ended is None and runtime.redis.ttl(LEASE.key("salesforce")) > 0


def test_keepalives_store_the_streams_latest_position(org: Org, runtime: Runtime, listeners: list[Running]) -> None:
    assert checkpoint(runtime) is None
    start(listeners, runtime)
    until(subscribed(org), "the listener subscribes")
    tip = org.emulator.last_replay  # no event yet: the stream's position is the event bus's tip
    until(lambda: checkpoint(runtime) == tip, "a keep-alive stores the tip (nothing to take)", timeout=5)
    lead = org.emulator.add_record("Lead", {"LastName": "Yılmaz", "Company": "-"})
    org.emulator.install_package()
    with org.emulator.lock:  # the relay's own write, in another session: not for it, but the position moves on
        org.emulator._create("Chat2CRM_Message__c", {"Direction__c": "Inbound", "Lead__c": lead}, None)
        org.emulator._commit_changes("005000000000001AAA")
    until(lambda: checkpoint(runtime) == org.emulator.last_replay, "an ignored event moves it on")
    stored = checkpoint(runtime)
    time.sleep(0.7)  # keep-alives meanwhile: caught up, the position stays
    assert checkpoint(runtime) == stored and agent_entries(runtime) == []


def test_a_first_listener_takes_the_replies_written_before_it_started(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    waiting = org.emulator.add_agent_reply(lead, "Merhaba, yazdığınızı gördüm")
    start(listeners, runtime)
    until(lambda: [e.crm_message_id for e in agent_entries(runtime)] == [waiting], "the waiting reply is taken")


def test_a_listener_stopped_between_taking_and_storing_loses_nothing_and_sends_nothing_twice(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    def crash_once(batch: StreamBatch) -> None:
        if batch.events:
            raise Crash

    dying = start(listeners, runtime, on_taken=crash_once)
    until(subscribed(org), "the first listener subscribes")
    until(lambda: checkpoint(runtime) is not None, "its first keep-alive is stored")
    before = checkpoint(runtime)
    standby = start(listeners, runtime)  # waits: the lease is the first one's
    reply = org.emulator.add_agent_reply(lead, "Merhaba")
    until(lambda: isinstance(dying.ended, Crash), "the first listener dies after taking the reply")
    assert checkpoint(runtime) == before and len(agent_entries(runtime)) == 1
    assert runtime.redis.exists(LEASE.key("salesforce"))  # a killed listener keeps its lease until it expires
    until(standby.listener.leading.is_set, "the standby takes over once the lease expires", timeout=5)
    until(lambda: org.pubsub.service.delivered.count(org.emulator.change_events(TOPIC)[-1].replay) == 2,
          "the reply is delivered again, from the stored position")
    until(lambda: checkpoint(runtime) == org.emulator.change_events(TOPIC)[-1].replay, "then stored")
    assert [e.crm_message_id for e in agent_entries(runtime)] == [reply]  # taken once
    later = org.emulator.add_agent_reply(lead, "Size nasıl yardımcı olabilirim?")
    until(lambda: len(agent_entries(runtime)) == 2, "the next reply is taken by the new listener")
    assert agent_entries(runtime)[1].crm_message_id == later


def test_a_dropped_or_unavailable_stream_is_subscribed_again_from_the_checkpoint(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    org.pubsub.service.fail_next("unavailable")
    org.pubsub.service.fail_next("internal")
    running = start(listeners, runtime)
    until(subscribed(org), "the listener subscribes after two failures, backing off")
    assert [m for m, _ in org.pubsub.service.calls].count("Subscribe") >= 3
    until(lambda: checkpoint(runtime) is not None, "a keep-alive is stored")
    running.stop()
    # two replies wait; the stream breaks after delivering the first of their batch
    first = org.emulator.add_agent_reply(lead, "Bir")
    second = org.emulator.add_agent_reply(lead, "İki")
    org.pubsub.service.fail_next("drop", after_events=1)
    start(listeners, runtime)
    until(lambda: len(agent_entries(runtime)) == 2, "both replies are taken across the broken stream")
    assert [e.crm_message_id for e in agent_entries(runtime)] == [first, second]
    replays = [e.replay for e in org.emulator.change_events(TOPIC)[-2:]]
    assert [org.pubsub.service.delivered.count(r) for r in replays] == [1, 1]  # the first was stored: not again


def test_an_expired_session_is_renewed_and_the_stream_goes_on(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    start(listeners, runtime)
    until(subscribed(org), "the listener subscribes")
    grants = len(org.emulator.token_grants)
    org.emulator.expire_sessions()
    org.pubsub.service.fail_next("drop", after_events=0)  # the stream breaks at the next event
    reply = org.emulator.add_agent_reply(lead, "Merhaba")
    until(lambda: [e.crm_message_id for e in agent_entries(runtime)] == [reply], "the reply is taken")
    # refused once, logged in again: the replies' stream, and the Lead edits' stream when it asked meanwhile
    assert grants + 1 <= len(org.emulator.token_grants) <= grants + 2


def test_a_checkpoint_older_than_salesforce_keeps_restarts_at_the_earliest_event(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    old = org.emulator.last_replay
    runtime.redis.set(CHECKPOINT.key("salesforce"), replay_bytes(old))
    org.emulator.purge_events()  # 72 hours pass: the stored position is gone
    reply = org.emulator.add_agent_reply(lead, "Merhaba")  # written while no listener ran
    start(listeners, runtime)
    until(lambda: [e.crm_message_id for e in agent_entries(runtime)] == [reply], "the waiting reply is taken")
    # the position is stored only once the batch was taken: a moment after the reply is queued
    until(lambda: (checkpoint(runtime) or 0) > old, "the new position is stored")


def test_only_one_listener_leads_and_a_standby_takes_over_at_once_after_a_stop(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    first = start(listeners, runtime)
    assert wait_leading(first.listener, 5)
    second = start(listeners, runtime)
    time.sleep(0.3)
    assert not second.listener.leading.is_set() and org.pubsub.service.open_streams == 1
    first.stop()
    assert wait_leading(second.listener, 1.0)  # an orderly stop hands the lease over
    reply = org.emulator.add_agent_reply(lead, "Merhaba")
    until(lambda: [e.crm_message_id for e in agent_entries(runtime)] == [reply], "the standby takes the reply")


def test_a_reply_for_no_known_conversation_is_reported_failed_to_the_agent(
        org: Org, runtime: Runtime, lead: str, listeners: list[Running]) -> None:
    runtime.redis.delete(threads.BY_THREAD.key(THREAD))  # the relay has forgotten the conversation
    start(listeners, runtime)
    until(subscribed(org), "the listener subscribes")
    reply = org.emulator.add_agent_reply(lead, "Merhaba")
    until(lambda: bool(agent.reports(runtime)), "a failed report is queued")
    (report,) = agent.reports(runtime)
    assert (report.crm_message_id, report.status, report.reason) == (reply, "failed", UNKNOWN_REASON)
    assert agent_entries(runtime) == []


def test_the_listen_command_runs_until_sigterm_and_hands_its_lease_over(
        org: Org, runtime: Runtime, lead: str, redis_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import TEST_SECRETS

    env = {**os.environ, **{k.upper(): str(v) for k, v in TEST_SECRETS.items()},
           **{k.upper(): v for k, v in org.settings.items()}, "REDIS_URL": redis_url, "LOG_FORMAT": "json",
           "CHAT2CRM_CONFIG": str(runtime.settings.chat2crm_config), "REQUESTS_CA_BUNDLE": str(org.tls.ca_bundle)}
    wrong = subprocess.run([sys.executable, "-m", "connector.cli", "listen", "hubspot"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 1 and "names crm 'salesforce', not 'hubspot'" in wrong.stderr
    process = subprocess.Popen([sys.executable, "-m", "connector.cli", "listen", "salesforce"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        until(subscribed(org), "the listener process subscribes", timeout=30)
        reply = org.emulator.add_agent_reply(lead, "Merhaba Ayşe Hanım")
        until(lambda: [e.crm_message_id for e in agent_entries(runtime)] == [reply], "the process takes the reply")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read() if process.stdout else ""
    assert not runtime.redis.exists(LEASE.key("salesforce"))  # handed over at once
    assert "Merhaba" not in output and "listener took a batch" in output  # counts, never the text
