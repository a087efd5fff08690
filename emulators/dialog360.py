"""An emulator of 360dialog's Messaging API (WhatsApp through a Business Solution Provider).

It is the WhatsApp emulator (:mod:`emulators.whatsapp`) behind 360dialog's door, as 360dialog documents it:
the same message bodies checked against Meta's description, the same answers and error bodies (360dialog
passes Meta's through), the same patients and webhook payloads; and what differs:

- paths without version or phone number id: ``POST /messages``, ``GET /{media_id}``; Meta's own paths
  (``/{version}/{phone_number_id}/messages``) do not exist here (404);
- the ``D360-API-KEY`` header instead of a bearer token (a missing or wrong key: 401);
- the media answer names a ``lookaside.fbsbx.com`` URL; the file is served at the same path and query on
  this host, with the key;
- ``POST /v1/configs/webhook`` sets where webhooks go (``url``) and the custom ``headers`` sent with each
  (``GET`` reads them back); webhooks carry those headers and no Meta signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

from emulators.whatsapp import WhatsAppEmulator

LOOKASIDE = "https://lookaside.fbsbx.com/"


@dataclass
class Dialog360Emulator(WhatsAppEmulator):
    """The emulated 360dialog Messaging API; ``access_token`` is the number's API key."""

    #: the webhook 360dialog posts to, and the custom headers it sends, as ``/v1/configs/webhook`` set them
    webhook: dict[str, Any] = field(default_factory=dict)

    def _authorized(self) -> bool:
        return request.headers.get("D360-API-KEY", "") == self.access_token

    def _unauthorized(self) -> tuple[Response, int]:
        # 360dialog refuses a missing or wrong key before Meta sees the call
        return jsonify({"meta": {"http_code": 401, "developer_message": "Invalid api key", "success": False}}), 401

    def media_root(self) -> str:
        return LOOKASIDE

    def webhook_url(self) -> str:
        return str(self.webhook.get("url") or self.relay_url)

    def _proof(self, raw: bytes, signature: str | None) -> dict[str, str]:
        # 360dialog signs nothing for a number's webhook: it sends back the headers it was given
        headers = dict(self.webhook.get("headers") or {})
        if signature is not None:  # a test forging or dropping the proof
            headers = {name: signature for name in headers} if signature else {}
        return headers

    def _make_app(self) -> Flask:
        app = super()._make_app()
        meta_messages, meta_media = app.view_functions["messages"], app.view_functions["media_url"]

        def not_here(**_: Any) -> tuple[Response, int]:
            return jsonify({"meta": {"http_code": 404, "developer_message": "Not found", "success": False}}), 404

        # Meta's paths are not 360dialog's
        app.view_functions["messages"] = not_here
        app.view_functions["media_url"] = not_here

        @app.post("/messages")
        def d360_messages() -> Any:
            return meta_messages(version="v23.0", phone_number_id=self.phone_number_id)

        @app.get("/<media_id>")
        def d360_media(media_id: str) -> Any:
            return meta_media(version="v23.0", media_id=media_id)

        @app.route("/v1/configs/webhook", methods=["GET", "POST"])
        def configs_webhook() -> tuple[Response, int]:
            self.calls += 1
            if not self._authorized():
                return self._unauthorized()
            if request.method == "GET":
                return jsonify({"url": self.webhook.get("url", "")}), 200
            body = request.get_json(silent=True)
            url = body.get("url") if isinstance(body, dict) else None
            headers = body.get("headers", {}) if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(("https://", "http://")) or not isinstance(
                    headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                return jsonify({"meta": {"http_code": 400, "developer_message": "url must be a valid URL and "
                                         "headers an object of strings", "success": False}}), 400
            with self.lock:
                self.webhook = {"url": url, "headers": dict(headers)}
            return jsonify({"url": url}), 200

        return app


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator (for ``ServedApp``); the emulator is ``app.config['EMULATOR']``."""
    emulator = Dialog360Emulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app


__all__ = ["Dialog360Emulator", "create_app"]
