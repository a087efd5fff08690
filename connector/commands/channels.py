"""``chat2crm channels register NAME [--url URL]``: point a channel's webhook at the relay from the command line.

Some providers set their webhook by an API call rather than in a console: 360dialog's ``POST
/v1/configs/webhook`` (:meth:`connector.channels.dialog360.Dialog360Plugin.register_webhook`), which also sets
the token header that proves each webhook. Any channel plug-in with a ``register_webhook(ctx, url)`` method
can be registered this way; the URL defaults to ``PUBLIC_BASE_URL`` + ``/webhooks/<name>``. A failure (the
channel unknown or unable to register, a setting missing, the provider refusing or out of reach) ends the
command with one line saying what to fix, and exit status 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import click
import requests

from connector.channels import plugin as plugins
from connector.logs import configure_logging
from core.errors import ConfigurationError, SyncError
from core.settings import load_settings


@click.group("channels")
def command() -> None:
    """Set up the messaging channels' side of the relay."""


@command.command("register")
@click.argument("name")
@click.option("--url", default=None, help="The webhook URL to register (default: $PUBLIC_BASE_URL/webhooks/NAME).")
def register(name: str, url: str | None) -> None:
    """Register the relay's webhook with channel NAME's provider (360dialog: dialog360)."""
    configure_logging("text", "WARNING")
    try:
        settings = load_settings()
        plugin = plugins.load(name)
        method: Callable[[plugins.ChannelContext, str], Any] | None = getattr(plugin, "register_webhook", None)
        if method is None:
            raise ValueError(f"the {name} channel's webhook is set in its provider's console, not by chat2crm")
        target = url or f"{settings.public_base_url.rstrip('/')}/webhooks/{name}"
        if not target.startswith(("https://", "http://")):
            raise ValueError(f"{target!r} is not a URL: set PUBLIC_BASE_URL or give --url")
        method(plugins.context(plugin, settings), target)
    except ConfigurationError as exc:
        _fail(name, "; ".join(str(problem) for problem in exc.problems))
    except (SyncError, ValueError) as exc:
        _fail(name, str(exc))
    except requests.RequestException as exc:  # raised outside the channel's own HTTP chokepoint
        _fail(name, f"the provider could not be reached ({type(exc).__name__})")
    click.echo(f"{name}: webhook registered at {target}")


def _fail(name: str, reason: str) -> NoReturn:
    """One line on standard error, exit status 1."""
    click.echo(f"chat2crm: the {name} webhook was not registered: {reason}", err=True)
    raise SystemExit(1)
