"""``chat2crm crm setup | doctor``: prepare and diagnose the configured CRM and its inbox (the conversation
after the bot).

Redis out of reach, a CRM that does not answer or refuses the credentials end either command with one line
saying what to do, and exit status 1 (:func:`connector.checks.plain_errors`), never a traceback."""

from __future__ import annotations

import click

from connector import edits
from connector.checks import plain_errors, reach_redis
from connector.logs import configure_logging
from connector.mapping import check_online, required_schema
from connector.runtime import Runtime
from core.errors import ConfigurationError
from core.settings import load_settings


def _runtime() -> Runtime:
    """The runtime, its configuration checked (the CRM commands need a valid mapping)."""
    settings = load_settings()
    configure_logging("text", "WARNING")
    runtime = Runtime(settings)
    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    return runtime


@click.group("crm")
def command() -> None:
    """Set up and diagnose the CRM named in chat2crm.yaml."""


@command.command("setup")
@click.option("--dry-run", is_flag=True, help="Print what would be created; change nothing.")
def setup(dry_run: bool) -> None:
    """Create the custom fields (and groups) the mapping needs. Safe to run again."""
    runtime = _runtime()
    with plain_errors(runtime):
        reach_redis(runtime)
        for line in runtime.adapter.setup(required_schema(runtime.mapping), apply=not dry_run) + edits.setup(
                runtime, apply=not dry_run):
            click.echo(line)


@command.command("doctor")
def doctor() -> None:
    """Check credentials, the mapping against the live CRM, and the CRM's inbox. Exit 1 on any problem."""
    runtime = _runtime()
    with plain_errors(runtime):
        reach_redis(runtime)
        _doctor(runtime)


def _doctor(runtime: Runtime) -> None:
    adapter = runtime.adapter
    report = adapter.check_credentials()
    if not report.ok:
        for problem in report.problems:  # what to do, when the adapter does not say it
            todo = "" if "check " in problem else "; check that the CRM is up, its API address and the credentials"
            click.echo(f"credentials: {problem}{todo}", err=True)
        raise SystemExit(1)
    click.echo(f"credentials: ok ({runtime.config.crm})")
    problems = check_online(runtime.mapping, adapter)
    for mismatch in problems:
        click.echo(f"mapping: {mismatch}", err=True)
    if not problems:
        click.echo("mapping: every field, option, pipeline and stage exists")
    # the conversation after the bot: the app's installation, its channel and account (or the timeline's pieces)
    inbox = runtime.inbox
    lines = inbox.check() if inbox is not None else [
        "inbox: none (the bot keeps the conversation; agents answer outside the CRM)"]
    lines += edits.check(runtime)  # people's edits of the records the relay wrote (completeness)
    for line in lines:
        click.echo(line, err="MISSING" in line)
    if problems or any("MISSING" in line for line in lines):
        raise SystemExit(1)
