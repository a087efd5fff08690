"""`crm doctor`, `crm setup` and `check --online` when Redis or the CRM cannot be reached, or the CRM refuses the
token: one line saying what to do, exit status 1, never a traceback, and at once (not after Redis's 20 s of
retries). The CRM is the HubSpot emulator over real HTTP, stopped or given a wrong token; Redis is the suite's,
or a closed port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner, Result

from connector.cli import main
from emulators.hubspot import create_app as create_hubspot
from emulators.server import ServedApp
from tests.conftest import TEST_SECRETS
from tests.paths import SHIPPED_CONFIG

COMMANDS = [["crm", "doctor"], ["crm", "setup"], ["check", "--online"]]


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hubspot_url() -> Iterator[str]:
    served = ServedApp(create_hubspot(TEST_SECRETS["hubspot_access_token"])).start()
    try:
        yield served.url
    finally:
        served.stop()


def run(args: list[str], **env: str) -> tuple[Result, float]:
    """The command, with the shipped configuration and the test secrets, then ``env``; and how long it took."""
    values = {k.upper(): str(v) for k, v in TEST_SECRETS.items()}
    values |= {"CHAT2CRM_CONFIG": str(SHIPPED_CONFIG), "LOG_FORMAT": "text", **env}
    started = time.monotonic()
    result = CliRunner().invoke(main, args, env=values)
    return result, time.monotonic() - started


def said(result: Result) -> list[str]:
    """The lines the command printed to standard error."""
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_redis_unreachable(args: list[str], hubspot_url: str) -> None:
    port = closed_port()
    result, took = run(args, REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0", HUBSPOT_API_BASE=hubspot_url)
    assert result.exit_code == 1, result.output
    assert said(result) == [f"chat2crm: Redis at 127.0.0.1:{port} cannot be reached (connection refused): start "
                            "it, or point REDIS_URL at it"]
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert took < 10, f"{took:.1f} s: the command waited for Redis instead of saying it is down"


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_crm_unreachable(args: list[str], redis_url: str, redis_client: redis.Redis) -> None:
    port = closed_port()
    result, took = run(args, REDIS_URL=redis_url, HUBSPOT_API_BASE=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1, result.output
    (line,) = said(result)
    if args == ["crm", "doctor"]:  # the doctor's own first check says it
        assert line.startswith("credentials: hubspot: "), line
        assert line.endswith("; check that the CRM is up, its API address and the credentials"), line
    else:
        assert line.startswith("chat2crm: hubspot cannot be reached or is failing ("), line
        assert line.endswith("check that it is up and that its API address is right, then run this again"), line
    assert "Traceback" not in result.output
    assert took < 30, f"{took:.1f} s"


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_crm_refuses_the_token(args: list[str], redis_url: str, redis_client: redis.Redis, hubspot_url: str) -> None:
    result, _ = run(args, REDIS_URL=redis_url, HUBSPOT_API_BASE=hubspot_url, HUBSPOT_ACCESS_TOKEN="pat-wrong-token")
    assert result.exit_code == 1, result.output
    (line,) = said(result)
    assert line.startswith("credentials: hubspot: token refused" if args == ["crm", "doctor"] else
                           "chat2crm: hubspot refused the credentials: hubspot: token refused"), line
    assert "check HUBSPOT_ACCESS_TOKEN" in line, line
    assert "Traceback" not in result.output and "pat-wrong-token" not in result.output


def test_the_commands_work_when_everything_answers(redis_url: str, redis_client: redis.Redis,
                                                   hubspot_url: str) -> None:
    """The same commands against a CRM that answers: the error handling lets success through."""
    setup, _ = run(["crm", "setup"], REDIS_URL=redis_url, HUBSPOT_API_BASE=hubspot_url)
    assert setup.exit_code == 0, setup.output
    online, _ = run(["check", "--online"], REDIS_URL=redis_url, HUBSPOT_API_BASE=hubspot_url)
    assert online.exit_code == 0, online.output
    assert "hubspot: the mapping matches the live CRM" in online.output
