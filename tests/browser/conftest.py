"""The browser every test of this folder drives: Debian's Chromium through Playwright, one per test file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.browsing import CHROMIUM, FLAGS


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield instance
        finally:
            instance.close()
