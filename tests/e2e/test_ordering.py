"""Four worker processes, bursts per conversation: each conversation's messages are handled one at a
time, in arrival order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from connector import inbox, outbox
from connector.conversations import load as load_conversation
from tests.e2e.conftest import Stack

CONVERSATIONS, BURST, WORKERS = 12, 6, 4


@pytest.fixture
def stack_config() -> dict[str, Any]:
    # one language: the four worker processes start without loading the detector's models
    return {"default_flow": "meeting_request", "limits.per_sender_per_minute": 100, "languages": ["en"],
            "campaigns": None}


def test_bursts_are_processed_in_order_by_four_workers(stack: Stack) -> None:
    env = {**os.environ, **stack.env()}
    workers = [subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--name", f"order-{i}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(WORKERS)]
    try:
        patients = [stack.whatsapp.patient(f"9053211{i:05d}", f"Patient {i}") for i in range(CONVERSATIONS)]

        def burst(patient: Any) -> None:
            for n in range(BURST):
                assert patient.send_text(f"message {n} of {patient.wa_id}") == 200

        with ThreadPoolExecutor(CONVERSATIONS) as pool:
            list(pool.map(burst, patients))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pending = stack.runtime.redis.zcard(inbox.DUE.key()) + stack.runtime.redis.zcard(outbox.DUE.key())
            done = all(_inbound(stack, p.wa_id) == BURST for p in patients)
            if done and not pending:
                break
            time.sleep(0.3)
        for patient in patients:
            conversation = load_conversation(stack.runtime, f"whatsapp:{stack.settings.whatsapp_phone_number_id}:"
                                                            f"{patient.wa_id}")
            assert conversation is not None
            said = [e.text for e in conversation.transcript if e.direction == "in"]
            assert said == [f"message {n} of {patient.wa_id}" for n in range(BURST)]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)


def _inbound(stack: Stack, wa_id: str) -> int:
    conversation = load_conversation(stack.runtime, f"whatsapp:{stack.settings.whatsapp_phone_number_id}:{wa_id}")
    return 0 if conversation is None else sum(1 for e in conversation.transcript if e.direction == "in")
