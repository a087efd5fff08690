"""`chat2crm demo` with a Meta lead form: the page's form path (the same HTTP call its button makes) makes the
Meta emulator create the lead and deliver the signed ``leadgen`` webhook; the relay reads the lead back and writes
a contact and a record to the CRM, shown in the page's CRM view beside chat leads, and with the consent ticked the
patient's phone shows the WhatsApp greeting template, after which the bot asks only what the form did not answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

# the demo's conversion checks share this module's demo (one start instead of two); imported first, they run
# first, on the demo's empty CRM
from tests.e2e.demo_conversions_checks import (  # noqa: F401
    _chat,
    _until,
    completed,
    test_a_patient_from_an_ad_sends_lead_submitted,
    test_moving_the_deal_sends_the_mapped_event_once,
    test_the_control_refuses_what_it_cannot_move,
    test_the_demo_offers_the_mapped_stages_and_the_panel,
)
from tests.integration.test_docs_commands import _free_port


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    """`chat2crm demo` (HubSpot) running for the module, stopped with Ctrl-C as a person would."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        lines.append(line)
        if "chat2crm is running" in line or not line:
            break
    try:
        assert "chat2crm is running" in lines[-1], "".join(lines)
        assert any("Meta lead forms" in line for line in lines), "".join(lines)
        assert any("Twilio, Messenger, Instagram, LINE" in line for line in lines), "".join(lines)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest


def test_the_form_lands_in_the_crm_view_and_the_phone_shows_the_greeting(demo: str) -> None:
    form = requests.get(f"{demo}/demo/api/leadform", timeout=5).json()
    assert form["name"] == "Hair transplant offer" and "hair" in form["treatments"]
    assert form["consent"]["key"] == "whatsapp_optin" and form["sample"]["full_name"]
    patient = "905327770001"
    started = time.monotonic()
    answer = requests.post(f"{demo}/demo/api/leadform", json={
        "full_name": "Emma Walker", "phone": "+90 532 777 0001", "email": "emma.walker@example.com",
        "treatment": "hair", "consent": True}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["patient"] == patient and answer.json()["leadgen_id"].isdigit()

    def written() -> dict[str, Any] | None:  # other checks of the module write to the same demo: this form's
        view: dict[str, Any] = requests.get(f"{demo}/demo/api/crm", timeout=5).json()
        noted = any("Meta lead form" in n["body"] for n in view["notes"])
        return view if noted and any("lead-form" in r["tags"] for r in view["records"]) else None

    view = _until(written, "record and note in the CRM view")
    in_crm = time.monotonic() - started
    (contact,) = [c for c in view["contacts"] if c["fields"].get("chat2crm_contact_key") == f"whatsapp:{patient}"]
    assert contact["title"] == "Emma Walker" and contact["fields"]["email"] == "emma.walker@example.com"
    (record,) = [r for r in view["records"] if "lead-form" in r["tags"]]
    assert record["fields"]["chat2crm_treatment"] == "hair_transplant"  # the choice's key, through `values`
    assert record["fields"]["chat2crm_utm_source"] == "facebook" and record["fields"]["chat2crm_ad_id"]
    assert "lead-form" in record["tags"] and record["stage"] == "New"
    assert any("Meta lead form Hair transplant offer (Facebook, ad)" in n["body"] for n in view["notes"])

    greeting = _until(lambda: [m for m in _chat(demo, patient) if m.get("template")], "greeting on the phone")
    assert greeting[0]["template"] == "hair_offer_welcome" and greeting[0]["direction"] == "out"
    assert greeting[0]["text"].startswith("Hello Emma, thank you for your interest in our hair transplant offer")
    # the patient answers the greeting: the bot starts, and asks where they live (not the treatment: the form said)
    requests.post(f"{demo}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "text": "Hi!"},
                  timeout=10)
    asked = _until(lambda: [m["text"] for m in _chat(demo, patient)
                            if m["direction"] == "out" and not m.get("template")], "bot's reply")
    said = "\n".join(asked)
    assert "Which country and city" in said and "Which treatment" not in said, said
    print(f"form submitted -> record and note in the CRM view: {in_crm:.2f} s")


def test_a_form_without_consent_writes_the_lead_and_messages_nobody(demo: str) -> None:
    patient = "905327770002"
    answer = requests.post(f"{demo}/demo/api/leadform", json={
        "full_name": "Liam Brown", "phone": f"+{patient}", "email": "", "treatment": "beard_eyebrow",
        "consent": False}, timeout=10)
    assert answer.status_code == 200, answer.text

    def mine() -> list[dict[str, Any]]:
        view = requests.get(f"{demo}/demo/api/crm", timeout=5).json()
        return [c for c in view["contacts"] if c["fields"].get("chat2crm_contact_key") == f"whatsapp:{patient}"]

    (contact,) = _until(mine, "contact of the second form")
    assert contact["title"] == "Liam Brown"
    time.sleep(0.5)  # the greeting would have gone with the lead's write
    assert _chat(demo, patient) == []


def test_the_form_path_refuses_what_a_form_could_not_send(demo: str) -> None:
    for bad in ({"full_name": "", "phone": "+905327770003"}, {"full_name": "A", "phone": "12"},
                {"full_name": "A", "phone": "+905327770003", "treatment": "dental"}):
        answer = requests.post(f"{demo}/demo/api/leadform", json=bad, timeout=10)
        assert answer.status_code == 400, (bad, answer.text)


# the demo's channel checks share this module's demo too; imported last, they run last
from tests.e2e.demo_channels_checks import test_the_phone_plays_each_new_channel_through_its_emulator  # noqa: E402,F401
