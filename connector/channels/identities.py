"""Who a channel user is, across the ids a channel gives them, and where they can be reached now.

WhatsApp names a user by their phone number (``wa_id``), by a business-scoped user id (BSUID, on
every message since 2026), or by the BSUID alone when the user adopted a username and Meta
withholds the number. The same person can arrive first with one and later with both, share their
own number as a contact card, or change number. Every conversation and every CRM contact is keyed
by one id per person, the **sender id**: the first id the relay saw them with. Two families keep
the rest:

- ``alias:{channel}:{identity}``: each id of a person (number, BSUID, the sender id itself) → the
  sender id, so a message under any of them reaches the same conversation. A number the person left
  stays as a *retired* alias: it no longer routes to them (the carrier may give it to someone else),
  and is never taken as a sender id again while it lives.
- ``person:{channel}:{sender}``: the person's current number and BSUID (where replies go: their
  current number once known, else the id they wrote from) and, on Telegram, whether they blocked
  the bot (then nothing is sent to them until they start it again).

Both live ``retention.identity_days`` after the person's last message, which every message
renews. Linking is one Lua script per message, so two webhooks of the same person racing each
other agree on one sender id. The scripts build their keys from the prefixes they are given (one
Redis, as everywhere in the relay).

:class:`ReachableClient` wraps a channel client so that every send first asks this book: the
WhatsApp address is the person's current number, and a Telegram chat that blocked the bot is
refused before anything is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from connector.channels.base import ChannelClient
from core import lua
from core.errors import FatalError
from core.keys import family
from core.models import Conversation, InboundMessage, MediaFile, Reply

ALIAS = family("alias", "{channel}:{identity}", ttl="retention.identity_days", holds_pii=True, owner=__name__)
PERSON = family("person", "{channel}:{sender}", ttl="retention.identity_days", holds_pii=True, owner=__name__)

# Resolve (or, for a number change, move) one person's ids to their sender id, in one step.
# ARGV: alias prefix, person prefix, ttl, wa_id, user_id, own phone shared, mode, new wa_id, new user_id.
# mode "message": a message from wa_id and/or user_id (and a phone the user shared as their own);
# mode "number": the user moved from wa_id to new wa_id (and maybe a new BSUID); mode "user_id": a new BSUID.
# Returns {sender id, phone or '', user id or '', 1 when two known people were found for one message}.
_LINK = """
local ap, pp, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local wa, uid, own, mode, new_wa, new_uid = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local function decode(raw)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value end
  return nil
end
local function alias(id)
  if id == '' then return nil end
  return decode(redis.call('get', ap .. id))
end
local function live(a)
  if a and not a.retired and type(a.sender_id) == 'string' then return a.sender_id end
  return nil
end
local a_uid, a_wa, a_own = alias(uid), alias(wa), alias(own)
local conflict = 0
if live(a_uid) and live(a_wa) and live(a_uid) ~= live(a_wa) then conflict = 1 end
local route = live(a_uid) or live(a_wa) or live(a_own)
if not route and mode ~= 'message' and a_wa and type(a_wa.sender_id) == 'string' then route = a_wa.sender_id end
if not route then
  if mode == 'number' and new_wa ~= '' then route = new_wa
  elseif wa ~= '' and not (a_wa and a_wa.retired) then route = wa
  elseif uid ~= '' then route = uid
  else route = wa end
end
local person = decode(redis.call('get', pp .. route)) or {}
person.sender_id = route
local retired = {}
for _, id in ipairs(type(person.retired) == 'table' and person.retired or {}) do retired[id] = true end
local ids = {route}
if mode == 'message' then
  if wa ~= '' and not retired[wa] then person.phone = '+' .. wa; table.insert(ids, wa)
  elseif own ~= '' then person.phone = '+' .. own; retired[own] = nil; table.insert(ids, own) end
  if uid ~= '' then person.user_id = uid; table.insert(ids, uid) end
else
  if uid ~= '' then table.insert(ids, uid) end
  if mode == 'number' and new_wa ~= '' then
    if wa ~= '' and wa ~= new_wa then retired[wa] = true end
    retired[new_wa] = nil
    person.phone = '+' .. new_wa
    table.insert(ids, new_wa)
  end
  if new_uid ~= '' then person.user_id = new_uid; table.insert(ids, new_uid) end
end
if person.phone then table.insert(ids, string.sub(person.phone, 2)) end
if person.user_id then table.insert(ids, person.user_id) end
local names = {}
for id, _ in pairs(retired) do table.insert(names, id) end
table.sort(names)
person.retired = nil
if #names > 0 then person.retired = names end
local record = {sender_id = route, phone = person.phone, user_id = person.user_id}
for _, id in ipairs(ids) do
  if not retired[id] then redis.call('set', ap .. id, cjson.encode(record), 'EX', ttl) end
end
for _, id in ipairs(names) do
  local current = alias(id)
  -- a number someone else has since written from is theirs now: leave it alone
  if not current or current.sender_id == route then
    redis.call('set', ap .. id, cjson.encode({sender_id = route, phone = person.phone, user_id = person.user_id,
                                              retired = true}), 'EX', ttl)
  end
end
redis.call('set', pp .. route, cjson.encode(person), 'EX', ttl)
return {route, person.phone or '', person.user_id or '', conflict}
"""

# Set or clear "this person blocked the bot" on their record, keeping the rest of it.
_BLOCK = """
local raw = redis.call('get', KEYS[1])
local person = {}
if raw then
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then person = value end
end
person.sender_id = ARGV[1]
if ARGV[2] == '1' then person.blocked = true else person.blocked = nil end
redis.call('set', KEYS[1], cjson.encode(person), 'EX', tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class Identity:
    """One person as the book knows them after a message."""

    #: the id their conversations and CRM contact are keyed by (never changes while the book remembers them)
    sender_id: str
    #: their current number (``+`` and digits), when known
    phone: str | None = None
    #: their business-scoped user id, when known
    user_id: str | None = None
    #: two people the book knew turned out to be one (the one the BSUID belongs to was kept)
    merged: bool = False


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _link(client: redis.Redis, channel: str, ttl: int, *args: str) -> Identity:
    # by its SHA1 (EVALSHA): the script's text is not sent with every webhook
    found = lua.run(client, _LINK, args=[ALIAS.key(channel, ""), PERSON.key(channel, ""), ttl, *args])
    sender, phone, user_id, merged = (_text(part) for part in found)
    return Identity(sender, phone or None, user_id or None, merged == "1")


def resolve(client: redis.Redis, channel: str, *, wa_id: str | None = None, user_id: str | None = None,
            own_phone: str | None = None, ttl: int) -> Identity:
    """The person a message comes from, linking every id it names to them (and renewing their TTL).

    Args:
        wa_id: the number the message came from (digits), when the channel gave it.
        user_id: the business-scoped user id, when given.
        own_phone: a number (digits) the patient shared as their own (their contact card).
        ttl: seconds the links live (``retention.identity_days``).

    Raises:
        ValueError: neither ``wa_id`` nor ``user_id`` is given.
    """
    if not (wa_id or user_id):
        raise ValueError("a message names its sender by wa_id or user_id")
    return _link(client, channel, ttl, wa_id or "", user_id or "", own_phone or "", "message", "", "")


def change(client: redis.Redis, channel: str, *, wa_id: str | None, user_id: str | None, new_wa_id: str | None,
           new_user_id: str | None, ttl: int) -> Identity:
    """The person whose number (``new_wa_id``) or business-scoped id (``new_user_id``) changed: the new ids are
    linked to them, their current number becomes the new one, and the number they left is retired.

    Raises:
        ValueError: neither an old nor a new id is given.
    """
    if not (wa_id or user_id) or not (new_wa_id or new_user_id):
        raise ValueError("a change names the old and the new id")
    mode = "number" if new_wa_id else "user_id"
    return _link(client, channel, ttl, wa_id or "", user_id or "", "", mode, new_wa_id or "", new_user_id or "")


def sender_of(client: redis.Redis, channel: str, identity: str) -> str | None:
    """The sender id ``identity`` belongs to, without linking anything; None when unknown or retired."""
    raw = client.get(ALIAS.key(channel, identity))
    record = _record(raw)
    if record.get("retired"):
        return None
    sender = record.get("sender_id")
    return sender if isinstance(sender, str) and sender else None


def person(client: redis.Redis, channel: str, sender: str) -> dict[str, Any]:
    """What the book holds about sender ``sender`` (``phone``, ``user_id``, ``blocked``…; empty when nothing)."""
    return _record(client.get(PERSON.key(channel, sender)))


def set_blocked(client: redis.Redis, channel: str, sender: str, blocked: bool, *, ttl: int) -> None:
    """Record that ``sender`` blocked the bot (nothing is sent to them), or started it again."""
    lua.run(client, _BLOCK, [PERSON.key(channel, sender)], [sender, "1" if blocked else "0", ttl])


def record(raw: object) -> dict[str, Any]:
    """A person's record as stored (``b''`` or None: none), read as :func:`person` reads it."""
    return _record(raw or None)


def _record(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(_text(raw))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def reachable(client: redis.Redis, conversation: Conversation, *, known: dict[str, Any] | None = None) -> Conversation:
    """``conversation`` addressed where its patient can be reached now: on WhatsApp their current number
    (it differs from the sender id once they changed number, or when they were first known by their
    business-scoped id). ``known`` is the patient's record when the caller read it (:func:`record`).

    Raises:
        FatalError: the patient blocked the bot (nothing may be sent until they start it again).
    """
    record = known if known is not None else person(client, conversation.channel, conversation.sender_id)
    if record.get("blocked"):
        raise FatalError(f"{conversation.channel}: the patient blocked the bot; nothing is sent until they start it "
                         "again", details={"code": 403})
    phone = record.get("phone")
    if conversation.channel == "whatsapp" and isinstance(phone, str) and phone[1:].isdigit():
        address = phone[1:]
        if address != conversation.sender_id:
            return conversation.model_copy(update={"sender_id": address})
    return conversation


class ReachableClient:
    """A channel client that sends only where :func:`reachable` says the patient can be reached."""

    def __init__(self, client: ChannelClient, redis_client: redis.Redis) -> None:
        self.client, self.redis = client, redis_client

    def send(self, conversation: Conversation, replies: list[Reply], *, tracking: str | None = None,
             person: dict[str, Any] | None = None) -> list[str]:
        """Send ``replies`` to the patient's current address (see :class:`ChannelClient`); ``person`` is the
        patient's record in the book when the caller read it already.

        Raises:
            FatalError: also when the patient blocked the bot (nothing is sent).
        """
        return self.client.send(reachable(self.redis, conversation, known=person), replies, tracking=tracking)

    def fetch_media(self, media_id: str, *, max_bytes: int) -> MediaFile:
        """Download a patient's file (see :class:`ChannelClient`)."""
        return self.client.fetch_media(media_id, max_bytes=max_bytes)

    def mark_read(self, message: InboundMessage) -> None:
        """Tell the patient their message was read (see :class:`ChannelClient`)."""
        self.client.mark_read(message)

    def answer_callback(self, message: InboundMessage) -> None:
        """Acknowledge a button press (see :class:`ChannelClient`)."""
        self.client.answer_callback(message)

    def __getattr__(self, name: str) -> Any:
        # the wrapped client's own attributes (its call counter, its session) stay reachable
        return getattr(self.client, name)
