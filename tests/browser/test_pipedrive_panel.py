"""The Pipedrive panel in headless Chromium (Debian's package, driven by Playwright), inside the Pipedrive
emulator's detail view as Pipedrive would host it: the SDK initializes and sizes the panel, the panel shows
the patient's thread, the agent types a reply and sends it, the patient (the WhatsApp emulator) gets it, the
patient answers and the panel shows the answer; closing asks for a confirmation in Pipedrive's page and hands
the conversation back. A screenshot is saved under artefacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.browsing import CHROMIUM
from tests.e2e.pipedrive_app import PATIENT, PipedriveLoop, pipedrive_loop_fixture  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's 'chromium' package (./scripts/test installs it when run as root)"),
]


def test_an_agent_answers_the_patient_from_the_panel_in_pipedrive(pipedrive_loop: PipedriveLoop, browser: Any,
                                                                   artefacts: Path) -> None:
    loop = pipedrive_loop
    patient = loop.whatsapp.patient(PATIENT, "Ayşe Yılmaz")
    person = loop.handed_over(patient)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(loop.host_page("person", person))
    panel = page.frame_locator("#panel")

    # the SDK initialized the panel (the host sized it as asked) and the panel shows the thread
    panel.locator("#thread li").first.wait_for(timeout=15_000)
    assert page.locator("#panel").get_attribute("height") == "560"
    assert "burun estetiği" in panel.locator("#thread li").first.inner_text()
    assert panel.locator("#channel").inner_text().startswith("WhatsApp")

    # the agent types a reply and sends it; Pipedrive's page says so; the patient gets it once
    before = len(loop.sent_to_patient())
    panel.locator("#text").fill("Merhaba Ayşe Hanım, yarın 10:00 uygun mu?")
    panel.locator("#send").dblclick()  # a double click sends once
    page.locator("#snackbars .snackbar", has_text="Reply queued").wait_for(timeout=10_000)
    loop.until(lambda: len(loop.sent_to_patient()) > before, "the agent's reply reaches the patient")
    sent = loop.sent_to_patient()[before:]
    assert [p["text"]["body"] for p in sent] == ["Merhaba Ayşe Hanım, yarın 10:00 uygun mu?"]
    reply = panel.locator("#thread li[data-status]")
    loop.until(lambda: reply.count() == 1 and reply.get_attribute("data-status") in ("sent", "delivered", "read"),
               "the panel shows the reply delivered")

    # the patient answers: the panel shows the answer, and the bot says nothing
    patient.send_text("Evet, yarın 10:00 olur.")
    answer = panel.locator("#thread li.incoming", has_text="yarın 10:00 olur")
    loop.until(lambda: answer.count() == 1, "the patient's answer shows in the panel", timeout=20.0)
    assert len(loop.sent_to_patient()) == before + 1
    page.screenshot(path=str(artefacts / "pipedrive-panel.png"), full_page=True)

    # closing asks in Pipedrive's page, then hands the conversation back to the bot
    panel.locator("#close").click()
    page.locator("#confirmation #confirm-ok").click()
    page.locator("#snackbars .snackbar", has_text="the bot answers again").wait_for(timeout=10_000)
    assert errors == []
