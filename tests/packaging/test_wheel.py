"""chat2crm installs like any Python service: the built wheel, in a new virtual environment, outside the
checkout, with only the runtime dependencies (pinned by requirements.lock).

From an empty folder the installed ``chat2crm`` scaffolds a configuration (``init``), validates it
(``check``), chats with a flow (``simulate``), serves (``serve``) and works a queue (``worker``), all
from package data: nothing is read from the checkout, and the default configuration path is the
current folder, never site-packages. ``demo`` without the ``demo`` extra says what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.weight(70)]


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=stdin,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: no virtualenv, no chat2crm settings, no checkout on the path."""
    drop = ("VIRTUAL_ENV", "CHAT2CRM_CONFIG", "REDIS_URL", "PYTEST", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # keep only the suite's open audit on PYTHONPATH (it records opens outside the allowed places)
    env["PYTHONPATH"] = str(REPO / "tests" / "open_audit")
    env.update(extra)
    return env


#: what a build or a run leaves in the checkout, which a newcomer's clone does not have
_NOT_SOURCES = (".git", ".venv", "build", "dist", "artefacts", ".run", "__pycache__", "*.egg-info", ".mypy_cache",
                ".ruff_cache", ".hypothesis", ".pytest_cache", "tests", "bench")


def _clean_sources(root: Path) -> Path:
    """A copy of the checkout without build or run leftovers, to build the wheel from: setuptools copies
    every module it ever built into ``build/lib`` and ships them all, so a wheel built in place would also
    hold modules long moved or removed."""
    sources = root / "sources"
    shutil.copytree(REPO, sources, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new venv with the built wheel installed (runtime dependencies only); yields its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    pip_env = {k: v for k, v in _clean_env().items() if not k.startswith(("PYTHONPATH", "CHAT2CRM_OPEN_AUDIT"))}
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist),
          str(_clean_sources(root))], cwd=root, env=pip_env)
    wheels = sorted(dist.glob("chat2crm-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    # The suite's pip installs into the new environment (``--python``): a pip of its own adds nothing to what is
    # tested. Byte-compiling every dependency ahead is most of an install's time; Python compiles on import.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=pip_env)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-compile",
          "-c", str(REPO / "requirements.lock"), str(wheels[0])], cwd=root, env=pip_env)
    yield venv / "bin"


def test_wheel_contents(installed: Path) -> None:
    wheel = next((installed.parent.parent / "dist").glob("chat2crm-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("connector/resources/chat2crm.yaml", "connector/resources/campaigns.yaml",
                    "connector/resources/mappings/hubspot.yaml", "connector/resources/mappings/salesforce-case.yaml",
                    "connector/resources/bot_flows/meeting_request.yaml", "connector/resources/schemas/flow.schema.json",
                    "connector/templates/transcript.html", "connector/static/chat2crm-links.js",
                    "demo/command.py", "demo/wsgi.py", "demo/assets/demo.js", "demo/assets/demo.html",
                    "demo/assets/demo.css", "emulators/vendor_specs/SOURCES.md",
                    "emulators/vendor_specs/whatsapp/LICENSE", "emulators/vendor_specs/telegram/api.json",
                    "emulators/vendor_specs/pipedrive/openapi-v2.yaml"):
        assert shipped in names, shipped
    assert not [n for n in names if n.startswith("tests/")]
    # the relay's package holds no demo: the demo's command comes from the `demo` package's entry point
    assert not [n for n in names if n.startswith(("connector/demo", "connector/commands/demo"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "demo = demo.command:command" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_init_check_and_simulate_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    chat2crm = str(installed / "chat2crm")
    env = _clean_env()
    _run([chat2crm, "init", "clinic", "--crm", "salesforce"], cwd=tmp_path, env=env)
    clinic = tmp_path / "clinic"
    assert sorted(p.name for p in (clinic / "mappings").iterdir()) == [
        "salesforce-case.yaml", "salesforce-opportunity.yaml", "salesforce.yaml"]
    assert (clinic / "schemas" / "mapping.schema.json").exists()
    # from the clinic's folder, with no CHAT2CRM_CONFIG: ./chat2crm.yaml is the configuration
    checked = _run([chat2crm, "check"], cwd=clinic, env=env)
    assert "configuration ok: salesforce mapping, 2 flow(s), 6 campaign(s)" in checked.stdout
    # a .env in the current folder is read: here it points at a broken configuration
    (clinic / ".env").write_text("CHAT2CRM_CONFIG=missing.yaml\n", encoding="utf-8")
    broken = subprocess.run([chat2crm, "check"], cwd=clinic, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert broken.returncode == 1 and "missing.yaml" in broken.stdout + broken.stderr
    (clinic / ".env").unlink()
    # no configuration at all: a clear message, not a traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = subprocess.run([chat2crm, "check"], cwd=empty, env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    assert nothing.returncode == 1 and "chat2crm init" in nothing.stdout + nothing.stderr
    assert "Traceback" not in nothing.stdout + nothing.stderr
    # simulate without --lang: the language is detected on the first message
    talk = "Merhaba, hafta içi bir görüşme ayarlamak istiyorum\nSüreç otomasyonu\nABC Lojistik, info@abc.com\nÇarşamba 11:00\n"
    simulated = _run([chat2crm, "simulate", "--flow", "meeting_request"], cwd=clinic, env=env, stdin=talk)
    assert "Görüşmenin konusu nedir?" in simulated.stdout
    assert '"reference": "#1001"' in simulated.stdout and "salesforce operations (dry run)" in simulated.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_and_worker_from_the_wheel(installed: Path, tmp_path: Path, redis_url: str) -> None:
    chat2crm = str(installed / "chat2crm")
    _run([chat2crm, "init", "clinic"], cwd=tmp_path, env=_clean_env())
    clinic = tmp_path / "clinic"
    port = _free_port()
    env = _clean_env(REDIS_URL=redis_url, PORT=str(port), TRANSCRIPT_SECRET="t" * 32, ADMIN_TOKEN="a" * 24)
    web = subprocess.Popen([chat2crm, "serve"], cwd=clinic, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, up = time.monotonic() + 60, False
        while time.monotonic() < deadline and web.poll() is None and not up:
            try:
                up = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                time.sleep(0.3)
        assert up, "chat2crm serve (installed from the wheel) did not answer /healthz"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        output = web.communicate(timeout=30)[0]
    assert "Control socket" not in output  # each server is alone on the host: no shared ~/.gunicorn socket
    worked = _run([chat2crm, "worker", "--burst"], cwd=clinic, env=env, timeout=120)
    assert worked.returncode == 0


def test_demo_without_its_extra_says_what_to_install(installed: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(installed / "chat2crm"), "demo"], cwd=tmp_path, env=_clean_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "chat2crm[demo]" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
