"""A STOP from a patient the clinic already has in HubSpot, typed in by hand without the relay's key, marks
that contact (found by the number as it was typed), records when and on which channel, and ends the
conversation: through the whole relay (webhook, turn, opt-out job, HubSpot emulator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector import conversations
from tests.e2e.conftest import Stack


def test_a_stop_marks_the_contact_the_clinic_typed_in_by_hand(stack: Stack) -> None:
    by_hand = stack.hubspot.add_record("contacts", {"firstname": "Lena", "lastname": "Berg",
                                                    "phone": "0151 22222222"})
    someone_else = stack.hubspot.add_record("contacts", {"firstname": "Other", "phone": "+44 151 22222222"})
    patient = stack.whatsapp.patient("4915122222222", "Lena")
    patient.send_text("Hello, I want a meeting")
    stack.work()
    patient.send_text("STOP")
    stack.work()
    contacts = {c["id"]: c["properties"] for c in stack.hubspot.records("contacts")}
    assert sorted(contacts) == sorted([by_hand["id"], someone_else["id"]])  # no second contact for Lena
    lena = contacts[by_hand["id"]]
    assert lena["chat2crm_opted_out"] == "true" and lena["chat2crm_opted_out_channel"] == "whatsapp"
    opted_at = datetime.fromisoformat(lena["chat2crm_opted_out_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - opted_at) < timedelta(minutes=1)
    assert lena["phone"] == "0151 22222222" and "chat2crm_contact_key" not in lena
    assert "chat2crm_opted_out" not in contacts[someone_else["id"]]
    (conversation,) = list(conversations.stored(stack.runtime))
    assert conversation.opted_out and conversation.status == "closed"
