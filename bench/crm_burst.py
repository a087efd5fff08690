"""A burst of 300 completed leads against the HubSpot emulator enforcing 100 requests per 10 s, written
by two worker processes sharing the relay's Redis rate limiter. Counts lost and duplicated records and
compares the total time with the minimum the rate limit allows. Goal: zero lost, zero duplicates, within
1.2× of the minimum."""

from __future__ import annotations

import time

from bench._common import CrmStack
from tests.contract import make_lead

LEADS, LIMIT, WINDOW = 300, 100, 10.0


def main() -> None:
    stack = CrmStack(rate_limit=(LIMIT, WINDOW), workers=2)
    try:
        time.sleep(3)
        start = time.perf_counter()
        for i in range(LEADS):
            stack.enqueue_lead(make_lead(f"#{5000 + i}", sender=f"4917100{i:06d}"))
        deadline = start + 600
        while stack.emulator.count("notes") < LEADS and time.perf_counter() < deadline:
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        calls = [c for c in stack.emulator.calls if c["path"].startswith("/crm/")]
        throttled = sum(1 for c in calls if c["status"] == 429)
        references = [d["properties"]["chat2crm_reference"] for d in stack.emulator.records("deals")]
    finally:
        stack.stop()
    minimum = max(0.0, (len(calls) - LIMIT) / LIMIT * WINDOW)
    print(f"{LEADS} leads, HubSpot limit {LIMIT} requests / {WINDOW:.0f} s, 2 workers")
    print(f"deals: {len(references)} ({len(set(references))} distinct); notes: {stack.emulator.count('notes')}; "
          f"contacts: {stack.emulator.count('contacts')}")
    print(f"lost: {LEADS - len(set(references))}; duplicates: {len(references) - len(set(references))}")
    print(f"API calls: {len(calls)}; answered 429: {throttled}")
    print(f"total: {elapsed:.1f} s; the rate limit allows {minimum:.1f} s at best; ratio {elapsed / minimum:.2f} "
          f"(goal ≤ 1.2)")


if __name__ == "__main__":
    main()
