"""``chat2crm failed list | show | replay | drop``: inspect and replay failed jobs.

Failed jobs live in rq's failed-job registry of each queue (:mod:`connector.queues`), each with a
readable reason: CRM writes (``lead #1002``, ``opt-out``) that failed for good or ran out of retries,
and the patient messages (``conversation message``) and replies (``reply``) that were set aside so
that the ones after them could go on. Replaying is safe: every CRM write is idempotent, a replayed
message goes back to the head of its inbox, a replayed reply to the head of its outbox. An entry is
kept ``retention.transcript_days`` at most (those holding a message or a reply hold patient data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from connector import queues
from connector.logs import configure_logging, redact
from connector.queues import failed_jobs, reason_of
from connector.runtime import Runtime
from core.settings import load_settings

if TYPE_CHECKING:
    from rq.job import Job
    from rq.queue import Queue

__all__ = ["command", "failed_jobs", "reason_of"]


def _runtime() -> Runtime:
    settings = load_settings()
    configure_logging("text", "WARNING")
    return Runtime(settings)


def _find(runtime: Runtime, job_id: str) -> tuple[Queue, Job]:
    for queue, job in failed_jobs(runtime):
        if job.id == job_id or job.id.startswith(job_id):
            return queue, job
    raise click.ClickException(f"no failed job {job_id!r} (see `chat2crm failed list`)")


@click.group("failed")
def command() -> None:
    """Inspect, replay and drop failed jobs."""


@command.command("list")
def list_() -> None:
    """One line per failed job: id, queue, when, what, why."""
    runtime = _runtime()
    count = 0
    for queue, job in failed_jobs(runtime):
        when = job.ended_at.strftime("%Y-%m-%d %H:%M") if job.ended_at else "?"
        click.echo(f"{job.id[:12]}  {queue.name:<16} {when}  {job.description or job.func_name}  {reason_of(job)}")
        count += 1
    click.echo(f"{count} failed job{'s' if count != 1 else ''}")


@command.command("show")
@click.argument("job_id")
def show(job_id: str) -> None:
    """Everything known about one failed job (its reason, attempts, and the traceback)."""
    runtime = _runtime()
    queue, job = _find(runtime, job_id)
    click.echo(f"id:        {job.id}")
    click.echo(f"queue:     {queue.name}")
    click.echo(f"job:       {job.func_name}")
    click.echo(f"what:      {job.description}")
    click.echo(f"enqueued:  {job.enqueued_at}")
    click.echo(f"failed:    {job.ended_at}")
    click.echo(f"reason:    {reason_of(job)}")
    traceback = queues.traceback_of(job)
    if traceback:
        click.echo("traceback:")
        click.echo(redact(traceback))


@command.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every failed job.")
def replay(job_ids: tuple[str, ...], replay_all: bool) -> None:
    """Put failed jobs back on their queue (safe: every write is idempotent)."""
    runtime = _runtime()
    if not job_ids and not replay_all:
        raise click.UsageError("name job ids, or --all")
    chosen = list(failed_jobs(runtime)) if replay_all else [_find(runtime, j) for j in job_ids]
    with click.progressbar(chosen, label="replaying", show_pos=True) as bar:
        for queue, job in bar:
            queues.replay(queue, job)
    click.echo(f"replayed {len(chosen)} job{'s' if len(chosen) != 1 else ''}")


@command.command("drop")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every failed job.")
@click.confirmation_option(prompt="Drop these failed jobs for good?")
def drop(job_ids: tuple[str, ...], drop_all: bool) -> None:
    """Delete failed jobs without running them."""
    runtime = _runtime()
    if not job_ids and not drop_all:
        raise click.UsageError("name job ids, or --all")
    chosen = list(failed_jobs(runtime)) if drop_all else [_find(runtime, j) for j in job_ids]
    for queue, job in chosen:
        queues.drop(queue, job)
    click.echo(f"dropped {len(chosen)} job{'s' if len(chosen) != 1 else ''}")
