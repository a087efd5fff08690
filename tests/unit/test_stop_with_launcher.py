"""A process started by a launcher (``chat2crm demo``) stops by itself when the launcher dies outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from connector.supervisor import LAUNCHER_ENV

ROOT = Path(__file__).resolve().parents[2]
CHILD = ("import signal, sys, time\n"
         "from connector.supervisor import stop_with_launcher\n"
         "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
         "stop_with_launcher()\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n")


def _launch(env_value: str | None) -> tuple[subprocess.Popen[str], int]:
    """A launcher that starts the child (with the variable naming the launcher, or ``env_value``) and waits."""
    launcher = ("import os, subprocess, sys, time\n"
                f"env = dict(os.environ)\n"
                f"value = {env_value!r}\n"
                f"env[{LAUNCHER_ENV!r}] = str(os.getpid()) if value is None else value\n"
                f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}], env=env, stdout=subprocess.PIPE, text=True)\n"
                "assert child.stdout.readline().strip() == 'ready'\n"
                "print(child.pid, flush=True)\n"
                "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_child_stops_once_its_launcher_is_killed() -> None:
    launcher, child = _launch(None)
    launcher.kill()
    launcher.wait()
    assert _gone_within(child, 5)


def test_a_process_not_started_by_the_named_launcher_keeps_running() -> None:
    """The variable copied into another shell names a process that is not the parent: nothing happens."""
    launcher, child = _launch("1")
    try:
        launcher.kill()
        launcher.wait()
        assert not _gone_within(child, 2.5)
    finally:
        os.kill(child, signal.SIGKILL)
