"""The demo page's agent inbox with Pipedrive: the relay's own panel, in Pipedrive's person detail view.

With Pipedrive the agents answer in the app's custom panel, which the relay serves (``/crm/pipedrive/panel``)
and Pipedrive shows in an iframe of a record's detail view. The page's Inbox tab embeds the emulator's host
page of that view (``/_emulator/ui/person/<id>?user=<user>``), so what the agent uses is the real panel, with
its signed token and the App Extensions SDK's messages. This module finds which person is the patient on the
phone (the person the lead's write made, by their phone number).
"""

from __future__ import annotations

import re
from typing import Any

import requests

#: the Pipedrive user the demo's agent signs in as (the company's first user, its admin)
AGENT_USER = 1


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _phones(person: dict[str, Any]) -> list[str]:
    """Every phone number of a person, as digits (API v2 ``phones``, v1 ``phone``: lists of ``{value}``)."""
    found = []
    for name in ("phones", "phone"):
        value = person.get(name)
        for entry in value if isinstance(value, list) else [value]:
            found.append(_digits(entry.get("value") if isinstance(entry, dict) else entry))
    return [f for f in found if f]


def panel(base: str, patient: str) -> dict[str, Any]:
    """The person of the patient on the phone and the detail view to embed; ``person`` None until the lead's write
    made it (the newest person when no phone matches, as a Telegram patient has none)."""
    persons = requests.get(f"{base}/_emulator/objects/persons", timeout=5).json()
    mine = next((p for p in reversed(persons) if patient and patient in _phones(p)), None)
    chosen = mine or (persons[-1] if persons else None)
    if chosen is None:
        return {"person": None, "url": None, "name": None}
    person = str(chosen["id"])
    return {"person": person, "name": chosen.get("name"), "patient": patient if mine else None,
            "url": f"{base}/_emulator/ui/person/{person}?user={AGENT_USER}"}
