"""Time from the patient's last answer to the CRM record: the lead is handed to the CRM queue (as the
conversation job does), a worker process writes it, and the clock stops when its note exists in the
HubSpot emulator, which adds 150 ms to every call. Goal: p95 under 1.5 s."""

from __future__ import annotations

import time

from bench._common import CrmStack, describe, percentile
from tests.contract import make_lead

LEADS, LATENCY = 40, 0.150


def main() -> None:
    stack = CrmStack(latency=LATENCY, workers=1)
    try:
        time.sleep(3)  # the worker warms up (configuration, detector)
        timings = []
        for i in range(LEADS):
            reference = f"#{2000 + i}"
            start = time.perf_counter()
            stack.enqueue_lead(make_lead(reference, sender=f"4915100{i:06d}"))
            while not any(reference in n["properties"].get("hs_note_body", "") for n in stack.emulator.records("notes")):
                time.sleep(0.005)
            timings.append(time.perf_counter() - start)
    finally:
        stack.stop()
    print(f"{LEADS} leads, one at a time, HubSpot emulator adding {LATENCY * 1000:.0f} ms per call (3 calls a lead)")
    print(f"last answer → CRM record: {describe(timings)}")
    print(f"floor (3 calls × latency): {3 * LATENCY * 1000:.0f} ms; p95 {percentile(timings, 95):.2f} s (goal < 1.5 s)")


if __name__ == "__main__":
    main()
