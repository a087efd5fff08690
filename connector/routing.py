"""Which of a webhook's messages the relay serves, and which conversation each one belongs to.

Run on every webhook body a job process reads, before anything is queued (:func:`route`, called by
:mod:`connector.received`):

- **WhatsApp numbers.** Only the business numbers the deployment serves are answered
  (``channels.whatsapp.numbers`` and ``WHATSAPP_PHONE_NUMBER_ID``), routed by
  ``metadata.phone_number_id``. A message or opt-out sent to another number of the same business
  account is dropped here (the webhook still answers 200) with a log line. A message to a served
  number carries that number's flow, which a new conversation starts with.
- **Identities.** Every WhatsApp message is linked to its person in the identity book
  (:mod:`connector.channels.identities`): the message's sender id becomes the person's sender id
  (the id their conversation and CRM contact are keyed by), whichever of their ids it came with; a
  number the book learned for them earlier (a contact card they shared) comes along as the sender's
  phone. A changed number or business-scoped id moves the person's ids.
- **Telegram blocks.** A user who blocked the bot is recorded as such (nothing is sent to them) until
  they start it again (``member`` again, or ``/start``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from connector.channels import identities
from connector.channels.base import ParsedWebhook
from connector.channels.whatsapp import NUMBER_CHANGED, USER_ID_CHANGED
from core.models import InboundMessage

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.routing")


def numbers(runtime: Runtime) -> dict[str, str | None]:
    """The WhatsApp business numbers served (phone number id → the flow of a conversation that starts there,
    None for ``default_flow``): ``channels.whatsapp.numbers``, and ``WHATSAPP_PHONE_NUMBER_ID`` unless listed."""
    served: dict[str, str | None] = {n.phone_number_id: n.flow for n in runtime.config.channels.whatsapp.numbers}
    default = runtime.settings.whatsapp_phone_number_id
    if default and default not in served:
        served[default] = None
    return served


def route(runtime: Runtime, channel: str, parsed: ParsedWebhook) -> ParsedWebhook:
    """``parsed`` with only what the relay serves, each message addressed to its person's conversation.

    Raises:
        redis.RedisError: Redis failed (the body stays in its intake and is read again).
    """
    if channel == "whatsapp":
        _serve_numbers(runtime, parsed)
        ttl = identities.ALIAS.seconds(runtime.config) or 0
        parsed.messages = [_identify(runtime, message, ttl) for message in parsed.messages]
        parsed.opt_outs = [(account, identities.sender_of(runtime.redis, channel, sender) or sender)
                           for account, sender in parsed.opt_outs]
    elif channel == "telegram":
        _blocks(runtime, parsed)
    return parsed


def _serve_numbers(runtime: Runtime, parsed: ParsedWebhook) -> None:
    served = numbers(runtime)
    flows = _known_flows(runtime, served)
    dropped = Counter(m.account for m in parsed.messages if m.account not in served)
    dropped.update(account for account, _ in parsed.opt_outs if account not in served)
    for account, count in sorted(dropped.items()):
        log.info("message to a WhatsApp number this deployment does not serve: ignored",
                 extra={"phone_number_id": account, "messages": count})
    parsed.ignored += sum(dropped.values())
    parsed.messages = [m.model_copy(update={"number_flow": flows.get(m.account)}) if flows.get(m.account) else m
                       for m in parsed.messages if m.account in served]
    parsed.opt_outs = [(account, sender) for account, sender in parsed.opt_outs if account in served]


def _known_flows(runtime: Runtime, served: dict[str, str | None]) -> dict[str, str]:
    """The numbers' flows that exist (a number naming a flow there is not falls back to ``default_flow``)."""
    named = {account: flow for account, flow in served.items() if flow}
    if not named:
        return {}
    known = set(runtime.flows)
    for account, flow in named.items():
        if flow not in known:
            log.error("channels.whatsapp.numbers names a flow that does not exist: default_flow is used",
                      extra={"phone_number_id": account, "flow": flow})
    return {account: flow for account, flow in named.items() if flow in known}


def _identify(runtime: Runtime, message: InboundMessage, ttl: int) -> InboundMessage:
    """``message`` from its person's sender id, with the number and business-scoped id the book knows."""
    client = runtime.redis
    sent_from = message.sender_id if message.sender_id.isascii() and message.sender_id.isdigit() else None
    if message.raw_type in (NUMBER_CHANGED, USER_ID_CHANGED):
        # the old ids are the sender's; the message names the new ones
        new_phone = (message.sender_phone or "").lstrip("+") if message.raw_type == NUMBER_CHANGED else None
        person = identities.change(client, "whatsapp", wa_id=sent_from,
                                   user_id=None if sent_from else message.sender_id,
                                   new_wa_id=new_phone, new_user_id=message.sender_user_id, ttl=ttl)
        log.info("a WhatsApp user's identity changed: their conversation follows",
                 extra={"change": message.raw_type})
    else:
        own = (message.sender_phone or "").lstrip("+")
        person = identities.resolve(client, "whatsapp", wa_id=sent_from, user_id=message.sender_user_id,
                                    own_phone=own if own and own != sent_from else None, ttl=ttl)
        if person.merged:
            log.warning("two conversations turned out to be one patient's: the business-scoped id's goes on")
    return message.model_copy(update={"sender_id": person.sender_id,
                                      "sender_phone": person.phone or message.sender_phone,
                                      "sender_user_id": person.user_id or message.sender_user_id})


def _blocks(runtime: Runtime, parsed: ParsedWebhook) -> None:
    """Record the chats that blocked the bot, and those that started it again (nothing is sent in between)."""
    ttl = identities.PERSON.seconds(runtime.config) or 0
    started = {(m.account, m.sender_id) for m in parsed.messages if m.kind == "start"}
    for _, sender in parsed.opt_outs:
        identities.set_blocked(runtime.redis, "telegram", sender, True, ttl=ttl)
    for _, sender in sorted(started | set(parsed.opt_ins)):
        if identities.person(runtime.redis, "telegram", sender).get("blocked"):
            identities.set_blocked(runtime.redis, "telegram", sender, False, ttl=ttl)
