"""The agents' inbox of ``chat2crm demo --crm salesforce`` on the demo page, in headless Chromium: the whole loop
between a patient on the phone and an agent using the chat2crm package's component on the Lead's page, played
through the page only. The demo runs the org with the package, its Pub/Sub API over gRPC with TLS, and the
listener process (``chat2crm listen salesforce``) that takes the agents' replies from the change events.

The patient asks for a person; the Lead's messages show in the Inbox tab; the agent's reply (with a file: a
draft, the upload, then New) reaches the phone under the agent's name, and its record goes to Read; the
patient's answer shows on the Lead; closing the conversation (a Close record) hands the patient back to the
bot. A screenshot is saved under artefacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.demo_inbox_tour import _agent_replies, _patient_says, handed_over
from tests.browser.test_demo_page import CHROMIUM, _demo, meeting_request_in_another_crm

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's 'chromium' package (./scripts/test installs it when run as root)"),
    pytest.mark.weight(45),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with _demo("salesforce") as base:
        yield base


def _the_lead_shows_the_history(page: object, patient: str) -> None:
    """The patient's Lead is in the Inbox tab, open, with the conversation so far in order."""
    page.click("#crm-tabs [data-tab='inbox']")  # type: ignore[attr-defined]
    assert "Salesforce" in page.locator("#inbox-hint").inner_text()  # type: ignore[attr-defined]
    item = page.locator(f".thread-item[data-patient='{patient}']")  # type: ignore[attr-defined]
    item.wait_for(timeout=20_000)
    assert "Open" in item.inner_text() and "WhatsApp" in item.inner_text()
    item.click()
    thread = page.locator("#thread-messages")  # type: ignore[attr-defined]
    thread.locator(".imsg.bot", has_text="passing you to a patient coordinator").wait_for(timeout=20_000)
    lines = [m.inner_text() for m in thread.locator(".imsg").all()]
    order = ["Hi, price for hair transplant?", "Which country and city do you live in?", "human",
             "passing you to a patient coordinator"]
    positions = [next(i for i, line in enumerate(lines) if words in line) for words in order]
    assert positions == sorted(positions), lines
    assert thread.locator(".imsg").first.get_attribute("data-who") == "patient"


def _the_reply_reaches_the_phone(page: object) -> None:
    """The agent's reply with a file reaches the phone under the agent's name; its record goes to Read."""
    phone, thread = page.locator("#chat"), page.locator("#thread-messages")  # type: ignore[attr-defined]
    _agent_replies(page, "Hello, I am Deniz from the clinic. Here is our price list.", "price-list")
    mine = phone.locator(".msg.out", has_text="Here is our price list.")
    mine.wait_for(timeout=20_000)
    assert "Deniz" in mine.locator(".agent-name").inner_text()
    assert mine.locator(".file", has_text="price-list.pdf").count() == 1
    assert phone.locator(".msg.out", has_text="Which country").locator(".agent-name").count() == 0  # the bot's
    mine.locator(".ticks.read").wait_for(timeout=20_000)
    sent = thread.locator(".imsg.agent", has_text="Here is our price list.")
    sent.locator(".delivery[data-status='READ']").wait_for(timeout=20_000)
    assert sent.locator(".file", has_text="price-list").count() == 1


def _closing_hands_back_to_the_bot(page: object) -> None:
    """The agent closes the conversation: the patient's next message gets the bot again."""
    phone, thread = page.locator("#chat"), page.locator("#thread-messages")  # type: ignore[attr-defined]
    page.click("#close-thread")  # type: ignore[attr-defined]
    thread.locator(".imsg.system[data-status='CLOSED']").wait_for(timeout=10_000)
    page.locator("#thread-status", has_text="Closed").wait_for(timeout=10_000)  # type: ignore[attr-defined]
    assert page.locator("#close-thread").is_disabled()  # type: ignore[attr-defined]
    before = phone.locator(".msg.out").count()
    # the Close record's change event reaches the listener within a second; the patient writes a moment later
    page.wait_for_timeout(800)  # type: ignore[attr-defined]
    _patient_says(page, "Hello again")
    page.wait_for_function(f"document.querySelectorAll('#chat .msg.out').length > {before}",  # type: ignore[attr-defined]
                           timeout=20_000)
    answer = phone.locator(".msg.out").last
    assert answer.locator(".agent-name").count() == 0
    assert thread.locator(".imsg.patient", has_text="Hello again").count() == 0  # the bot's again, not the Lead's


def test_an_agent_answers_on_the_salesforce_lead_and_hands_back_to_the_bot(demo: str, browser: object,
                                                                          artefacts: Path) -> None:
    page, patient, phone = handed_over(demo, browser)

    _the_lead_shows_the_history(page, patient)
    _the_reply_reaches_the_phone(page)

    # the patient answers: it shows on the Lead, and the bot keeps quiet
    _patient_says(page, "Thank you! How long is the recovery?")
    page.locator("#thread-messages .imsg.patient", has_text="How long is the recovery?").wait_for(timeout=20_000)
    assert phone.locator(".msg.out").last.inner_text().startswith("Deniz")

    _closing_hands_back_to_the_bot(page)
    problems = [p.inner_text() for p in page.locator("#problems .problem").all()]
    assert not problems, problems
    page.screenshot(path=str(artefacts / "demo-agent-inbox-salesforce.png"), full_page=True)
    page.close()


def test_the_meeting_request_in_salesforce(demo: str, browser: object, artefacts: Path) -> None:
    """The same Turkish meeting request as with HubSpot, on this demo after the agent's tour (a new patient)."""
    meeting_request_in_another_crm(demo, browser, artefacts, "salesforce", "New", "campaign member")
