"""The agents' inbox on the demo page, in headless Chromium (Debian's package, driven by Playwright): the whole
loop between a patient on the phone and an agent in HubSpot's conversations inbox, played through the page
only. The patient asks for a person; the thread shows in the Inbox tab with the conversation so far; the
agent's reply (with a file) reaches the phone under the agent's name, with WhatsApp's ticks going from
delivered to read; a file WhatsApp does not carry fails with the reason under the agent's message; the
patient's answer shows in the thread; closing the conversation hands the patient back to the bot.
A screenshot is saved under artefacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Run by tests/browser/test_demo_page.py on its HubSpot demo (one demo start for the page's checks); the Salesforce
# and Pipedrive tours use its helpers.


def _patient_says(page: object, text: str) -> None:
    page.fill("#text", text)  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]
    page.locator(".msg.in", has_text=text).wait_for(timeout=20_000)  # type: ignore[attr-defined]


def _agent_replies(page: object, text: str, sample: str = "") -> None:
    page.fill("#agent-text", text)  # type: ignore[attr-defined]
    page.select_option("#agent-file", sample)  # type: ignore[attr-defined]
    page.click("#agent-send")  # type: ignore[attr-defined]
    page.locator("#thread-messages .imsg.agent", has_text=text).wait_for(timeout=10_000)  # type: ignore[attr-defined]


def _the_thread_shows_the_history(page: object, patient: str) -> None:
    """The patient's thread is in the Inbox tab, open, with the conversation so far in order."""
    page.click("#crm-tabs [data-tab='inbox']")  # type: ignore[attr-defined]
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
    """The agent's reply, with a file, shows on the phone under the agent's name: delivered, then read (and
    HubSpot shows it read)."""
    phone, thread = page.locator("#chat"), page.locator("#thread-messages")  # type: ignore[attr-defined]
    _agent_replies(page, "Hello, I am Deniz from the clinic. Here is our price list.", "price-list")
    mine = phone.locator(".msg.out.agent", has_text="Here is our price list.")
    mine.wait_for(timeout=20_000)
    assert "Deniz" in mine.locator(".agent-name").inner_text()
    assert mine.locator("a.file", has_text="price-list.pdf").count() == 1
    assert phone.locator(".msg.out", has_text="Which country").locator(".agent-name").count() == 0  # the bot's
    mine.locator(".ticks.delivered").wait_for(timeout=10_000)
    mine.locator(".ticks.read").wait_for(timeout=10_000)
    sent = thread.locator(".imsg.agent", has_text="Here is our price list.")
    sent.locator(".delivery[data-status='READ']").wait_for(timeout=20_000)
    assert sent.locator("a.file", has_text="price-list.pdf").count() == 1


def _a_refused_file_fails_with_its_reason(page: object) -> None:
    """A file WhatsApp does not carry: the reply fails, and the agent reads why under it."""
    phone, thread = page.locator("#chat"), page.locator("#thread-messages")  # type: ignore[attr-defined]
    _agent_replies(page, "And the before and after photo.", "before-after")
    failed = thread.locator(".imsg.agent", has_text="before and after").locator(".delivery.failed")
    failed.wait_for(timeout=20_000)
    assert "image/webp" in failed.inner_text()
    assert phone.locator(".msg.out", has_text="before and after").count() == 0


def _closing_hands_back_to_the_bot(page: object) -> None:
    """The agent closes the conversation: the patient's next message gets the bot again."""
    phone, thread = page.locator("#chat"), page.locator("#thread-messages")  # type: ignore[attr-defined]
    page.click("#close-thread")  # type: ignore[attr-defined]
    thread.locator(".imsg.system[data-status='CLOSED']").wait_for(timeout=10_000)
    page.locator("#thread-status", has_text="Closed").wait_for(timeout=10_000)  # type: ignore[attr-defined]
    assert page.locator("#close-thread").is_disabled()  # type: ignore[attr-defined]
    before = phone.locator(".msg.out").count()
    # the closed thread's webhook reaches the relay in milliseconds; the patient writes a moment later
    page.wait_for_timeout(500)  # type: ignore[attr-defined]
    _patient_says(page, "Hello again")
    page.wait_for_function(f"document.querySelectorAll('#chat .msg.out').length > {before}",  # type: ignore[attr-defined]
                           timeout=20_000)
    answer = phone.locator(".msg.out").last
    assert "agent" not in (answer.get_attribute("class") or "")
    assert answer.locator(".agent-name").count() == 0


def handed_over(demo: str, browser: object) -> tuple[Any, str, Any]:
    """A new patient on the demo page writes, the bot answers, the patient asks for a person.
    Returns the page, the patient and the phone pane."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.goto(f"{demo}/demo")
    page.locator("#crm-tabs").wait_for(timeout=10_000)  # the configuration is read: the CRM has an inbox
    page.wait_for_function("state.patient !== null", timeout=10_000)
    patient = str(page.evaluate("state.patient"))
    phone = page.locator("#chat")
    _patient_says(page, "Hi, price for hair transplant?")
    phone.locator(".msg.out", has_text="Which country and city do you live in?").wait_for(timeout=20_000)
    _patient_says(page, "human")
    phone.locator(".msg.out", has_text="passing you to a patient coordinator").wait_for(timeout=20_000)
    return page, patient, phone


def test_an_agent_answers_the_patient_from_the_inbox_and_hands_back_to_the_bot(demo: str, browser: object,
                                                                               artefacts: Path) -> None:
    page, patient, phone = handed_over(demo, browser)

    _the_thread_shows_the_history(page, patient)
    _the_reply_reaches_the_phone(page)
    _a_refused_file_fails_with_its_reason(page)

    # the patient answers: it shows in the thread, and the bot keeps quiet
    _patient_says(page, "Thank you! How long is the recovery?")
    page.locator("#thread-messages .imsg.patient", has_text="How long is the recovery?").wait_for(timeout=20_000)
    assert phone.locator(".msg.out").last.inner_text().startswith("Deniz")

    _closing_hands_back_to_the_bot(page)
    # the refused file is the one thing that went wrong (the page's Problems list shows what the relay logged)
    problems = [p.inner_text() for p in page.locator("#problems .problem").all()]
    assert all("image/webp" in p for p in problems), problems
    page.screenshot(path=str(artefacts / "demo-agent-inbox.png"), full_page=True)
    page.close()
