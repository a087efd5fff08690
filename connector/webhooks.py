"""``/webhooks/whatsapp`` and ``/webhooks/telegram``: verify, de-duplicate, enqueue, answer.

The request does nothing else: bot and CRM work run in the worker. A body that is bad as a whole
(invalid JSON, ``NaN`` or ``Infinity`` anywhere, non-UTF-8, oversized whatever its framing, absurd
nesting, not a webhook of the channel, a WhatsApp envelope whose ``entry``, ``changes`` or batch lists
are not lists) is answered with a 4xx and a short reason, never a 5xx, and nothing is enqueued. Inside
a good body, the channel's typed parser drops each part that does not fit the vendor's description on
its own (a message with a number for text, a NUL character, an implausible time): the valid messages
of the batch are queued. The ``GET`` handshake echoes Meta's challenge as plain text, and only a
challenge of plain characters.
A status of an agent's reply (found by its tracking or its message id) is queued as a delivery report
for the CRM (:func:`connector.agent.on_status`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector import agent, routing
from connector.channels import record_status
from connector.channels import telegram as tg
from connector.channels import whatsapp as wa
from connector.channels.base import ParsedWebhook
from connector.inbox import enqueue_inbound, enqueue_opt_out
from connector.runtime import Runtime
from core import metrics, strictjson
from core.errors import WebhookRejectedError

log = logging.getLogger("chat2crm.webhooks")
blueprint = Blueprint("webhooks", __name__)

MAX_DEPTH = 32
#: Meta's ``hub.challenge`` is a number; letters and ``-_.~`` are let through, nothing that a page could run
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
#: lists of a WhatsApp change's ``value`` that Meta always sends as lists
_VALUE_LISTS = ("contacts", "messages", "statuses", "errors", "user_preferences")


def _runtime() -> Runtime:
    """The runtime of the app serving this request."""
    runtime: Runtime = current_app.extensions["chat2crm"]
    return runtime


def _reject(channel: str, exc: WebhookRejectedError) -> tuple[Response, int]:
    metrics.incr(_runtime().redis, "webhooks_rejected", channel=channel, reason=str(exc.status))
    log.warning("webhook rejected", extra={"channel": channel, "status": exc.status, "reason": exc.message})
    return jsonify(error=exc.message), exc.status


def _raw_body() -> bytes:
    """The body, already read whole under the size limit and deadline (:mod:`connector.request_body`)."""
    limit = _runtime().settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise WebhookRejectedError(413, "body too large")
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise WebhookRejectedError(413, "body too large")
    return raw


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "body is not UTF-8") from None
    try:
        # Python's json reads NaN and Infinity, which are not JSON: refused, wherever they are
        body = strictjson.loads(text)
    except RecursionError:
        raise WebhookRejectedError(400, "body nests too deeply") from None
    except strictjson.NotFinite:
        raise WebhookRejectedError(400, "body holds NaN or Infinity") from None
    except ValueError:
        raise WebhookRejectedError(400, "body is not valid JSON") from None
    if _depth(body) > MAX_DEPTH:
        raise WebhookRejectedError(400, "body nests too deeply")
    return body


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _whatsapp_envelope(body: Any) -> Any:
    """``body`` when Meta's envelope is sound: ``entry`` a list, each entry's ``changes`` a list, each
    value's batches (``messages``, ``statuses``…) lists. One message that does not fit is the parser's to
    drop alone; an envelope that does not fit is not a WhatsApp webhook at all.

    Raises:
        WebhookRejectedError: 400, naming the field.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise WebhookRejectedError(400, "not a WhatsApp webhook: 'entry' list expected")
    for entry in body["entry"]:
        if not isinstance(entry, dict) or "changes" not in entry:
            continue
        if not isinstance(entry["changes"], list):
            raise WebhookRejectedError(400, "not a WhatsApp webhook: 'changes' list expected")
        for change in entry["changes"]:
            value = change.get("value") if isinstance(change, dict) else None
            for name in _VALUE_LISTS:
                if isinstance(value, dict) and name in value and not isinstance(value[name], list):
                    raise WebhookRejectedError(400, f"not a WhatsApp webhook: '{name}' list expected")
    return body


def _accept(channel: str, parsed: ParsedWebhook) -> dict[str, int]:
    """Queue every new message; drop redeliveries; record statuses and opt-outs.

    Parts the parser dropped (a message that does not fit the vendor's description, each logged there
    without its contents) are counted as rejected with reason ``part``; the rest of the body is taken.
    """
    runtime = _runtime()
    client = runtime.redis
    ttl = runtime.config.retention.dedup_days
    if parsed.skipped:
        metrics.incr(client, "webhooks_rejected", parsed.skipped, channel=channel, reason="part")
    parsed = routing.route(runtime, channel, parsed)  # served numbers only; each message to its person's conversation
    queued = duplicates = 0
    for message in parsed.messages:
        # remembered and queued in one atomic step: never queued twice, never remembered but lost
        if not enqueue_inbound(runtime, message, dedup_days=ttl):
            duplicates += 1
            metrics.incr(client, "duplicates_dropped", channel=channel)
            continue
        queued += 1
    for status in parsed.statuses:
        record_status(client, status, ttl)
        agent.on_status(runtime, status)  # an agent's reply: the CRM is told what became of it
        metrics.incr(client, "statuses", channel=channel, status=status.status)
        for error in status.errors:
            log.warning("delivery failed", extra={"channel": channel, "code": error.get("code"),
                                                  "title": str(error.get("title", ""))[:120]})
    for account, sender in parsed.opt_outs:
        enqueue_opt_out(runtime, "whatsapp" if channel == "whatsapp" else "telegram", account, sender)
    for error in parsed.errors:
        log.warning("channel reported an error", extra={"channel": channel, "code": error.get("code"),
                                                        "title": str(error.get("title", ""))[:120]})
    return {"queued": queued, "duplicates": duplicates, "statuses": len(parsed.statuses),
            "skipped": parsed.skipped, "ignored": parsed.ignored}


def _warn_insecure(channel: str) -> None:
    log.warning("UNSIGNED WEBHOOK ACCEPTED: CHAT2CRM_INSECURE_DEMO is on; never run like this in production",
                extra={"channel": channel})


@blueprint.get("/webhooks/whatsapp")
def whatsapp_verify() -> Response:
    """Meta's subscription handshake: the challenge echoed as plain text, never as a page."""
    token = _runtime().settings.whatsapp_verify_token
    args = request.args.to_dict()
    challenge = args.get("hub.challenge", "")
    if challenge and not _CHALLENGE.fullmatch(challenge):
        log.warning("webhook verification refused: the challenge is not plain characters",
                    extra={"channel": "whatsapp", "length": len(challenge)})
        text, status = "bad request", 400
    else:
        text, status = wa.verify_challenge(args, token.get_secret_value() if token else None)
    response = Response(text, status=status, mimetype="text/plain")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/webhooks/whatsapp")
def whatsapp_webhook() -> tuple[Response, int]:
    """A WhatsApp Cloud API webhook: messages, statuses, user preferences."""
    settings = _runtime().settings
    try:
        raw = _raw_body()
        header = request.headers.get("X-Hub-Signature-256")
        if settings.whatsapp_app_secret is not None and not (settings.chat2crm_insecure_demo and not header):
            wa.verify_signature(raw, header, settings.whatsapp_app_secret.get_secret_value())
        elif settings.chat2crm_insecure_demo:
            _warn_insecure("whatsapp")
        else:
            raise WebhookRejectedError(401, "WHATSAPP_APP_SECRET is not set: webhooks cannot be verified")
        parsed = wa.parse_payload(_whatsapp_envelope(_decode(raw)))
    except WebhookRejectedError as exc:
        return _reject("whatsapp", exc)
    return jsonify(_accept("whatsapp", parsed)), 200


@blueprint.post("/webhooks/telegram")
def telegram_webhook() -> tuple[Response, int]:
    """A Telegram update."""
    runtime = _runtime()
    settings = runtime.settings
    try:
        raw = _raw_body()
        header = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        if settings.telegram_secret_token is not None and not (settings.chat2crm_insecure_demo and not header):
            tg.verify_secret(header, settings.telegram_secret_token.get_secret_value())
        elif settings.chat2crm_insecure_demo:
            _warn_insecure("telegram")
        else:
            raise WebhookRejectedError(401, "TELEGRAM_SECRET_TOKEN is not set: updates cannot be verified")
        token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else None
        channels = runtime.config.channels
        parsed = tg.parse_update(_decode(raw), tg.bot_id(token), ignore_groups=channels.telegram.ignore_groups,
                                 ignore_bots=channels.ignore_bots)
    except WebhookRejectedError as exc:
        return _reject("telegram", exc)
    return jsonify(_accept("telegram", parsed)), 200
