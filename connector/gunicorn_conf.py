"""gunicorn's settings for ``chat2crm serve`` (``--config python:connector.gunicorn_conf``).

What the command line of :func:`connector.cli.gunicorn_command` does not set: the limits and time-outs
that keep slow or hostile clients from holding the server, and the logger that makes gunicorn's access
and error logs safe to keep (:class:`SafeLogger`). The relay's own request-body limit and deadline are
the web app's (:mod:`connector.request_body`); what a reverse proxy in front adds is in
``docs/deploying.md``.

gunicorn reads every module-level name that is one of its settings: keep other names private.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from gunicorn.glogging import Logger

from connector.heap import trim_heap as _trim_heap
from connector.logs import ACCESS_LOG_FORMAT, access_line
from connector.supervisor import stop_with_launcher as _stop_with_launcher
from core import metrics as _metrics

#: seconds a worker may go silent before the arbiter replaces it
timeout = 30
# The app is loaded once, in the master, and its workers forked from it: they share its pages (about 50 MB
# each otherwise), and a configuration error stops the server before any worker starts. A code change takes
# a restart (``systemctl restart``), not a HUP.
preload_app = True
#: seconds an idle kept-alive connection is held open for its next request (in the poller, not a thread)
keepalive = 2
#: the request line (method, path, query) and one header at most this long, and at most this many headers
#: (half gunicorn's 100: no webhook or browser sends more than a few dozen); longer or more get 400
limit_request_line = 4094
limit_request_field_size = 8190
limit_request_fields = 50
#: gunicorn's access and error logs, written through :class:`SafeLogger`
logger_class = "connector.gunicorn_conf.SafeLogger"


class _SafeLines(logging.Filter):
    """Rewrites each gunicorn log record as one redacted line (no transcript token, no injected line).

    The relay's own access line (:data:`ACCESS_LOG_FORMAT`) is made of atoms :meth:`SafeLogger.atoms` made
    safe one by one: redacting the whole line let a number in the path run on into the status
    (``/+905321112233 404`` was masked as one phone number, and the line lost its status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == ACCESS_LOG_FORMAT:
            record.msg, record.args = record.getMessage(), None
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = str(record.msg)
        record.msg, record.args = access_line(message), None
        return True


class SafeLogger(Logger):
    """gunicorn's logger, with every access and error line redacted and its control characters escaped.

    The access log's path is the decoded one: ``/t/%0d%0a`` arrives as a carriage return and a line feed,
    and is written as ``\\r\\n``; a transcript link's token is written as ``[token]``.
    """

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """The values of the access line's atoms. For the relay's own line (:data:`ACCESS_LOG_FORMAT`) only
        its four, each already safe to write, not gunicorn's every header and environ variable and a formatted
        clock: those were most of a webhook's logging, which is a sixth of its answer's CPU."""
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        # the two atoms a client chooses, each redacted and on one line (the status and seconds are numbers)
        return {"m": access_line(str(environ.get("REQUEST_METHOD", "-"))),
                "U": access_line(str(environ.get("PATH_INFO", "-"))),
                "s": status.split(None, 1)[0] if isinstance(status, str) else status,
                "L": f"{request_time.seconds}.{request_time.microseconds:06d}"}

    def setup(self, cfg: Any) -> None:
        """Set gunicorn's loggers up, then install the filter on both (once, on a reload too)."""
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            if not any(isinstance(f, _SafeLines) for f in logger.filters):
                logger.addFilter(_SafeLines())


def post_fork(server: Any, worker: Any) -> None:
    """In each worker, once forked: the relay's counts added up in memory and written once a second, as the
    job processes do, so that no request makes a Redis call of its own for a metric (a vendor's duplicate,
    a refused body)."""
    runtime = _runtime(server)
    if runtime is not None:
        _metrics.batch_in_process(runtime.redis)


def worker_exit(server: Any, worker: Any) -> None:
    """In a worker on its way out: the counts not yet written, written."""
    _metrics.stop_batching()


def _runtime(server: Any) -> Any:
    """The relay's runtime behind the app gunicorn serves (None for another app)."""
    try:
        app = server.app.wsgi()
    except Exception:  # not loadable here: the worker loads it itself, and reports why it cannot
        return None
    return getattr(app, "extensions", {}).get("chat2crm")


def when_ready(server: Any) -> None:
    """In the master, once it listens: stop with the launcher that started it (``chat2crm demo``), if any; and,
    the app loaded, hand the C heap's free pages back and freeze the heap, so that the workers' garbage
    collections do not copy the pages they share with the master."""
    _stop_with_launcher()
    gc.collect()
    _trim_heap()
    gc.freeze()
