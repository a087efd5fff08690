"""The demo page (``/demo``): play a patient on the left, watch the CRM on the right.

Served only when ``chat2crm demo`` runs the relay: its web process serves :mod:`demo.wsgi`, the relay's
app with this blueprint added, and the page answers only while ``CHAT2CRM_DEMO_EMULATORS`` is set. The page
talks to ``/demo/api/*`` here, which talks to the emulators; nothing here touches the relay's
internals: patients' messages arrive at the webhooks as signed webhooks, like real ones. The CRM half also has
the agents' inbox: with HubSpot (``/demo/api/inbox…``, shaped by :mod:`demo.inbox`) an agent's reply or a closed
thread is made in the HubSpot emulator, which sends the relay HubSpot's signed webhooks; with Salesforce
(:mod:`demo.inbox_salesforce`) it is a message record the package's component saves, which the relay's listener
takes from the org's change events; with Pipedrive (:mod:`demo.inbox_pipedrive`) the page embeds the emulator's
person view, where the agent uses the relay's own panel.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, request, send_from_directory

from connector.logs import redact
from core.keys import family
from demo import forms, inbox_pipedrive, inbox_salesforce
from demo import inbox as agent_inbox

blueprint = Blueprint("demo", __name__)
ASSETS = Path(__file__).resolve().parent / "assets"

#: the page's "Try" buttons: a campaign link to arrive through (its prefill is the first message) or,
#: with no campaign, a first message (the configuration's default flow answers it)
EXAMPLES: list[dict[str, Any]] = [
    {"id": "meeting-tr", "label": "Meeting request (Turkish, from its campaign link)", "channel": "whatsapp",
     "campaign": "meeting-tr", "text": None},
    {"id": "health-en", "label": "Health-tourism intake (English, no campaign)", "channel": "whatsapp",
     "campaign": None, "text": "Hi, price for hair transplant?"},
]
#: failures the page can provoke, through the emulators' own fault injection: id -> (emulator, kind, label)
FAULTS: dict[str, tuple[str, str, str]] = {
    "crm-500": ("crm", "500", "The CRM's next call fails with HTTP 500 (temporary)"),
    "crm-400": ("crm", "400", "The CRM refuses the next call with HTTP 400 (a refused write fails for good)"),
    "whatsapp-429": ("whatsapp", "429", "WhatsApp throttles the next send, HTTP 429 (the relay retries)"),
    "telegram-429": ("telegram", "429", "Telegram throttles the next call, HTTP 429 (the relay retries)"),
}


def _emulators() -> dict[str, str]:
    raw = current_app.extensions["chat2crm"].settings.chat2crm_demo_emulators
    if not raw:
        abort(404)
    emulators: dict[str, str] = json.loads(raw)
    return emulators


def _get(url: str) -> Any:
    return requests.get(url, timeout=5).json()


def _has_inbox(emulators: dict[str, str]) -> bool:
    """Whether the page shows the agents' inbox itself (HubSpot's conversations inbox, Salesforce's component on
    the Lead); Pipedrive's is the relay's own panel in the emulator's host page (:func:`inbox_kind`)."""
    return emulators["crm_name"] in ("hubspot", "salesforce")


def inbox_kind(emulators: dict[str, str]) -> str | None:
    """How the page's Inbox tab shows the agents' side: ``threads`` (the page renders the CRM's threads) or
    ``panel`` (it embeds Pipedrive's detail view with the relay's panel); None without an inbox."""
    if _has_inbox(emulators):
        return "threads"
    return "panel" if emulators["crm_name"] == "pipedrive" else None


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
    slugs = {c.slug for c in campaigns}
    return jsonify({
        "clinic_name": runtime.config.clinic_name, "crm": emulators["crm_name"],
        "default_flow": runtime.config.default_flow,
        "campaigns": [{"slug": c.slug, "language": c.language, "channel": c.channel} for c in campaigns],
        "ads": [{"source_id": c.source_ids[0], "headline": c.name} for c in campaigns if c.source_ids],
        "examples": [e for e in EXAMPLES if e["campaign"] is None or e["campaign"] in slugs],
        "faults": [{"id": key, "label": label} for key, (_target, _kind, label) in FAULTS.items()],
        "inbox": inbox_kind(emulators) is not None, "inbox_kind": inbox_kind(emulators),
        "crm_url": emulators["crm"] if emulators["crm_name"] == "pipedrive" else None,
        "samples": agent_inbox.samples() if _has_inbox(emulators) else [],
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


#: the message types that carry a file, on WhatsApp (by link) and Telegram (the Bot API's send methods)
_WHATSAPP_FILES = ("image", "document", "video", "audio", "sticker")
_TELEGRAM_FILES = ("photo", "document", "video", "audio", "voice", "animation")


def _whatsapp_out(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["type"] == "text":
        return {"text": payload["text"]["body"]}
    if payload["type"] == "template":
        return {"text": forms.template_text(payload["template"]), "template": payload["template"]["name"]}
    if payload["type"] in _WHATSAPP_FILES:
        media = payload[payload["type"]]
        link = str(media.get("link") or "")
        return {"text": media.get("caption") or "", "files": [
            {"name": media.get("filename") or link.rsplit("/", 1)[-1] or payload["type"], "url": link or None}]}
    interactive = payload["interactive"]
    shown: dict[str, Any] = {"text": interactive["body"]["text"]}
    if interactive["type"] == "flow":  # a WhatsApp form: a button that opens its screen
        parameters = interactive["action"]["parameters"]
        screen = (parameters.get("flow_action_payload") or {}).get("screen")
        shown["form"] = {"button": parameters.get("flow_cta", "Open"),
                         **_form_screen(str(parameters.get("flow_id", "")), screen)}
    elif interactive["type"] == "button":
        shown["buttons"] = [b["reply"] for b in interactive["action"]["buttons"]]
    else:
        shown["list"] = {"button": interactive["action"]["button"],
                         "rows": [r for s in interactive["action"]["sections"] for r in s["rows"]]}
    return shown


#: the fields a form's screen shows (Meta's Flow JSON components), as the page draws them
_FORM_FIELDS = ("TextInput", "TextArea", "RadioButtonsGroup", "Dropdown")
#: published forms never change: what the page read of each, by the flow's id
_forms_seen: dict[str, dict[str, Any]] = {}


def _form_screen(flow_id: str, screen: str | None) -> dict[str, Any]:
    """A published form's screen as the page draws it: its title, fields and send button (read once per flow)."""
    if flow_id not in _forms_seen:
        found = next((f for f in _get(f"{_emulators()['whatsapp']}/_emulator/flows") if f["id"] == flow_id), None)
        if found is None or not found.get("flow_json"):
            return {"title": "", "fields": [], "submit": "Send"}
        _forms_seen[flow_id] = found["flow_json"]
    screens = _forms_seen[flow_id].get("screens") or [{}]
    chosen = next((s for s in screens if s.get("id") == screen), screens[0])
    fields: list[dict[str, Any]] = []
    submit = "Send"

    def walk(children: list[dict[str, Any]]) -> None:
        nonlocal submit
        for child in children:
            if child.get("type") in _FORM_FIELDS:
                fields.append({key: child.get(key) for key in ("type", "name", "label", "required", "input-type",
                                                               "helper-text", "data-source")})
            elif child.get("type") == "Footer":
                submit = str(child.get("label") or submit)
            elif isinstance(child.get("children"), list):  # a Form component holds its fields
                walk(child["children"])

    walk((chosen.get("layout") or {}).get("children") or [])
    return {"title": chosen.get("title") or "", "fields": fields, "submit": submit}


@blueprint.post("/demo/api/form")
def send_form() -> Response | tuple[Response, int]:
    """The patient fills in and sends the last form the clinic sent them (WhatsApp's own checks first)."""
    emulators = _emulators()
    data = request.get_json(silent=True) or {}
    patient = str(data.get("patient", ""))
    values = data.get("values")
    if not patient.isdigit() or not isinstance(values, dict):
        abort(400)
    filled = {k: v for k, v in values.items() if v not in ("", None)}
    answer = requests.post(f"{emulators['whatsapp']}/_emulator/patients/{patient}/flow",
                           json={"name": "Demo Patient", "values": filled}, timeout=10)
    return jsonify(answer.json()), answer.status_code


def _whatsapp_in(payload: dict[str, Any]) -> dict[str, Any]:
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    kind = message["type"]
    if kind == "text":
        text = message["text"]["body"]
    elif kind == "interactive" and message["interactive"].get("type") == "nfm_reply":  # a form sent back
        answers: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            answers = json.loads(message["interactive"]["nfm_reply"].get("response_json") or "{}")
        text = "📝 " + " · ".join(str(v) for k, v in answers.items() if k != "flow_token" and v not in ("", None))
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
            shown = {"id": sent["message_id"], "direction": "out", "text": sent.get("text") or sent.get("caption") or "",
                     "at": sent.get("_sent_at", sent["date"]) * 1000}
            kind = next((k for k in _TELEGRAM_FILES if k in sent), None)
            if kind is not None:
                source = sent.get("_source")
                link = source if isinstance(source, str) and source.startswith("http") else None
                named = (sent[kind] if isinstance(sent[kind], dict) else {}).get("file_name")
                shown["files"] = [{"name": named or (link.rsplit("/", 1)[-1] if link else kind), "url": link}]
            keyboard = (sent.get("reply_markup") or {}).get("inline_keyboard")
            if keyboard:
                shown["keyboard"] = keyboard
            messages.append(shown)
    else:
        messages += [_whatsapp_in(p) for p in _get(f"{emulators['whatsapp']}/_emulator/inbound?from={patient}")]
        for sent in _get(f"{emulators['whatsapp']}/_emulator/messages?to={patient}"):
            # the status Meta has reported for it (sent, delivered, read, failed), and the tracking it was sent with
            messages.append({"id": sent["id"], "direction": "out", "at": sent["at"] * 1000,
                             "status": sent.get("status"), "tracking": sent["payload"].get("biz_opaque_callback_data"),
                             **_whatsapp_out(sent["payload"])})
    channel = "telegram" if request.args.get("channel") == "telegram" else "whatsapp"
    replies: list[dict[str, Any]] = []
    if emulators["crm_name"] == "hubspot":
        replies = agent_inbox.agents_replies(_get(f"{emulators['crm']}/_emulator/inbox/threads"), channel, patient)
    elif emulators["crm_name"] == "salesforce":
        replies = inbox_salesforce.agents_replies(emulators["crm"], channel, patient)
    agent_inbox.mark_agents(messages, replies, by_text=channel == "telegram")
    messages.sort(key=lambda m: (m["at"], 0 if m["direction"] == "in" else 1))
    return jsonify({"messages": messages})


@blueprint.post("/demo/api/read")
def read() -> Response:
    """The patient looks at the chat: WhatsApp then reports ``read`` for what was delivered to them."""
    emulators = _emulators()
    patient = str((request.get_json(silent=True) or {}).get("patient", ""))
    if not patient.isdigit():
        abort(400)
    return jsonify(requests.post(f"{emulators['whatsapp']}/_emulator/patients/{patient}/read", timeout=5).json())


# -- the agents' inbox (HubSpot, Salesforce) ---------------------------------------------------------
def _inbox_emulator() -> str:
    """The CRM emulator's address (404 when the page does not show the demo's CRM's inbox itself)."""
    emulators = _emulators()
    if not _has_inbox(emulators):
        abort(404)
    return emulators["crm"]


def _is_salesforce() -> bool:
    return _emulators()["crm_name"] == "salesforce"


def _thread_id(value: str) -> str:
    """A HubSpot thread id (digits) or, with Salesforce, the id of the Lead whose messages are the thread."""
    if not (inbox_salesforce.RECORD_ID.match(value) if _is_salesforce() else value.isdigit()):
        abort(400)
    return value


def _passed_on(response: requests.Response) -> tuple[Response, int]:
    """The emulator's answer as the page's: its body (the error, when it refused) and its status."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:300]}
    return jsonify(body), response.status_code


@blueprint.get("/demo/api/inbox")
def inbox() -> Response:
    """The inbox as an agent sees it: every thread (newest first) and, with ``?thread=``, that thread's messages."""
    base = _inbox_emulator()
    if _is_salesforce():
        return jsonify(inbox_salesforce.inbox(base, request.args.get("thread")))
    threads = _get(f"{base}/_emulator/inbox/threads")
    chosen = next((t for t in threads if t["id"] == request.args.get("thread")), None)
    listed = sorted((agent_inbox.summary(t) for t in threads), key=lambda t: str(t["at"] or ""), reverse=True)
    return jsonify({"threads": listed, "thread": agent_inbox.detail(chosen) if chosen else None})


@blueprint.post("/demo/api/inbox/threads/<thread_id>/reply")
def inbox_reply(thread_id: str) -> tuple[Response, int]:
    """An agent's reply: the text and, optionally, one of the sample files (put into the file manager first, as
    an agent's upload)."""
    base, thread = _inbox_emulator(), _thread_id(thread_id)
    data = request.get_json(silent=True) or {}
    text = str(data.get("text") or "").strip()
    files: list[str] = []
    if data.get("sample"):
        sample = agent_inbox.SAMPLES.get(str(data["sample"]))
        if sample is None:
            abort(400)
        if _is_salesforce():
            return _passed_on(inbox_salesforce.reply(base, thread, text, sample))
        uploaded = requests.post(f"{base}/_emulator/files", json=agent_inbox.upload_body(sample), timeout=10)
        if uploaded.status_code != 201:
            return _passed_on(uploaded)
        files.append(str(uploaded.json()["id"]))
    if not (text or files):
        return jsonify({"error": "write a reply (or pick a file)"}), 400
    if _is_salesforce():
        return _passed_on(inbox_salesforce.reply(base, thread, text, None))
    return _passed_on(requests.post(f"{base}/_emulator/inbox/threads/{thread}/reply",
                                    json={"text": text, "fileIds": files}, timeout=10))


@blueprint.post("/demo/api/inbox/threads/<thread_id>/close")
def inbox_close(thread_id: str) -> tuple[Response, int]:
    """The agent closes the conversation: HubSpot tells the relay, which hands the patient back to the bot."""
    base = _inbox_emulator()
    if _is_salesforce():
        return _passed_on(inbox_salesforce.close(base, _thread_id(thread_id)))
    return _passed_on(requests.post(f"{base}/_emulator/inbox/threads/{_thread_id(thread_id)}/close", json={},
                                    timeout=10))


@blueprint.get("/demo/api/inbox/panel")
def inbox_panel() -> Response:
    """Pipedrive: the patient's person and its detail view with the relay's panel, for the Inbox tab's frame."""
    emulators = _emulators()
    if emulators["crm_name"] != "pipedrive":
        abort(404)
    return jsonify(inbox_pipedrive.panel(emulators["crm"], request.args.get("patient", "")))


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


@blueprint.post("/demo/api/fault")
def fault() -> Response:
    """Make an emulator fail its next call (one of :data:`FAULTS`), to watch the relay cope."""
    emulators = _emulators()
    data = request.get_json(silent=True) or {}
    chosen = FAULTS.get(str(data.get("fault", "")))
    if chosen is None:
        abort(400)
    target, kind, label = chosen
    response = requests.post(f"{emulators[target]}/_emulator/fail", json={"kind": kind, "count": 1}, timeout=5)
    response.raise_for_status()
    return jsonify({"armed": label})


@blueprint.get("/demo/api/problems")
def problems() -> Response:
    """What went wrong, newest first, in words: the warnings, errors and retries the relay logged (the
    terminal shows the same records), which ``chat2crm demo`` keeps in Redis for this page."""
    _emulators()
    runtime = current_app.extensions["chat2crm"]
    found = []
    for raw in runtime.redis.lrange(PROBLEMS_KEY, 0, PROBLEMS_KEPT - 1):
        with contextlib.suppress(ValueError, TypeError):
            found.append(problem(json.loads(raw)))
    return jsonify({"problems": found})


# -- the relay's problems, from its log records -------------------------------------------------
#: where ``chat2crm demo`` keeps the relay's problem records (newest first) for the page
PROBLEMS_KEY = family("demo", "problems", ttl=86400, holds_pii=False, owner=__name__).key()
PROBLEMS_KEPT = 100
#: records logged at INFO that are problems all the same: something failed and the relay retries it
_RETRIES = frozenset({"retry scheduled", "conversation retry scheduled", "reply retry scheduled"})
#: rq's own error record for these jobs repeats the relay's "job failed" line, which gives the reason
_REPORTED_BY_THE_RELAY = ("connector.jobs.sync_lead", "connector.jobs.sync_opt_out")
_HINT = ("chat2crm failed list shows it, chat2crm failed replay --all runs it again (the terminal's banner shows "
         "how to run them against this demo)")


def is_duplicate(record: dict[str, Any]) -> bool:
    """Whether a log record only repeats another one (rq's traceback record of a job the relay reported)."""
    return str(record.get("logger", "")).startswith("rq.") and record.get("func") in _REPORTED_BY_THE_RELAY


def is_problem(record: dict[str, Any]) -> bool:
    """Whether a relay log record (JSON, already redacted) belongs in the page's Problems list."""
    if is_duplicate(record):
        return False
    return record.get("level") in ("WARNING", "ERROR", "CRITICAL") or record.get("msg") in _RETRIES


def problem(record: dict[str, Any]) -> dict[str, Any]:
    """A problem record as the page shows it: ``at`` (ms), ``kind`` (retry, final, warning, error), ``text``
    and, for work the relay gave up on, a ``hint``."""
    msg = str(record.get("msg", "")).splitlines()[0] if record.get("msg") else ""
    kind = "error" if record.get("level") in ("ERROR", "CRITICAL") else "warning"
    hint = None
    if msg == "retry scheduled":
        kind = "retry"
        text = (f"{_subject(record)} failed (will retry: attempt {record.get('attempt')} in "
                f"{record.get('delay_s')} s): {record.get('error')}")
    elif msg == "reply retry scheduled":
        kind = "retry"
        text = (f"Sending a reply to a patient failed (will retry: attempt {record.get('attempt')} in "
                f"{record.get('delay_s')} s): {record.get('error')}")
    elif msg == "conversation retry scheduled":
        kind = "retry"
        text = (f"Handling a patient's message failed (will retry: attempt {record.get('attempt')} in "
                f"{record.get('delay_s')} s): {record.get('error')}")
    elif msg == "job failed":
        kind, hint = "final", _HINT
        text = f"{_subject(record)} failed for good: {record.get('reason')}"
    elif msg == "message failed":
        kind, hint = "final", _HINT
        text = f"A patient's message failed for good: {record.get('reason')}"
    elif msg == "CRM look-up skipped":
        text = f"CRM look-up failed ({record.get('error')}): the bot asks the patient instead"
    else:
        shown = {k: v for k, v in record.items() if k not in _NOT_SHOWN}
        text = msg + (": " + ", ".join(f"{k} {v}" for k, v in shown.items()) if shown else "")
    return {"at": _epoch_ms(record.get("ts")), "kind": kind, "text": redact(text), "hint": hint}


_NOT_SHOWN = frozenset({"ts", "level", "logger", "msg", "exc", "details", "conversation", "func", "arguments",
                        "kwargs", "job_id", "queue"})


def _subject(record: dict[str, Any]) -> str:
    """The work a record is about, for a person: "CRM write of lead #1001"."""
    if record.get("reference"):
        return f"CRM write of lead {record['reference']}"
    job = str(record.get("job") or "")
    if job.startswith("lead "):
        return f"CRM write of {job}"
    if job in ("opt-out", "sync_opt_out"):
        return "CRM write of an opt-out"
    return f"Job {job}" if job else "A job"


def _epoch_ms(ts: Any) -> float:
    try:
        return datetime.fromisoformat(str(ts)).timestamp() * 1000
    except ValueError:
        return datetime.now(UTC).timestamp() * 1000
