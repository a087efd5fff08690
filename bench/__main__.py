"""Run the benchmarks (each ``bench/<name>.py`` is a script that prints its figures) and write
their output, with the machine and the date, into ``docs/performance.md``.

Figures are printed, never asserted: a benchmark compares against a baseline measured in the
same run (a bare Flask endpoint, the rate limit's own minimum), so its ratios mean something
on any machine.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SECTION = re.compile(r"^## (?P<name>[^\n]+)\n(?P<body>.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
HEAD = """# Performance

Figures from `bench/run` (every benchmark under `bench/`), as last run. Each benchmark measures
its own baseline in the same run, so ratios compare like with like. Nothing here is asserted by
the test suite; regressions show up when someone runs `bench/run` and reads this file's diff.

"""


def benchmarks(names: list[str]) -> list[Path]:
    found = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    if names:
        found = [p for p in found if p.stem in names]
        missing = set(names) - {p.stem for p in found}
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
    return found


def main(argv: list[str]) -> int:
    sections: dict[str, str] = {}
    if DOC.exists():
        # a section is a "## name" line at the start of a line and everything up to the next one
        existing = {p.stem for p in benchmarks([])}
        for match in SECTION.finditer(DOC.read_text(encoding="utf-8")):
            if match["name"].strip() in existing:  # a benchmark removed or renamed loses its section
                sections[match["name"].strip()] = "\n" + match["body"].strip() + "\n\n"
    failed = 0
    for path in benchmarks(argv):
        print(f"==> {path.stem}", flush=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(path)], check=False, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        elapsed = time.monotonic() - start
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            failed += 1
            continue
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        sections[path.stem] = (
            f"\n`bench/run {path.stem}` · {when} · {os.cpu_count()} cores · Python {platform.python_version()}"
            f" · {elapsed:.0f} s\n\n```\n{proc.stdout.strip()}\n```\n\n"
        )
    body = HEAD + "".join(f"## {name}\n{text}" for name, text in sorted(sections.items()))
    DOC.write_text(body.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
