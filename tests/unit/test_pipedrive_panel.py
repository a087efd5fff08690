"""The Pipedrive panel's parts that need no Pipedrive: its signed token checked (good, expired, another
secret, another company, tampered, another algorithm), the reply's idempotency key, the panel's log in
Redis, and which inbox a configuration gets."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
import redis
from pydantic import SecretStr

from adapters.base import Deployment
from adapters.pipedrive import PipedriveAdapter
from adapters.pipedrive.inbox import PipedriveInbox, person_of, reply_id
from adapters.pipedrive.panel import PanelGuard, PanelRefused
from adapters.pipedrive.thread_log import PanelLog
from tests.conftest import make_settings

SECRET = "panel-jwt-secret-0123456789-for-the-unit-tests-of-the-panel-00000"
COMPANY = "7001"


def guard(company: str | None = COMPANY) -> PanelGuard:
    return PanelGuard(None, None, jwt_secret=SECRET, company=lambda: company,  # type: ignore[arg-type]
                      public_base_url="https://relay.example")


def token(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"userId": 12, "companyId": 7001, "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm=algorithm)


def refused(value: str, company: str | None = COMPANY) -> PanelRefused:
    with pytest.raises(PanelRefused) as caught:
        guard(company).authenticate(value)
    assert caught.value.status == 401
    return caught.value


# -- the panel's token -------------------------------------------------------------------------
def test_a_token_signed_with_the_secret_names_the_user() -> None:
    user = guard().authenticate(token())
    assert (user.user_id, user.company_id) == (12, 7001)
    assert guard().authenticate(token(exp=int(time.time()) - 2)).user_id == 12  # a clock a little behind


def test_an_expired_token_is_refused() -> None:
    assert "expired" in refused(token(exp=int(time.time()) - 60)).reason


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert "not valid" in refused(token(secret="another-secret-0123456789-of-another-app-for-the-unit-tests-0000")).reason


def test_a_token_of_another_company_is_refused() -> None:
    assert "another Pipedrive company" in refused(token(companyId=7002)).reason
    refused(token(), company=None)  # the app is not installed: no company to match


def test_a_tampered_token_is_refused() -> None:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["userId"] = 1  # another user, the signature kept
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    refused(f"{header}.{forged}.{signature}")
    refused(f"{header}.{payload}.{signature[:-4]}AAAA")


def test_only_hs256_is_accepted_and_the_claims_must_be_there() -> None:
    refused(token(algorithm="HS512"))
    unsigned = jwt.encode({"userId": 12, "companyId": 7001, "exp": int(time.time()) + 60}, None, algorithm="none")
    refused(unsigned)
    refused(token(exp=None))  # no expiry: refused, however well signed
    refused(token(userId=None))
    refused("")
    refused("not.a.token")


# -- an agent's reply --------------------------------------------------------------------------
def test_a_replys_id_is_the_panels_key_under_the_person() -> None:
    made = reply_id("1001", "0f8fad5b-d9cb-469f-a165-70867728950e")
    assert made == "pipedrive-panel:1001:0f8fad5b-d9cb-469f-a165-70867728950e" and person_of(made) == "1001"
    for person, key in (("1001", "short"), ("1001", "a b c d e f g"), ("1001", "x" * 65), ("ayşe", "0123456789")):
        with pytest.raises(ValueError, match="idempotency key"):
            reply_id(person, key)
    assert person_of("1234:5678") is None and person_of("pipedrive-panel:x:0123456789") is None


def test_the_panels_log_keeps_each_entry_once_in_order_and_statuses_only_move_on(redis_client: redis.Redis) -> None:
    log = PanelLog(redis_client)
    conversation = "whatsapp:1065:905321112233"
    assert log.add("1001", {"id": "wamid.1", "kind": "message", "conversation": conversation, "text": "a"})
    assert log.add("1001", {"id": "pipedrive-panel:1001:k0000001", "kind": "reply", "conversation": conversation,
                            "text": "b", "files": []})
    assert not log.add("1001", {"id": "wamid.1", "kind": "message", "conversation": conversation, "text": "again"})
    assert log.set_status("pipedrive-panel:1001:k0000001", "read")
    assert not log.set_status("pipedrive-panel:1001:k0000001", "sent")  # late: never backwards
    assert log.set_status("pipedrive-panel:1001:k0000001", "failed", reason="gone")
    shown = log.entries("1001")
    assert [(e["id"], e["text"]) for e in shown] == [("wamid.1", "a"), ("pipedrive-panel:1001:k0000001", "b")]
    assert shown[1]["status"] == "failed" and shown[1]["reason"] == "gone" and shown[1]["files"] == []
    assert 0 < redis_client.ttl("c2c:pipedrive:panel:1001") <= 90 * 86400


# -- which inbox -----------------------------------------------------------------------------------
def adapter(redis_url: str, options: dict[str, Any] | None = None, **settings: Any) -> PipedriveAdapter:
    made = PipedriveAdapter.from_settings(make_settings(redis_url, **settings), options=options)
    made.deployment = Deployment(public_base_url="https://relay.example",
                                 encryption_key=SecretStr("q5Zu6Wqf0lB0n5Qe2Ny3PnwEYMsx7nqJmzA3DXdWsU8="))
    return made


def test_auto_is_the_panel_with_the_app_and_its_jwt_secret_and_the_bot_without(redis_url: str,
                                                                                redis_client: redis.Redis) -> None:
    app = {"pipedrive_client_id": "cid", "pipedrive_client_secret": "csecret"}
    with_panel = PipedriveAdapter.from_settings(make_settings(redis_url, **app, pipedrive_jwt_secret=SECRET),
                                                redis=redis_client)
    with_panel.deployment = Deployment(encryption_key=SecretStr("q5Zu6Wqf0lB0n5Qe2Ny3PnwEYMsx7nqJmzA3DXdWsU8="))
    made = with_panel.inbox()
    assert isinstance(made, PipedriveInbox) and made.guard is not None and with_panel.installer() is not None
    assert adapter(redis_url).inbox() is None  # the API token alone: the bot keeps the conversation
    assert adapter(redis_url, **app).inbox() is None  # no JWT secret: no panel
    notes = PipedriveAdapter.from_settings(make_settings(redis_url), options={"inbox": "notes"}, redis=redis_client)
    made = notes.inbox()
    assert isinstance(made, PipedriveInbox) and made.guard is None
    assert "no panel" in made.check()[0]
