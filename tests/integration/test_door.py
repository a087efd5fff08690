"""The webhook's door (connector.webhooks.Door), served before Flask, on a real Redis: concurrent requests
keep each body exactly once (their writes grouped), Redis failing answers 503 with nothing kept, and the
request reaches the plug-in as Flask would have shown it."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
import redis

from connector import inbox, received
from connector.app import create_app
from connector.channels.whatsapp import sign
from connector.keeper import keeper
from connector.runtime import Runtime
from tests.conftest import TEST_SECRETS
from tests.intake import read

ACCOUNT = TEST_SECRETS["whatsapp_phone_number_id"]
SECRET = TEST_SECRETS["whatsapp_app_secret"]


def body(n: int) -> bytes:
    sender = f"9053200{n:05d}"
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": "1", "phone_number_id": ACCOUNT},
            "contacts": [{"profile": {"name": "Ayşe"}, "wa_id": sender}],
            "messages": [{"from": sender, "id": f"wamid.D{n}", "timestamp": "1763800000", "type": "text",
                          "text": {"body": f"Merhaba {n}"}}]}}]}]}).encode()


def post(client: Any, raw: bytes, path: str = "/webhooks/whatsapp") -> Any:
    return client.post(path, data=raw, headers={"Content-Type": "application/json",
                                                "X-Hub-Signature-256": sign(raw, SECRET)})


def test_concurrent_webhooks_and_their_retries_are_kept_exactly_once(app: Any, runtime: Runtime) -> None:
    threads, per_thread = 12, 20
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def patient_batch(t: int) -> None:
        client = app.test_client()
        for i in range(per_thread):
            n = t * per_thread + i
            for _ in range(2):  # each body sent twice: the vendor's retry after a lost answer
                response = post(client, body(n))
                with lock:
                    answers.append((n, (response.status_code, response.json)))

    workers = [threading.Thread(target=patient_batch, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    total = threads * per_thread
    assert all(status == 200 for _, (status, _) in answers) and len(answers) == 2 * total
    # for each body one answer says kept and the other says it was received already
    fresh = [n for n, (_, answer) in answers if answer == {"received": True, "duplicate": False}]
    assert sorted(fresh) == list(range(total))
    assert runtime.redis.llen(inbox.INBOX.key(received.intake_key("whatsapp"))) == total
    group = keeper(runtime)
    assert group.entries == 2 * total and group.calls <= group.entries
    assert read(runtime)["queued"] == total


def test_redis_failing_is_answered_503_with_nothing_kept_and_nothing_private_logged(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    broken = Runtime(runtime.settings, redis_client=redis.Redis(unix_socket_path="/nonexistent/redis.sock"))
    client = create_app({"TESTING": True}, runtime=broken).test_client()
    with caplog.at_level(logging.ERROR, logger="chat2crm.webhooks"):
        response = post(client, body(1))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json == {"error": "temporarily unavailable"}
    assert "webhook not kept" in caplog.text and "Merhaba" not in caplog.text and "90532" not in caplog.text
    # the vendor sends it again once Redis is back: it is taken then, as new
    assert post(create_app({"TESTING": True}, runtime=runtime).test_client(), body(1)).json["duplicate"] is False


def test_the_plug_in_sees_the_first_of_a_repeated_parameter_and_the_decoded_path(client: Any,
                                                                                 runtime: Runtime) -> None:
    raw = body(2)
    assert post(client, raw, "/webhooks/whats%61pp?via=ad&via=other&empty=").status_code == 200
    item = runtime.redis.lindex(inbox.INBOX.key(received.intake_key("whatsapp")), 0)
    head, kept_raw = item.split(b"\n", 1)
    assert json.loads(head) == {"c": "whatsapp", "a": {"via": "ad", "empty": ""}} and kept_raw == raw


@pytest.mark.parametrize("path", ["/webhooks/nosuch", "/webhooks/", "/webhooks/whatsapp/x"])
def test_what_is_not_an_enabled_channels_webhook_is_404(client: Any, path: str) -> None:
    response = post(client, body(3), path)
    assert response.status_code == 404


def test_other_requests_still_reach_the_app(client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    challenge = client.get("/webhooks/whatsapp", query_string={
        "hub.mode": "subscribe", "hub.verify_token": TEST_SECRETS["whatsapp_verify_token"], "hub.challenge": "42"})
    assert (challenge.status_code, challenge.text) == (200, "42")


def test_a_count_redis_refuses_does_not_change_the_answer(runtime: Runtime, redis_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The body's fate is decided before its count: a count that fails (here a Redis user not allowed to
    write the counters) still answers a duplicate 200 and a forged signature 401."""
    runtime.redis.execute_command("ACL", "SETUSER", "nocounts", "on", "nopass", "~*", "&*", "+@all", "-hincrbyfloat")
    try:
        limited = redis.Redis.from_url(redis_url, username="nocounts", password="")
        client = create_app({"TESTING": True}, runtime=Runtime(runtime.settings, redis_client=limited)).test_client()
        with caplog.at_level(logging.WARNING, logger="chat2crm.webhooks"):
            assert post(client, body(4)).json == {"received": True, "duplicate": False}
            again = post(client, body(4))
            forged = client.post("/webhooks/whatsapp", data=body(5), headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert (again.status_code, again.json) == (200, {"received": True, "duplicate": True})
        assert forged.status_code in (401, 403)
        assert caplog.text.count("metric not recorded") == 2  # both counts failed, neither answer changed
    finally:
        runtime.redis.execute_command("ACL", "DELUSER", "nocounts")
