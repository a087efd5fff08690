"""A worker killed (SIGKILL) between any two steps of the message that completes a lead: after a restart
there is one lead, one reference number told to the patient, each reply delivered once, one CRM record.

The only duplicate allowed, and required, is the reply the channel took just before the kill at
``reply-sent`` (neither WhatsApp nor Telegram take an idempotency key: the relay cannot know that
send went out, so it sends again). The killed worker's locks would free themselves after
``delivery.job_timeout_seconds``; the test expires them at once instead of waiting that long.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from connector import conversations, inbox, leads, outbox, queues
from connector.crash import ENVIRONMENT_VARIABLE, POINTS
from tests.e2e.conftest import Stack
from tests.e2e.test_end_to_end import _bot_texts

pytestmark = pytest.mark.weight(45)  # seconds, about: see pytest_collection_modifyitems

#: what the patient says; the last message completes the request
EXCHANGE = ("Hello, I would like a meeting", "Reporting", "Muster GmbH, hans@{surname}.de", "Thursday 15:00")
CONFIRMATION = "Your meeting request is recorded as #"
SURNAMES = ("Adler", "Becker", "Conrad", "Dorn", "Engel", "Fuchs", "Graf", "Hahn", "Imhof", "Jung")


@pytest.fixture
def stack_config() -> dict[str, Any]:
    # one language: the killed worker processes start without loading the detector's models (seconds each)
    return {"default_flow": "meeting_request", "delivery.lost_job_seconds": 1, "languages": ["en"], "campaigns": None}


def _kill_at(stack: Stack, point: str) -> None:
    """Run a worker process that dies by SIGKILL (with its work-horse) when the work reaches ``point``."""
    env = {**os.environ, **stack.env(), ENVIRONMENT_VARIABLE: point}
    worker = subprocess.run([sys.executable, "-m", "connector.cli", "worker", "--burst", "--name", f"doomed-{point}"],
                            env=env, start_new_session=True, capture_output=True, timeout=120, check=False)
    assert worker.returncode == -9, f"the worker was not killed at {point}: {worker.stderr.decode()[-2000:]}"


def _dead_locks_expire(stack: Stack) -> None:
    """What ``delivery.job_timeout_seconds`` does to the killed worker's locks, without the wait."""
    client = stack.runtime.redis
    for family in (conversations.LOCK, outbox.LOCK, leads.WRITER):
        for key in client.scan_iter(match=family.pattern):
            client.pexpire(key, 1)
    time.sleep(1.1)  # and the work is due again (delivery.lost_job_seconds)


def test_a_worker_killed_between_any_two_steps_loses_and_doubles_nothing(stack: Stack) -> None:
    client = stack.runtime.redis
    hubspot = stack.hubspot
    for n, point in enumerate(POINTS):
        wa_id = f"4915100000{n:03d}"
        patient = stack.whatsapp.patient(wa_id, f"Hans {SURNAMES[n]}")
        for said in EXCHANGE[:-1]:
            assert patient.send_text(said.format(surname=SURNAMES[n].lower())) == 200
            stack.work()
        before = (hubspot.count("contacts"), hubspot.count("deals"), hubspot.count("notes"))
        assert patient.send_text(EXCHANGE[-1]) == 200
        _kill_at(stack, point)
        _dead_locks_expire(stack)
        stack.work()

        texts = _bot_texts(stack, wa_id)
        told = set(re.findall(r"#\d+", " ".join(texts)))
        assert len(told) == 1, (point, told)  # one reference number, however often the turn ran
        (reference,) = told
        assert int(client.get(leads.SEQUENCE.key()) or 0) == n + 1, point  # and no number was spent twice
        deal = next(d for d in hubspot.records("deals") if d["properties"]["chat2crm_reference"] == reference[1:])
        assert deal["properties"]["dealname"].endswith(f"Hans {SURNAMES[n]} ({reference})"), point
        after = (hubspot.count("contacts"), hubspot.count("deals"), hubspot.count("notes"))
        assert after == (before[0] + 1, before[1] + 1, before[2] + 1), point  # one contact, one record, one note
        copies = Counter(texts)
        confirmations = [t for t in copies if CONFIRMATION in t]
        assert len(confirmations) == 1, (point, texts)
        expected = 2 if point == "reply-sent" else 1  # the one send whose outcome the relay could not know
        assert copies[confirmations[0]] == expected, (point, texts)
        assert all(count == 1 for text, count in copies.items() if text != confirmations[0]), (point, texts)
        key = f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{wa_id}"
        assert not inbox.messages(stack.runtime, key) and not outbox.pending(stack.runtime, key), point
        assert not client.zcard(leads.PENDING.key()), point
        assert [j for _q, j in queues.failed_jobs(stack.runtime) if j.meta.get("reason")] == [], point
