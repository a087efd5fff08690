"""`chat2crm demo` (HubSpot) sends conversion events to Meta: a patient who arrives from a click-to-WhatsApp ad
(the page's ad arrival: WhatsApp's referral with a ``ctwa_clid``) completes a request with consent, and the emulated
Conversions API receives ``LeadSubmitted``; the page's "Move to <stage>" control moves the deal as a person does in
HubSpot (the app's ``deal.propertyChange`` webhook reaches the relay) and the mapped event is received once;
pressing it again, or moving the deal back and forth, sends nothing more. Everything goes through the page's own
HTTP routes, as its buttons do.

Run by tests/e2e/test_demo_lead_form.py, whose one demo serves every check of the demo's Meta and channel parts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import requests

#: the demo's ad of the German dental campaign (campaigns.yaml `dental-de`): the bot speaks German
AD = "120210000000001"


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def _chat(base: str, patient: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = requests.get(f"{base}/demo/api/chat", params={
        "channel": "whatsapp", "patient": patient}, timeout=5).json()["messages"]
    return messages


def _answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """What the patient answers to the bot's ``message`` (German prompts of the health intake); None: done."""
    text = str(message.get("text") or "")
    buttons = message.get("buttons") or []
    rows = (message.get("list") or {}).get("rows") or []
    start = date.today() + timedelta(days=40)
    if "erfasst" in text:
        return None
    if "Stimmen Sie zu" in text:
        return {"button": next(b for b in buttons if b["id"] == "yes")}
    if "Sprache" in text:
        chosen = next((o for o in rows + buttons if o["id"] == "de"), (rows + buttons)[0])
        return {"list": chosen} if chosen in rows else {"button": chosen}
    if "Land und welcher Stadt" in text:
        return {"text": "Berlin, Deutschland"}
    if "anreisen" in text:
        return {"text": f"{start:%d.%m.}-{start + timedelta(days=7):%d.%m.}"}
    if "Vor- und Nachname" in text:
        return {"text": "Anna Schmidt"}
    if "E-Mail" in text:
        return {"text": "anna.schmidt@example.com"}
    skip = next((b for b in buttons if str(b["title"]).casefold() == "überspringen"), None)
    if skip is not None:
        return {"button": skip}
    if "optional" in text:
        return {"text": "Überspringen"}
    if buttons:
        return {"button": buttons[0]}
    if rows:
        return {"list": rows[0]}
    return {"text": "Ja"}


def _complete_from_the_ad(base: str, patient: str) -> None:
    """The patient arrives from the ad and answers the bot until it says the request is recorded."""
    requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, "ad": AD,
                                                 "text": "Hallo, ich interessiere mich für das Angebot"}, timeout=10)
    answered = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        messages = _chat(base, patient)
        out = [m for m in messages if m["direction"] == "out"]
        last_in = max((i for i, m in enumerate(messages) if m["direction"] == "in"), default=-1)
        waiting = len(out) > answered and messages[-1]["direction"] == "out" and last_in < len(messages) - 1
        if not waiting:
            time.sleep(0.2)
            continue
        time.sleep(0.2)  # the bot's replies of one turn arrive together: answer the last of them
        messages = _chat(base, patient)
        out = [m for m in messages if m["direction"] == "out"]
        answered = len(out)
        if any("erfasst" in str(m.get("text")) for m in out):
            return
        reply = _answer(out[-1])
        if reply is None:
            return
        requests.post(f"{base}/demo/api/send", json={"channel": "whatsapp", "patient": patient, **reply},
                      timeout=10)
    pytest.fail("the request was not completed: " + " | ".join(str(m.get("text")) for m in _chat(base, patient)))


def _events(base: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = requests.get(f"{base}/demo/api/conversions", timeout=5).json()["events"]
    return listed


def _named(base: str, name: str) -> list[dict[str, Any]]:
    return [e for e in _events(base) if e["name"] == name]


@pytest.fixture(scope="module")
def completed(demo: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """A patient from the ad completed a request: the demo's base URL, the deal's id, its LeadSubmitted."""
    started = time.monotonic()
    _complete_from_the_ad(demo, "905327781001")
    (record,) = _until(lambda: requests.get(f"{demo}/demo/api/crm", timeout=5).json()["records"], "deal in the CRM")
    (submitted,) = _until(lambda: _named(demo, "LeadSubmitted"), "LeadSubmitted at Meta")
    print(f"first message -> LeadSubmitted at Meta: {time.monotonic() - started:.2f} s")
    assert record["fields"]["chat2crm_ctwa_clid"].startswith("ARA")
    yield demo, str(record["id"]), submitted


def test_the_demo_offers_the_mapped_stages_and_the_panel(demo: str) -> None:
    listed = requests.get(f"{demo}/demo/api/conversions", timeout=5).json()
    assert listed["stages"] == [{"event": "InitiateCheckout", "stage": "reviewing", "label": "Reviewing"},
                                {"event": "Purchase", "stage": "planned", "label": "Planned"}]
    page = requests.get(f"{demo}/demo", timeout=5).text
    assert 'id="meta-events"' in page and "Sent to Meta" in page


def test_a_patient_from_an_ad_sends_lead_submitted(completed: tuple[str, str, dict[str, Any]]) -> None:
    _base, _record, submitted = completed
    assert submitted["action_source"] == "business_messaging"
    assert submitted["event_id"].endswith(":LeadSubmitted") and submitted["event_id"].split(":")[0].isdigit()
    assert abs(submitted["time"] - time.time()) < 300


def test_moving_the_deal_sends_the_mapped_event_once(completed: tuple[str, str, dict[str, Any]]) -> None:
    base, record, submitted = completed
    reference = submitted["event_id"].split(":")[0]
    started = time.monotonic()
    moved = requests.post(f"{base}/demo/api/conversions/move", json={"record": record, "stage": "planned"}, timeout=10)
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"record": record, "stage": "Planned", "event": "Purchase"}
    (purchase,) = _until(lambda: _named(base, "Purchase"), "Purchase at Meta")
    print(f"Move to Planned -> Purchase at Meta: {time.monotonic() - started:.2f} s")
    assert purchase["event_id"] == f"{reference}:Purchase" and purchase["action_source"] == "business_messaging"
    assert (purchase["value"], purchase["currency"]) == (2500, "EUR")
    view = requests.get(f"{base}/demo/api/crm", timeout=5).json()
    assert next(r for r in view["records"] if str(r["id"]) == record)["stage"] == "Planned"

    # the same stage again: HubSpot sends no webhook for an unchanged value, and nothing reaches Meta
    again = requests.post(f"{base}/demo/api/conversions/move", json={"record": record, "stage": "planned"}, timeout=10)
    assert again.status_code == 200, again.text
    # back to Reviewing (its own event), then to Planned again: the relay sends each event of a lead once
    requests.post(f"{base}/demo/api/conversions/move", json={"record": record, "stage": "reviewing"}, timeout=10)
    _until(lambda: _named(base, "InitiateCheckout"), "InitiateCheckout at Meta")
    requests.post(f"{base}/demo/api/conversions/move", json={"record": record, "stage": "planned"}, timeout=10)
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        assert len(_named(base, "Purchase")) == 1
        time.sleep(0.2)
    assert sorted(e["name"] for e in _events(base)) == ["InitiateCheckout", "LeadSubmitted", "Purchase"]


def test_the_control_refuses_what_it_cannot_move(completed: tuple[str, str, dict[str, Any]]) -> None:
    base, record, _submitted = completed
    for bad in ({"record": record, "stage": "new"}, {"record": record, "stage": "done"}, {"record": "x", "stage": "planned"}):
        assert requests.post(f"{base}/demo/api/conversions/move", json=bad, timeout=10).status_code == 400, bad
    missing = requests.post(f"{base}/demo/api/conversions/move", json={"record": "999999999", "stage": "planned"},
                            timeout=10)
    assert missing.status_code == 404
