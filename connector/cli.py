"""The ``chat2crm`` command.

The core commands live here (``serve``, ``worker``, ``check``); every module in
:mod:`connector.commands` that defines ``command`` (a click command or group) is added too, so a
capability brings its own commands, and so is every command another package registers in the entry
point group ``chat2crm.commands`` (``chat2crm demo`` comes from the ``demo`` package this way: the relay
never imports it). Those are found by name and imported only when named (or for ``--help``): a command
pays for its own imports, not for every other command's, the relay's runtime included. Configuration
errors are printed as one list and exit 1, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import click

from connector import __version__, commands
from core.errors import ConfigurationError

if TYPE_CHECKING:
    from connector.runtime import Runtime

#: the entry point group through which other packages add commands to ``chat2crm``
COMMANDS_GROUP = "chat2crm.commands"


class Chat2CrmGroup(click.Group):
    """A click group that turns ConfigurationError into a clean message and exit code 1, and loads the
    commands of :mod:`connector.commands` and of the entry points when they are named (:func:`discovered`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *discovered()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in discovered():
            found = discovered()[cmd_name]()
            if found is not None:
                self.add_command(found, cmd_name)
        return found

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
    # imported here: a command that needs no runtime (keygen, init, --help) does not pay for it
    from connector.logs import configure_logging
    from connector.runtime import Runtime
    from core.settings import load_settings

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
    from connector.logs import ACCESS_LOG_FORMAT

    return [
        sys.executable, "-m", "gunicorn", "--bind", f"0.0.0.0:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-",
        "--access-logformat", ACCESS_LOG_FORMAT, "--graceful-timeout", "10",
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
    from connector.supervisor import stop_with_launcher

    stop_with_launcher()  # started by `chat2crm demo`: not outliving it
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


@cache
def discovered() -> dict[str, Callable[[], click.Command | None]]:
    """The commands found without importing them, by name: each module of :mod:`connector.commands` (a
    module is named as its command), then each entry point of :data:`COMMANDS_GROUP`. Each maps to what
    loads it: the module's ``command``, or the entry point's object (None when it is not a click
    command, or, for an entry point, when its package is not installed: said on stderr)."""
    found: dict[str, Callable[[], click.Command | None]] = {}
    for info in pkgutil.iter_modules(commands.__path__):
        found[info.name] = _module_command(f"connector.commands.{info.name}")
    for entry in entry_points(group=COMMANDS_GROUP):
        found.setdefault(entry.name, _entry_command(entry))
    return found


def _module_command(module_name: str) -> Callable[[], click.Command | None]:
    def load() -> click.Command | None:
        command = getattr(importlib.import_module(module_name), "command", None)
        return command if isinstance(command, click.Command) else None
    return load


def _entry_command(entry: Any) -> Callable[[], click.Command | None]:
    def load() -> click.Command | None:
        try:
            command = entry.load()
        except ImportError as exc:  # a plug-in that is registered but not installed must not stop the others
            print(f"chat2crm: command {entry.name!r} not available ({exc})", file=sys.stderr)
            return None
        return command if isinstance(command, click.Command) else None
    return load


if __name__ == "__main__":  # pragma: no cover
    main()
