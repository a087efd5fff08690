"""``chat2crm forget <phone | channel id>``: erase everything the relay holds about a person.

The relay keeps patient data only in Redis, in the key families the registry marks as holding it
(:func:`core.keys.pii_families`: conversations, inboxes, outboxes, leads and their transcripts, the
threads waiting for the CRM's inbox and the maps from the CRM's threads and contacts back to them,
locks and counters named after a conversation, the adapter's caches), in rq's jobs (a job's arguments
name a conversation; a failed message job holds the message), and in the adapter's caches. This
finds the person's identities (the conversations found under one bring in the phone number and the
business-scoped id WhatsApp may give for the same person; their leads bring in the references),
then erases every key of those families that names them, the jobs that carry them, and asks the
adapter to drop its cached ids. With ``--crm`` it also deletes or anonymises the CRM contact. It
prints one audit line of what it erased (counts, never the data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from connector import agent, conversations, flood, inbox, leads, outbox, queues, received, threads  # noqa: F401 - their families must be registered
from connector.logs import configure_logging
from connector.mapping import contact_key_field
from connector.runtime import Runtime
from core.errors import ConfigurationError, RetryableError
from core.keys import KeyFamily, family_of, pii_families
from core.models import Conversation, Lead
from core.settings import load_settings

#: JSON fields whose value names the person a record is about (in conversations, messages, leads, entries)
_IDENTITY_FIELDS = frozenset({"sender_id", "user_id", "phone", "sender_phone", "channel_id", "contact_key",
                              "conversation", "conversation_key", "key"})


@dataclass
class ErasureAudit:
    """What was erased, for the audit line."""

    identities: list[str]
    conversations: int = 0
    inboxes: int = 0
    leads: int = 0
    other_keys: int = 0
    jobs: int = 0
    crm_cache: int = 0
    #: what was done in the CRM itself (``--crm``), for the line
    crm: list[str] = field(default_factory=list)
    #: the person's CRM contact keys (for ``--crm``; never printed)
    contact_keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line, counts only (no identity, no data)."""
        crm = "; crm: " + ", ".join(self.crm) if self.crm else ""
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} forget: identities={len(self.identities)} "
                f"conversations={self.conversations} inboxes={self.inboxes} leads={self.leads} "
                f"other_keys={self.other_keys} jobs={self.jobs} crm_cache={self.crm_cache}{crm}")


def identities_for(who: str) -> list[str]:
    """The sender ids a phone number or channel id may appear under.

    ``+90 532 111 22 33`` → ``905321112233`` (WhatsApp ids are E.164 digits without ``+``);
    ``telegram:12345`` → ``12345``; any other value is taken as a channel id as it is.
    """
    who = who.strip()
    if ":" in who:
        return [who.split(":", 1)[1]]
    digits = "".join(ch for ch in who if ch.isdigit())
    if who.startswith("+") or (digits and len(digits) >= 7 and digits == who.replace(" ", "").lstrip("+")):
        return sorted({digits, who} - {""})
    return [who]


class Person:
    """The identities and lead references of the person being forgotten, and how to recognise them."""

    def __init__(self, identities: set[str]) -> None:
        self.ids = set(identities)
        self.references: set[str] = set()
        self.contact_keys: set[str] = set()
        self.emails: set[str] = set()

    def is_id(self, value: str) -> bool:
        """Whether ``value`` is one of the person's ids, their phone number (with ``+``), or a key made of
        parts one of which is an id (``whatsapp:905…``, ``whatsapp:1065…:905…``)."""
        value = value.strip()
        if not value:
            return False
        compact = re.sub(r"[\s().\-]", "", value).lstrip("+")  # a phone number as people type it
        return value in self.ids or compact in self.ids or any(p in self.ids for p in value.split(":"))

    def is_reference(self, value: str) -> bool:
        """Whether ``value`` is one of the person's lead references (with or without ``#``)."""
        return value.lstrip("#") in {r.lstrip("#") for r in self.references}

    def named_in_key(self, fam: KeyFamily, key: str) -> bool:
        """Whether the key's own name names the person (its placeholders)."""
        parts = fam.parse(key) or {}
        return any(self.is_reference(v) if name == "reference" else self.is_id(v) for name, v in parts.items())

    def named_in(self, data: Any) -> bool:
        """Whether a record (JSON already parsed, or text) names the person in one of its identity fields."""
        if isinstance(data, dict):
            return any((k in _IDENTITY_FIELDS and isinstance(v, str) and self.is_id(v)) or self.named_in(v)
                       for k, v in data.items())
        if isinstance(data, list):
            return any(self.named_in(v) for v in data)
        return False

    def named_in_word(self, word: str) -> bool:
        """Whether a job's argument names the person: an id, a key of ids, a reference, or a record."""
        parsed = _json(word)
        if parsed is not None:
            return self.named_in(parsed)
        return self.is_id(word) or self.is_reference(word)


def erase(runtime: Runtime, who: str) -> ErasureAudit:
    """Delete every Redis key, rq job and adapter cache entry about ``who``. Returns what was erased.

    Raises:
        redis.RedisError: Redis failed (run the command again: erasing twice is harmless).
        RetryableError: webhooks received before the call were still unread after 30 s (nothing erased).
    """
    client = runtime.redis
    # webhooks received and not read yet hold the person's messages as the vendor sent them: read them
    # first, so that each message is in its conversation's inbox, erased there with the rest
    if not received.read_through(runtime):
        raise RetryableError("webhooks received earlier are still waiting to be read (is a worker stuck?); "
                             "nothing was erased: run the command again once the worker reads them")
    person = Person(set(identities_for(who)))
    found = {fam: list(_keys_of(runtime, fam)) for fam in pii_families()}
    _link(runtime, person, found)
    audit = ErasureAudit(identities=sorted(person.ids))
    # the adapter first: it knows its own caches (the registry pass below then finds nothing of them left)
    audit.crm_cache = _forget_in_adapter(runtime, person)
    counts = {conversations.CONVERSATION: "conversations", inbox.INBOX: "inboxes", leads.LEAD: "leads"}
    for fam, keys in found.items():
        for key in keys:
            kind = _text(client.type(key))
            if kind in ("set", "zset", "list") and not fam.fields:  # a shared list: only the person's members go
                members = _members(runtime, key, kind)
                mine = sorted({m for m in members if person.named_in_word(m)})
                if mine:
                    audit.other_keys += _remove_members(runtime, key, kind, mine)
                continue
            named = person.named_in_key(fam, key) or any(person.named_in(r) for r in _records(runtime, key, kind))
            if named and client.delete(key):
                name = counts.get(fam, "other_keys")
                setattr(audit, name, getattr(audit, name) + 1)
    audit.other_keys += leads.forget(runtime, person.references)
    audit.jobs = queues.erase_jobs(runtime, person.named_in_word)
    agent.mark_forgotten(runtime, sorted(person.ids))  # an agent's later reply in the CRM is not sent to them
    audit.contact_keys = sorted(person.contact_keys)
    return audit


def _link(runtime: Runtime, person: Person, found: dict[KeyFamily, list[str]]) -> None:
    """Bring in the identities linked to the person's conversations (a phone number, a business-scoped id)
    and the references, contact keys and e-mail addresses of their leads, until nothing new is found."""
    for _ in range(5):
        before = (len(person.ids), len(person.references))
        for key in found.get(conversations.CONVERSATION, []):
            raw = runtime.redis.get(key)
            if raw is None:
                continue
            conversation = Conversation.model_validate_json(raw)
            if person.is_id(conversation.sender_id) or person.named_in(_json(raw)):
                person.ids |= conversations.identities(conversation)
                person.contact_keys.add(f"{conversation.channel}:{conversation.sender_id}")
                email = conversation.answers.get("email") or conversation.known.get("email")
                if isinstance(email, str) and email:
                    person.emails.add(email)
        for key in found.get(leads.LEAD, []):
            raw = runtime.redis.get(key)
            if raw is None or family_of(key) is not leads.LEAD:
                continue
            lead = Lead.model_validate_json(raw)
            if person.named_in(_json(raw)):
                person.references.add(lead.reference)
                person.contact_keys.add(lead.contact_key)
                person.ids |= {v for v in (lead.contact.channel_id, (lead.contact.phone or "").lstrip("+")) if v}
                if lead.contact.email:
                    person.emails.add(lead.contact.email)
        if (len(person.ids), len(person.references)) == before:
            return


def _forget_in_adapter(runtime: Runtime, person: Person) -> int:
    """Ask the CRM adapter to drop what it cached about the person (contact keys, phone numbers, e-mails).
    Returns how many entries it deleted (0 when the adapter has no cache, or cannot be set up)."""
    try:
        adapter = runtime.adapter
    except ConfigurationError:
        return 0
    forget = getattr(adapter, "forget", None)
    if forget is None:
        return 0
    phones = {f"+{i}" for i in person.ids if i.isdigit()}
    return int(forget(sorted(person.ids | person.contact_keys | phones | person.emails)))


def _keys_of(runtime: Runtime, fam: KeyFamily) -> Iterator[str]:
    """The keys of exactly this family (a key that a more specific family claims is left to that one)."""
    for raw in runtime.redis.scan_iter(match=fam.pattern, count=500):
        key = _text(raw)
        if family_of(key) is fam:
            yield key


def _members(runtime: Runtime, key: str, kind: str) -> list[str]:
    client = runtime.redis
    raw = (client.zrange(key, 0, -1) if kind == "zset" else client.lrange(key, 0, -1) if kind == "list"
           else client.smembers(key))
    return [_text(m) for m in raw]


def _remove_members(runtime: Runtime, key: str, kind: str, members: list[str]) -> int:
    """Remove ``members`` from the shared set, sorted set or list ``key``. Returns how many went."""
    client = runtime.redis
    if kind == "zset":
        return int(client.zrem(key, *members))
    if kind == "set":
        return int(client.srem(key, *members))
    return sum(int(client.lrem(key, 0, member)) for member in members)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _records(runtime: Runtime, key: str, kind: str) -> list[Any]:
    """A key's value as records: a string's JSON, a list's elements, a hash's values (parsed where JSON)."""
    client = runtime.redis
    if kind == "string":
        values = [client.get(key)]
    elif kind == "list":
        values = list(client.lrange(key, 0, -1))
    elif kind == "hash":
        values = list(client.hgetall(key).values())
    else:
        values = []
    return [parsed for parsed in (_json(v) for v in values if v is not None) if parsed is not None]


def _json(value: Any) -> Any:
    try:
        text = value.decode() if isinstance(value, bytes) else str(value)
        return json.loads(text) if text[:1] in "{[" else None
    except (UnicodeDecodeError, ValueError):
        return None


@click.command("forget")
@click.argument("who")
@click.option("--crm", "in_crm", is_flag=True, help="Also delete or anonymise the CRM contact.")
@click.option("--mode", type=click.Choice(["delete", "anonymise"]), default="anonymise", show_default=True,
              help="What --crm does to the contact.")
def command(who: str, in_crm: bool, mode: str) -> None:
    """Erase everything the relay holds about a person (phone number or channel id)."""
    settings = load_settings()
    configure_logging("text", "WARNING")
    runtime = Runtime(settings)
    try:
        audit = erase(runtime, who)
    except RetryableError as exc:
        raise click.ClickException(str(exc)) from None
    crm_done: list[str] = []
    if in_crm:
        adapter = runtime.adapter
        keys = audit.contact_keys or [f"whatsapp:{i}" for i in audit.identities]
        for contact_key in keys:
            report = adapter.erase_contact(key=(contact_key_field(runtime.mapping), contact_key),
                                           mode=mode)  # type: ignore[arg-type]
            crm_done.append(f"{runtime.config.crm} {report.mode}d" if report.found else f"{runtime.config.crm} none")
    audit.crm = crm_done if in_crm else [f"not asked ({len(audit.contact_keys)} contact(s) known)"]
    click.echo(audit.line())
