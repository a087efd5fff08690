"""The WSGI entry point of the demo's web process (``demo.wsgi:app``): the relay's web app with the demo
page added.

The relay's own app (:func:`connector.app.create_app`) knows nothing of the demo; this module builds it
exactly as :mod:`connector.wsgi` does and registers :data:`demo.web.blueprint` after the relay's own
blueprints, so every route of the relay answers as in production.
"""

from __future__ import annotations

import sys

from flask import Flask

from connector.app import create_app
from connector.logs import configure_logging
from connector.runtime import WEB_REDIS_TIMEOUT_SECONDS, Runtime
from core.errors import ConfigurationError
from core.settings import Settings, load_settings
from demo import channels, conversions, forms, web


def create_demo_app(settings: Settings) -> Flask:
    """The relay's web app for ``settings``, serving the demo page when the demo's emulators are set."""
    app = create_app(runtime=Runtime(settings, redis_timeout=WEB_REDIS_TIMEOUT_SECONDS))
    if settings.chat2crm_demo_emulators:
        app.register_blueprint(web.blueprint)
        app.register_blueprint(forms.blueprint)  # the Meta lead form the page can submit
        app.register_blueprint(conversions.blueprint)  # "Move to <stage>" and "Sent to Meta"
        app.register_blueprint(channels.blueprint)  # the phone on Twilio, Messenger, Instagram and LINE
    return app


try:
    _settings = load_settings()
    configure_logging(_settings.log_format, _settings.log_level)
    app = create_demo_app(_settings)
except ConfigurationError as exc:  # refuse to start, with every problem listed
    sys.stderr.write(f"chat2crm: {exc}\n")
    sys.exit(1)
