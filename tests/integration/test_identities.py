"""The identity book on real Redis: a patient's ids linked to one sender id, number changes, blocks, routing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import redis

from connector import routing
from connector.channels import identities
from connector.channels.base import ParsedWebhook
from connector.commands.forget import erase
from connector.runtime import Runtime
from core.errors import FatalError
from core.models import Conversation, InboundMessage

TTL = 3600
PHONE, NEW_PHONE, BSUID, OTHER_BSUID = "905321112233", "905329998877", "TR.1234567890", "TR.5550000001"


def _resolve(client: redis.Redis, wa_id: str | None = None, user_id: str | None = None,
             own: str | None = None) -> identities.Identity:
    return identities.resolve(client, "whatsapp", wa_id=wa_id, user_id=user_id, own_phone=own, ttl=TTL)


def test_a_patient_first_known_by_the_business_scoped_id_keeps_it(redis_client: redis.Redis) -> None:
    first = _resolve(redis_client, user_id=BSUID)
    assert first == identities.Identity(BSUID, None, BSUID)
    both = _resolve(redis_client, wa_id=PHONE, user_id=BSUID)
    assert both == identities.Identity(BSUID, f"+{PHONE}", BSUID)  # the number joins the same person
    assert _resolve(redis_client, wa_id=PHONE).sender_id == BSUID  # and leads to them on its own
    assert identities.person(redis_client, "whatsapp", BSUID) == {"sender_id": BSUID, "phone": f"+{PHONE}",
                                                                  "user_id": BSUID}


def test_a_patient_first_known_by_the_number_keeps_it(redis_client: redis.Redis) -> None:
    assert _resolve(redis_client, wa_id=PHONE).sender_id == PHONE  # as before business-scoped ids existed
    assert _resolve(redis_client, wa_id=PHONE, user_id=BSUID).sender_id == PHONE
    # the user adopts a username and Meta withholds the number: still the same person
    assert _resolve(redis_client, user_id=BSUID) == identities.Identity(PHONE, f"+{PHONE}", BSUID)


def test_a_card_shared_as_their_own_links_the_number(redis_client: redis.Redis) -> None:
    _resolve(redis_client, user_id=BSUID)
    assert _resolve(redis_client, user_id=BSUID, own=PHONE).phone == f"+{PHONE}"
    assert identities.sender_of(redis_client, "whatsapp", PHONE) == BSUID


def test_two_people_found_to_be_one_follow_the_business_scoped_id(redis_client: redis.Redis) -> None:
    _resolve(redis_client, wa_id=PHONE)  # known by the number
    _resolve(redis_client, user_id=BSUID)  # and, apart, by the id alone
    merged = _resolve(redis_client, wa_id=PHONE, user_id=BSUID)
    assert (merged.sender_id, merged.merged) == (BSUID, True)
    assert _resolve(redis_client, wa_id=PHONE).sender_id == BSUID  # from now on, one conversation


def test_a_number_change_moves_the_patient_and_retires_the_old_number(redis_client: redis.Redis) -> None:
    _resolve(redis_client, wa_id=PHONE, user_id=BSUID)
    moved = identities.change(redis_client, "whatsapp", wa_id=PHONE, user_id=None, new_wa_id=NEW_PHONE,
                              new_user_id=None, ttl=TTL)
    assert moved == identities.Identity(PHONE, f"+{NEW_PHONE}", BSUID)  # the sender id (and the CRM key) stay
    again = identities.change(redis_client, "whatsapp", wa_id=PHONE, user_id=None, new_wa_id=NEW_PHONE,
                              new_user_id=None, ttl=TTL)
    assert again == moved  # a redelivered notice changes nothing
    assert _resolve(redis_client, wa_id=NEW_PHONE, user_id=BSUID).sender_id == PHONE
    assert identities.sender_of(redis_client, "whatsapp", PHONE) is None  # the old number no longer leads here
    # the carrier gives the old number to someone else: they are someone else
    stranger = _resolve(redis_client, wa_id=PHONE, user_id=OTHER_BSUID)
    assert (stranger.sender_id, stranger.phone) == (OTHER_BSUID, f"+{PHONE}")
    assert _resolve(redis_client, wa_id=PHONE).sender_id == OTHER_BSUID
    assert identities.person(redis_client, "whatsapp", PHONE)["phone"] == f"+{NEW_PHONE}"  # the patient untouched
    assert _resolve(redis_client, wa_id=NEW_PHONE).sender_id == PHONE


def test_a_new_business_scoped_id_joins_the_patient(redis_client: redis.Redis) -> None:
    _resolve(redis_client, user_id=BSUID)
    changed = identities.change(redis_client, "whatsapp", wa_id=None, user_id=BSUID, new_wa_id=None,
                                new_user_id=OTHER_BSUID, ttl=TTL)
    assert changed == identities.Identity(BSUID, None, OTHER_BSUID)
    assert _resolve(redis_client, user_id=OTHER_BSUID).sender_id == BSUID


def test_links_live_their_ttl_and_every_message_renews_it(redis_client: redis.Redis) -> None:
    identities.resolve(redis_client, "whatsapp", wa_id=PHONE, user_id=BSUID, ttl=100)
    keys = [identities.ALIAS.key("whatsapp", PHONE), identities.ALIAS.key("whatsapp", BSUID),
            identities.PERSON.key("whatsapp", PHONE)]
    assert all(0 < redis_client.ttl(key) <= 100 for key in keys)
    identities.resolve(redis_client, "whatsapp", user_id=BSUID, ttl=5000)
    assert all(redis_client.ttl(key) > 100 for key in keys)  # the number too, though the message lacked it


def test_replies_go_to_the_current_number_and_never_to_a_blocked_chat(redis_client: redis.Redis) -> None:
    _resolve(redis_client, user_id=BSUID)
    conversation = Conversation(key=f"whatsapp:1065:{BSUID}", channel="whatsapp", account="1065", sender_id=BSUID)
    assert identities.reachable(redis_client, conversation).sender_id == BSUID  # no number known yet
    _resolve(redis_client, wa_id=PHONE, user_id=BSUID)
    assert identities.reachable(redis_client, conversation).sender_id == PHONE
    chat = Conversation(key="telegram:1:555001", channel="telegram", account="1", sender_id="555001")
    identities.set_blocked(redis_client, "telegram", "555001", True, ttl=TTL)
    with pytest.raises(FatalError, match="blocked the bot"):
        identities.reachable(redis_client, chat)
    identities.set_blocked(redis_client, "telegram", "555001", False, ttl=TTL)
    assert identities.reachable(redis_client, chat) == chat


def test_forget_erases_every_link_of_the_patient(runtime: Runtime) -> None:
    client = runtime.redis
    _resolve(client, user_id=BSUID)
    _resolve(client, wa_id=PHONE, user_id=BSUID)
    identities.change(client, "whatsapp", wa_id=PHONE, user_id=None, new_wa_id=NEW_PHONE, new_user_id=None, ttl=TTL)
    _resolve(client, wa_id="4915112345678")  # someone else
    erase(runtime, f"+{NEW_PHONE}")
    left = sorted(k.decode() for k in client.scan_iter("c2c:*") if not k.startswith(b"c2c:agent-forgotten:"))
    assert left == [identities.ALIAS.key("whatsapp", "4915112345678"), identities.PERSON.key("whatsapp", "4915112345678")]


# -- routing ---------------------------------------------------------------------------------------------
def _message(account: str, sender: str, **fields: object) -> InboundMessage:
    return InboundMessage(channel="whatsapp", account=account, sender_id=sender, message_id=f"wamid.{sender}",
                          timestamp=datetime.now(UTC), kind="text", text="Merhaba", **fields)  # type: ignore[arg-type]


def test_only_the_numbers_served_are_routed_each_with_its_flow(runtime: Runtime, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.config import WhatsAppNumber

    served = runtime.settings.whatsapp_phone_number_id
    monkeypatch.setattr(runtime.config.channels.whatsapp, "numbers", [
        WhatsAppNumber(phone_number_id="200", flow="meeting_request"),
        WhatsAppNumber(phone_number_id="300", flow="no_such_flow")])
    assert routing.numbers(runtime) == {"200": "meeting_request", "300": "no_such_flow", served: None}
    parsed = ParsedWebhook(messages=[_message(served, PHONE), _message("200", "4915112345678"),
                                     _message("300", "447700900123"), _message("999", "905000000000")],
                           opt_outs=[("999", "905000000000")])
    caplog.set_level(logging.INFO, "chat2crm.routing")
    routed = routing.route(runtime, "whatsapp", parsed)
    assert [(m.account, m.number_flow) for m in routed.messages] == [(served, None), ("200", "meeting_request"),
                                                                     ("300", None)]
    assert (routed.opt_outs, routed.ignored) == ([], 2)
    logged = {r.getMessage(): r for r in caplog.records}
    assert logged["message to a WhatsApp number this deployment does not serve: ignored"].__dict__[
        "phone_number_id"] == "999"
    assert "channels.whatsapp.numbers names a flow that does not exist: default_flow is used" in logged
    assert not any(PHONE in r.getMessage() or PHONE in str(r.__dict__) for r in caplog.records)  # no patient data


def test_routing_gives_each_message_its_patients_sender_id(runtime: Runtime) -> None:
    account = runtime.settings.whatsapp_phone_number_id or ""
    first = routing.route(runtime, "whatsapp", ParsedWebhook(messages=[_message(account, BSUID, sender_user_id=BSUID)]))
    later = routing.route(runtime, "whatsapp", ParsedWebhook(
        messages=[_message(account, PHONE, sender_phone=f"+{PHONE}", sender_user_id=BSUID)],
        opt_outs=[(account, PHONE)]))
    assert first.messages[0].conversation_key == later.messages[0].conversation_key == f"whatsapp:{account}:{BSUID}"
    assert later.messages[0].sender_phone == f"+{PHONE}" and later.opt_outs == [(account, BSUID)]
