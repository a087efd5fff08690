"""The agents' inbox of ``chat2crm demo --crm pipedrive`` on the demo page, in headless Chromium: the whole loop
between a patient on the phone and an agent in the relay's panel, which the page's Inbox tab shows inside the
Pipedrive emulator's person view (the app installed by OAuth at start, its panel signed in with Pipedrive's
JWT), played through the page only.

The patient asks for a person; the person's view opens with the panel and the conversation so far; the agent's
reply reaches the phone and the panel shows it delivered; the patient's answer shows in the panel; closing
(confirmed in Pipedrive's page) hands the patient back to the bot. A screenshot is saved under artefacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.demo_inbox_tour import _patient_says
from tests.browser.test_demo_page import CHROMIUM, _demo, meeting_request_in_another_crm

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's 'chromium' package (./scripts/test installs it when run as root)"),
    pytest.mark.weight(40),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with _demo("pipedrive") as base:
        yield base


def test_an_agent_answers_in_the_pipedrive_panel_and_hands_back_to_the_bot(demo: str, browser: object,
                                                                           artefacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.locator("#crm-tabs").wait_for(timeout=10_000)  # the configuration is read: the CRM has an inbox
    page.wait_for_function("state.patient !== null", timeout=10_000)
    phone = page.locator("#chat")  # type: ignore[attr-defined]

    _patient_says(page, "Hi, price for hair transplant?")
    phone.locator(".msg.out", has_text="Which country and city do you live in?").wait_for(timeout=20_000)
    _patient_says(page, "human")
    phone.locator(".msg.out", has_text="passing you to a patient coordinator").wait_for(timeout=20_000)

    # the Inbox tab opens the patient's person in Pipedrive, with the relay's panel in the sidebar
    page.click("#crm-tabs [data-tab='inbox']")  # type: ignore[attr-defined]
    assert "Pipedrive" in page.locator("#inbox-hint").inner_text()  # type: ignore[attr-defined]
    page.locator("#crm-frame[data-person]").wait_for(timeout=20_000)  # type: ignore[attr-defined]
    host = page.frame_locator("#crm-frame")  # type: ignore[attr-defined]
    panel = host.frame_locator("#panel")
    panel.locator("#thread li", has_text="passing you to a patient coordinator").wait_for(timeout=20_000)
    assert "Hi, price for hair transplant?" in panel.locator("#thread li").first.inner_text()
    assert panel.locator("#channel").inner_text().startswith("WhatsApp")

    # the agent answers from the panel: the phone shows it, the panel shows it delivered
    panel.locator("#text").fill("Hello, I am Deniz from the clinic. When would you like to come?")
    panel.locator("#send").click()
    host.locator("#snackbars .snackbar", has_text="Reply queued").wait_for(timeout=10_000)
    phone.locator(".msg.out", has_text="When would you like to come?").wait_for(timeout=20_000)
    panel.locator("#thread li[data-status='read'], #thread li[data-status='delivered']",
                  has_text="When would you like to come?").wait_for(timeout=20_000)

    # the patient answers: it shows in the panel, and the bot keeps quiet
    before = phone.locator(".msg.out").count()
    _patient_says(page, "Next Monday, please")
    panel.locator("#thread li.incoming", has_text="Next Monday, please").wait_for(timeout=20_000)
    assert phone.locator(".msg.out").count() == before
    page.screenshot(path=str(artefacts / "demo-agent-inbox-pipedrive.png"), full_page=True)

    # the agent closes (confirmed in Pipedrive's page): the patient's next message gets the bot again
    panel.locator("#close").click()
    host.locator("#confirmation #confirm-ok").click()
    host.locator("#snackbars .snackbar", has_text="the bot answers again").wait_for(timeout=10_000)
    _patient_says(page, "Hello again")
    page.wait_for_function(f"document.querySelectorAll('#chat .msg.out').length > {before}",  # type: ignore[attr-defined]
                           timeout=20_000)
    assert panel.locator("#thread li", has_text="Hello again").count() == 0
    problems = [p.inner_text() for p in page.locator("#problems .problem").all()]  # type: ignore[attr-defined]
    assert not problems, problems
    assert errors == []
    page.close()


def test_the_meeting_request_in_pipedrive(demo: str, browser: object, artefacts: Path) -> None:
    """The same Turkish meeting request as with HubSpot, on this demo after the agent's tour (a new patient)."""
    meeting_request_in_another_crm(demo, browser, artefacts, "pipedrive", "New enquiry", None)
