"""The demo's child processes, and what its terminal shows of their output.

:class:`Supervisor` starts the web app, the worker (each in its own process group) and stops them all,
whatever happens; their output reaches the terminal line by line through a :data:`Shown` renderer:
:func:`access_line` drops the page's polling from gunicorn's access log, :class:`RelayLog` turns the relay's
JSON log records into one readable line each and keeps the problems among them in Redis for the demo
page's Problems list.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import click
import redis

from connector.supervisor import LAUNCHER_ENV
from demo.web import PROBLEMS_KEPT, PROBLEMS_KEY, is_duplicate, is_problem

#: the demo page's own requests (it polls every second) and health checks: not conversation events
_PAGE_OR_HEALTH = re.compile(r"^[A-Z]+ (/|/demo(/\S*)?|/healthz|/readyz|/favicon\.ico) \d{3} ")
#: webhooks the relay accepted: the worker's "message received" line reports each message better
_ACCEPTED_WEBHOOK = re.compile(r"^POST /webhooks/\S+ 2\d\d ")


#: a line of output in, the line to show out (None: show nothing)
Shown = Callable[[str], str | None]


def access_line(line: str) -> str | None:
    """A line of the web process's standard output (gunicorn's access log) as the demo's terminal shows it:
    not at all for the page's polling, health checks and accepted webhooks."""
    return None if _PAGE_OR_HEALTH.match(line) or _ACCEPTED_WEBHOOK.match(line) else line


#: record keys the terminal line leaves out (rq's own keys repeat the job; details stay in `failed show`)
_NOT_IN_LINE = frozenset({"ts", "level", "logger", "msg", "exc", "details", "func", "arguments", "kwargs",
                          "job_id", "queue"})


def event_line(record: dict[str, Any]) -> str:
    """One readable line for a relay log record (JSON, already redacted by the relay): time, level when it
    is not INFO, message, then its fields; a traceback is cut to its last line."""
    try:
        when = datetime.fromisoformat(str(record.get("ts"))).astimezone().strftime("%H:%M:%S")
    except ValueError:
        when = time.strftime("%H:%M:%S")
    level = str(record.get("level", "INFO"))
    message = str(record.get("msg", "")).strip().splitlines()
    line = f"{when} {'' if level == 'INFO' else level + ' '} {message[0] if message else ''}"
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in _NOT_IN_LINE)
    if fields:
        line += f"  {fields}"
    exc = str(record.get("exc") or "").strip().splitlines()
    if exc:
        line += f"  ({exc[-1]})"
    return line + "\n"


class RelayLog:
    """What the demo shows of the relay's own log (its web and worker log JSON lines for this): one readable
    line per record in the terminal, and the problems among them (warnings, errors, retries) kept in Redis,
    where the demo page's Problems list reads them."""

    def __init__(self, redis_url: str) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(PROBLEMS_KEY)

    def __call__(self, line: str) -> str | None:
        try:
            record = json.loads(line)
        except ValueError:
            return line  # gunicorn's own lines; anything printed before logging was set up
        if not isinstance(record, dict) or "msg" not in record:
            return line
        if is_duplicate(record):
            return None
        if is_problem(record):
            kept = {k: v for k, v in record.items() if k not in ("exc", "details", "arguments", "kwargs")}
            # the demo goes on when its Redis is gone (it is stopping)
            with contextlib.suppress(redis.RedisError):
                pipe = self.redis.pipeline(transaction=False)
                pipe.lpush(PROBLEMS_KEY, json.dumps(kept, ensure_ascii=False, default=str))
                pipe.ltrim(PROBLEMS_KEY, 0, PROBLEMS_KEPT - 1)
                pipe.expire(PROBLEMS_KEY, 86400)
                pipe.execute()
        return event_line(record)


class Supervisor:
    """Starts child processes in their own process groups and stops them all, whatever happens."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[Any] = []
        self.pumps: list[threading.Thread] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], *, stdout: Shown | None = None,
              stderr: Shown | None = None) -> subprocess.Popen[bytes]:
        """Start ``args``; its standard output and error, when given a :data:`Shown`, go through it (to ours)."""
        # each child stops by itself if this process dies without stopping it (SIGKILL, a closed terminal)
        env = {**env, LAUNCHER_ENV: str(os.getpid())}
        proc = subprocess.Popen(args, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else None, stderr=subprocess.PIPE if stderr else None)
        self.children.append((name, proc))
        for stream, shown in ((proc.stdout, stdout), (proc.stderr, stderr)):
            if stream is not None and shown is not None:
                pump = threading.Thread(target=_pump, args=(stream, shown), name=f"demo-{name}-output", daemon=True)
                pump.start()
                self.pumps.append(pump)
        click.echo(f"    {name:<10} pid {proc.pid}")
        return proc

    def dead_child(self) -> str | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return name
        return None

    def stop(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.children.clear()
        for pump in self.pumps:
            pump.join(timeout=5)
        self.pumps.clear()
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.cleanups.clear()


_output_lock = threading.Lock()


def _pump(stream: IO[bytes], shown: Shown) -> None:
    """Copy a child's output to ours, line by line, as ``shown`` renders it."""
    for raw in iter(stream.readline, b""):
        line = shown(raw.decode("utf-8", "replace"))
        if line is None:
            continue
        # a closed terminal must not stop the draining: a child blocked on a full pipe never exits
        with _output_lock, contextlib.suppress(OSError, ValueError):
            sys.stdout.write(line)
            sys.stdout.flush()
    stream.close()
