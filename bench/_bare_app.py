"""The baseline the webhook benchmark compares against: a bare Flask endpoint that answers 200, served
by exactly the gunicorn command ``chat2crm serve`` runs (``gunicorn bench._bare_app:app``)."""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask("bare")


@app.post("/webhooks/whatsapp")
def hook() -> Response:
    """Answer as the relay does, without verifying, recording or queueing anything."""
    return jsonify(ok=True)
