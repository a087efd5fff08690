"""Two small real HTTP servers the channel media tests use beside the emulators.

- :class:`Receiver` stands where the relay's webhook endpoint stands: it keeps every webhook an emulator
  posts (raw bytes and headers) and answers 200, so a test reads exactly what the channel sent.
- :class:`FileHost` serves files at URLs (an agent's attachments as a CRM would link them), counting
  downloads, or streaming without end to try a size limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from emulators.server import ServedApp


@dataclass
class Webhook:
    """One webhook as it arrived."""

    raw: bytes
    headers: dict[str, str]

    @property
    def body(self) -> Any:
        """The JSON body."""
        return json.loads(self.raw)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives (``url`` once started)."""

    received: list[Webhook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        app = Flask("webhook-receiver")

        @app.post("/hook")
        def hook() -> tuple[str, int]:
            with self.lock:
                self.received.append(Webhook(request.get_data(), dict(request.headers)))
            return "", 200

        self.served = ServedApp(app)

    def __enter__(self) -> Receiver:
        self.served.start()
        self.url = f"{self.served.url}/hook"
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.stop()


@dataclass
class FileHost:
    """Files served at ``{url}/files/<name>`` with their type; ``{url}/endless`` never stops."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = Flask("file-host")

        @app.get("/files/<name>")
        def file(name: str) -> Response | tuple[str, int]:
            self.downloads.append(name)
            if name not in self.files:
                return "gone", 404
            content, mime = self.files[name]
            return Response(content, mimetype=mime)

        @app.get("/endless")
        def endless() -> Response:
            def chunks() -> Iterator[bytes]:
                for _ in range(10_000):
                    yield b"\0" * 65536

            return Response(chunks(), mimetype="application/octet-stream")

        self.served = ServedApp(app)

    def add(self, name: str, content: bytes, mime: str) -> str:
        """Serve ``content`` as ``name``; its URL."""
        self.files[name] = (content, mime)
        return f"{self.url}/files/{name}"

    def __enter__(self) -> FileHost:
        self.served.start()
        self.url = self.served.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.stop()
