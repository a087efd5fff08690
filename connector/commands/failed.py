"""``chat2crm failed list | show | replay | drop``: inspect and replay failed jobs.

Failed jobs live in rq's failed-job registry of each queue, each with a readable reason
(``job.meta["reason"]``). Replaying is safe because every CRM write is idempotent: a lead that
did reach the CRM before its job failed is updated, not duplicated.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
from rq.job import Job
from rq.queue import Queue

from connector.runtime import Runtime


def _runtime() -> Runtime:
    from connector.logs import configure_logging
    from connector.settings import load_settings

    settings = load_settings()
    configure_logging("text", "WARNING")
    return Runtime(settings)


def failed_jobs(runtime: Runtime) -> Iterator[tuple[Queue, Job]]:
    """Every failed job of every relay queue, oldest first."""
    for queue in runtime.queues():
        registry = queue.failed_job_registry
        for job_id in registry.get_job_ids(cleanup=True):
            job = Job.fetch(job_id, connection=runtime.redis) if Job.exists(job_id, runtime.redis) else None
            if job is not None:
                yield queue, job


def reason_of(job: Job) -> str:
    """The job's readable reason, or the last line of its traceback."""
    reason = job.meta.get("reason")
    if reason:
        return str(reason)
    result = job.latest_result()
    text = result.exc_string if result is not None else ""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown"


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
    result = job.latest_result()
    if result and result.exc_string:
        from connector.logs import redact

        click.echo("traceback:")
        click.echo(redact(result.exc_string))


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
            job.meta.pop("reason", None)
            job.save_meta()
            queue.failed_job_registry.requeue(job.id)
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
        queue.failed_job_registry.remove(job, delete_job=True)
    click.echo(f"dropped {len(chosen)} job{'s' if len(chosen) != 1 else ''}")
