"""Every command shown in the docs runs, so the docs do not rot.

A command is a line starting with ``$ `` inside a fenced ``console`` block of README.md or any
file under docs/. Each runs with bash in a fresh folder, against the suite's real Redis, the
shipped configuration and the CRM emulator, and must exit 0. Commands that serve until stopped
(``serve``, ``worker``, ``demo``) must come up; they are then stopped. ``./scripts/test`` is the
command running this suite and is not run again from inside it.

``docs/getting-started.md`` is a walk a newcomer takes: its commands run in order, as one script,
in a new shell that has nothing set up (no virtual environment on ``PATH``, no chat2crm variables,
no Redis), from a folder laid out like a fresh checkout after ``./scripts/demo`` made ``.venv``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_SECRETS
from tests.paths import REPO as PROJECT_ROOT
from tests.paths import SHIPPED_CONFIG

pytestmark = pytest.mark.weight(75)  # seconds, about: see pytest_collection_modifyitems

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^[ ]*```console\n(.*?)^[ ]*```", re.S | re.M)  # also inside list items
LONG_RUNNING = ("chat2crm serve", "chat2crm worker", "chat2crm demo", "./scripts/demo")
NOT_FROM_INSIDE = ("./scripts/test",)


def doc_commands() -> list[tuple[str, int, str]]:
    """(file, line, command) for every ``$ `` line in a console block."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in _BLOCK.finditer(text):
            start_line = text[: block.start()].count("\n") + 2
            for offset, line in enumerate(block.group(1).splitlines()):
                if line.lstrip().startswith("$ "):
                    found.append((str(path.relative_to(PROJECT_ROOT)), start_line + offset, line.lstrip()[2:].strip()))
    return found


COMMANDS = doc_commands()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the whole walk through the docs: later commands use what earlier ones wrote."""
    return tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="module")
def hubspot_url() -> Iterator[str]:
    """A HubSpot emulator, so CRM commands shown in the docs have a CRM to talk to."""
    from emulators.hubspot import create_app as create_hubspot
    from emulators.server import ServedApp

    served = ServedApp(create_hubspot(TEST_SECRETS["hubspot_access_token"])).start()
    try:
        yield served.url
    finally:
        served.stop()


#: docs about one CRM run their commands with that CRM configured (the others run on HubSpot)
CRM_DOCS = {"docs/crm-salesforce.md": "salesforce", "docs/crm-pipedrive.md": "pipedrive"}


@pytest.fixture(scope="module")
def crm_envs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """For each CRM with a doc of its own: its emulator, and the environment that selects it."""
    from demo.command import demo_config
    from demo.stack import start_crm

    directory = tmp_path_factory.mktemp("crm-docs")
    credentials = {k.upper(): str(v) for k, v in TEST_SECRETS.items()}
    running = []
    envs: dict[str, dict[str, str]] = {}
    try:
        for crm in sorted(set(CRM_DOCS.values())):
            started = start_crm(crm, credentials, directory=directory / crm)
            running.append(started)
            (directory / crm).mkdir(exist_ok=True)
            envs[crm] = {**started.environment, "CHAT2CRM_CONFIG": str(demo_config(crm, directory / crm))}
        yield envs
    finally:
        for started in running:
            started.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(redis_url: str, hubspot_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({k.upper(): v for k, v in TEST_SECRETS.items()})
    env.update({
        "REDIS_URL": redis_url, "CHAT2CRM_CONFIG": str(SHIPPED_CONFIG),
        "HUBSPOT_API_BASE": hubspot_url, "PORT": str(port), "LOG_FORMAT": "text",
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    })
    return env


#: docs whose commands run in order in one new shell, as a newcomer types them, and what they must print
WALKTHROUGHS = {"docs/getting-started.md": ("Usage: chat2crm", "configuration ok: hubspot mapping",
                                            "Görüşmenin konusu nedir?", '"reference": "#1001"')}


def test_docs_show_commands() -> None:
    assert len(COMMANDS) >= 5, COMMANDS


@pytest.mark.parametrize("doc", WALKTHROUGHS)
def test_walkthrough_in_a_fresh_shell(doc: str, tmp_path: Path) -> None:
    """The doc's commands, in order, in one bash with a newcomer's environment, from a checkout-like folder."""
    steps = [cmd for d, _line, cmd in COMMANDS if d == doc and not cmd.startswith((*LONG_RUNNING, *NOT_FROM_INSIDE))]
    assert steps, f"{doc} shows no commands"
    checkout = tmp_path / "chat2crm"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.prefix))  # what ./scripts/demo or ./scripts/test made
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {"PATH": path, "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8", "TERM": "dumb",
           **{k: v for k, v in os.environ.items() if k.startswith(("CHAT2CRM_OPEN_AUDIT", "PYTHONPATH"))}}
    script = "set -euo pipefail\n" + "".join(f"echo '$ {cmd}'\n{cmd}\n" for cmd in steps)
    proc = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{doc}: the walk stopped (last command echoed):\n{proc.stdout}\n{proc.stderr}"
    missing = [text for text in WALKTHROUGHS[doc] if text not in proc.stdout]
    assert not missing, f"{doc}: the walk did not show {missing}:\n{proc.stdout}"


@pytest.mark.parametrize(("doc", "line", "cmd"), [c for c in COMMANDS if c[0] not in WALKTHROUGHS or
                                                  c[2].startswith(LONG_RUNNING)],
                         ids=[f"{d}:{n}" for d, n, c in COMMANDS if d not in WALKTHROUGHS or c.startswith(LONG_RUNNING)])
def test_doc_command_runs(doc: str, line: int, cmd: str, redis_url: str, hubspot_url: str, workdir: Path,
                          crm_envs: dict[str, dict[str, str]]) -> None:
    if cmd.startswith(NOT_FROM_INSIDE):
        pytest.skip(f"{cmd} is the command that runs this suite")
    port = _free_port()
    env = _env(redis_url, hubspot_url, port)
    if doc in CRM_DOCS:
        env.update(crm_envs[CRM_DOCS[doc]])
    # Commands run from a copy-free working folder; relative paths in docs refer to the checkout.
    cwd = PROJECT_ROOT if cmd.startswith("./") else workdir
    if cmd.startswith(LONG_RUNNING):
        _check_long_running(cmd, env, cwd, port)
        return
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{doc}:{line}: `{cmd}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def _check_long_running(cmd: str, env: dict[str, str], cwd: Path, port: int) -> None:
    if "demo" in cmd:
        env = {k: v for k, v in env.items() if k != "REDIS_URL"}
        cmd = f"{cmd} --port {port}" if "--port" not in cmd else cmd
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            if "worker" in cmd:
                time.sleep(3)
                up = proc.poll() is None
                break
            try:
                up = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                up = False
            if up:
                break
            time.sleep(0.3)
        assert up, f"`{cmd}` did not come up"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT if "demo" in cmd else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
