"""The WSGI entry point gunicorn serves (``connector.wsgi:app``)."""

from __future__ import annotations

import sys

from connector.logs import configure_logging
from core.errors import ConfigurationError
from core.settings import load_settings

try:
    _settings = load_settings()
    configure_logging(_settings.log_format, _settings.log_level)
    from connector.app import create_app
    from connector.runtime import WEB_REDIS_TIMEOUT_SECONDS, Runtime

    app = create_app(runtime=Runtime(_settings, redis_timeout=WEB_REDIS_TIMEOUT_SECONDS))
except ConfigurationError as exc:  # refuse to start, with every problem listed
    sys.stderr.write(f"chat2crm: {exc}\n")
    sys.exit(1)
