"""The demo's web process: what ``chat2crm serve`` does, serving :mod:`demo.wsgi` instead of the relay's
own WSGI entry.

``chat2crm demo`` starts it as ``python -m demo.serve --port PORT``. Like ``chat2crm serve`` it configures
logging, validates every configuration file and reaches Redis before anything listens (a problem is printed
as one list, exit 1), then replaces itself with gunicorn run exactly as the relay runs it
(:func:`connector.cli.gunicorn_command`), so the demo's web process is the production one plus the page.
"""

from __future__ import annotations

import os
import sys

import click

from connector.cli import gunicorn_command
from connector.logs import configure_logging
from connector.runtime import Runtime
from core.errors import ConfigurationError
from core.settings import load_settings

#: the app the demo's gunicorn serves
APP = "demo.wsgi:app"


@click.command("demo-serve")
@click.option("--port", type=int, default=None, help="Port to listen on (default: $PORT, else 8000).")
def main(port: int | None) -> None:
    """Validate the configuration, then serve the relay's web app with the demo page under gunicorn."""
    try:
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        runtime = Runtime(settings)
        problems = runtime.check()
        if problems:
            raise ConfigurationError(problems)
        runtime.redis.ping()
    except ConfigurationError as exc:  # as the `chat2crm` command prints it: every problem, no traceback
        click.echo(f"chat2crm: {exc}", err=True)
        sys.exit(1)
    # replace this process with gunicorn, as `chat2crm serve` does
    os.execvp(sys.executable, gunicorn_command(APP, port or settings.port, settings.web_concurrency))  # noqa: S606


if __name__ == "__main__":  # pragma: no cover
    main()
