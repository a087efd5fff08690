"""`chat2crm failed list | show | replay | drop` on real Redis and a real rq worker."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from connector import inbox, outbox
from connector.cli import main
from connector.jobs import set_message_aside
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from core.errors import FatalError
from core.models import Conversation, InboundMessage, Reply, utcnow
from tests.conftest import make_settings


@pytest.fixture
def cli_env(runtime: Runtime, redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url}


def _message(text: str) -> InboundMessage:
    return InboundMessage(channel="whatsapp", account="106540352242922", sender_id="905321112233",
                          message_id="wamid.X1", timestamp=utcnow(), kind="text", text=text)


def _fail_one(runtime: Runtime) -> None:
    """A job that really fails in a real worker: rq moves it to the failed registry."""
    runtime.queue("crm").enqueue("json.loads", args=("{not json",), description="lead #1001")
    run_worker(runtime, burst=True)


def test_list_show_drop(runtime: Runtime, cli_env: dict[str, str]) -> None:
    _fail_one(runtime)
    runner = CliRunner()
    listing = runner.invoke(main, ["failed", "list"], env=cli_env)
    assert listing.exit_code == 0, listing.output
    assert "1 failed job" in listing.output and "lead #1001" in listing.output
    assert "JSONDecodeError" in listing.output
    job_id = listing.output.split()[0]
    shown = runner.invoke(main, ["failed", "show", job_id], env=cli_env)
    assert shown.exit_code == 0 and "traceback:" in shown.output
    dropped = runner.invoke(main, ["failed", "drop", job_id, "--yes"], env=cli_env)
    assert dropped.exit_code == 0 and "dropped 1 job" in dropped.output
    assert "0 failed jobs" in runner.invoke(main, ["failed", "list"], env=cli_env).output


def test_failed_message_keeps_a_readable_reason_and_replays_to_its_inbox(
    runtime: Runtime, cli_env: dict[str, str]
) -> None:
    message = _message("Merhaba")
    key = message.conversation_key
    runtime.redis.rpush(inbox.INBOX.key(key), message.model_dump_json())
    set_message_aside(runtime, key, message.model_dump_json().encode(),
                      FatalError("WhatsApp rejected the message", setting="WHATSAPP_ACCESS_TOKEN"))
    assert runtime.redis.llen(inbox.INBOX.key(key)) == 0
    runner = CliRunner()
    listing = runner.invoke(main, ["failed", "list"], env=cli_env)
    assert "FatalError: WhatsApp rejected the message" in listing.output
    assert "Merhaba" not in listing.output  # the reason never carries the patient's text
    replayed = runner.invoke(main, ["failed", "replay", "--all"], env=cli_env)
    assert replayed.exit_code == 0 and "replayed 1 job" in replayed.output
    # The replay job runs in a worker and puts the message back at the head of its inbox.
    job_ids = runtime.queue("inbound").get_job_ids()
    assert len(job_ids) == 1
    from rq.job import Job

    Job.fetch(job_ids[0], connection=runtime.redis).perform()
    assert [m.text for m in inbox.messages(runtime, key)] == ["Merhaba"]
    assert key in inbox.waiting(runtime)


def test_a_failed_message_or_reply_is_kept_no_longer_than_the_retention(runtime: Runtime) -> None:
    """They hold what the patient wrote or was told: kept as long as the lead's transcript, no longer."""
    message = _message("Merhaba")
    key = message.conversation_key
    runtime.redis.rpush(inbox.INBOX.key(key), message.model_dump_json())
    set_message_aside(runtime, key, message.model_dump_json().encode(), FatalError("rejected"))
    (job_id,) = runtime.queue("inbound").failed_job_registry.get_job_ids()
    retention = runtime.config.retention.transcript_days * 86400
    assert retention - 60 < runtime.redis.ttl(f"rq:job:{job_id}") <= retention
    score = runtime.redis.zscore(runtime.queue("inbound").failed_job_registry.key, job_id)
    assert score is not None and score <= time.time() + retention + 1


def test_a_reply_the_channel_refuses_for_good_is_listed_and_replays_to_its_outbox(
    redis_url: str, redis_client: redis.Redis, cli_env: dict[str, str], whatsapp_emulator: Any
) -> None:
    """WhatsApp refuses the token: the reply is set aside (listed with a reason, never its text), the
    conversation's next reply still goes out, and a replay puts the refused one back at the outbox's head."""
    from connector.jobs import deliver_outbox

    runtime = Runtime(make_settings(redis_url, whatsapp_api_base=whatsapp_emulator.url), redis_client=redis_client)
    set_current_runtime(runtime)
    message = _message("Merhaba")
    conversation = Conversation(key=message.conversation_key, channel="whatsapp", account=message.account,
                                sender_id=message.sender_id, last_inbound_at=utcnow())
    key = conversation.key
    later = message.model_copy(update={"message_id": "wamid.X2"})  # two turns: one turn's texts leave as one
    entries = [*outbox.entries(conversation, message, [Reply(text="Merhaba Ayşe, talebiniz #1001")], courtesy=False),
               *outbox.entries(conversation, later, [Reply(text="Başka bir sorunuz var mı?")], courtesy=False)]
    runtime.redis.rpush(outbox.OUTBOX.key(key), *(e.model_dump_json() for e in entries))
    whatsapp_emulator.fail_next(1, "190")
    assert deliver_outbox(key) == 1
    sent = [m.payload["text"]["body"] for m in whatsapp_emulator.messages_to("905321112233")]
    assert sent == ["Başka bir sorunuz var mı?"]
    runner = CliRunner()
    listing = runner.invoke(main, ["failed", "list"], env=cli_env)
    assert "1 failed job" in listing.output and " reply  AuthError: whatsapp: the token was refused" in listing.output
    assert "Ayşe" not in listing.output and "#1001" not in listing.output
    assert runner.invoke(main, ["failed", "replay", "--all"], env=cli_env).exit_code == 0
    from rq.job import Job

    (job_id,) = runtime.queue("outbound").get_job_ids()
    Job.fetch(job_id, connection=runtime.redis).perform()
    assert [e.reply.text for e in outbox.pending(runtime, key) if e.reply] == ["Merhaba Ayşe, talebiniz #1001"]


def test_replay_needs_ids_or_all(runtime: Runtime, cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["failed", "replay"], env=cli_env)
    assert result.exit_code == 2 and "name job ids, or --all" in result.output


def test_unknown_job_is_a_clear_error(runtime: Runtime, cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["failed", "show", "nope"], env=cli_env)
    assert result.exit_code == 1 and "no failed job 'nope'" in result.output
