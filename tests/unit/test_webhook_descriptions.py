"""The checks the emulators run on the webhooks they generate: Meta's repaired ``WebhookPayload`` and
Telegram's ``Update``. Each must accept what the vendors document and catch what they would never send."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from emulators._checks import (
    WEBHOOK_REDIRECTS,
    telegram_call_errors,
    telegram_update_errors,
    whatsapp_spec,
    whatsapp_webhook_errors,
    whatsapp_webhook_spec,
)

DATA = Path(__file__).parents[1] / "data"
WA_DOCUMENTED = json.loads((DATA / "whatsapp" / "documented.json").read_text(encoding="utf-8"))
TG_DOCUMENTED = json.loads((DATA / "telegram" / "documented.json").read_text(encoding="utf-8"))
META_EXAMPLES = whatsapp_spec()["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"][
    "application/json"]["examples"]


@pytest.mark.parametrize("name", [n for n, e in META_EXAMPLES.items()
                                  if e["value"]["entry"][0]["changes"][0]["field"] == "messages"])
def test_metas_own_message_examples_fit_the_repaired_description(name: str) -> None:
    assert whatsapp_webhook_errors(META_EXAMPLES[name]["value"]) == []


@pytest.mark.parametrize("name", sorted(WA_DOCUMENTED))
def test_the_recorded_whatsapp_payloads_fit_the_repaired_description(name: str) -> None:
    assert whatsapp_webhook_errors(WA_DOCUMENTED[name]) == []


def test_the_recorded_bad_batch_has_exactly_its_bad_message() -> None:
    body = json.loads((DATA / "whatsapp" / "batch_with_bad_message.json").read_text(encoding="utf-8"))
    assert whatsapp_webhook_errors(body) == [
        "entry/0/changes/0/value/messages/1/text/body: 4915112345678 is not of type 'string'"]


def test_the_webhook_points_at_the_incoming_variants_and_leaves_the_outgoing_ones_alone() -> None:
    repaired = whatsapp_webhook_spec()["components"]["schemas"]
    refs = {ref.rsplit("/", 1)[1] for name in ("IncomingMessage", "TextMessage_2", "UnsupportedMessage")
            for ref in _refs(repaired[name])}
    assert not refs & set(WEBHOOK_REDIRECTS)
    assert {"TextMessage_2", "BaseMessageProperties_1", "ErrorObject_2"} <= refs
    # the document the outgoing checks use is untouched
    assert whatsapp_spec()["components"]["schemas"]["BaseMessageProperties_1"]["required"] == ["from", "id", "timestamp"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


def _message(example: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = copy.deepcopy(WA_DOCUMENTED[example])
    return body, body["entry"][0]["changes"][0]["value"]["messages"][0]


def test_known_bad_whatsapp_webhooks_are_caught() -> None:
    body, message = _message("text")
    message["text"]["body"] = 42
    assert whatsapp_webhook_errors(body) == ["entry/0/changes/0/value/messages/0/text/body: 42 is not of type 'string'"]
    body, message = _message("button_reply")
    del message["context"]  # Meta always names the message whose button was pressed
    assert whatsapp_webhook_errors(body) == ["entry/0/changes/0/value/messages/0: 'context' is a required property"]
    body, message = _message("button_reply")
    del message["interactive"]["button_reply"]  # the discriminator's variant is checked too
    assert whatsapp_webhook_errors(body) == [
        "entry/0/changes/0/value/messages/0/interactive: 'button_reply' is a required property"]
    body, message = _message("image")
    del message["image"]["sha256"]
    assert whatsapp_webhook_errors(body) == ["entry/0/changes/0/value/messages/0/image: 'sha256' is a required property"]
    body, message = _message("text")
    del message["from"]
    assert whatsapp_webhook_errors(body) == ["entry/0/changes/0/value/messages/0: 'from' is a required property"]
    body = copy.deepcopy(WA_DOCUMENTED["user_preferences_stop"])
    body["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = "maybe"
    assert whatsapp_webhook_errors(body)
    assert whatsapp_webhook_errors({"object": "whatsapp_business_account"}) == ["(body): 'entry' is a required property"]


def test_the_documented_gaps_are_known() -> None:
    """What v23 does not describe, though Meta sends it, passes; nothing looser does."""
    assert whatsapp_webhook_errors(WA_DOCUMENTED["text_business_scoped_user"]) == []
    assert whatsapp_webhook_errors(WA_DOCUMENTED["location_pin"]) == []
    body, message = _message("list_reply")
    del message["interactive"]["list_reply"]["description"]  # a row sent without a description
    assert whatsapp_webhook_errors(body) == []
    body, message = _message("location_pin")
    del message["location"]["latitude"]
    assert whatsapp_webhook_errors(body)


@pytest.mark.parametrize("name", sorted(TG_DOCUMENTED))
def test_the_recorded_telegram_updates_fit_the_bot_api(name: str) -> None:
    assert telegram_update_errors(TG_DOCUMENTED[name]) == []


def test_known_bad_telegram_updates_are_caught() -> None:
    text = TG_DOCUMENTED["text"]
    no_chat = {**text, "message": {k: v for k, v in text["message"].items() if k != "chat"}}
    assert telegram_update_errors(no_chat) == ["message.chat: required"]
    assert telegram_update_errors({**text, "message": {**text["message"], "text": {"a": 1}}}) == [
        "message.text: expected String"]
    press = copy.deepcopy(TG_DOCUMENTED["callback_query"])
    press["callback_query"]["message"]["_sent_at"] = 1.5  # an emulator's own note, leaked
    assert telegram_update_errors(press) == ["callback_query.message._sent_at: not a parameter of this method or type"]
    assert telegram_update_errors({**text, "edited_message": text["message"]}) == [
        "an update carries at most one of its optional fields, not edited_message, message"]
    assert telegram_update_errors({"message": text["message"]}) == ["update_id: required"]
    assert telegram_update_errors([]) == ["an update must be a JSON object"]


def test_reply_keyboards_are_bot_api_markup_too() -> None:
    """``reply_markup`` is one of four types: a reply keyboard must not be judged as an inline one."""
    keyboard = {"keyboard": [[{"text": "📱", "request_contact": True}]], "one_time_keyboard": True,
                "resize_keyboard": True}
    assert telegram_call_errors("sendMessage", {"chat_id": 1, "text": "?", "reply_markup": keyboard}) == []
    wrong = {"inline_keyboard": [[{"text": 5, "callback_data": "a"}]]}
    assert telegram_call_errors("sendMessage", {"chat_id": 1, "text": "?", "reply_markup": wrong}) == [
        "reply_markup.inline_keyboard[0][0].text: expected String"]
    assert telegram_call_errors("sendMessage", {"chat_id": 1.5, "text": "?"}) == ["chat_id: expected Integer or String"]
