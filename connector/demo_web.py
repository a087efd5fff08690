"""The demo page (``/demo``): play a patient on the left, watch the CRM on the right.

Served only when ``chat2crm demo`` runs the relay (it sets ``CHAT2CRM_DEMO_EMULATORS``). The page
talks to ``/demo/api/*`` here, which talks to the emulators; nothing here touches the relay's
internals: patients' messages arrive at the webhooks as signed webhooks, like real ones.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, request, send_from_directory

from connector.settings import PROJECT_ROOT

blueprint = Blueprint("demo", __name__)
ASSETS = PROJECT_ROOT / "connector" / "demo_assets"


def _emulators() -> dict[str, str]:
    raw = current_app.extensions["chat2crm"].settings.chat2crm_demo_emulators
    if not raw:
        abort(404)
    emulators: dict[str, str] = json.loads(raw)
    return emulators


def _get(url: str) -> Any:
    return requests.get(url, timeout=5).json()


@blueprint.get("/demo")
@blueprint.get("/")
def page() -> Response:
    _emulators()
    return send_from_directory(ASSETS, "demo.html")


@blueprint.get("/demo/static/<path:name>")
def asset(name: str) -> Response:
    _emulators()
    return send_from_directory(ASSETS, name)


@blueprint.get("/demo/api/config")
def config() -> Response:
    emulators = _emulators()
    runtime = current_app.extensions["chat2crm"]
    campaigns = runtime.campaigns.campaigns
    return jsonify({
        "clinic_name": runtime.config.clinic_name, "crm": emulators["crm_name"],
        "campaigns": [{"slug": c.slug, "language": c.language, "channel": c.channel} for c in campaigns],
        "ads": [{"source_id": c.source_ids[0], "headline": c.name} for c in campaigns if c.source_ids],
    })


@blueprint.post("/demo/api/arrive")
def arrive() -> Response:
    """Follow a campaign link as a visitor would; return what the chat opens with."""
    _emulators()
    data = request.get_json(silent=True) or {}
    response = current_app.test_client().get(f"/c/{data.get('campaign', '')}?utm_source=demo&utm_medium=demo_page")
    if response.status_code != 302:
        abort(404)
    query = parse_qs(urlparse(response.headers["Location"]).query)
    if "start" in query:
        return jsonify({"start_payload": query["start"][0]})
    return jsonify({"prefill": unquote(query.get("text", [""])[0])})


@blueprint.post("/demo/api/send")
def send() -> Response:
    """Play one patient message through the channel emulator (a signed webhook to the relay)."""
    emulators = _emulators()
    data = request.get_json(silent=True) or {}
    patient = str(data.get("patient", ""))
    if not patient.isdigit():
        abort(400)
    body: dict[str, Any] = {"name": "Demo Patient"}
    for key in ("text", "button", "list", "callback"):
        if data.get(key):
            body[key] = data[key]
    if data.get("channel") == "telegram":
        if "button" in body or "list" in body:
            chosen = body.pop("button", None) or body.pop("list")
            body["callback"] = {"data": chosen["id"]}
        url = f"{emulators['telegram']}/_emulator/users/{patient}/send"
    else:
        if data.get("ad"):
            body["ad"] = {"source_url": "https://fb.me/demo-ad", "source_id": str(data["ad"]), "source_type": "ad",
                          "headline": "Demo ad", "body": "Tap to chat", "media_type": "image",
                          "ctwa_clid": "ARA" + secrets.token_urlsafe(24)}
        url = f"{emulators['whatsapp']}/_emulator/patients/{patient}/send"
    return jsonify(requests.post(url, json=body, timeout=10).json())


def _whatsapp_out(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["type"] == "text":
        return {"text": payload["text"]["body"]}
    if payload["type"] == "template":
        return {"text": f"[template {payload['template']['name']}]"}
    interactive = payload["interactive"]
    shown: dict[str, Any] = {"text": interactive["body"]["text"]}
    if interactive["type"] == "button":
        shown["buttons"] = [b["reply"] for b in interactive["action"]["buttons"]]
    else:
        shown["list"] = {"button": interactive["action"]["button"],
                         "rows": [r for s in interactive["action"]["sections"] for r in s["rows"]]}
    return shown


def _whatsapp_in(payload: dict[str, Any]) -> dict[str, Any]:
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    kind = message["type"]
    if kind == "text":
        text = message["text"]["body"]
    elif kind == "interactive":
        reply = message["interactive"].get("button_reply") or message["interactive"].get("list_reply") or {}
        text = reply.get("title", "")
    elif kind == "location":
        text = "📍 " + str(message["location"].get("name") or "")
    else:
        text = f"({kind})"
    at = payload.get("_received_at") or int(message["timestamp"])
    return {"id": message["id"], "direction": "in", "text": text, "at": at * 1000}


@blueprint.get("/demo/api/chat")
def chat() -> Response:
    """The conversation as the patient's phone shows it."""
    emulators = _emulators()
    patient = request.args.get("patient", "")
    messages: list[dict[str, Any]] = []
    if request.args.get("channel") == "telegram":
        for update in _get(f"{emulators['telegram']}/_emulator/inbound?from={patient}"):
            if "message" in update:
                messages.append({"id": str(update["update_id"]), "direction": "in",
                                 "text": update["message"].get("text", ""),
                                 "at": update.get("_received_at", update["message"]["date"]) * 1000})
            elif "callback_query" in update:
                data = update["callback_query"]["data"]
                messages.append({"id": str(update["update_id"]), "direction": "in", "text": f"▸ {data}",
                                 "at": update.get("_received_at", 0) * 1000})
        for sent in _get(f"{emulators['telegram']}/_emulator/messages?chat_id={patient}"):
            shown = {"id": sent["message_id"], "direction": "out", "text": sent["text"],
                     "at": sent.get("_sent_at", sent["date"]) * 1000}
            keyboard = (sent.get("reply_markup") or {}).get("inline_keyboard")
            if keyboard:
                shown["keyboard"] = keyboard
            messages.append(shown)
    else:
        messages += [_whatsapp_in(p) for p in _get(f"{emulators['whatsapp']}/_emulator/inbound?from={patient}")]
        for sent in _get(f"{emulators['whatsapp']}/_emulator/messages?to={patient}"):
            messages.append({"id": sent["id"], "direction": "out", "at": sent["at"] * 1000,
                             **_whatsapp_out(sent["payload"])})
    messages.sort(key=lambda m: (m["at"], 0 if m["direction"] == "in" else 1))
    return jsonify({"messages": messages})


@blueprint.get("/demo/api/crm")
def crm() -> Response:
    """The CRM as an agent sees it (contacts, records in their stages, notes, tasks, extras such as
    campaign members), and the API calls the relay made to it. Each CRM emulator renders its own
    ``/_emulator/view`` in one CRM-neutral shape."""
    emulators = _emulators()
    base = emulators["crm"]
    view = _get(f"{base}/_emulator/view")
    calls = _get(f"{base}/_emulator/calls")
    view["crm"] = emulators["crm_name"]
    view["calls"] = [{"method": c["method"], "path": c["path"], "status": c["status"] or 0} for c in calls]
    return jsonify(view)
