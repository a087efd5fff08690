"""What every browser test shares: Debian's Chromium, and the flags it runs headless with."""

from __future__ import annotations

#: Debian's package (``./scripts/test`` installs it when run as root with apt); never a downloaded browser
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
