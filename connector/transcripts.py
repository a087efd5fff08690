"""Transcript links: ``GET /t/<token>`` shows a lead's conversation as a readable page.

The token is signed with ``TRANSCRIPT_SECRET`` (itsdangerous) and expires after
``retention.transcript_link_days``. A forged or expired token gets 403 and a page that reveals
nothing; a valid token whose transcript has passed its retention gets 410. The transcript
itself lives only in Redis, with the lead, for ``retention.transcript_days``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, current_app, render_template
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

if TYPE_CHECKING:
    from connector.runtime import Runtime
    from core.models import Conversation

log = logging.getLogger("chat2crm.transcripts")
blueprint = Blueprint("transcripts", __name__, template_folder="templates")
_SALT = "chat2crm.transcript.v1"


def _serializer(runtime: Runtime) -> URLSafeTimedSerializer | None:
    secret = runtime.settings.transcript_secret
    if secret is None:
        return None
    return URLSafeTimedSerializer(secret.get_secret_value(), salt=_SALT)


def make_token(runtime: Runtime, reference: str) -> str | None:
    """A signed token for the transcript of lead ``reference`` (None when no secret is set)."""
    serializer = _serializer(runtime)
    return serializer.dumps({"r": reference.lstrip("#")}) if serializer else None


def transcript_url(runtime: Runtime, conversation: Conversation) -> str | None:
    """The link the CRM note carries for this conversation's current lead."""
    if not conversation.reference:
        return None
    token = make_token(runtime, conversation.reference)
    if token is None:
        log.warning("TRANSCRIPT_SECRET is not set: notes carry no transcript link")
        return None
    return f"{runtime.settings.public_base_url.rstrip('/')}/t/{token}"


def reference_of(runtime: Runtime, token: str) -> str | None:
    """The lead reference a token stands for, or None when it is forged, expired or malformed."""
    serializer = _serializer(runtime)
    if serializer is None:
        return None
    max_age = runtime.config.retention.transcript_link_days * 86400
    try:
        data = serializer.loads(token, max_age=max_age)
    except (SignatureExpired, BadSignature):
        return None
    reference = data.get("r") if isinstance(data, dict) else None
    return reference if isinstance(reference, str) and reference.isdigit() else None


@blueprint.get("/t/<token>")
def transcript_page(token: str) -> tuple[str, int]:
    """The conversation of one lead, for an agent who clicked the link in the CRM note."""
    from connector.leads import load as load_lead

    runtime = current_app.extensions["chat2crm"]
    reference = reference_of(runtime, token)
    if reference is None:
        return render_template("transcript_denied.html"), 403
    lead = load_lead(runtime, reference)
    if lead is None:
        return render_template("transcript_gone.html", reference=f"#{reference}"), 410
    return render_template("transcript.html", lead=lead, zone=runtime.config.zone), 200
