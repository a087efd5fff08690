"""The web app: a Flask app factory, as ``chat2crm serve`` runs it under gunicorn.

Requests only verify, de-duplicate, enqueue and answer; every piece of bot and CRM work runs in
the rq worker (:mod:`connector.worker`). The demo page is not part of it: the demo serves this app
with its own blueprint added (:mod:`demo.wsgi`). Every request's body is read in full, under
``MAX_BODY_BYTES`` and ``BODY_TIMEOUT_SECONDS``, before any route sees it (:mod:`connector.request_body`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify

from connector import crm_web, health, metrics_web, panel_web, transcripts, webhooks
from connector.attribution import links
from connector.channels.plugin import enabled_names
from connector.leadforms import webhook as leadforms
from connector.logs import access_line
from connector.request_body import BodyLimit
from connector.runtime import Runtime
from core import metrics
from core.errors import ConfigurationError

log = logging.getLogger("chat2crm.web")


def create_app(test_config: dict[str, Any] | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the web app.

    Args:
        test_config: Flask settings to override (tests).
        runtime: the process's runtime; made from the environment when omitted.

    Raises:
        ConfigurationError: settings are missing or invalid (the CLI prints every problem).
    """
    app = Flask(__name__)
    app.config.update(test_config or {})
    runtime = runtime or Runtime()
    app.extensions["chat2crm"] = runtime
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    # the channels' webhooks are answered before Flask (webhooks.Door), their bodies read whole before that
    app.wsgi_app = BodyLimit(webhooks.Door(app.wsgi_app, runtime), max_bytes=runtime.settings.max_body_bytes,  # type: ignore[method-assign]
                             timeout=runtime.settings.body_timeout_seconds,
                             on_refused=lambda environ, status, reason: _refused(runtime, environ, status, reason))

    app.register_blueprint(health.blueprint)
    for module in _blueprint_modules():
        app.register_blueprint(module.blueprint)
    webhooks.register_routes(app, runtime)  # the enabled channels' extra routes (WhatsApp's handshake...)
    return app


def _refused(runtime: Runtime, environ: dict[str, Any], status: int, reason: str) -> None:
    """Log (without the query, redacted) and count a body refused before any route saw it."""
    path = str(environ.get("PATH_INFO", ""))
    parts = path.strip("/").split("/")
    # the webhooks' own metric, by the channel or CRM the path names
    channels = enabled_names(runtime.settings)
    webhook = ((len(parts) == 2 and parts[0] == "webhooks" and parts[1] in channels)
               or (len(parts) == 3 and parts[0] == "crm" and parts[2] == "webhooks" and parts[1] == runtime.config.crm))
    if webhook:
        channel = parts[1]
        metrics.incr(runtime.redis, "webhooks_rejected", channel=channel, reason=str(status))
    log.warning("request body refused", extra={"path": access_line(path[:200]), "status": status, "reason": reason})


def _blueprint_modules() -> list[Any]:
    """The modules whose ``blueprint`` the app serves, in registration order."""
    return [leadforms, crm_web, links, metrics_web, transcripts, panel_web]


def runtime_of(app: Flask | None = None) -> Runtime:
    """The runtime of ``app`` (or of the current app)."""
    runtime: Runtime = (app or current_app).extensions["chat2crm"]
    return runtime


__all__ = ["ConfigurationError", "create_app", "jsonify", "runtime_of"]
