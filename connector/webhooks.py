"""``/webhooks/<channel>``: verify, de-duplicate, enqueue, answer, for every enabled channel plug-in.

Every channel is a plug-in (:mod:`connector.channels.plugin`) enabled by ``CHAT2CRM_CHANNELS``: this
module serves ``POST /webhooks/<name>`` for each (a name not enabled is 404) and the extra routes each
declares (:func:`register_routes`: WhatsApp's ``GET`` handshake), and knows no channel by name.

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
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import BaseModel

from connector import agent, routing
from connector.channels import plugin as plugins
from connector.channels.base import ParsedWebhook
from connector.channels.plugin import ChannelContext, ChannelPlugin, Route, WebhookRequest
from connector.channels.whatsapp_plugin import _CHALLENGE  # noqa: F401  (the lead forms' handshake checks its challenge alike)
from connector.inbox import enqueue_inbound, enqueue_opt_out
from connector.runtime import Runtime
from core import metrics, strictjson
from core.errors import WebhookRejectedError

log = logging.getLogger("chat2crm.webhooks")
blueprint = Blueprint("webhooks", __name__)

MAX_DEPTH = 32


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


def _accept(plugin: ChannelPlugin, parsed: ParsedWebhook) -> dict[str, int]:
    """Queue every new message; drop redeliveries; record statuses and opt-outs.

    Parts the parser dropped (a message that does not fit the vendor's description, each logged there
    without its contents) are counted as rejected with reason ``part``; the rest of the body is taken.
    Metrics carry the plug-in's name; routing and opt-outs the channel its messages carry.
    """
    runtime = _runtime()
    client = runtime.redis
    ttl = runtime.config.retention.dedup_days
    name = plugin.name
    if parsed.skipped:
        metrics.incr(client, "webhooks_rejected", parsed.skipped, channel=name, reason="part")
    parsed = routing.route(runtime, plugin.network, parsed)  # served numbers only; each message to its person's conversation
    queued = duplicates = 0
    for message in parsed.messages:
        # remembered and queued in one atomic step: never queued twice, never remembered but lost
        if not enqueue_inbound(runtime, message, dedup_days=ttl):
            duplicates += 1
            metrics.incr(client, "duplicates_dropped", channel=name)
            continue
        queued += 1
    for status in parsed.statuses:
        # kept, counted, and (an agent's reply) told to the CRM: one call
        agent.on_status(runtime, status, counted_as=metrics.counter_field("statuses", channel=name,
                                                                        status=status.status))
        for error in status.errors:
            log.warning("delivery failed", extra={"channel": name, "code": error.get("code"),
                                                  "title": str(error.get("title", ""))[:120]})
    for account, sender in parsed.opt_outs:
        enqueue_opt_out(runtime, plugin.network, account, sender)
    for error in parsed.errors:
        log.warning("channel reported an error", extra={"channel": name, "code": error.get("code"),
                                                        "title": str(error.get("title", ""))[:120]})
    return {"queued": queued, "duplicates": duplicates, "statuses": len(parsed.statuses),
            "skipped": parsed.skipped, "ignored": parsed.ignored}


def _warn_insecure(channel: str) -> None:
    log.warning("UNSIGNED WEBHOOK ACCEPTED: CHAT2CRM_INSECURE_DEMO is on; never run like this in production",
                extra={"channel": channel})


def _served(runtime: Runtime) -> dict[str, ChannelPlugin]:
    """The enabled plug-ins by name (``CHAT2CRM_CHANNELS``), loaded once per process."""
    return runtime.cached("channels:served", lambda: {p.name: p for p in plugins.enabled(runtime.settings)})


def channel_context(runtime: Runtime, plugin: ChannelPlugin) -> ChannelContext:
    """The plug-in's context in this process: its settings, its ``channels:`` section, the bots policy."""
    def make() -> ChannelContext:
        section = getattr(runtime.config.channels, plugin.name, None)
        options = section.model_dump() if isinstance(section, BaseModel) else {}
        return plugins.context(plugin, runtime.settings, options, ignore_bots=runtime.config.channels.ignore_bots)
    return runtime.cached(f"channels:context:{plugin.name}", make)


def _webhook_request(raw: bytes) -> WebhookRequest:
    """The request as plug-ins see it; its URL as the vendor called it (``PUBLIC_BASE_URL``, path, query)."""
    base = _runtime().settings.public_base_url.rstrip("/")
    query = request.query_string.decode("latin-1")
    return WebhookRequest(method=request.method, path=request.path,
                          headers={name.lower(): value for name, value in request.headers.items()},
                          args=request.args.to_dict(), raw=raw, url=f"{base}{request.path}" + (f"?{query}" if query else ""))


def _form(raw: bytes) -> dict[str, str]:
    """A form-encoded body (``application/x-www-form-urlencoded``): each field's last value."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "body is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


@blueprint.post("/webhooks/<name>")
def channel_webhook(name: str) -> tuple[Response, int]:
    """A channel's webhook: the proof checked on the raw body, the body decoded and parsed, its parts queued."""
    runtime = _runtime()
    plugin = _served(runtime).get(name)
    if plugin is None:
        return jsonify(error="no such channel"), 404
    settings = runtime.settings
    try:
        raw = _raw_body()
        incoming = _webhook_request(raw)
        ctx = channel_context(runtime, plugin)
        verify = plugin.verifier(ctx)
        proof = incoming.header(plugin.proof_header) if plugin.proof_header else None
        if verify is not None and not (settings.chat2crm_insecure_demo and not proof):
            verify(incoming)
        elif settings.chat2crm_insecure_demo:
            _warn_insecure(name)
        else:
            raise WebhookRejectedError(401, f"{plugin.secret_setting} is not set: webhooks cannot be verified")
        body = _decode(raw) if plugin.body_format == "json" else _form(raw)
        parsed = plugin.parse_request(incoming, plugin.envelope(body), ctx)
    except WebhookRejectedError as exc:
        return _reject(name, exc)
    return jsonify(_accept(plugin, parsed)), 200


def register_routes(app: Flask, runtime: Runtime) -> None:
    """Add the extra routes of every enabled plug-in (a subscription handshake...) to ``app``."""
    for plugin in _served(runtime).values():
        for route in plugin.routes():
            app.add_url_rule(route.path, f"channel_{plugin.name}_{route.method.lower()}_{route.path}",
                             _route_view(plugin, route), methods=[route.method])


def _route_view(plugin: ChannelPlugin, route: Route) -> Callable[[], Response]:
    def view() -> Response:
        runtime = _runtime()
        try:
            raw = _raw_body()
        except WebhookRejectedError as exc:
            body, status = _reject(plugin.name, exc)
            return Response(body.get_data(), status=status, mimetype="application/json")
        text, status, mimetype = route.handler(_webhook_request(raw), channel_context(runtime, plugin))
        response = Response(text, status=status, mimetype=mimetype)
        # a plug-in's answer is never a page a browser would run
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response
    return view
