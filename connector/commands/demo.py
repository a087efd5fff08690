"""``chat2crm demo``: the whole product on embedded defaults, no accounts, nothing to install.

It starts a private Redis, the channel and CRM emulators, the web app (gunicorn) and a worker,
points the relay at the emulators through the same environment variables a deployment uses,
prints the URL to open, and on Ctrl-C (or SIGTERM) stops every process it started, in order,
leaving nothing running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
import requests

from connector.demo_stack import DEMO_CRMS as CRMS
from connector.redis_server import EmbeddedRedis
from connector.settings import PROJECT_ROOT


class Supervisor:
    """Starts child processes in their own process groups and stops them all, whatever happens."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[Any] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        self.children.append((name, proc))
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
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.cleanups.clear()


def demo_config(crm: str, directory: Path) -> Path:
    """The shipped main configuration with ``crm`` and its mapping selected, paths made absolute."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    data = yaml.load((PROJECT_ROOT / "chat2crm.yaml").read_text(encoding="utf-8"))
    data["crm"] = crm
    data["mapping"] = str(PROJECT_ROOT / "mappings" / f"{crm}.yaml")
    for name in ("flows", "campaigns"):
        data[name] = str(PROJECT_ROOT / data[name])
    path = directory / "chat2crm.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def demo_environment(crm: str, port: int, redis_url: str, config: Path) -> dict[str, str]:
    """Settings for the demo's web and worker: fresh secrets, emulator endpoints, text logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "TELEGRAM_", "HUBSPOT_",
                                                                    "SALESFORCE_", "PIPEDRIVE_"))}
    env.update({
        "REDIS_URL": redis_url,
        "CHAT2CRM_CONFIG": str(config),
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_FORMAT": "text",
        "WEB_CONCURRENCY": "2",
        "TRANSCRIPT_SECRET": secrets.token_urlsafe(32),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "WHATSAPP_APP_SECRET": secrets.token_hex(16),
        "WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(12),
        "WHATSAPP_ACCESS_TOKEN": "EAAdemo" + secrets.token_urlsafe(24),
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
        "TELEGRAM_BOT_TOKEN": "7000000001:AAdemo" + secrets.token_urlsafe(20),
        "TELEGRAM_SECRET_TOKEN": secrets.token_urlsafe(16),
        "HUBSPOT_ACCESS_TOKEN": "pat-demo-" + secrets.token_hex(16),
        "PIPEDRIVE_API_TOKEN": secrets.token_hex(20),
        "SALESFORCE_CLIENT_ID": "3MVG9demo" + secrets.token_urlsafe(24),
        "SALESFORCE_CLIENT_SECRET": secrets.token_hex(32),
    })
    return env


def wait_until_up(url: str, supervisor: Supervisor, timeout: float = 60.0) -> None:
    """Wait for ``url`` to answer 200; give up if a child process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = supervisor.dead_child()
        if dead:
            raise click.ClickException(f"the {dead} process exited at start; see its output above")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout:.0f} s")


@click.command("demo")
@click.option("--crm", type=click.Choice(CRMS), default="hubspot", show_default=True,
              help="Which CRM emulator the relay writes to.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port of the relay's web app.")
def command(crm: str, port: int) -> None:
    """Run the whole product locally: Redis, emulators, web and worker. Ctrl-C stops everything."""
    supervisor = Supervisor()
    stopping = {"signal": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="chat2crm-demo-"))
    supervisor.cleanups.append(lambda: _remove_tree(workdir))
    code = 0
    try:
        click.echo("==> starting chat2crm demo")
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            server = EmbeddedRedis().start()
            supervisor.cleanups.append(server.stop)
            redis_url = server.url
            pid = server.process.pid if server.process else 0
            click.echo(f"    {'redis':<10} pid {pid}")
        config = demo_config(crm, workdir)
        env = demo_environment(crm, port, redis_url, config)
        from connector.demo_stack import start_emulators

        stack = start_emulators(crm, env, directory=workdir / "tls")
        click.echo(f"    {'emulators':<10} WhatsApp, Telegram, {crm} (in this process)")
        supervisor.cleanups.append(stack.stop)
        env.update(stack.environment)
        exe = [sys.executable, "-m", "connector.cli"]
        supervisor.spawn("web", [*exe, "serve", "--port", str(port)], env)
        supervisor.spawn("worker", [*exe, "worker"], env)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", supervisor)
        stack.connect(base)
        click.echo("")
        click.echo(f"==> chat2crm is running: open {base}/demo")
        click.echo(f"    health: {base}/healthz   readiness: {base}/readyz")
        click.echo(f"    CRM emulator ({crm}): {stack.crm_url}")
        click.echo("    Ctrl-C stops everything.")
        while True:
            dead = supervisor.dead_child()
            if dead:
                click.echo(f"chat2crm demo: the {dead} process exited; stopping", err=True)
                code = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("\n==> stopping")
    except click.ClickException as exc:
        click.echo(f"chat2crm demo: {exc.message}", err=True)
        code = 1
    finally:
        supervisor.stop()
        click.echo("==> stopped; nothing left running")
    sys.exit(code)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
