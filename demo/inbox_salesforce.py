"""The demo page's agent inbox with Salesforce: the chat2crm package's component on a Lead's page, as an agent
sees it.

The emulated org keeps the conversation as ``Chat2CRM_Message__c`` records linked to the Lead (the relay writes
the patient's and the bot's messages; the component writes the agents'). Its control endpoints are what an agent
does in the component: ``/_emulator/chat2crm/reply`` (a reply, ``New`` at once, or with files ``Draft`` first,
the files uploaded onto it, then ``New``), ``/_emulator/chat2crm/close`` (a ``Close`` record), and the records
are read with ``/_emulator/objects/<object>`` and ``/_emulator/chat2crm/messages/<record>``. This module turns
them into the page's inbox shape (the one :mod:`demo.inbox` gives HubSpot's threads): one thread per Lead, its
messages oldest first, each agent's reply with the status the relay wrote back to its record.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import requests

from connector.agent import entry_id
from demo.inbox import SampleFile
from emulators.salesforce.common import API_USER_ID

MESSAGE = "Chat2CRM_Message__c"
#: the lookups a message may carry, by the object they point to (a thread is one record's messages)
LOOKUPS = ("Lead__c", "Contact__c", "Case__c")
#: the record's delivery status, as the page's delivery line names it (Draft and New: not yet taken by the relay)
STATUSES = {"Sent": "SENT", "Delivered": "DELIVERED", "Read": "READ", "Failed": "FAILED"}
#: a record id as Salesforce makes them (15 or 18 letters and digits)
RECORD_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")


def _get(url: str) -> Any:
    return requests.get(url, timeout=5).json()


def _record_of(message: dict[str, Any]) -> str:
    return next((str(message[f]) for f in LOOKUPS if message.get(f)), "")


def _who(message: dict[str, Any]) -> str:
    """``patient``, ``bot`` (the relay's integration user), ``agent`` (a person, in the component) or ``system``."""
    if message.get("Type__c") == "Close":
        return "system"
    if message.get("Direction__c") == "Inbound":
        return "patient"
    return "bot" if message.get("CreatedById") == API_USER_ID else "agent"


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _message(message: dict[str, Any]) -> dict[str, Any]:
    who = _who(message)
    shown: dict[str, Any] = {"id": message["Id"], "who": who, "at": message.get("CreatedDate"),
                             "name": message.get("Agent_Name__c") if who in ("agent", "system") else None,
                             "text": "" if who == "system" else message.get("Body__c") or "",
                             "files": [{"name": name, "url": None} for name in message.get("files") or []]}
    if who == "agent":
        shown["status"] = STATUSES.get(str(message.get("Status__c")))
        shown["failure"] = message.get("Error__c")
    if who == "system":
        shown["status"] = "CLOSED"
    return shown


def _threads(base: str) -> dict[str, list[dict[str, Any]]]:
    """Every record's messages, oldest first, by record id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in _get(f"{base}/_emulator/objects/{MESSAGE}"):
        record = _record_of(message)
        if record:
            found.setdefault(record, []).append(message)
    return found  # the org lists records in the order they were saved


def _summary(record: str, messages: list[dict[str, Any]], lead: dict[str, Any]) -> dict[str, Any]:
    last = next((m for m in reversed(messages) if m.get("Type__c") != "Close"), None)
    closed = bool(messages) and messages[-1].get("Type__c") == "Close"
    phone = lead.get("MobilePhone") or lead.get("Phone")
    name = " ".join(str(lead.get(k)) for k in ("FirstName", "LastName") if lead.get(k)) or "Lead"
    return {"id": record, "status": "CLOSED" if closed else "OPEN",
            "channel": str((last or messages[-1]).get("Channel__c") or ""), "patient": _digits(phone),
            "name": name, "phone": phone, "last": (last or {}).get("Body__c") or "",
            "last_who": _who(last) if last else None, "at": (last or messages[-1]).get("CreatedDate"),
            "assignee": None}


def inbox(base: str, chosen: str | None) -> dict[str, Any]:
    """The page's inbox: every Lead with messages (newest first) and, with ``chosen``, that Lead's messages as the
    component shows them."""
    leads = {str(lead["Id"]): lead for lead in _get(f"{base}/_emulator/objects/Lead")}
    threads = _threads(base)
    listed = sorted((_summary(r, m, leads.get(r, {})) for r, m in threads.items()),
                    key=lambda t: str(t["at"] or ""), reverse=True)
    detail = None
    if chosen and chosen in threads:
        summary = next(t for t in listed if t["id"] == chosen)
        # the component's own read: each message with the names of its files
        messages = _get(f"{base}/_emulator/chat2crm/messages/{chosen}")
        detail = {**summary, "messages": [_message(m) for m in messages]}
    return {"threads": listed, "thread": detail}


def reply(base: str, record: str, text: str, sample: SampleFile | None) -> requests.Response:
    """The component's Send: a reply record (with the file, a draft first, the file uploaded, then New)."""
    files = [{"name": sample.name, "content_base64": base64.b64encode(sample.content).decode()}] if sample else []
    return requests.post(f"{base}/_emulator/chat2crm/reply", json={"record": record, "text": text, "files": files},
                         timeout=10)


def close(base: str, record: str) -> requests.Response:
    """The component's Close conversation: a Close record, which the relay takes from the change events."""
    return requests.post(f"{base}/_emulator/chat2crm/close", json={"record": record}, timeout=10)


def agents_replies(base: str, channel: str, patient: str) -> list[dict[str, Any]]:
    """The agents' replies to one patient, oldest first, with the tracking the relay sends each with (see
    :func:`demo.inbox.agents_replies`)."""
    leads = {str(lead["Id"]): lead for lead in _get(f"{base}/_emulator/objects/Lead")}
    found = []
    for record, messages in _threads(base).items():
        lead = leads.get(record, {})
        if _digits(lead.get("MobilePhone") or lead.get("Phone")) != patient:
            continue
        for message in messages:
            if _who(message) == "agent" and message.get("Channel__c") == channel:
                found.append({"tracking": entry_id(str(message["Id"])), "agent": message.get("Agent_Name__c")
                              or "Agent", "text": message.get("Body__c") or ""})
    return found
