"""Every Redis key the relay writes belongs to a registered family and has a TTL (or the bound its family
documents); ``chat2crm forget`` leaves no key and no value that names the patient, and nobody else's goes.

The scene: a patient arrives from a campaign link, completes a request that reaches HubSpot (so the
adapter caches the contact), one reply is refused for good by WhatsApp (a failed job that holds it),
the conversation goes on with an agent in the CRM's inbox (a thread published, an agent's reply sent and
reported), and a last message waits in the inbox; another patient talks at the same time.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from rq.job import Job

from connector import inbox, queues, threads
from connector.commands.forget import erase
from core import keys
from tests.e2e.conftest import Stack
from tests.integration.inbox.conftest import RecordingInbox, post_events

PATIENT, OTHER = "4915112340000", "4915198760000"
#: what must not be left anywhere once the patient is forgotten (the phone as stored and as written)
NEEDLES = ("4915112340000", "+49 151 12340000", "Hans", "Müller", "hans@muster.de")


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request"}


def _scene(stack: Stack) -> None:
    crm = RecordingInbox()
    stack.runtime.cached("inbox", lambda: crm)  # the CRM's inbox (HubSpot's needs its app installed)
    click = requests.get(f"{stack.relay_url}/c/meeting-en", allow_redirects=False, timeout=5)
    opening = parse_qs(urlparse(click.headers["Location"]).query)["text"][0]
    patient = stack.whatsapp.patient(PATIENT, "Hans Müller")
    other = stack.whatsapp.patient(OTHER, "Greta Weber")
    for said in (opening, "Reporting"):
        assert patient.send_text(said) == 200
        stack.work()
    assert other.send_text("Hello, I would like a meeting") == 200
    stack.work()
    stack.whatsapp.fail_next(1, "190")  # WhatsApp refuses the token once: that reply fails for good
    assert patient.send_text("Muster GmbH, hans@muster.de") == 200
    stack.work()
    assert patient.send_text("Thursday 15:00") == 200
    stack.work()
    assert stack.hubspot.count("deals") == 1
    assert [job.description for _q, job in queues.failed_jobs(stack.runtime)] == ["reply"]
    # with the agents now: a question published into the CRM's thread, an agent's answer sent back
    assert patient.send_text("Can Müller GmbH bring a colleague?") == 200
    stack.work()
    key = f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{PATIENT}"
    assert crm.published and threads.pending(stack.runtime, key) == []
    reply = {"type": "reply", "crm_message_id": "crm-1", "text": "Yes, Hans.", "conversation": key}
    assert post_events(stack.relay_url, [reply]).json()["accepted"] == 1
    stack.work()
    assert crm.statuses("crm-1") == [("sent", None, None)]
    # in flight when the patient asks to be forgotten: a message of theirs, and one of the other patient's
    assert patient.send_text("One more thing: +49 151 12340000 is my number") == 200
    assert other.send_text("Reporting") == 200


def _keys(stack: Stack) -> list[str]:
    return sorted(k.decode() for k in stack.runtime.redis.scan_iter(count=1000))


def test_every_key_belongs_to_a_registered_family_and_has_a_ttl(stack: Stack) -> None:
    _scene(stack)
    client = stack.runtime.redis
    # a family's TTL names a setting of chat2crm.yaml, or of the mapping's adapter options (``options.…``)
    config = SimpleNamespace(**dict(stack.runtime.config), options=stack.runtime.adapter.options)
    unregistered, unbounded, too_long = [], [], []
    for key in _keys(stack):
        family = keys.family_of(key)
        if family is None:
            unregistered.append(key)
            continue
        ttl = client.ttl(key)
        declared = family.seconds(config)
        if declared is None:
            if not family.bounded_by:
                unbounded.append(key)
        elif ttl < 0:
            unbounded.append(key)
        elif ttl > declared + 2:  # Redis rounds a TTL up; a window's key keeps a one-second margin
            too_long.append((key, ttl, declared))
    assert not unregistered, f"keys of no registered family: {unregistered}"
    assert not unbounded, f"keys without a TTL or a documented bound: {unbounded}"
    assert not too_long, f"keys living longer than their family says: {too_long}"
    c2c = [k for k in _keys(stack) if k.startswith(keys.PREFIX)]
    for expected in ("conv", "inbox", "lead", "click", "seen", "flood", "metrics", "hubspot", "thread-published",
                     "crm-thread", "crm-contact", "agent-reply", "agent-entry", "agent-sent", "agent-status"):
        assert any(k.startswith(f"{keys.PREFIX}{expected}:") for k in c2c), expected  # the scene wrote each kind


def _contents(stack: Stack, key: str) -> Iterator[str]:
    """A key's name and everything it holds, as text (rq's jobs decoded: their data is compressed)."""
    client = stack.runtime.redis
    yield key
    kind = client.type(key).decode()
    values: list[Any] = []
    if kind == "string":
        values = [client.get(key)]
    elif kind == "list":
        values = client.lrange(key, 0, -1)
    elif kind == "hash":
        found = client.hgetall(key)
        values = [*found.keys(), *found.values()]
        if key.startswith("rq:job:") and b"data" in found:
            values.append(repr(pickle.loads(zlib.decompress(found[b"data"]))))  # noqa: S301 - our own test data
            values.append(repr(Job.fetch(key.split(":")[2], connection=client).meta))
    elif kind in ("set", "zset"):
        values = list(client.smembers(key)) if kind == "set" else client.zrange(key, 0, -1)
    elif kind == "stream":
        values = [repr(entry) for entry in client.xrange(key)]
    for value in values:
        yield value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def test_forget_leaves_nothing_of_the_patient_and_everything_of_the_others(stack: Stack) -> None:
    _scene(stack)
    found = [k for k in _keys(stack) if any(n in text for text in _contents(stack, k) for n in NEEDLES)]
    assert any(k.startswith("rq:job:") for k in found) and any(":hubspot:" in k for k in found)  # the scene is real
    other_before = [k for k in _keys(stack) if OTHER in k]
    audit = erase(stack.runtime, f"+{PATIENT}")
    left = {k: [n for text in _contents(stack, k) for n in NEEDLES if n in text] for k in _keys(stack)}
    assert {k: v for k, v in left.items() if v} == {}
    assert audit.conversations == 1 and audit.inboxes == 1 and audit.leads == 1
    assert audit.jobs >= 2 and audit.crm_cache >= 1  # the failed reply and the queued conversation; HubSpot's ids
    assert "4915112340000" not in audit.line() and "Hans" not in audit.line()
    # the other patient keeps everything; their message, unread at the door, is now in their inbox
    assert set(other_before) <= {k for k in _keys(stack) if OTHER in k}
    assert [m.text for m in inbox.messages(stack.runtime, f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{OTHER}")
            ] == ["Reporting"]
    told = len(_texts(stack, OTHER))
    stack.work()  # and the relay carries on for them
    assert len(_texts(stack, OTHER)) > told


def _texts(stack: Stack, wa_id: str) -> list[str]:
    out = []
    for sent in stack.whatsapp.messages_to(wa_id):
        payload = sent.payload
        out.append(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])
    return out
