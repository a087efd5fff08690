"""What the Pipedrive app's tests share: the Pipedrive emulator served over HTTP with the relay's app (OAuth
client, panel JWT secret) and a clock the test moves, adapters built as a worker builds them, the app's
install by OAuth, persons, and panel tokens signed as Pipedrive signs them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import redis
import requests
from pydantic import SecretStr
from ruamel.yaml import YAML

from adapters.base import Deployment
from adapters.pipedrive import PipedriveAdapter
from emulators.pipedrive import PipedriveEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.paths import MAPPINGS, SHIPPED_CONFIG

FERNET_KEY = "q5Zu6Wqf0lB0n5Qe2Ny3PnwEYMsx7nqJmzA3DXdWsU8="
JWT_SECRET = "panel-jwt-secret-for-the-integration-tests-0123456789-abcdefghijk"
API_TOKEN = "pd-app-test-token"
RELAY = "http://relay.example"
CALLBACK = f"{RELAY}/crm/pipedrive/oauth/callback"
FAST = {"timeout_seconds": 5.0, "connect_timeout_seconds": 2.0,
        "rate_limit": {"requests": 1000, "per_seconds": 2}, "search_rate_limit": {"requests": 1000, "per_seconds": 2}}


class Late:
    """A WSGI app set after the server is up: the relay must know its own public URL before it is built."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


class Clock:
    """The emulator's time: real seconds, plus what the test adds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class PipedriveWorld:
    emulator: PipedriveEmulator
    url: str
    redis: redis.Redis
    clock: Clock

    def settings(self) -> dict[str, Any]:
        """The relay's Pipedrive settings for this emulator and its app."""
        return {"pipedrive_api_token": API_TOKEN, "pipedrive_api_base": self.url, "pipedrive_oauth_base": self.url,
                "pipedrive_client_id": self.emulator.client_id, "pipedrive_client_secret": self.emulator.client_secret,
                "pipedrive_jwt_secret": JWT_SECRET, "token_encryption_key": FERNET_KEY}

    def adapter(self, *, app: bool = True, relay: str = RELAY, **options: Any) -> PipedriveAdapter:
        """An adapter as a worker process builds one (several share the Redis)."""
        values = self.settings() if app else {"pipedrive_api_token": API_TOKEN, "pipedrive_api_base": self.url}
        made = PipedriveAdapter.from_settings(make_settings("unix:///unused", **values), options={**FAST, **options},
                                              redis=self.redis)
        made.deployment = Deployment(public_base_url=relay, encryption_key=SecretStr(FERNET_KEY))
        return made

    def install(self, adapter: PipedriveAdapter, callback: str = CALLBACK) -> str:
        """The admin opens the consent page, allows, and comes back with a code the relay exchanges."""
        installer = adapter.installer()
        assert installer is not None
        code = self.consent(installer.authorize_url(state="st-1", redirect_uri=callback))
        return installer.complete(code=code, redirect_uri=callback)

    def consent(self, url: str) -> str:
        """The consent page's redirect; the code it carries."""
        answer = requests.get(url, allow_redirects=False, timeout=5)
        assert answer.status_code == 302, answer.text
        back = parse_qs(urlparse(answer.headers["Location"]).query)
        assert back["state"] == ["st-1"]
        return back["code"][0]

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call with the API token (as a person working in Pipedrive would make a change)."""
        answer = requests.request(method, self.url + path, headers={"x-api-token": API_TOKEN}, timeout=5, **kwargs)
        assert answer.ok, answer.text
        return dict(answer.json())

    def person(self, name: str = "Ayşe Yılmaz", *, visible_to: int = 3, owner: int = 1) -> str:
        """A person of the company; its id."""
        made = self.call("POST", "/api/v2/persons", json={"name": name, "visible_to": visible_to, "owner_id": owner})
        return str(made["data"]["id"])

    def token(self, user: int = 1, *, company: int | None = None, secret: str = JWT_SECRET, exp: float | None = None,
              **claims: Any) -> str:
        """A panel token, as Pipedrive signs one."""
        now = int(time.time())
        body = {"userId": user, "companyId": self.emulator.company_id if company is None else company, "iat": now,
                "exp": int(exp if exp is not None else now + 300), **claims}
        return jwt.encode(body, secret, algorithm="HS256")


def write_relay_config(directory: Path, *, inbox: str = "auto", **changes: Any) -> Path:
    """chat2crm.yaml for Pipedrive (the shipped files, the mapping's limits raised for the emulator and its
    ``inbox`` option set), with ``changes`` (``section.name``: value)."""
    yaml = YAML(typ="rt")
    mapping = yaml.load((MAPPINGS / "pipedrive.yaml").read_text(encoding="utf-8"))
    for key, value in {**FAST, "inbox": inbox}.items():
        mapping["options"][key] = value
    mapping_path = directory / "pipedrive.yaml"
    with mapping_path.open("w", encoding="utf-8") as handle:
        yaml.dump(mapping, handle)
    data = yaml.load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    for key in ("flows", "campaigns"):
        data[key] = str(SHIPPED_CONFIG.parent / data[key])
    data["crm"], data["mapping"] = "pipedrive", str(mapping_path)
    for key, value in changes.items():
        section, _, name = key.partition(".")
        data[section][name] = value
    path = directory / "chat2crm.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


@pytest.fixture(name="pipedrive")
def pipedrive_fixture(redis_client: redis.Redis) -> Iterator[PipedriveWorld]:
    """The Pipedrive emulator with the relay's app, served; no request Pipedrive would refuse, at the end."""
    clock = Clock()
    emulator = PipedriveEmulator(API_TOKEN, jwt_secret=JWT_SECRET, timeout_seconds=1.0, clock=clock,
                                 redirect_uris=(CALLBACK,))
    served = ServedApp(emulator.app).start()
    emulator.public_url = served.url
    try:
        yield PipedriveWorld(emulator, served.url, redis_client, clock)
    finally:
        served.stop()
    assert not emulator.violations, emulator.violations
