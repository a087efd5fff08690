"""The baseline ``bench/cpu_per_lead.py`` compares the relay with: the least a relay can do for a lead,
the way a generic workflow tool wires "webhook → contact, deal, note". A tiny Flask app (served by the
very same gunicorn command as the relay) that, for each WhatsApp webhook, checks its signature and makes
the three HubSpot calls synchronously with ``requests``: create the contact, the deal associated with it,
and the note associated with both. No bot, no queue, no de-duplication, no retries: a floor, not a product.

Configured from the environment the relay reads: ``HUBSPOT_API_BASE``, ``HUBSPOT_ACCESS_TOKEN`` and
``WHATSAPP_APP_SECRET``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from typing import Any

import requests
from flask import Flask, Response, request

app = Flask("direct-relay")
_local = threading.local()

#: HubSpot's own association type ids (HUBSPOT_DEFINED): deal → contact, note → contact, note → deal
_DEAL_TO_CONTACT, _NOTE_TO_CONTACT, _NOTE_TO_DEAL = 3, 202, 214


def _session() -> requests.Session:
    """One keep-alive HTTP session to HubSpot per serving thread."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers["Authorization"] = f"Bearer {os.environ['HUBSPOT_ACCESS_TOKEN']}"
    return session


def _create(object_type: str, properties: dict[str, str], associations: list[tuple[str, int]]) -> str:
    """Create one HubSpot object with its associations; its id."""
    body: dict[str, Any] = {"properties": properties, "associations": [
        {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}
        for to_id, type_id in associations]}
    response = _session().post(f"{os.environ['HUBSPOT_API_BASE']}/crm/v3/objects/{object_type}", json=body, timeout=30)
    response.raise_for_status()
    return str(response.json()["id"])


@app.get("/healthz")
def healthz() -> Response:
    """Liveness, as the benchmark waits for it."""
    return Response("ok", mimetype="text/plain")


@app.post("/webhooks/whatsapp")
def whatsapp() -> tuple[str, int]:
    """One webhook, one lead: the contact, the deal and the note, written before answering."""
    raw = request.get_data()
    expected = "sha256=" + hmac.new(os.environ["WHATSAPP_APP_SECRET"].encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return "bad signature", 401
    value = (request.get_json() or {})["entry"][0]["changes"][0]["value"]
    message, contact = value["messages"][0], value["contacts"][0]
    first, _, last = contact["profile"]["name"].partition(" ")
    text = message.get("text", {}).get("body", "")
    contact_id = _create("contacts", {"firstname": first, "lastname": last, "phone": f"+{message['from']}"}, [])
    deal_id = _create("deals", {"dealname": f"{text[:60]} – {contact['profile']['name']}", "pipeline": "default",
                                "dealstage": "appointmentscheduled"}, [(contact_id, _DEAL_TO_CONTACT)])
    _create("notes", {"hs_note_body": text, "hs_timestamp": str(int(time.time() * 1000))},
            [(contact_id, _NOTE_TO_CONTACT), (deal_id, _NOTE_TO_DEAL)])
    return "", 200
