"""`chat2crm failed list | show | replay | drop` on real Redis and a real rq worker."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.errors import FatalError
from connector.models import InboundMessage, utcnow
from connector.pipeline import INBOXES, _fail_message, inbox_key
from connector.runtime import Runtime
from connector.worker import run_worker


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
    runtime.redis.rpush(inbox_key(key), message.model_dump_json())
    _fail_message(runtime, key, message.model_dump_json().encode(),
                  FatalError("WhatsApp rejected the message", setting="WHATSAPP_ACCESS_TOKEN"))
    assert runtime.redis.llen(inbox_key(key)) == 0
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
    assert [m.text for m in
            (InboundMessage.model_validate_json(r) for r in runtime.redis.lrange(inbox_key(key), 0, -1))] == ["Merhaba"]
    assert runtime.redis.sismember(INBOXES, key)


def test_replay_needs_ids_or_all(runtime: Runtime, cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["failed", "replay"], env=cli_env)
    assert result.exit_code == 2 and "name job ids, or --all" in result.output


def test_unknown_job_is_a_clear_error(runtime: Runtime, cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["failed", "show", "nope"], env=cli_env)
    assert result.exit_code == 1 and "no failed job 'nope'" in result.output
