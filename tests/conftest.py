"""Shared fixtures: a real Redis server, settings pointing at it, the app, and a network guard.

When ``REDIS_URL`` is set the suite uses that server (database 15 flushed around each test);
otherwise it starts a private one for the session (see :mod:`connector.redis_server`).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from connector.redis_server import EmbeddedRedis
from connector.runtime import Runtime, set_current_runtime
from core.settings import Settings
from tests.paths import REPO, SHIPPED_CONFIG

ARTEFACTS = REPO / "artefacts"

# -- the project reads nothing outside its own tree ----------------------------------------------
# Every Python process of the run (this one, and through PYTHONPATH every one a test starts) logs
# each file it opens outside the checkout, the Python installation, the temporary folder and the
# system's folders, and anything at all beside the checkout; a test that caused one fails.
_AUDIT_DIR = REPO / "tests" / "open_audit"
_AUDIT_LOG = Path(tempfile.mkdtemp(prefix="chat2crm-open-audit-")) / "outside.log"
_AUDIT_LOG.touch()
_beside = REPO.parent
_temp = Path(tempfile.gettempdir()).resolve()
_AUDIT_ENV = {
    "CHAT2CRM_OPEN_AUDIT": str(_AUDIT_LOG),
    "CHAT2CRM_OPEN_AUDIT_HOME": str(REPO),
    # the checkout's parent, unless it holds the temporary folder or is the root
    "CHAT2CRM_OPEN_AUDIT_DENY": "" if _beside == _temp or _beside in _temp.parents else str(_beside),
    "CHAT2CRM_OPEN_AUDIT_ALLOW": os.pathsep.join(sorted({
        sys.prefix, sys.base_prefix, sys.exec_prefix, str(_temp), str(Path.home() / ".cache"), str(Path.home() / ".config"),
        "/dev", "/proc", "/sys", "/etc", "/usr", "/lib", "/lib64", "/run", "/var", "/opt",
        os.environ.get("REQUESTS_CA_BUNDLE", ""), os.environ.get("SSL_CERT_FILE", "")} - {""})),
}
os.environ.update(_AUDIT_ENV)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_AUDIT_DIR), os.environ.get("PYTHONPATH", "")) if p)
_spec = importlib.util.spec_from_file_location("chat2crm_open_audit", _AUDIT_DIR / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
_audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_audit)  # installs the hook in this process, from the variables above


def opened_outside() -> list[str]:
    """Every open outside the allowed places logged so far, by any process of this run."""
    return _AUDIT_LOG.read_text(encoding="utf-8").splitlines()


@pytest.fixture(autouse=True)
def _nothing_read_outside_the_tree() -> Iterator[None]:
    before = len(opened_outside())
    yield
    new = opened_outside()[before:]
    if new:
        pytest.fail("opened outside the repository (a fresh clone has nothing beside it):\n" + "\n".join(new[:20]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Opens logged after the last test (a process that outlived it) fail the run too."""
    lines = opened_outside()
    if lines and exitstatus == 0:
        sys.stderr.write("\nopened outside the repository:\n" + "\n".join(lines[:20]) + "\n")
        session.exitstatus = 1

# -- tests must not reach the network: loopback and Unix sockets only --------------------------
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host in ("localhost",):
            return
    raise RuntimeError(f"a test tried to reach the network: {host!r}; only 127.0.0.1 is allowed")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


# -- Redis -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole session."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A connection to the session's Redis, flushed before and after the test (as rq's own tests do)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# -- settings, runtime, app --------------------------------------------------------------------
TEST_SECRETS = {
    "whatsapp_app_secret": "test-app-secret-0123456789",
    "whatsapp_verify_token": "test-verify-token",
    "whatsapp_access_token": "EAAtestaccesstoken0123456789",
    "whatsapp_phone_number_id": "106540352242922",
    "telegram_bot_token": "123456789:AAtest-telegram-token-0123456789",
    "telegram_secret_token": "test-telegram-secret",
    "hubspot_access_token": "pat-test-hubspot-token-0123456789",
    "pipedrive_api_token": "test-pipedrive-token-0123456789",
    "salesforce_client_id": "3MVG9test-connected-app-client-id",
    "salesforce_client_secret": "test-salesforce-client-secret-0123456789",
    "transcript_secret": "test-transcript-secret-0123456789",
    "admin_token": "test-admin-token-0123456789",
}


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for a test: known secrets, the given Redis, the shipped configuration."""
    values: dict[str, Any] = {**TEST_SECRETS, "redis_url": redis_url,
                              "chat2crm_config": SHIPPED_CONFIG}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


@pytest.fixture
def runtime(settings: Settings, redis_client: redis.Redis) -> Iterator[Runtime]:
    rt = Runtime(settings, redis_client=redis_client)
    set_current_runtime(rt)
    try:
        yield rt
    finally:
        set_current_runtime(None)


@pytest.fixture
def app(runtime: Runtime) -> Any:
    from connector.app import create_app

    return create_app({"TESTING": True}, runtime=runtime)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def artefacts() -> Path:
    """Where tests leave things a person may want to look at (screenshots, logs)."""
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS


# -- channel emulators over real HTTP ----------------------------------------------------------
@pytest.fixture
def whatsapp_emulator() -> Iterator[Any]:
    """The WhatsApp Cloud API emulator, served on 127.0.0.1 (its ``.url`` is the API base)."""
    from emulators.server import ServedApp
    from emulators.whatsapp import WhatsAppEmulator

    emulator = WhatsAppEmulator(access_token=TEST_SECRETS["whatsapp_access_token"],
                                phone_number_id=TEST_SECRETS["whatsapp_phone_number_id"],
                                app_secret=TEST_SECRETS["whatsapp_app_secret"], timeout_seconds=2.0)
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        served.stop()
    assert not emulator.violations, f"requests WhatsApp would reject: {emulator.violations}"


@pytest.fixture
def telegram_emulator() -> Iterator[Any]:
    """The Telegram Bot API emulator, served on 127.0.0.1."""
    from emulators.server import ServedApp
    from emulators.telegram import TelegramEmulator

    emulator = TelegramEmulator(token=TEST_SECRETS["telegram_bot_token"],
                                secret_token=TEST_SECRETS["telegram_secret_token"], timeout_seconds=2.0)
    served = ServedApp(emulator.app).start()
    emulator.url = served.url  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        served.stop()
    assert not emulator.violations, f"requests Telegram would reject: {emulator.violations}"


def _weight(item: pytest.Item) -> float:
    marker = item.get_closest_marker("weight")
    return float(marker.args[0]) if marker and marker.args else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest files first (``pytest.mark.weight``; a stable sort keeps each file's tests together and in
    order): the test processes take files one at a time, so a long file taken last would run on alone while
    the others have finished."""
    items.sort(key=lambda item: -_weight(item))
