"""What the HubSpot inbox emulator's tests share: the emulator served over HTTP with a clock the test moves,
a receiver of the webhooks it sends, and the app's install by OAuth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from flask import Flask, request

from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp

REDIRECT = "http://127.0.0.1:9/crm/hubspot/oauth/callback"
PRIVATE = "pat-inbox-emulator"


class Clock:
    """The emulator's time: real seconds, plus what the test adds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Receiver:
    """A webhook endpoint: records every request, answers from ``answers`` (status, delay) then 200."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("webhook-receiver")

        @app.post("/<path:path>")
        def receive(path: str) -> tuple[str, int]:
            with self.lock:
                self.received.append({"path": f"/{path}", "url": request.url, "headers": dict(request.headers),
                                      "body": request.get_data()})
                status, delay = self.answers.pop(0) if self.answers else (200, 0.0)
            time.sleep(delay)
            return "", status

        return app

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["path"] == path]


@dataclass
class Env:
    """The served emulator, its clock, the receiver, and a session for the relay's side of the calls."""

    hubspot: HubSpotEmulator
    url: str
    clock: Clock
    receiver: Receiver
    http: requests.Session

    def dev(self, **extra: Any) -> dict[str, Any]:
        """The developer API key query (and the app's id)."""
        return {"hapikey": self.hubspot.developer_api_key, "appId": self.hubspot.app_id, **extra}

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, self.url + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture(name="env")
def env_fixture() -> Iterator[Env]:
    """The emulator served, with its clock and a webhook receiver; no request HubSpot would reject, at the end."""
    clock, receiver = Clock(), Receiver()
    hook = ServedApp(receiver.app()).start()
    receiver.url = hook.url
    hubspot = HubSpotEmulator(PRIVATE, timeout_seconds=1.0, clock=clock, webhook_attempts=3,
                              webhook_retry_delay=0.05, webhook_timeout=0.3)
    served = ServedApp(hubspot.app).start()
    hubspot.public_url = served.url
    try:
        yield Env(hubspot, served.url, clock, receiver, requests.Session())
        assert hubspot.wait_for_deliveries(5.0)
    finally:
        # each server waits out its poll interval to stop: stop both at once
        stopping = threading.Thread(target=hook.stop)
        stopping.start()
        served.stop()
        stopping.join()
    assert not hubspot.violations, hubspot.violations


def authorize(env: Env, **query: str) -> requests.Response:
    """The admin's visit to the consent page (the redirect is not followed)."""
    hubspot = env.hubspot
    params = {"client_id": hubspot.client_id, "redirect_uri": REDIRECT, "scope": " ".join(hubspot.app_scopes),
              "state": "state-1", **query}
    return env.http.get(f"{env.url}/oauth/authorize", params=params, allow_redirects=False, timeout=10)


def install(env: Env, optional: str = "") -> dict[str, Any]:
    """Install the app by OAuth; the token answer."""
    answer = authorize(env, **({"optional_scope": optional} if optional else {}))
    code = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
    tokens = env.http.post(f"{env.url}/oauth/v1/token", data={
        "grant_type": "authorization_code", "client_id": env.hubspot.client_id,
        "client_secret": env.hubspot.client_secret, "redirect_uri": REDIRECT, "code": code}, timeout=10)
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def channel(env: Env, token: str, *, webhook: str = "/channel", threading_model: str = "INTEGRATION_THREAD_ID",
            types: tuple[str, ...] = ("CHANNEL_SPECIFIC_OPAQUE_ID",)) -> tuple[str, str]:
    """Register a channel sending to the receiver and connect an account to the first inbox; their ids."""
    created = env.call("POST", "/conversations/v3/custom-channels", params=env.dev(), json={
        "name": "chat2crm", "webhookUrl": env.receiver.url + webhook,
        "capabilities": {"deliveryIdentifierTypes": list(types), "threadingModel": threading_model,
                         "allowOutgoingMessages": True, "outgoingAttachmentTypes": ["FILE"]}})
    assert created.status_code == 201, created.text
    account = env.call("POST", f"/conversations/v3/custom-channels/{created.json()['id']}/channel-accounts", token,
                       json={"name": "Clinic", "inboxId": "147959634", "authorized": True,
                             "deliveryIdentifier": {"type": types[0], "value": "clinic-1"}})
    assert account.status_code == 201, account.text
    return str(created.json()["id"]), str(account.json()["id"])


def message(account: str, *, direction: str = "INCOMING", thread: str | None = "c2c-thread-1",
            patient: str = "whatsapp:905321112233", **extra: Any) -> dict[str, Any]:
    """A message body as the relay publishes it (the patient on one side, the clinic on the other)."""
    visitor = {"deliveryIdentifier": {"type": "CHANNEL_SPECIFIC_OPAQUE_ID", "value": patient}, "name": "Ayşe"}
    clinic = {"deliveryIdentifier": {"type": "CHANNEL_SPECIFIC_OPAQUE_ID", "value": "clinic-1"}, "name": "Bot"}
    body = {"messageDirection": direction, "channelAccountId": account, "text": "Merhaba",
            "senders": [visitor if direction == "INCOMING" else clinic],
            "recipients": [clinic if direction == "INCOMING" else visitor],
            "timestamp": "2026-05-01T10:00:00Z", "attachments": []}
    if thread:
        body["integrationThreadId"] = thread
    return body | extra


def contact(env: Env, token: str, owner: str | None = "75001") -> str:
    """A contact of the account (with an owner, by default); its id."""
    properties = {"firstname": "Ayşe", "phone": "+905321112233"} | ({"hubspot_owner_id": owner} if owner else {})
    answer = env.call("POST", "/crm/v3/objects/contacts", token, json={"properties": properties, "associations": []})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def refused(env: Env, answer: requests.Response, status: int, category: str) -> dict[str, Any]:
    """Check a refusal's status and HubSpot error body; forget the violation it recorded."""
    assert answer.status_code == status, answer.text
    body = dict(answer.json())
    assert body["status"] == "error" and body["category"] == category and body["correlationId"]
    env.hubspot.violations.clear()
    return body
