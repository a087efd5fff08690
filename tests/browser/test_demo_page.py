"""The demo page in headless Chromium (Debian's package, driven by Playwright): the Turkish meeting request
and a health-tourism intake, played through the page (by hand and with its "Try" buttons); the CRM half
must show the records, and a failure must show on the page. Screenshots are saved under artefacts/."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.browsing import CHROMIUM
from tests.browser.demo_inbox_tour import (  # noqa: F401 - run here, on this module's demo
    test_an_agent_answers_the_patient_from_the_inbox_and_hands_back_to_the_bot,
)
from tests.browser.demo_lead_form_checks import test_a_patient_fills_in_the_meta_lead_form  # noqa: F401
from tests.integration.test_docs_commands import _free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's 'chromium' package (./scripts/test installs it when run as root)"),
    pytest.mark.weight(70),
]


@contextlib.contextmanager
def _demo(crm: str = "hubspot") -> Iterator[str]:
    """`chat2crm demo --crm CRM` running until the block ends (then Ctrl-C, as a person would)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "demo", "--port", str(port), "--crm", crm],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        lines.append(line)
        if "chat2crm is running" in line or not line:
            break
    if "chat2crm is running" not in lines[-1]:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo did not start:\n{''.join(lines)}{rest}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with _demo() as base:
        yield base


def _say(page: object, text: str, expect: str) -> None:
    page.fill("#text", text)  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]
    page.locator(".msg.out", has_text=expect).last.wait_for(timeout=20_000)  # type: ignore[attr-defined]


def test_turkish_meeting_request_through_the_page(demo: str, browser: object, artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.select_option("#arrival", "campaign:meeting-tr")
    page.wait_for_function("document.querySelector('#text').value.includes('ref:')", timeout=10_000)
    page.click("#send")
    page.locator(".msg.out", has_text="Görüşmenin konusu nedir?").wait_for(timeout=20_000)
    first = page.locator(".msg.in").first.inner_text()
    assert first.startswith("Merhaba, hafta içi bir görüşme ayarlamak istiyorum")
    _say(page, "Süreç otomasyonu ve raporlama.", "Şirketinizin adı ve e-posta adresiniz nedir?")
    _say(page, "ABC Lojistik, info@abc.com", "Hangi gün ve saat size uygun?")
    _say(page, "Çarşamba 11:00 uygun.", "numarasıyla kaydedildi")
    record = page.locator(".card.record", has_text="Süreç otomasyonu ve raporlama").first  # the page's earlier
    record.wait_for(timeout=20_000)  # checks (the agent's tour, the lead form) left records of their own
    text = record.inner_text()
    assert "New" in text
    assert "Çarşamba 11:00 uygun." in text and "meeting-tr" in text and "campaign" in text.lower()
    assert page.locator(".card.contact", has_text="info@abc.com").count() >= 1
    # the note is written after the deal: the page shows it on one of its next polls
    page.locator("#crm", has_text="Note").wait_for(timeout=20_000)
    assert "ABC Lojistik" in page.locator("#crm").inner_text()
    assert page.locator("#calls li").count() >= 3
    page.screenshot(path=str(artefacts / "demo-meeting-request.png"), full_page=True)
    page.close()


def test_health_intake_with_buttons_and_lists(demo: str, browser: object, artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.wait_for_timeout(1500)  # the CRM pane's first poll: the records earlier tests left
    before = page.locator(".card.record").count()
    page.click("#new-patient")
    _say(page, "Hi, price for hair transplant?", "Which country and city do you live in?")
    _say(page, "Berlin, Germany", "When are you thinking of travelling?")
    _say(page, "10-17 March", "Your e-mail address?")  # the name came from the WhatsApp profile
    page.locator(".msg.out").last.locator("button", has_text="Skip").click()
    page.locator(".msg.out", has_text="Which language should our coordinator").wait_for(timeout=20_000)
    page.locator(".msg.out").last.locator(".list-open").click()  # five options: a WhatsApp list
    page.locator(".sheet .rows button", has_text="German").click()
    page.locator(".msg.out", has_text="Do you agree").wait_for(timeout=20_000)
    page.locator(".msg.out").last.locator("button", has_text="I agree").click()
    page.locator(".msg.out", has_text="photos or medical reports").wait_for(timeout=20_000)
    page.locator(".msg.out").last.locator("button", has_text="Skip").click()
    page.locator(".msg.out", has_text="Anything you would like to add").wait_for(timeout=20_000)
    _say(page, "Norwood 4", "is recorded as")
    page.wait_for_function(f"document.querySelectorAll('.card.record').length > {before}", timeout=30_000)
    text = page.locator(".card.record", has_text="Hair transplant").first.inner_text()
    assert "hair_transplant" in text and "lang:en" in text and "detected" in text
    page.screenshot(path=str(artefacts / "demo-health-intake.png"), full_page=True)
    page.close()


def test_health_intake_through_the_whatsapp_form(demo: str, browser: object, artefacts: Path) -> None:
    """The demo publishes the bot's WhatsApp forms at start: the first answer offers the form, whose fields the
    page shows in a sheet; WhatsApp's own check refuses a bad e-mail, and the sent form answers three questions."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.locator("button.try").first.wait_for(timeout=10_000)  # the page has set itself up (its Send included)
    page.click("#new-patient")
    page.fill("#text", "Hi, I would like dental implants")
    page.click("#send")
    page.locator(".msg.out").first.wait_for(timeout=20_000)
    offer = page.locator(".msg.out").last
    assert "Which country and city do you live in?" in offer.inner_text(), offer.inner_text()
    offer.locator(".form-open").click()
    sheet = page.locator(".form-sheet")
    assert "Contact language" in sheet.inner_text()
    sheet.locator("input[name=location]").fill("Vienna, Austria")
    sheet.locator("input[name=name]").fill("Anna Gruber")
    sheet.locator("input[name=email]").fill("anna@")
    sheet.locator("select[name=contact_language]").select_option("de")
    sheet.locator(".form-send").click()
    sheet.locator(".form-error").filter(has_text=re.compile(r"\S")).wait_for(timeout=10_000)
    sheet.locator("input[name=email]").fill("anna@example.at")
    sheet.locator(".form-send").click()
    page.locator(".msg.in", has_text="Vienna, Austria").wait_for(timeout=20_000)
    page.locator(".msg.out", has_text="When are you thinking of travelling?").wait_for(timeout=20_000)
    assert page.locator(".form-sheet").count() == 0
    page.screenshot(path=str(artefacts / "demo-whatsapp-form.png"), full_page=True)
    page.close()


def meeting_request_in_another_crm(base: str, browser: object, artefacts: Path, crm: str, stage: str,
                                   extra: str | None) -> None:
    """`chat2crm demo --crm salesforce|pipedrive`: the Turkish meeting request, the record as that CRM holds it.
    Run by the inbox tour of that CRM, on its demo (one demo start per CRM for the whole browser suite)."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{base}/demo")
    page.locator("#crm-name", has_text=crm).wait_for(timeout=10_000)
    page.click("#new-patient")
    page.select_option("#arrival", "campaign:meeting-tr")
    page.wait_for_function("document.querySelector('#text').value.includes('ref:')", timeout=10_000)
    page.click("#send")
    page.locator(".msg.out", has_text="Görüşmenin konusu nedir?").wait_for(timeout=20_000)
    _say(page, "Süreç otomasyonu ve raporlama.", "Şirketinizin adı ve e-posta adresiniz nedir?")
    _say(page, "ABC Lojistik, info@abc.com", "Hangi gün ve saat size uygun?")
    _say(page, "Çarşamba 11:00 uygun.", "numarasıyla kaydedildi")
    page.wait_for_function("document.querySelector('#crm').innerText.includes('ABC Lojistik')", timeout=20_000)
    record = page.locator(".card.record", has_text="Süreç otomasyonu ve raporlama").first.inner_text()
    assert stage in record and "meeting" in record
    assert page.locator(".card.contact", has_text="info@abc.com").count() >= 1
    if extra:
        assert "meeting-tr" in page.locator(".card.extra", has_text=extra).first.inner_text()
    page.screenshot(path=str(artefacts / f"demo-meeting-request-{crm}.png"), full_page=True)
    page.close()


def test_try_buttons_pick_the_campaign_link_and_the_first_message(demo: str, browser: object,
                                                                   artefacts: Path) -> None:
    """A newcomer who presses "Try" for the meeting request gets the meeting flow (not the default health
    intake) and, three answers later, the record in the CRM half; the health-intake button needs no campaign."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.click("button.try[data-example='health-en']")
    page.locator(".msg.out", has_text="Which country and city do you live in?").wait_for(timeout=20_000)
    assert page.locator(".msg.in").first.inner_text().startswith("Hi, price for hair transplant?")
    assert page.input_value("#arrival") == ""
    page.click("button.try[data-example='meeting-tr']")
    page.locator(".msg.out", has_text="Görüşmenin konusu nedir?").wait_for(timeout=20_000)
    assert page.input_value("#arrival") == "campaign:meeting-tr"
    assert page.locator(".msg.in").first.inner_text().startswith("Merhaba, hafta içi bir görüşme ayarlamak istiyorum")
    _say(page, "Depo yönetimi yazılımı.", "Şirketinizin adı ve e-posta adresiniz nedir?")
    _say(page, "Deniz Lojistik, bilgi@deniz.com", "Hangi gün ve saat size uygun?")
    _say(page, "Perşembe 14:00 uygun.", "numarasıyla kaydedildi")
    record = page.locator(".card.record", has_text="Depo yönetimi yazılımı")
    record.wait_for(timeout=20_000)
    text = record.inner_text()
    assert "New" in text and "meeting-tr" in text and "Perşembe 14:00 uygun." in text
    page.screenshot(path=str(artefacts / "demo-try-meeting-request.png"), full_page=True)
    page.close()


def test_a_refused_crm_write_shows_on_the_page(demo: str, browser: object, artefacts: Path) -> None:
    """With "Simulate a failure", the CRM refuses the lead's write; the page's Problems list says the relay gave up."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")  # the page's earlier checks may have left problems of their own (the agents' tour)
    page.click("button.try[data-example='meeting-tr']")
    page.locator(".msg.out", has_text="Görüşmenin konusu nedir?").wait_for(timeout=20_000)
    page.click("#simulate summary")
    page.select_option("#fault", "crm-400")
    page.click("#arm-fault")
    page.locator("#fault-armed", has_text="armed").wait_for(timeout=10_000)
    _say(page, "Filo takibi.", "Şirketinizin adı ve e-posta adresiniz nedir?")
    _say(page, "Kara Taşımacılık, iletisim@kara.com", "Hangi gün ve saat size uygun?")
    _say(page, "Cuma 10:00 uygun.", "numarasıyla kaydedildi")
    confirmation = page.locator(".msg.out", has_text="numarasıyla kaydedildi").last.inner_text()
    reference = re.search(r"#\d+", confirmation)
    assert reference, confirmation
    problem = page.locator("#problems .problem.final", has_text=f"CRM write of lead {reference.group()}")
    problem.wait_for(timeout=20_000)
    text = problem.inner_text()
    assert "failed for good" in text and "request rejected (400" in text and "chat2crm failed replay" in text
    assert page.locator("#problems").is_visible()
    assert page.locator(".card.record", has_text="Filo takibi.").count() == 0
    page.screenshot(path=str(artefacts / "demo-failure.png"), full_page=True)
    page.close()
