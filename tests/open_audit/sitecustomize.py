"""Records every file a Python process opens outside the places it may read.

The suite puts this folder on ``PYTHONPATH``, so every Python process a test starts (the demo, the
web app under gunicorn, workers, CLI commands) imports it at start-up, as Python imports any
``sitecustomize``; the suite's own process installs it from ``tests/conftest.py``. With
``CHAT2CRM_OPEN_AUDIT`` naming a log file, an audit hook (:func:`sys.addaudithook`) appends one
line per ``open``, ``os.listdir`` or ``os.scandir`` of a path outside the folders listed in
``CHAT2CRM_OPEN_AUDIT_ALLOW`` (the checkout, the Python installation and its virtual environment,
the temporary folder, and the system's own folders), and of any path beside the checkout (under
``CHAT2CRM_OPEN_AUDIT_DENY``, the checkout's parent, but not in the checkout), even where that
lies in an allowed folder such as the temporary one. The suite fails when the log is not empty:
the project must never read anything beside its own tree, such as a sibling folder of the
checkout that a newcomer's clone does not have.
"""

from __future__ import annotations

import os
import sys
import threading

_WATCHED = frozenset({"open", "os.listdir", "os.scandir"})


def install(log_path: str, allowed: list[str], home: str, beside: str) -> None:
    """Install the hook in this process: violations are appended to ``log_path``.

    Args:
        log_path: the file violations are appended to.
        allowed: folders that may be read.
        home: the checkout, always allowed.
        beside: the checkout's parent (or ``""``): nothing under it but ``home`` may be read.
    """
    roots = tuple(os.path.join(os.path.realpath(a), "") for a in allowed if a)
    exact = frozenset(os.path.realpath(a) for a in [*allowed, home] if a)
    home_root = os.path.join(os.path.realpath(home), "")
    beside_root = os.path.join(os.path.realpath(beside), "") if beside else None
    busy = threading.local()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event not in _WATCHED or getattr(busy, "on", False) or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):  # a file descriptor, or None (os.listdir of the current folder)
            return
        busy.on = True
        try:
            full = os.path.realpath(os.path.abspath(path))
            if (full + os.sep).startswith(home_root) or (
                    (full in exact or full.startswith(roots))
                    and not (beside_root and (full + os.sep).startswith(beside_root))):
                return
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {event} {full} ({' '.join(sys.argv[:3])})\n")
        except Exception:  # noqa: S110 - an audit hook must never break the process it watches
            pass
        finally:
            busy.on = False

    sys.addaudithook(hook)


if os.environ.get("CHAT2CRM_OPEN_AUDIT"):
    install(os.environ["CHAT2CRM_OPEN_AUDIT"], os.environ.get("CHAT2CRM_OPEN_AUDIT_ALLOW", "").split(os.pathsep),
            os.environ.get("CHAT2CRM_OPEN_AUDIT_HOME", ""), os.environ.get("CHAT2CRM_OPEN_AUDIT_DENY", ""))
