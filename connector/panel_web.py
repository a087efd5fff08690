"""The Pipedrive app's custom panel on the relay: the page Pipedrive shows in a person's or a deal's detail
view, its requests, and the short-lived file links.

- ``GET /crm/pipedrive/panel``: the panel's page (HTML and the vendored App Extensions SDK, no CDN). Pipedrive
  loads it with the record and a signed ``token`` in the query; the token and the user's access to the
  record are checked (:class:`adapters.pipedrive.panel.PanelGuard`) before anything is shown.
- ``GET /crm/pipedrive/panel/thread``: the person's conversation as the relay recorded it (every message
  published for the agents, every reply with its live status), whether WhatsApp's 24-hour window is open.
- ``POST /crm/pipedrive/panel/reply``: an agent's reply (text, one file) with the panel's idempotency key:
  it becomes an :class:`~core.inbox.AgentReply` whose ``crm_message_id`` is
  ``pipedrive-panel:{person}:{key}``, accepted through :func:`connector.agent.accept`, so a double click or a
  retried request is sent once (a request that finds the key taken answers ``duplicate``; the file is stored
  by the first only).
- ``POST /crm/pipedrive/panel/close``: the agent hands the conversation back to the bot
  (:func:`connector.handback.release_one`).
- ``GET /crm/pipedrive/files/<signed>``: a file stored in Pipedrive, for whoever holds a link that is still
  valid (the channel fetching an agent's attachment, the agent opening a patient's photo).

Every request but the page and the file carries the panel's token as ``Authorization: Bearer`` (the page
asks the SDK for a fresh one every few minutes) and names the record (``resource``, ``id``); each is checked
again. Without the Pipedrive inbox in panel mode every route answers 404.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, render_template_string, request, send_file

from adapters.pipedrive.inbox import PipedriveInbox, reply_id
from adapters.pipedrive.panel import PanelRefused, PanelUser
from connector import agent, conversations, handback, threads
from connector.conversations import short
from connector.resources import shipped
from core.errors import AuthError, ConfigurationError, FatalError, RetryableError
from core.inbox import AgentReply, FileRef

if TYPE_CHECKING:
    from adapters.pipedrive.panel import PanelGuard
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.panel")
blueprint = Blueprint("pipedrive_panel", __name__)

#: the panel's own files (the SDK is Pipedrive's MIT-licensed build, vendored: see SOURCES.md there)
STATIC = {"app-extensions-sdk.umd.js": "text/javascript", "panel.js": "text/javascript", "panel.css": "text/css"}
#: what the page may load and run: its own files only
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'")
#: how often the page asks for the thread (milliseconds)
POLL_MS = 2500
#: what a reply's form takes besides its file (the text, the key, the multipart framing)
_FORM_ROOM = 16 * 1024


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["chat2crm"]
    return runtime


def _panel(runtime: Runtime) -> tuple[PipedriveInbox, PanelGuard] | None:
    """The Pipedrive inbox with its panel, or None (another CRM, the inbox off, or notes only)."""
    if runtime.config.crm != "pipedrive":
        return None
    try:
        inbox = runtime.inbox
    except ConfigurationError:
        return None
    if not isinstance(inbox, PipedriveInbox) or inbox.guard is None:
        return None
    return inbox, inbox.guard


def _error(status: int, reason: str) -> tuple[Response, int]:
    return jsonify(error=reason), status


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def _check(guard: PanelGuard, token: str, resource: str, record: str) -> tuple[PanelUser, str]:
    """The user and the person whose conversation the panel shows.

    Raises:
        PanelRefused: the token, the record or the user's access is refused.
        RetryableError, AuthError: Pipedrive did not answer, or refused the app's token.
    """
    user = guard.authenticate(token)
    return user, guard.authorize(user, resource, record)


def _refused(exc: Exception) -> tuple[Response, int]:
    """The answer to a request whose checks could not be made or failed."""
    if isinstance(exc, PanelRefused):
        return _error(exc.status, exc.reason)
    log.warning("panel check failed", extra={"reason": getattr(exc, "message", type(exc).__name__)})
    return _error(502, "Pipedrive did not answer; try again in a moment.")


# -- the page --------------------------------------------------------------------------------------
@blueprint.get("/crm/pipedrive/panel")
def page() -> tuple[Response, int]:
    """The panel's page, once its token and the user's access to the record are checked."""
    found = _panel(_runtime())
    if found is None:
        return Response("Not found\n", mimetype="text/plain"), 404
    inbox, guard = found
    resource = request.args.get("resource", "")
    record = request.args.get("selectedIds", "").split(",")[0]
    status, reason = 200, ""
    try:
        _check(guard, request.args.get("token", ""), resource, record)
    except PanelRefused as exc:
        status, reason = exc.status, exc.reason
    except (RetryableError, AuthError) as exc:
        log.warning("panel check failed", extra={"reason": exc.message})
        status, reason = 502, "Pipedrive did not answer; reload the panel in a moment."
    html = render_template_string(shipped("panel", "panel.html").read_text(encoding="utf-8"), refused=reason,
                                  poll_ms=POLL_MS, max_file_bytes=max_file_bytes(_runtime(), inbox))
    headers = {"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    return Response(html, mimetype="text/html", headers=headers), status


def max_file_bytes(runtime: Runtime, inbox: PipedriveInbox) -> int:
    """The largest file an agent can send from the panel: what the channels take, within the largest request
    body the relay reads (MAX_BODY_BYTES, less room for the form's other fields)."""
    return max(0, min(inbox.limits.max_file_bytes, runtime.settings.max_body_bytes - _FORM_ROOM))


@blueprint.get("/crm/pipedrive/panel/static/<name>")
def static(name: str) -> tuple[Response, int]:
    """The panel's script, style and the vendored SDK."""
    if name not in STATIC:
        return Response("Not found\n", mimetype="text/plain"), 404
    body = shipped("panel", name).read_bytes()
    return Response(body, mimetype=STATIC[name], headers={"Cache-Control": "public, max-age=300",
                                                          "X-Content-Type-Options": "nosniff"}), 200


# -- the thread ------------------------------------------------------------------------------------
@blueprint.get("/crm/pipedrive/panel/thread")
def thread() -> tuple[Response, int]:
    """The person's conversation, as the relay recorded it."""
    runtime = _runtime()
    found = _panel(runtime)
    if found is None:
        return _error(404, "not found")
    inbox, guard = found
    try:
        _user, person = _check(guard, _bearer(), request.args.get("resource", ""), request.args.get("id", ""))
        messages = inbox.thread(person)
    except (PanelRefused, RetryableError, AuthError) as exc:
        return _refused(exc)
    key = threads.conversation_of(runtime, contact=person)
    return jsonify(person=person, conversation=_conversation(runtime, key), messages=messages), 200


def _conversation(runtime: Runtime, key: str | None) -> dict[str, Any] | None:
    """What the panel shows of the conversation a reply would go to (None: none the relay knows)."""
    if key is None:
        return None
    state = conversations.load(runtime, key)
    channel = key.partition(":")[0]
    last = state.last_inbound_at if state else None
    window = channel != "whatsapp" or (last is not None and datetime.now(UTC) - last < agent.WINDOW)
    language = (state.language if state else None) or ""
    return {"channel": channel, "status": state.status if state else "expired",
            "window_open": window, "template": language in runtime.config.inbox.window_templates,
            "can_close": bool(state and handback.releasable(state, inbox=True)),
            "window_reason": None if window else agent.WINDOW_REASON.format(language=language or "an unknown language")}


# -- an agent's reply ------------------------------------------------------------------------------
@blueprint.post("/crm/pipedrive/panel/reply")
def reply() -> tuple[Response, int]:
    """Queue an agent's reply for the patient, once per idempotency key."""
    runtime = _runtime()
    found = _panel(runtime)
    if found is None:
        return _error(404, "not found")
    inbox, guard = found
    form = request.form
    try:
        user, person = _check(guard, _bearer(), form.get("resource", ""), form.get("id", ""))
    except (PanelRefused, RetryableError, AuthError) as exc:
        return _refused(exc)
    try:
        crm_id = reply_id(person, form.get("key", ""))
    except ValueError:
        return _error(400, "The reply has no idempotency key; reload the panel.")
    text = (form.get("text") or "").strip()
    upload = request.files.get("file")
    if not text and (upload is None or not upload.filename):
        return _error(400, "Write a reply or attach a file.")
    key = threads.conversation_of(runtime, contact=person)
    if key is None:
        return _error(409, "The relay has no conversation with this person to answer.")
    if runtime.redis.exists(agent.SEEN.key(crm_id)) or not inbox.claim(crm_id):
        return jsonify(status="duplicate", id=crm_id), 200  # a double click, or a retry of a reply taken
    try:
        files = [_store(inbox, upload, person)] if upload is not None and upload.filename else []
        answer = AgentReply(crm_message_id=crm_id, conversation=key, crm_contact_id=person, text=text,
                            attachments=files, agent=f"Pipedrive user {user.user_id}", at=datetime.now(UTC))
        fresh = agent.accept(runtime, answer, key)
    except FatalError as exc:
        inbox.unclaim(crm_id)
        return _error(400, exc.message.removeprefix("pipedrive: "))
    except (RetryableError, AuthError) as exc:
        inbox.unclaim(crm_id)
        return _refused(exc)
    except Exception:
        inbox.unclaim(crm_id)
        raise
    if fresh:
        inbox.record_reply(person, key, answer)
    log.info("agent reply accepted from the panel" if fresh else "agent reply from the panel repeated",
             extra={"conversation": short(key), "entry": agent.entry_id(crm_id), "user": user.user_id,
                    "files": len(files)})
    return jsonify(status="accepted" if fresh else "duplicate", id=crm_id), 202 if fresh else 200


def _store(inbox: PipedriveInbox, upload: Any, person: str) -> FileRef:
    """The agent's file, stored in Pipedrive on the person."""
    content = upload.read(inbox.limits.max_file_bytes + 1)
    return inbox.store_agent_file(upload.filename, upload.mimetype or "application/octet-stream", content, person)


# -- handing back to the bot -----------------------------------------------------------------------
@blueprint.post("/crm/pipedrive/panel/close")
def close() -> tuple[Response, int]:
    """Hand the conversation back to the bot."""
    runtime = _runtime()
    found = _panel(runtime)
    if found is None:
        return _error(404, "not found")
    inbox, guard = found
    try:
        user, person = _check(guard, _bearer(), request.form.get("resource", ""), request.form.get("id", ""))
    except (PanelRefused, RetryableError, AuthError) as exc:
        return _refused(exc)
    key = threads.conversation_of(runtime, contact=person)
    if key is None:
        return _error(409, "The relay has no conversation with this person.")
    try:
        released = handback.release_one(runtime, key)
    except handback.ConversationBusy:
        return _error(503, "The conversation is busy; try again in a moment.")
    if released:
        at = datetime.now(UTC)
        inbox.record_event(person, key, f"closed-{int(at.timestamp() * 1000)}",
                           f"Conversation closed by Pipedrive user {user.user_id}: the bot answers again.")
    log.info("conversation closed from the panel", extra={"conversation": short(key), "handed_back": released,
                                                          "user": user.user_id})
    return jsonify(released=released), 200


# -- files -----------------------------------------------------------------------------------------
@blueprint.get("/crm/pipedrive/files/<signed>")
def file(signed: str) -> Any:
    """A file stored in Pipedrive, while its signed link is valid."""
    found = _panel(_runtime())
    if found is None:
        return _error(404, "not found")
    inbox, guard = found
    link = guard.open_file_link(signed)
    if link is None:
        return _error(404, "This link is not valid, or has expired.")
    try:
        download = inbox.download(link.file_id)
    except FatalError:
        return _error(404, "The file is gone from Pipedrive.")
    except (RetryableError, AuthError) as exc:
        return _refused(exc)
    served = send_file(io.BytesIO(download.content), mimetype=link.mime_type or download.mime_type,
                       download_name=link.name, max_age=0)
    # a file is data, never a page: no sniffing, and sandboxed should a browser render it
    served.headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
                           "Referrer-Policy": "no-referrer"})
    return served
