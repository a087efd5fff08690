"""Flood control, opt-out (keyword and WhatsApp's user_preferences) reaching the CRM, and metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from connector.channels.whatsapp import sign
from tests.conftest import TEST_SECRETS
from tests.e2e.conftest import Stack


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {"default_flow": "meeting_request", "limits.per_sender_per_minute": 5}


def _texts(stack: Stack, wa_id: str) -> list[str]:
    out = []
    for sent in stack.whatsapp.messages_to(wa_id):
        payload = sent.payload
        out.append(payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"])
    return out


def test_a_flooding_patient_gets_one_polite_pause(stack: Stack) -> None:
    patient = stack.whatsapp.patient("4915111111111", "Flood")
    for i in range(12):
        assert patient.send_text(f"hello {i}") == 200
    stack.work()
    texts = _texts(stack, "4915111111111")
    assert sum("please wait a minute" in t for t in texts) == 1
    # five messages were handled by the bot, the seven others produced nothing but that one notice
    assert len(texts) <= 5 * 2 + 1
    assert stack.hubspot.count("deals") == 0


def test_stop_keyword_opts_out_in_the_crm_and_silences_the_bot(stack: Stack) -> None:
    patient = stack.whatsapp.patient("4915122222222", "Opt Out")
    patient.send_text("Hello, I want a meeting")
    stack.work()
    patient.send_text("STOP")
    stack.work()
    assert _texts(stack, "4915122222222")[-1].startswith("Understood, we will not message you again")  # once
    before = len(stack.whatsapp.messages_to("4915122222222"))
    patient.send_text("are you there?")
    stack.work()
    assert len(stack.whatsapp.messages_to("4915122222222")) == before  # nothing more is sent
    (contact,) = stack.hubspot.records("contacts")
    assert contact["properties"]["chat2crm_opted_out"] == "true"
    assert contact["properties"]["chat2crm_contact_key"] == "whatsapp:4915122222222"


def test_whatsapp_user_preferences_stop_opts_out(stack: Stack) -> None:
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "user_preferences", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "905320000000", "phone_number_id": TEST_SECRETS["whatsapp_phone_number_id"]},
            "user_preferences": [{"wa_id": "4915133333333", "detail": "User requested to stop marketing messages",
                                  "category": "marketing_messages", "value": "stop", "timestamp": 1763800030}]}}]}]}
    raw = json.dumps(body).encode()
    response = requests.post(f"{stack.relay_url}/webhooks/whatsapp", data=raw, timeout=5, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, TEST_SECRETS["whatsapp_app_secret"])})
    assert response.status_code == 200
    stack.work()
    (contact,) = stack.hubspot.records("contacts")
    assert contact["properties"]["chat2crm_opted_out"] == "true"
    stack.whatsapp.patient("4915133333333", "X").send_text("hello")
    stack.work()
    assert stack.whatsapp.messages_to("4915133333333") == []


def test_metrics_count_the_traffic(stack: Stack) -> None:
    patient = stack.whatsapp.patient("4915144444444", "Metrics")
    patient.send_text("Hello, a meeting please")
    patient.redeliver()
    stack.work()
    unauthorised = requests.get(f"{stack.relay_url}/metrics", timeout=5)
    assert unauthorised.status_code == 401
    text = requests.get(f"{stack.relay_url}/metrics", timeout=5,
                        headers={"Authorization": f"Bearer {TEST_SECRETS['admin_token']}"}).text
    assert 'chat2crm_messages_in_total{channel="whatsapp",kind="text"} 1.0' in text
    assert 'chat2crm_duplicates_dropped_total{channel="whatsapp"} 1.0' in text
    assert 'chat2crm_flows_total{event="started",flow="meeting_request"} 1.0' in text
    assert "chat2crm_queue_depth" in text
