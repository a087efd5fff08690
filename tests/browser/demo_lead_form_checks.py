"""The demo page's Meta lead form in headless Chromium (Debian's package, driven by Playwright): the patient fills
in the prefilled form, the lead shows in the CRM half with its record and note, and the phone pane (following the
number given) shows the WhatsApp greeting template. A screenshot is saved under artefacts/."""

from __future__ import annotations

from pathlib import Path

# Run by tests/browser/test_demo_page.py on its HubSpot demo and browser (one demo start for the page's checks).


def test_a_patient_fills_in_the_meta_lead_form(demo: str, browser: object, artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
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
    assert "hair_transplant" in record.first.inner_text()
    page.locator("#crm", has_text="Meta lead form Hair transplant offer").wait_for(timeout=20_000)
    assert page.locator("#patient-id").inner_text() == number and page.is_hidden("#leadform")
    page.screenshot(path=str(artefacts / "demo-lead-form.png"), full_page=True)
    page.close()
