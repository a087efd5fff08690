"""Language detection on 110 short, real-style first messages (22 each in tr, en, de, ar, ru): accuracy
with the detector restricted to the configured languages, how often the bot would have to ask (below
the confidence threshold), time per message, and the worker's memory (RSS) before and after the detector
is loaded, against the goal of a worker under 300 MB."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "first_messages.tsv"
LANGUAGES = ["tr", "en", "de", "ar", "ru"]
THRESHOLD = 0.5

RSS_PROBE = """
import resource, sys
def rss(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024
import connector.turn, connector.bot.engine, connector.attribution, adapters.hubspot, connector.mapping
print(f"{rss():.0f}")
from connector.attribution.language import detect_language, preload_detector
preload_detector(%r)  # as a worker does at start (connector.worker.warm_up)
for text in open(%r, encoding="utf-8").read().splitlines():
    detect_language(text.split("\\t", 1)[1], %r)
print(f"{rss():.0f}")
"""


def main() -> None:
    from connector.attribution.language import detect_language, preload_detector

    rows = [line.split("\t", 1) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    preload_detector(LANGUAGES)  # as a worker does at start: every message is timed warm
    correct = asked = 0
    per_language: Counter[str] = Counter()
    wrong: list[str] = []
    start = time.perf_counter()
    for expected, text in rows:
        found, confidence = detect_language(text, LANGUAGES)
        if confidence < THRESHOLD:
            asked += 1
        if found == expected:
            correct += 1
            per_language[expected] += 1
        else:
            wrong.append(f"  {expected}→{found} ({confidence:.2f}): {text}")
    elapsed = time.perf_counter() - start
    probe = subprocess.run([sys.executable, "-c", RSS_PROBE % (LANGUAGES, str(DATA), LANGUAGES)],
                           capture_output=True, text=True, check=True)
    before, after = probe.stdout.split()
    print(f"messages: {len(rows)} in {', '.join(LANGUAGES)}")
    print(f"accuracy: {correct}/{len(rows)} = {correct / len(rows):.1%}  "
          f"({', '.join(f'{lang} {per_language[lang]}/22' for lang in LANGUAGES)})")
    print(f"below the {THRESHOLD} confidence threshold (the bot asks): {asked}")
    print(f"time: {elapsed / len(rows) * 1000:.2f} ms per message")
    print(f"worker RSS: {before} MB with the relay loaded, {after} MB with the detector loaded (goal < 300 MB)")
    if wrong:
        print("misread:")
        print("\n".join(wrong))


if __name__ == "__main__":
    main()
