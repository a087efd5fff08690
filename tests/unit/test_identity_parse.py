"""Identities and message kinds in webhook bodies written as Meta's and Telegram's references show them.

WhatsApp: the messages webhook reference (``metadata``, ``contacts[].wa_id``), the business-scoped user id
guide (``from_user_id``, ``contacts[].user_id``, ``contacts[].profile.username``; the number withheld for a
user with a username), the system messages reference (``user_changed_number`` with ``system.wa_id``, before
v12 ``customer_changed_number`` with ``new_wa_id``; ``user_changed_user_id`` with ``system.user_id``; no
``contacts`` array), the reaction, sticker and contacts references. Telegram: the Bot API's ``Update``,
``Message`` (``edit_date``), ``Sticker``, ``Contact`` and ``ChatMemberUpdated``.
"""

from __future__ import annotations

from typing import Any

from connector.channels.telegram import parse_update
from connector.channels.whatsapp import parse_payload
from core.models import InboundMessage

PHONE_NUMBER_ID = "106540352242922"
METADATA = {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
BSUID = "US.13491208655302741918"


def _wa(messages: list[dict[str, Any]], contacts: list[dict[str, Any]] | None = None) -> list[InboundMessage]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": METADATA, "messages": messages}
    if contacts is not None:
        value["contacts"] = contacts
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}
    parsed = parse_payload(body)
    assert parsed.skipped == 0
    return parsed.messages


def test_a_user_with_a_username_is_known_by_the_business_scoped_id_alone() -> None:
    (message,) = _wa([{"from_user_id": BSUID, "id": WAMID, "timestamp": "1749416383", "type": "text",
                       "text": {"body": "Merhaba"}}],
                     [{"profile": {"name": "Sheena Nelson", "username": "@sheena"}, "user_id": BSUID}])
    assert (message.sender_id, message.sender_user_id, message.sender_phone) == (BSUID, BSUID, None)
    assert (message.profile.name, message.profile.username) == ("Sheena Nelson", "@sheena")
    assert message.account == PHONE_NUMBER_ID


def test_a_user_known_by_both_ids_is_keyed_by_the_number() -> None:
    (message,) = _wa([{"from": "16505551234", "from_user_id": BSUID, "id": WAMID, "timestamp": "1749416383",
                       "type": "text", "text": {"body": "Hi"}}],
                     [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234", "user_id": BSUID}])
    assert (message.sender_id, message.sender_user_id, message.sender_phone) == ("16505551234", BSUID, "+16505551234")


def test_user_changed_number_names_the_new_number() -> None:
    (message,) = _wa([{"from": "16505551234", "id": WAMID, "timestamp": "1739321024", "type": "system",
                       "system": {"body": "User Sheena Nelson changed from 16505551234 to 12195555358",
                                  "wa_id": "12195555358", "type": "user_changed_number"}}])
    assert (message.kind, message.raw_type) == ("unsupported", "user_changed_number")
    assert (message.sender_id, message.sender_phone, message.text) == ("16505551234", "+12195555358", None)


def test_customer_changed_number_before_v12_names_it_new_wa_id() -> None:
    (message,) = _wa([{"from": "16505551234", "id": WAMID, "timestamp": "1739321024", "type": "system",
                       "system": {"body": "Sheena Nelson changed from 16505551234 to 12195555358",
                                  "new_wa_id": "12195555358", "type": "customer_changed_number"}}])
    assert (message.raw_type, message.sender_phone) == ("user_changed_number", "+12195555358")


def test_user_changed_user_id_names_the_new_business_scoped_id() -> None:
    (message,) = _wa([{"from_user_id": BSUID, "id": WAMID, "timestamp": "1739321024", "type": "system",
                       "system": {"body": "User Sheena Nelson changed their ID", "user_id": "US.9000000000000001",
                                  "type": "user_changed_user_id"}}])
    assert (message.sender_id, message.raw_type, message.sender_user_id) == (
        BSUID, "user_changed_user_id", "US.9000000000000001")


def test_a_security_code_notice_changes_no_identity() -> None:
    (message,) = _wa([{"from": "16505551234", "id": WAMID, "timestamp": "1739321024", "type": "system",
                       "system": {"body": "Sheena's security code changed", "identity": "abc",
                                  "type": "customer_identity_changed"}}])
    assert (message.raw_type, message.sender_phone) == ("system", "+16505551234")


def test_reaction_and_sticker() -> None:
    contact = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]
    reaction, sticker = _wa([
        {"from": "16505551234", "id": WAMID, "timestamp": "1749419544", "type": "reaction",
         "reaction": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA", "emoji": "👍"}},
        {"from": "16505551234", "id": WAMID + "2", "timestamp": "1749419544", "type": "sticker",
         "sticker": {"mime_type": "image/webp", "sha256": "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=",
                     "id": "1003383421387256", "animated": False}}], contact)
    assert (reaction.kind, reaction.reaction) == ("reaction", "👍")
    assert reaction.reply_to == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA"
    assert sticker.kind == "media" and [(m.kind, m.media_id, m.mime_type) for m in sticker.media] == [
        ("sticker", "1003383421387256", "image/webp")]


def _card(phone: str, wa_id: str | None, **extra: Any) -> dict[str, Any]:
    entry = {"phone": phone, "type": "CELL", **({"wa_id": wa_id} if wa_id else {})}
    return {"name": {"formatted_name": "Lucía Gómez", "first_name": "Lucía", "last_name": "Gómez"},
            "phones": [entry], **extra}


def test_a_shared_card_is_the_senders_own_only_when_it_carries_their_number() -> None:
    contact = [{"profile": {"name": "Lucía"}, "user_id": BSUID}]
    own, other, requested = _wa([
        {"from_user_id": BSUID, "id": WAMID, "timestamp": "1744344496", "type": "contacts",
         "contacts": [_card("+1 (983) 555-2319", "19835552319")]},
        {"from_user_id": BSUID, "id": WAMID + "2", "timestamp": "1744344496", "type": "contacts",
         "contacts": [_card("+1 (983) 555-0000", None)]},
        {"from_user_id": BSUID, "id": WAMID + "3", "timestamp": "1744344496", "type": "contacts",
         "contacts": [_card("+1 (983) 555-2319", "19835552319", origin="contact_request")]}], contact)
    # a username user's card: nothing says it is theirs, unless WhatsApp marks it as shared on request
    assert (own.kind, own.sender_phone) == ("contact", None)
    assert other.sender_phone is None
    assert requested.sender_phone == "+19835552319"
    (mine,) = _wa([{"from": "19835552319", "id": WAMID, "timestamp": "1744344496", "type": "contacts",
                    "contacts": [_card("+1 (983) 555-2319", "19835552319"), _card("+1 555", "1555")]}],
                  [{"profile": {"name": "Lucía"}, "wa_id": "19835552319"}])
    assert mine.sender_phone == "+19835552319" and [c.phones for c in mine.contacts] == [["+1 (983) 555-2319"],
                                                                                        ["+1 555"]]


# -- Telegram --------------------------------------------------------------------------------------
USER = {"id": 111111111, "is_bot": False, "first_name": "Мария", "last_name": "Иванова", "language_code": "ru"}
CHAT = {"id": 111111111, "first_name": "Мария", "type": "private"}
BOT = {"id": 7000000001, "is_bot": True, "first_name": "Clinic", "username": "clinic_bot"}


def _tg(update: dict[str, Any]) -> Any:
    parsed = parse_update(update, "7000000001")
    assert parsed.skipped == 0
    return parsed


def test_telegram_sticker_is_media_with_its_reference() -> None:
    (message,) = _tg({"update_id": 1, "message": {
        "message_id": 1400, "from": USER, "chat": CHAT, "date": 1763800000,
        "sticker": {"file_id": "CAACAgIAAxkBAAIBQ2VzAAF3", "file_unique_id": "AgADxQ", "type": "regular",
                    "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "👍",
                    "set_name": "HotCherry", "file_size": 20480}}}).messages
    assert message.kind == "media" and [(m.kind, m.media_id, m.mime_type) for m in message.media] == [
        ("sticker", "CAACAgIAAxkBAAIBQ2VzAAF3", "image/webp")]
    (animated,) = _tg({"update_id": 2, "message": {
        "message_id": 1401, "from": USER, "chat": CHAT, "date": 1763800000,
        "sticker": {"file_id": "CAACAgIAAxkBAAIBQ2VzAAF4", "file_unique_id": "AgADxR", "type": "regular",
                    "width": 512, "height": 512, "is_animated": False, "is_video": True}}}).messages
    assert animated.media[0].mime_type == "video/webm"


def test_telegram_own_contact_links_the_number_and_anothers_does_not() -> None:
    (own,) = _tg({"update_id": 3, "message": {
        "message_id": 1402, "from": USER, "chat": CHAT, "date": 1763800000,
        "contact": {"phone_number": "79161234567", "first_name": "Мария", "user_id": 111111111}}}).messages
    (other,) = _tg({"update_id": 4, "message": {
        "message_id": 1403, "from": USER, "chat": CHAT, "date": 1763800000,
        "contact": {"phone_number": "+7 916 000-00-00", "first_name": "Иван", "user_id": 222222222}}}).messages
    assert (own.kind, own.sender_phone) == ("contact", "+79161234567")
    assert (other.kind, other.sender_phone, other.contacts[0].phones) == ("contact", None, ["+7 916 000-00-00"])


def test_telegram_edit_names_the_message_it_changes() -> None:
    (edit,) = _tg({"update_id": 5, "edited_message": {
        "message_id": 1365, "from": USER, "chat": CHAT, "date": 1763800000, "edit_date": 1763800100,
        "text": "Здравствуйте, сколько стоит имплант?"}}).messages
    assert edit.edited and edit.chat_message_id == "1365" and edit.message_id == "update:5"
    (first,) = _tg({"update_id": 6, "message": {"message_id": 1366, "from": USER, "chat": CHAT,
                                                "date": 1763800000, "text": "Да"}}).messages
    assert not first.edited and first.chat_message_id == "1366"


def _membership(old: str, new: str, chat: dict[str, Any] = CHAT) -> dict[str, Any]:
    return {"update_id": 7, "my_chat_member": {
        "chat": chat, "from": USER, "date": 1763800200, "old_chat_member": {"user": BOT, "status": old},
        "new_chat_member": {"user": BOT, "status": new, **({"until_date": 0} if new == "kicked" else {})}}}


def test_telegram_blocked_and_started_again() -> None:
    blocked = _tg(_membership("member", "kicked"))
    assert (blocked.messages, blocked.opt_outs, blocked.opt_ins) == ([], [("7000000001", "111111111")], [])
    started = _tg(_membership("kicked", "member"))
    assert (started.opt_outs, started.opt_ins) == ([], [("7000000001", "111111111")])
    group = _tg(_membership("member", "kicked", {"id": -100123, "title": "Clinic fans", "type": "supergroup"}))
    assert (group.opt_outs, group.ignored) == ([], 1)
