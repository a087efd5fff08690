"""The ``chat2crm`` command.

The core commands live here (``serve``, ``worker``, ``check``); every module in
:mod:`connector.commands` that defines ``command`` (a click command or group) is added too, so a
capability brings its own commands, and so is every command another package registers in the entry
point group ``chat2crm.commands`` (``chat2crm demo`` comes from the ``demo`` package this way: the relay
never imports it). Configuration errors are printed as one list and exit 1,
never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from importlib.metadata import entry_points
from typing import Any

import click

from connector import __version__, commands
from connector.logs import configure_logging
from connector.runtime import Runtime
from core.errors import ConfigurationError
from core.settings import load_settings

#: the entry point group through which other packages add commands to ``chat2crm``
COMMANDS_GROUP = "chat2crm.commands"


class Chat2CrmGroup(click.Group):
    """A click group that turns ConfigurationError into a clean message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            click.echo(f"chat2crm: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=Chat2CrmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chat2crm")
def main() -> None:
    """chat2crm: relay a clinic's WhatsApp and Telegram conversations into the CRM it already uses."""


def _runtime() -> Runtime:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    return Runtime(settings)


def _require_valid(runtime: Any) -> None:
    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    runtime.redis.ping()


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: $PORT, else 8000).")
@click.option("--workers", type=int, default=None, help="gunicorn processes (default: $WEB_CONCURRENCY, else 2).")
def serve(port: int | None, workers: int | None) -> None:
    """Run the web app (webhooks, click links, transcripts, health, metrics) under gunicorn."""
    runtime = _runtime()
    _require_valid(runtime)
    port = port or runtime.settings.port
    workers = workers or runtime.settings.web_concurrency
    # replace this process with gunicorn, as Procfile platforms expect
    os.execvp(sys.executable, gunicorn_command("connector.wsgi:app", port, workers))  # noqa: S606


def gunicorn_command(app: str, port: int, workers: int) -> list[str]:
    """The command ``chat2crm serve`` runs: gunicorn with the relay's settings, serving ``app``.

    Benchmarks serve their baseline endpoint with exactly this command, so the two compare like with like.
    """
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"0.0.0.0:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-",
        "--access-logformat", '%(m)s %(U)s %(s)s %(L)ss', "--graceful-timeout", "10",
        "--config", "python:connector.gunicorn_conf",  # limits, time-outs, the redacting logger
        # gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which
        # every server on a host would share; the relay does not use it (signals manage the server)
        "--no-control-socket",
        app,
    ]


@main.command()
@click.option("--burst", is_flag=True, help="Process what is queued, then exit.")
@click.option("--name", default=None, help="Name prefix of the job processes (default: rq picks names).")
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="Job processes to run (default: the WORKER_PROCESSES setting).")
def worker(burst: bool, name: str | None, processes: int | None) -> None:
    """Run job processes (with rq's scheduler, so delayed retries run) on the relay's queues, under a
    supervisor that replaces one that dies, hangs or grows too large; with --burst, run what is queued
    in this process and exit."""
    # imported here: the web and the other commands never load the bot, the adapters or the date parser
    from connector.worker import run_worker

    runtime = _runtime()
    _require_valid(runtime)
    run_worker(runtime, burst=burst, name=name, processes=processes)


@main.command()
@click.argument("crm")
def listen(crm: str) -> None:
    """Keep the CRM's event stream open and take agents' replies from it (Salesforce: its Pub/Sub API).
    One per deployment: a second one waits as a standby and takes over if the first stops."""
    from connector.listen import listen as run_listener

    runtime = _runtime()
    _require_valid(runtime)
    raise SystemExit(run_listener(runtime, crm))


@main.command()
@click.option("--online", is_flag=True, help="Also check the mapping against the live CRM.")
def check(online: bool) -> None:
    """Validate every configuration file, resolve every cross-reference between them and render every template
    against sample leads; print each problem once, as file:line: path: message."""
    runtime = _runtime()
    problems = runtime.check()
    if problems:
        raise ConfigurationError(problems)
    config = runtime.config
    click.echo(f"configuration ok: {config.crm} mapping, {len(runtime.flows)} flow(s), "
               f"{len(runtime.campaigns.campaigns)} campaign(s)")
    if online:
        from connector.checks import plain_errors, reach_redis
        from connector.mapping import check_online

        with plain_errors(runtime):  # Redis or the CRM out of reach: one line saying what to do, exit 1
            reach_redis(runtime)
            online_problems = check_online(runtime.mapping, runtime.adapter)
        if online_problems:
            raise ConfigurationError(online_problems)
        click.echo(f"{config.crm}: the mapping matches the live CRM")


def _discover() -> None:
    """Add the ``command`` of every module of :mod:`connector.commands`, then every click command registered
    in the entry point group :data:`COMMANDS_GROUP` (by name, so the help lists them in a stable order)."""
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"connector.commands.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            main.add_command(command)
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            command = entry.load()
        except ImportError as exc:  # a plug-in that is registered but not installed must not stop the others
            print(f"chat2crm: command {entry.name!r} not available ({exc})", file=sys.stderr)
            continue
        if isinstance(command, click.Command):
            main.add_command(command, entry.name)


_discover()

if __name__ == "__main__":  # pragma: no cover
    main()
