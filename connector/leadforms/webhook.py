"""``/webhooks/meta/leadgen``: a Page's ``leadgen`` webhook, verified, de-duplicated on ``leadgen_id`` and queued.

Meta posts ``{"object": "page", "entry": [{"id": <page>, "time": …, "changes": [{"field": "leadgen",
"value": {"leadgen_id", "form_id", "ad_id", "adgroup_id", "page_id", "created_time"}}]}]}``: ids only, at least
once, in no particular order. The handshake (``hub.mode``, ``hub.verify_token``, ``hub.challenge``) and the
signature (``X-Hub-Signature-256``, HMAC-SHA256 of the raw body with the app secret) are WhatsApp's, with
``META_VERIFY_TOKEN`` and ``META_APP_SECRET`` (each defaulting to its WhatsApp setting: one Meta app serves
both). Each new ``leadgen_id`` is remembered (:data:`TAKEN`, ``retention.dedup_days``) and its reading job
queued in one atomic step; a redelivery changes nothing. The answers are read by the job
(:mod:`connector.leadforms.intake`), never here.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import SecretStr

from connector import queues
from connector.channels import whatsapp as wa
from connector.received import decode as _decode
from connector.runtime import Runtime
from connector.transaction import Transaction
from connector.webhooks import _CHALLENGE, _raw_body, _reject, _runtime, _warn_insecure
from core import metrics
from core.errors import WebhookRejectedError
from core.keys import family

log = logging.getLogger("chat2crm.leadforms")
blueprint = Blueprint("leadforms", __name__)

#: the metric label and log name of this webhook
CHANNEL = "meta_leadgen"
#: a ``leadgen_id`` already taken: its value is ``1`` until the job stored the lead, then its reference
TAKEN = family("leadgen", "{leadgen_id}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)


def app_secret(runtime: Runtime) -> SecretStr | None:
    """The secret ``leadgen`` webhooks are signed with: ``META_APP_SECRET``, else ``WHATSAPP_APP_SECRET``."""
    return runtime.settings.meta_app_secret or runtime.settings.whatsapp_app_secret


def leadgen_changes(body: Any) -> list[dict[str, str]]:
    """The ``leadgen`` changes of a Page webhook body, each as its ids (strings); other fields are left out.

    Raises:
        WebhookRejectedError: 400 when the body is not a Page webhook (``object``, ``entry``, ``changes``).
    """
    if not isinstance(body, dict) or body.get("object") != "page" or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a Page webhook: object 'page' and an 'entry' list expected")
    found: list[dict[str, str]] = []
    for entry in body["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if changes is None:
            continue
        if not isinstance(changes, list):
            raise WebhookRejectedError(400, "not a Page webhook: 'changes' list expected")
        for change in changes:
            if not isinstance(change, dict) or change.get("field") != "leadgen" or not isinstance(change.get("value"), dict):
                continue
            value = change["value"]
            ids = {name: _id(value.get(name)) for name in ("leadgen_id", "form_id", "ad_id", "adgroup_id", "page_id")}
            if ids["leadgen_id"] is None:
                log.warning("leadgen change without a usable leadgen_id: skipped")
                continue
            if ids["page_id"] is None:
                ids["page_id"] = _id(entry.get("id"))
            found.append({k: v for k, v in ids.items() if v is not None})
    return found


def _id(value: Any) -> str | None:
    """A Graph id as text (Meta sends ids as strings; a number is taken too), or None when it is no id."""
    if isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, int | str) else ""
    return text if text.isascii() and text.isdigit() and len(text) <= 32 else None


def queue_lead(runtime: Runtime, ids: dict[str, str]) -> bool:
    """Remember ``ids['leadgen_id']`` and queue its reading job, in one step. Returns False for a redelivery.

    Raises:
        redis.RedisError: Redis failed; nothing was remembered or queued (Meta delivers again).
    """
    leadgen_id = ids["leadgen_id"]
    tx = Transaction(runtime.redis)
    tx.require_absent(TAKEN.key(leadgen_id), runtime.config.retention.dedup_days * 86400)
    queues.enqueue(runtime, queues.CRM, queues.READ_LEAD_FORM, leadgen_id, pipe=tx.pipe,
                   description=f"lead form {leadgen_id}", result_ttl=3600,
                   failure_ttl=runtime.config.retention.transcript_days * 86400,
                   page_id=ids.get("page_id"), form_id=ids.get("form_id"))
    return tx.commit()


@blueprint.get("/webhooks/meta/leadgen")
def leadgen_verify() -> Response:
    """Meta's subscription handshake, as for WhatsApp: the challenge echoed as plain text."""
    settings = _runtime().settings
    token = settings.meta_verify_token or settings.whatsapp_verify_token
    args = request.args.to_dict()
    challenge = args.get("hub.challenge", "")
    if challenge and not _CHALLENGE.fullmatch(challenge):
        text, status = "bad request", 400
    else:
        text, status = wa.verify_challenge(args, token.get_secret_value() if token else None)
    response = Response(text, status=status, mimetype="text/plain")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/webhooks/meta/leadgen")
def leadgen_webhook() -> tuple[Response, int]:
    """A Page's ``leadgen`` webhook: each new lead's reading job queued, redeliveries dropped."""
    runtime = _runtime()
    secret = app_secret(runtime)
    try:
        raw = _raw_body()
        header = request.headers.get("X-Hub-Signature-256")
        if secret is not None and not (runtime.settings.chat2crm_insecure_demo and not header):
            wa.verify_signature(raw, header, secret.get_secret_value())
        elif runtime.settings.chat2crm_insecure_demo:
            _warn_insecure(CHANNEL)
        else:
            raise WebhookRejectedError(401, "META_APP_SECRET is not set: leadgen webhooks cannot be verified")
        changes = leadgen_changes(_decode(raw))
    except WebhookRejectedError as exc:
        return _reject(CHANNEL, exc)
    queued = duplicates = 0
    for ids in changes:
        if queue_lead(runtime, ids):
            queued += 1
        else:
            duplicates += 1
            metrics.incr(runtime.redis, "duplicates_dropped", channel=CHANNEL)
    log.info("leadgen webhook", extra={"queued": queued, "duplicates": duplicates})
    return jsonify({"queued": queued, "duplicates": duplicates}), 200
