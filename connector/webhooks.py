"""``/webhooks/<channel>``: verify, keep the raw body, answer, for every enabled channel plug-in.

Every channel is a plug-in (:mod:`connector.channels.plugin`) enabled by ``CHAT2CRM_CHANNELS``: this
module serves ``POST /webhooks/<name>`` for each (a name not enabled is 404) and the extra routes each
declares (:func:`register_routes`: WhatsApp's ``GET`` handshake), and knows no channel by name. The
``POST`` is answered by :class:`Door`, a WSGI layer in front of Flask: it is the request a campaign
multiplies, and the framework's own cost per request is as large as the work.

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

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import redis
from flask import Flask, Response, current_app, jsonify, request

from connector import received
from connector.channels.plugin import ChannelPlugin, Route, WebhookRequest
from connector.channels.whatsapp_plugin import _CHALLENGE  # noqa: F401  (the lead forms' handshake checks its challenge alike)
from connector.request_body import StartResponse
from connector.runtime import Runtime
from core import metrics
from core.errors import WebhookRejectedError

log = logging.getLogger("chat2crm.webhooks")

#: the webhook's two answers (``{"received": true, "duplicate": ...}``)
_KEPT = b'{"duplicate":false,"received":true}\n'
_DUPLICATE = b'{"duplicate":true,"received":true}\n'


def _runtime() -> Runtime:
    """The runtime of the app serving this request."""
    runtime: Runtime = current_app.extensions["chat2crm"]
    return runtime


def _count_rejected(runtime: Runtime, channel: str, exc: WebhookRejectedError) -> None:
    metrics.incr(runtime.redis, "webhooks_rejected", channel=channel, reason=str(exc.status))
    log.warning("webhook rejected", extra={"channel": channel, "status": exc.status, "reason": exc.message})


def _reject(channel: str, exc: WebhookRejectedError) -> tuple[Response, int]:
    _count_rejected(_runtime(), channel, exc)
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
    """The Flask request being served, as plug-ins see it (:func:`_environ_request`)."""
    return _environ_request(request.environ, raw, _runtime().settings.public_base_url)


class Door:
    """WSGI: ``POST /webhooks/<name>`` answered here, before the web framework; every other request to ``app``.

    The webhook is the one request a campaign multiplies, and all it does is check and keep; Flask's request
    context, routing and response objects cost about as much again as the work itself, so it is served from
    the WSGI environ directly. It sits inside :class:`connector.request_body.BodyLimit`: the body is whole,
    within ``MAX_BODY_BYTES`` and ``BODY_TIMEOUT_SECONDS``, before it gets here.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        name = path[len(_PREFIX):]
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(_PREFIX) or not name or "/" in name:
            return self.app(environ, start_response)
        status, body, extra = self.answer(environ, name)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def answer(self, environ: dict[str, Any], name: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        """The status, body and extra headers of the answer to one channel webhook."""
        runtime = self.runtime
        plugin = received.served(runtime).get(name)
        if plugin is None:
            return 404, b'{"error":"no such channel"}\n', []
        try:
            raw = _read(environ, runtime.settings.max_body_bytes)
            incoming = _environ_request(environ, raw, runtime.settings.public_base_url)
            _verify(runtime, plugin, incoming)
            _utf8(raw)
        except WebhookRejectedError as exc:
            _count_rejected(runtime, name, exc)
            return exc.status, json.dumps({"error": exc.message}).encode() + b"\n", []
        try:
            # one call: remembered (a vendor's retry of the same bytes is dropped) and appended to the intake
            fresh = received.receive(runtime, name, dict(incoming.args), raw)
        except redis.RedisError as exc:
            # nothing kept: the vendor retries a 5xx, and the body is taken then
            log.error("webhook not kept: Redis failed", extra={"channel": name, "error": type(exc).__name__})
            return 503, b'{"error":"temporarily unavailable"}\n', [("Retry-After", "5")]
        if not fresh:
            metrics.incr(runtime.redis, "duplicates_dropped", channel=name)
        # answered from bytes made once: the answer is one of two, and building it per request is measurable
        return 200, _KEPT if fresh else _DUPLICATE, []


_PREFIX = "/webhooks/"


def _read(environ: dict[str, Any], limit: int) -> bytes:
    """The body :class:`connector.request_body.BodyLimit` read whole; checked against the limit once more."""
    raw: bytes = environ["wsgi.input"].read() if environ.get("CONTENT_LENGTH") else b""
    if len(raw) > limit:
        raise WebhookRejectedError(413, "body too large")
    return raw


def _environ_request(environ: dict[str, Any], raw: bytes, public_base_url: str) -> WebhookRequest:
    """The request as plug-ins see it, from its WSGI environ: header names lower-cased, the first of a
    repeated query parameter, and its URL as the vendor called it (``PUBLIC_BASE_URL``, path, query)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    query: str = environ.get("QUERY_STRING", "")
    args: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(key, value)  # the first of a repeated parameter, as Flask's ``args.to_dict()``
    # PATH_INFO is the path's bytes as latin-1 (PEP 3333); the plug-ins see it decoded, as Flask shows it
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    return WebhookRequest(method=environ.get("REQUEST_METHOD", "POST"), path=path, headers=headers, args=args, raw=raw,
                          url=f"{public_base_url.rstrip('/')}{path}" + (f"?{query}" if query else ""))


def _verify(runtime: Runtime, plugin: ChannelPlugin, incoming: WebhookRequest) -> None:
    """Check the request's proof with the plug-in's verifier (or let it through in the insecure demo).

    Raises:
        WebhookRejectedError: the proof is missing or wrong, or the channel's secret is not set.
    """
    settings = runtime.settings
    verify = plugin.verifier(received.channel_context(runtime, plugin))
    proof = incoming.header(plugin.proof_header) if plugin.proof_header else None
    if verify is not None and not (settings.chat2crm_insecure_demo and not proof):
        verify(incoming)
    elif settings.chat2crm_insecure_demo:
        _warn_insecure(plugin.name)
    else:
        raise WebhookRejectedError(401, f"{plugin.secret_setting} is not set: webhooks cannot be verified")


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
