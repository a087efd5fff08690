"""The WhatsApp emulator checks each message the relay sends against Meta's OpenAPI description: the message's
`type` picks its schema (the description's discriminator), and anything Meta would refuse is named."""

from __future__ import annotations

from typing import Any

from emulators._checks import whatsapp_message_errors


def _message(**fields: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915112345678", **fields}


def test_well_formed_messages_of_each_kind_the_relay_sends_pass() -> None:
    assert whatsapp_message_errors(_message(type="text", text={"body": "Hello"})) == []
    assert whatsapp_message_errors(_message(type="interactive", interactive={
        "type": "button", "body": {"text": "Consent?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "I agree"}}]}})) == []
    assert whatsapp_message_errors({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.1"}) == []


def test_a_message_without_what_its_type_names_is_refused() -> None:
    errors = whatsapp_message_errors(_message(type="text", image={"id": "1"}))
    assert errors and any("text" in error for error in errors)


def test_a_field_of_the_wrong_kind_is_refused_with_where_it_is() -> None:
    errors = whatsapp_message_errors(_message(type="text", text={"body": 42}))
    assert errors and any(error.startswith("text/body") for error in errors)


def test_an_unknown_type_is_refused() -> None:
    assert whatsapp_message_errors(_message(type="hologram", hologram={"body": "x"}))
    assert whatsapp_message_errors(["not", "an", "object"]) == ["body must be a JSON object"]
