"""The CRM's side of the web app: its inbox's webhooks, and installing the CRM app by OAuth.

- ``POST /crm/<crm>/webhooks``: the CRM's inbox calls it when an agent replies or closes a thread. The
  adapter's inbox authenticates the request (it signed the URL it was given: ``PUBLIC_BASE_URL`` with the
  path and query) and reads its events; an agent's reply is queued for the patient in one transaction
  (:func:`connector.agent.accept`, a redelivery changes nothing), a closed thread hands the conversation
  back to the bot (:mod:`connector.handback`). An event for no conversation the relay knows is answered
  200 and logged: the CRM must not retry it forever. A refused signature gets its status (401) and
  nothing is queued.
- ``POST /crm/pipedrive/edits``: Pipedrive's webhooks v2 for changes of the mapped person and lead or deal
  (:mod:`adapters.pipedrive.webhooks`, created by ``crm setup``): the Basic authentication checked, the changed
  fields read, an event already taken (a retry) recognised; a person's edit, or another integration's, goes to
  :func:`connector.crm_events.take` like any CRM event (completeness counts a person's; a deal's stage or a lead's
  labels carry their new values, for conversions); the relay's own writes are not taken. It works with or without
  an inbox. A failure to take it answers 503, so Pipedrive retries.
- ``GET /crm/<crm>/install`` sends the account's admin to the CRM's consent page, with a signed ``state``
  that expires in :data:`STATE_SECONDS`; ``GET /crm/<crm>/oauth/callback`` checks it and exchanges the
  code for the adapter's tokens.
- ``GET /crm/<crm>/files/<token>``: an agent's file, for a CRM whose files need its credentials to read
  (Salesforce): the channel fetches the relay's signed link (:class:`adapters.inbox.FileLinks`, valid for
  minutes), the relay reads the file from the CRM (:meth:`adapters.inbox.CRMInbox.open_file`) and serves
  it. A link forged, expired or for another CRM gets 404.

The events are taken by :func:`connector.crm_events.take`, which ``chat2crm listen`` uses too.

A CRM other than the configured one, or one without an inbox (or without an OAuth install), gets 404.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, redirect, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from requests.structures import CaseInsensitiveDict
from werkzeug.wrappers import Response as WerkzeugResponse

from adapters.inbox import FileLinks, WebhookRequest
from adapters.pipedrive.webhooks import EDITS_PATH, EditReceiver
from connector import crm_events, handback
from core import metrics
from core.errors import AuthError, ConfigurationError, FatalError, RetryableError, WebhookRejectedError

if TYPE_CHECKING:
    from adapters.inbox import CRMInbox, OAuthInstall
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.crm_web")
blueprint = Blueprint("crm", __name__)

#: seconds an install's ``state`` stays valid (the admin's trip to the consent page and back)
STATE_SECONDS = 600
_SALT = "chat2crm.crm-install.v1"


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["chat2crm"]
    return runtime


def _text(body: str, status: int) -> tuple[Response, int]:
    """A plain page (never HTML: nothing in it can be markup)."""
    return Response(body + "\n", mimetype="text/plain"), status


def _not_found() -> tuple[Response, int]:
    return jsonify(error="not found"), 404


def _public_url(runtime: Runtime, path: str, query: bytes = b"") -> str:
    """The URL the CRM was given for ``path``: ``PUBLIC_BASE_URL`` with the path and the query as sent."""
    base = runtime.settings.public_base_url.rstrip("/")
    return base + path + (f"?{query.decode('utf-8', 'replace')}" if query else "")


# -- the inbox's webhooks -------------------------------------------------------------------------
@blueprint.post("/crm/<crm>/webhooks")
def crm_webhook(crm: str) -> tuple[Response, int]:
    """The CRM's inbox events: agents' replies and closed threads."""
    runtime = _runtime()
    inbox = _inbox(runtime, crm)
    if inbox is None:
        return _not_found()
    raw = request.get_data(cache=True)
    received = WebhookRequest(method=request.method, url=_public_url(runtime, request.path, request.query_string),
                              headers=CaseInsensitiveDict(request.headers.items()), body=raw,
                              received_at=time.time())
    try:
        events = inbox.parse_webhook(received)
    except WebhookRejectedError as exc:
        metrics.incr(runtime.redis, "webhooks_rejected", channel=crm, reason=str(exc.status))
        log.warning("CRM webhook rejected", extra={"crm": crm, "status": exc.status, "reason": exc.message})
        return jsonify(error=exc.message), exc.status
    try:
        counts = crm_events.take(runtime, crm, events)
    except handback.ConversationBusy:
        # the CRM delivers the batch again: replies already taken are recognised, the close is retried
        return jsonify(error="the conversation is busy; deliver again"), 503
    return jsonify(counts), 200


@blueprint.post(EDITS_PATH)
def pipedrive_edits() -> tuple[Response, int]:
    """Pipedrive's change notifications of the records the relay wrote (people's edits, stage changes)."""
    runtime = _runtime()
    secret = runtime.settings.transcript_secret or runtime.settings.admin_token
    if runtime.config.crm != "pipedrive" or secret is None:
        return _not_found()
    try:
        receiver = EditReceiver(runtime.adapter, secret=secret.get_secret_value(),  # type: ignore[arg-type]
                                redis=runtime.redis)
        found = receiver.read(CaseInsensitiveDict(request.headers.items()), request.get_data(cache=True))
    except WebhookRejectedError as exc:
        metrics.incr(runtime.redis, "webhooks_rejected", channel="pipedrive", reason=str(exc.status))
        log.warning("CRM webhook rejected", extra={"crm": "pipedrive", "status": exc.status, "reason": exc.message})
        return jsonify(error=exc.message), exc.status
    except (RetryableError, AuthError, FatalError, ConfigurationError) as exc:
        log.warning("Pipedrive edit not read: Pipedrive retries it", extra={"reason": exc.message})
        return jsonify(error="not read; deliver again"), 503
    if found is None:
        return jsonify(edits=0), 200
    event, edit = found
    if not receiver.first(event):
        return jsonify(edits=0, duplicates=1), 200
    try:
        crm_events.take(runtime, "pipedrive", [edit])
    except Exception:
        receiver.forget(event)  # Pipedrive's retry takes it
        raise
    return jsonify(edits=1), 200


#: the conversation an inbox event is about (kept here for callers of the web module)
conversation_for = crm_events.conversation_for


def _inbox(runtime: Runtime, crm: str) -> CRMInbox | None:
    """The configured CRM's inbox when ``crm`` names it, else None."""
    if crm != runtime.config.crm:
        return None
    try:
        return runtime.inbox
    except ConfigurationError:
        return None


# -- agents' files ----------------------------------------------------------------------------------
@blueprint.get("/crm/<crm>/files/<token>")
def crm_file(crm: str, token: str) -> Response | tuple[Response, int]:
    """An agent's file through the relay's signed link (the channel fetches it to send it to the patient)."""
    runtime = _runtime()
    inbox = _inbox(runtime, crm)
    secret = runtime.settings.transcript_secret or runtime.settings.admin_token
    if inbox is None or secret is None:
        return _not_found()
    file = FileLinks(secret.get_secret_value(), base_url=runtime.settings.public_base_url, crm=crm).read(token)
    if file is None:
        return jsonify(error="not found, or the link has expired"), 404
    try:
        content = inbox.open_file(file)
    except FatalError as exc:
        log.warning("agent's file not served", extra={"crm": crm, "reason": exc.message})
        return _not_found()
    except (RetryableError, AuthError) as exc:
        log.warning("agent's file not read from the CRM", extra={"crm": crm, "reason": exc.message})
        return jsonify(error="the CRM did not answer; try again"), 502
    name = content.name or "file"
    plain = name.encode("ascii", "replace").decode().replace('"', "").replace("\\", "").replace("?", "_")
    return Response(content.content, mimetype=content.mime_type, headers={
        "Content-Disposition": f"inline; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}",
        "Cache-Control": "private, no-store"})


# -- installing the CRM app -----------------------------------------------------------------------
def _serializer(runtime: Runtime) -> URLSafeTimedSerializer | None:
    secret = runtime.settings.transcript_secret or runtime.settings.admin_token
    return URLSafeTimedSerializer(secret.get_secret_value(), salt=_SALT) if secret else None


def _installer(runtime: Runtime, crm: str) -> OAuthInstall | None:
    if crm != runtime.config.crm:
        return None
    try:
        return runtime.adapter.installer()
    except ConfigurationError as exc:
        log.warning("CRM adapter not set up: no install", extra={"crm": crm, "reason": exc.message})
        return None


def _callback_url(runtime: Runtime, crm: str) -> str:
    return _public_url(runtime, f"/crm/{crm}/oauth/callback")


@blueprint.get("/crm/<crm>/install")
def install(crm: str) -> WerkzeugResponse | tuple[Response, int]:
    """Send the account's admin to the CRM's consent page."""
    runtime = _runtime()
    installer = _installer(runtime, crm)
    if installer is None:
        return _not_found()
    serializer = _serializer(runtime)
    if serializer is None:
        return _text("Cannot install: set TRANSCRIPT_SECRET (or ADMIN_TOKEN) to sign the install.", 503)
    state = serializer.dumps({"crm": crm})
    return redirect(installer.authorize_url(state=state, redirect_uri=_callback_url(runtime, crm)))


@blueprint.get("/crm/<crm>/oauth/callback")
def oauth_callback(crm: str) -> tuple[Response, int]:
    """The CRM sends the admin back here: check the state, exchange the code, say how it went."""
    runtime = _runtime()
    installer = _installer(runtime, crm)
    if installer is None:
        return _not_found()
    if request.args.get("error"):
        return _text(f"Not installed: the CRM answered {request.args.get('error', '')[:100]}.", 400)
    serializer = _serializer(runtime)
    try:
        state = serializer.loads(request.args.get("state", ""), max_age=STATE_SECONDS) if serializer else None
    except BadSignature:  # forged, or expired (SignatureExpired is one)
        state = None
    if not isinstance(state, dict) or state.get("crm") != crm:
        return _text("Not installed: this link is not valid (or has expired). Start again from the install page.",
                     400)
    code = request.args.get("code", "")
    if not code:
        return _text("Not installed: the CRM sent no authorization code.", 400)
    try:
        account = installer.complete(code=code, redirect_uri=_callback_url(runtime, crm))
    except AuthError as exc:
        log.warning("CRM install refused", extra={"crm": crm, "reason": exc.message})
        return _text(f"Not installed: {exc.message}", 400)
    except RetryableError as exc:
        log.warning("CRM install failed for now", extra={"crm": crm, "reason": exc.message})
        return _text("Not installed: the CRM did not answer. Try again in a moment.", 502)
    # a number, not a string: the log masks strings of digits as phone numbers
    log.info("CRM app installed", extra={"crm": crm, "account": int(account) if account.isdigit() else account})
    return _text(f"Installed: chat2crm is connected to {crm} account {account}.", 200)
