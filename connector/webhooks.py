"""``/webhooks/<channel>``: verify, keep the raw body, answer, for every enabled channel plug-in.

Every channel is a plug-in (:mod:`connector.channels.plugin`) enabled by ``CHAT2CRM_CHANNELS``: this
module serves ``POST /webhooks/<name>`` for each (a name not enabled is 404) and the extra routes each
declares (:func:`register_routes`: WhatsApp's ``GET`` handshake), and knows no channel by name.

The request only checks and keeps: the proof (signature or secret) is checked on the raw body, and the
body, as received, is appended to the channel's intake in one small Lua call that also drops a body
received already (:func:`connector.received.receive`). Decoding, parsing, routing and queueing each
message happen in a job process (:func:`connector.received.handle`). The answer is
``{"received": true, "duplicate": false}`` (``"duplicate": true`` for bytes kept already). A request
refused at the door gets a 4xx and a short reason, never a 5xx, and nothing is kept: a forged or
missing proof (401 or 403, by plug-in), a body over ``MAX_BODY_BYTES`` whatever its framing (413), one
that is not UTF-8 (400). A body bad as a whole in other ways (invalid JSON, ``NaN``, absurd nesting,
not a webhook of the channel) is dropped and counted when it is read. The ``GET`` handshake echoes
Meta's challenge as plain text, and only a challenge of plain characters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from connector import received
from connector.channels.plugin import ChannelPlugin, Route, WebhookRequest
from connector.channels.whatsapp_plugin import _CHALLENGE  # noqa: F401  (the lead forms' handshake checks its challenge alike)
from connector.runtime import Runtime
from core import metrics
from core.errors import WebhookRejectedError

log = logging.getLogger("chat2crm.webhooks")
blueprint = Blueprint("webhooks", __name__)

#: the webhook's two answers (``{"received": true, "duplicate": ...}``)
_KEPT = b'{"duplicate":false,"received":true}\n'
_DUPLICATE = b'{"duplicate":true,"received":true}\n'


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



def _warn_insecure(channel: str) -> None:
    log.warning("UNSIGNED WEBHOOK ACCEPTED: CHAT2CRM_INSECURE_DEMO is on; never run like this in production",
                extra={"channel": channel})


def _webhook_request(raw: bytes) -> WebhookRequest:
    """The request as plug-ins see it; its URL as the vendor called it (``PUBLIC_BASE_URL``, path, query)."""
    base = _runtime().settings.public_base_url.rstrip("/")
    query = request.query_string.decode("latin-1")
    return WebhookRequest(method=request.method, path=request.path,
                          headers={name.lower(): value for name, value in request.headers.items()},
                          args=request.args.to_dict(), raw=raw, url=f"{base}{request.path}" + (f"?{query}" if query else ""))


@blueprint.post("/webhooks/<name>")
def channel_webhook(name: str) -> tuple[Response, int]:
    """A channel's webhook: the proof checked on the raw body, the body kept for a job process to read."""
    runtime = _runtime()
    plugin = received.served(runtime).get(name)
    if plugin is None:
        return jsonify(error="no such channel"), 404
    settings = runtime.settings
    try:
        raw = _raw_body()
        incoming = _webhook_request(raw)
        verify = plugin.verifier(received.channel_context(runtime, plugin))
        proof = incoming.header(plugin.proof_header) if plugin.proof_header else None
        if verify is not None and not (settings.chat2crm_insecure_demo and not proof):
            verify(incoming)
        elif settings.chat2crm_insecure_demo:
            _warn_insecure(name)
        else:
            raise WebhookRejectedError(401, f"{plugin.secret_setting} is not set: webhooks cannot be verified")
        _utf8(raw)
    except WebhookRejectedError as exc:
        return _reject(name, exc)
    # one call: remembered (a vendor's retry of the same bytes is dropped) and appended to the intake
    fresh = received.receive(runtime, name, dict(incoming.args), raw)
    if not fresh:
        metrics.incr(runtime.redis, "duplicates_dropped", channel=name)
    # answered from bytes made once: the answer is one of two, and building it per request is measurable
    return Response(_KEPT if fresh else _DUPLICATE, mimetype="application/json"), 200


def _utf8(raw: bytes) -> None:
    """Refuse a body that is not UTF-8: every channel's body is text, and what a job process sets aside is."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "body is not UTF-8") from None


def register_routes(app: Flask, runtime: Runtime) -> None:
    """Add the extra routes of every enabled plug-in (a subscription handshake...) to ``app``."""
    for plugin in received.served(runtime).values():
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
        text, status, mimetype = route.handler(_webhook_request(raw), received.channel_context(runtime, plugin))
        response = Response(text, status=status, mimetype=mimetype)
        # a plug-in's answer is never a page a browser would run
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response
    return view
