"""The demo page's Meta lead form in headless Chromium (Debian's package, driven by Playwright): the patient fills
in the prefilled form, the lead shows in the CRM half with its record and note, and the phone pane (following the
number given) shows the WhatsApp greeting template. A screenshot is saved under artefacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_demo_page import CHROMIUM, FLAGS, _demo

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's 'chromium' package (./scripts/test installs it when run as root)"),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with _demo("hubspot") as base:
        yield base


def test_a_patient_fills_in_the_meta_lead_form(demo: str, artefacts: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{demo}/demo")
            page.click("#leadform-open")
            number = page.locator("#patient-id").inner_text()
            assert page.input_value("#lf-phone") == number  # the phone pane's patient fills the form
            assert page.input_value("#lf-name") and page.is_checked("#lf-consent")
            page.fill("#lf-name", "Emma Walker")
            page.select_option("#lf-treatment", "hair")
            page.click("#lf-submit")
            page.locator(".msg.out", has_text="Hello Emma, thank you for your interest").wait_for(timeout=20_000)
            record = page.locator(".card.record", has_text="lead-form")
            record.wait_for(timeout=20_000)
            assert "hair_transplant" in record.inner_text()
            page.locator("#crm", has_text="Meta lead form Hair transplant offer").wait_for(timeout=20_000)
            assert page.locator("#patient-id").inner_text() == number and page.is_hidden("#leadform")
            page.screenshot(path=str(artefacts / "demo-lead-form.png"), full_page=True)
        finally:
            browser.close()
