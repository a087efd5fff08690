"""Run an emulator (a WSGI app) on 127.0.0.1 in a background thread, over real HTTP(S)."""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """Emulators record their calls themselves; one access-log line per call is noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ServedApp:
    """A WSGI app served on 127.0.0.1 on a free port until :meth:`stop`.

    Args:
        app: the WSGI application.
        ssl_context: serve HTTPS with this context (Salesforce's client insists on https).
        port: a fixed port; 0 (the default) picks a free one.
    """

    def __init__(self, app: Any, *, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, app, threaded=True, ssl_context=ssl_context, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        # a short poll: shutdown() waits for the loop's next turn (werkzeug's default is half a second)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"emulator:{self.port}", daemon=True)

    def start(self) -> ServedApp:
        """Start serving; returns self (``url`` is ready)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
