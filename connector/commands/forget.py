"""``chat2crm forget <phone | channel id>``: erase everything the relay holds about a person.

The relay keeps patient data only in Redis (conversations, inboxes, leads and their
transcripts, flood counters); this removes all of it for the person, and with ``--crm`` deletes
or anonymises the CRM contact through the adapter. It prints one audit line of what it erased
(counts and key kinds, never the data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click

from connector.runtime import PREFIX, Runtime, rkey


@dataclass
class ErasureAudit:
    """What was erased, for the audit line."""

    identities: list[str]
    conversations: int = 0
    inboxes: int = 0
    leads: int = 0
    other_keys: int = 0
    crm: list[str] = field(default_factory=list)

    def line(self) -> str:
        crm = "; crm: " + ", ".join(self.crm) if self.crm else ""
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} forget: identities={len(self.identities)} "
                f"conversations={self.conversations} inboxes={self.inboxes} leads={self.leads} "
                f"other_keys={self.other_keys}{crm}")


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


def erase(runtime: Runtime, who: str) -> ErasureAudit:
    """Delete every Redis key about ``who``. Returns what was erased.

    Conversations found under one identity also bring in the identities linked to them (the
    phone number and business-scoped id WhatsApp may give for the same person).
    """
    client = runtime.redis
    ids = set(identities_for(who))
    audit = ErasureAudit(identities=sorted(ids))
    contact_keys: set[str] = set()
    # Conversations and inboxes are keyed by channel:account:sender.
    for kind in ("conv", "inbox"):
        for raw in client.scan_iter(match=f"{PREFIX}{kind}:*", count=500):
            key = raw.decode()
            sender = key.rsplit(":", 1)[-1]
            linked = False
            if kind == "conv" and sender not in ids:
                data = client.get(key)
                if data:
                    conv = json.loads(data)
                    linked = bool({conv.get("phone", "") or "", (conv.get("phone") or "").lstrip("+"),
                                   conv.get("user_id") or ""} & ids)
            if sender in ids or linked:
                if kind == "conv":
                    data = client.get(key)
                    if data:
                        conv = json.loads(data)
                        ids.update(v for v in ((conv.get("phone") or "").lstrip("+"), conv.get("user_id")) if v)
                        contact_keys.add(f"{conv['channel']}:{conv['sender_id']}")
                    audit.conversations += 1
                else:
                    audit.inboxes += 1
                convo = key.split(":", 1)[1].split(":", 1)[1]
                client.delete(key)
                client.delete(rkey("lock", convo), rkey("inbox-attempts", convo), rkey("inbox-wait", convo))
                client.srem(rkey("inboxes"), convo)
    # Leads (with their transcripts) name the person by contact key and phone.
    for raw in client.scan_iter(match=f"{PREFIX}lead:*", count=500):
        key = raw.decode()
        if key.count(":") != 2:
            continue
        data = client.get(key)
        if not data:
            continue
        lead = json.loads(data)
        contact = lead.get("contact") or {}
        if (lead.get("contact_key") in contact_keys or contact.get("channel_id") in ids
                or (contact.get("phone") or "").lstrip("+") in ids):
            contact_keys.add(lead["contact_key"])
            client.delete(key, key + ":synced")
            client.zrem(rkey("leads", "pending"), lead.get("reference", ""))
            audit.leads += 1
    for raw in client.scan_iter(match=f"{PREFIX}flood:*", count=500):
        if any(raw.decode().endswith(":" + i) or f":{i}:" in raw.decode() for i in ids):
            client.delete(raw)
            audit.other_keys += 1
    audit.identities = sorted(ids)
    audit.crm = sorted(contact_keys)
    return audit


@click.command("forget")
@click.argument("who")
@click.option("--crm", "in_crm", is_flag=True, help="Also delete or anonymise the CRM contact.")
@click.option("--mode", type=click.Choice(["delete", "anonymise"]), default="anonymise", show_default=True,
              help="What --crm does to the contact.")
def command(who: str, in_crm: bool, mode: str) -> None:
    """Erase everything the relay holds about a person (phone number or channel id)."""
    from connector.logs import configure_logging
    from connector.settings import load_settings

    settings = load_settings()
    configure_logging("text", "WARNING")
    runtime = Runtime(settings)
    audit = erase(runtime, who)
    crm_done: list[str] = []
    if in_crm:
        from connector.mapping import contact_key_field

        adapter = runtime.adapter
        keys = audit.crm or [f"whatsapp:{i}" for i in audit.identities]
        for contact_key in keys:
            report = adapter.erase_contact(key=(contact_key_field(runtime.mapping), contact_key),
                                           mode=mode)  # type: ignore[arg-type]
            crm_done.append(f"{runtime.config.crm} {report.mode}d" if report.found else f"{runtime.config.crm} none")
    audit.crm = crm_done if in_crm else [f"not asked ({len(audit.crm)} contact(s) known)"]
    click.echo(audit.line())
