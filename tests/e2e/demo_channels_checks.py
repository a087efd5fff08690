"""`chat2crm demo` on its other channels: the page's phone plays a patient on WhatsApp through Twilio, Messenger,
Instagram and LINE (each message a signed webhook from the channel's emulator), the bot's reply comes back as
the emulator received it, and the Twilio patient's handoff lands in the CRM view.

Run by tests/e2e/test_demo_lead_form.py, whose one demo serves every check of the demo's Meta and channel parts
(a demo takes some 15 s to start)."""

from __future__ import annotations

import time
from typing import Any

import requests

#: per channel: a patient the page could have made up
PATIENTS = {"twilio": "905329990077", "messenger": "2400000000000101", "instagram": "2400000000000202",
            "line": "2400000000000303"}


def _chat(base: str, channel: str, patient: str, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """The phone's chat once ``until(messages)`` holds (or the last seen, when time ran out)."""
    deadline = time.monotonic() + timeout
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        messages = requests.get(f"{base}/demo/api/channels/chat", params={"channel": channel, "patient": patient},
                                timeout=5).json()["messages"]
        if until(messages):
            break
        time.sleep(0.2)
    return messages


def _send(base: str, channel: str, **body: Any) -> None:
    answer = requests.post(f"{base}/demo/api/channels/send",
                           json={"channel": channel, "patient": PATIENTS[channel], **body}, timeout=15)
    assert answer.status_code == 200 and answer.json() == {"status": 200}, answer.text


def test_the_phone_plays_each_new_channel_through_its_emulator(demo: str) -> None:
    """The demo of the module (tests.e2e.test_demo_lead_form) plays a patient on each new channel."""
    base = demo
    listed = requests.get(f"{base}/demo/api/channels", timeout=5).json()["channels"]
    assert [c["id"] for c in listed] == ["twilio", "messenger", "instagram", "line"]
    bad = requests.post(f"{base}/demo/api/channels/send", json={"channel": "sms", "patient": "1", "text": "x"},
                        timeout=5)
    assert bad.status_code == 400
    first = "Hello, I would like some information"
    for channel in PATIENTS:
        _send(base, channel, text=first)
    replies: dict[str, list[dict[str, Any]]] = {}
    for channel, patient in PATIENTS.items():
        messages = _chat(base, channel, patient, lambda m: any(x["direction"] == "out" for x in m))
        assert messages[0] == {**messages[0], "direction": "in", "text": first}, messages
        out = [m for m in messages if m["direction"] == "out"]
        assert out and out[0]["text"], (channel, messages)
        replies[channel] = out
    # Twilio has no free-form buttons: the options are numbered in the text; Messenger, Instagram and LINE
    # show buttons (a button template's postbacks, quick replies), which the patient presses
    assert not any(m.get("buttons") for m in replies["twilio"])
    for channel in ("messenger", "line"):
        buttons = next((m["buttons"] for m in replies[channel] if m.get("buttons")), None)
        assert buttons and all(b["id"] and b["title"] and b["kind"] for b in buttons), (channel, replies[channel])
        count = len(replies[channel])
        _send(base, channel, button=buttons[0])
        messages = _chat(base, channel, PATIENTS[channel],
                         lambda m, n=count: len([x for x in m if x["direction"] == "out"]) > n)
        pressed = [m for m in messages if m["direction"] == "in"][1]
        assert pressed["text"] in (buttons[0]["title"], buttons[0].get("display")), messages
        assert len([m for m in messages if m["direction"] == "out"]) > count, (channel, messages)
    # the Twilio patient asks for a person: a lead with a task for the coordinator, with their number
    _send(base, "twilio", text="agent")
    deadline = time.monotonic() + 30
    view: dict[str, Any] = {"contacts": [], "tasks": []}

    def landed() -> bool:  # other tests of the module write leads to the same demo: wait for this patient's
        return any(PATIENTS["twilio"] in str(c["fields"]) for c in view["contacts"]) and bool(view["tasks"])

    while time.monotonic() < deadline and not landed():
        view = requests.get(f"{base}/demo/api/crm", timeout=5).json()
        time.sleep(0.3)
    assert landed(), view
