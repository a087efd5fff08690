"""Time from a patient's last answer to the lead in the CRM, while 300 other patients are chatting, on the
product as production runs it (the web app under the production gunicorn command, ``chat2crm worker``
processes) with the HubSpot emulator adding 150 ms to every call.

The clock starts when the webhook carrying the answer that completes the intake is POSTed to the relay,
and stops when the lead's note (written after its contact and deal) exists in the HubSpot emulator.
Meanwhile 300 other patients go through the first answers of the same intake, each answering a few
seconds after the bot's last message, as people type; the rate of messages they make is printed beside
the figures. The memory of the web and worker processes is read at that load (PSS counts a page that
forked processes share once, as the machine does; RSS counts it in each). Goals: p95 under 1.5 s,
web plus workers under 600 MB.
"""

from __future__ import annotations

import os
import random
import threading
import time

from bench._common import INTAKE, IntakeSender, RelayStack, RepliesSeen, describe, percentile, tree_memory_mb

CHATTING, MEASURED, LATENCY = 300, 20, 0.150
#: how long a chatting patient takes to answer the bot (seconds, uniformly between the two)
THINK = (3.0, 8.0)
#: the measured patients start this far apart, once the chatting has filled the queues
SPACING = 1.5
GOAL_SECONDS = 1.5


def _wait_for_reply(replies: RepliesSeen, wa_id: str, expected: int, stop: threading.Event) -> bool:
    deadline = time.monotonic() + 120
    while replies.per_recipient[wa_id] < expected:
        if stop.is_set() or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def chat(wa_id: str, sender: IntakeSender, replies: RepliesSeen, stop: threading.Event, sent: list[int]) -> None:
    """A patient who answers the intake's questions as a person does, never reaching its last answer."""
    for step in range(len(INTAKE) - 1):
        if stop.wait(random.uniform(*THINK)):  # a pace, not a secret
            return
        expected = replies.per_recipient[wa_id] + 1
        sender.send(wa_id, step)
        sent.append(1)
        if not _wait_for_reply(replies, wa_id, expected, stop):
            return


def measured(wa_id: str, sender: IntakeSender, replies: RepliesSeen, stack: RelayStack,
             stop: threading.Event) -> float:
    """One patient's whole intake, answering at once; returns seconds from the last answer's POST to the note."""
    for step in range(len(INTAKE) - 1):
        expected = replies.per_recipient[wa_id] + 1
        sender.send(wa_id, step)
        if not _wait_for_reply(replies, wa_id, expected, stop):
            raise RuntimeError(f"no answer to step {step} of the intake")
    marker = f"Bench note {wa_id}"
    start = time.perf_counter()
    sender.send(wa_id, len(INTAKE) - 1)
    deadline = time.monotonic() + 120
    while not any(marker in n["properties"].get("hs_note_body", "") for n in stack.crm.records("notes")):
        if time.monotonic() > deadline:
            raise RuntimeError("the lead never reached HubSpot")
        time.sleep(0.005)
    return time.perf_counter() - start


def main() -> None:
    stack = RelayStack()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        replies = stack.whatsapp.sent = RepliesSeen(stack.whatsapp.sent)
        sender = IntakeSender(stack.whatsapp, stack.url)
        measured("4917000000000", sender, replies, stack, stop)  # the first lead's one-off work (tag options)
        stack.crm.latency = LATENCY
        sent: list[int] = []
        for i in range(CHATTING):
            thread = threading.Thread(target=chat, args=(f"4916{i:09d}", sender, replies, stop, sent), daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(THINK[1] + 2)  # every chatting patient has written
        sent_before, started = len(sent), time.monotonic()
        timings, memory = [], (0.0, 0.0)
        for i in range(MEASURED):
            timings.append(measured(f"4917{i + 1:09d}", sender, replies, stack, stop))
            if i == MEASURED // 2:
                memory = tree_memory_mb(stack.pids())
            time.sleep(SPACING)
        rate = (len(sent) - sent_before) / (time.monotonic() - started)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        stack.stop()
    load = os.getloadavg()
    print(f"{MEASURED} patients completing the health intake over WhatsApp while {CHATTING} others chat (answering "
          f"{THINK[0]:.0f}–{THINK[1]:.0f} s after the bot: {rate:.1f} of their messages a second went through meanwhile); "
          f"HubSpot emulator adding {LATENCY * 1000:.0f} ms per call; web: gunicorn (2 processes), workers: "
          f"`chat2crm worker --processes 2`; {os.cpu_count()} cores; load average after (1, 5, 15 min): "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"last answer's webhook POST → the lead's note in HubSpot: {describe(timings)}")
    print(f"floor (the lead's 3 HubSpot calls × latency): {3 * LATENCY * 1000:.0f} ms; p95 "
          f"{percentile(timings, 95):.2f} s (goal < {GOAL_SECONDS} s)")
    print(f"memory of web + workers at that load: PSS {memory[0]:.0f} MB, RSS {memory[1]:.0f} MB (goal < 600 MB)")


if __name__ == "__main__":
    main()
