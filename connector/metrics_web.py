"""``GET /metrics``: Prometheus text, behind the admin token."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connector.inbox import READY
from connector.runtime import QUEUE_INBOUND
from core.metrics import RedisCollector

blueprint = Blueprint("metrics", __name__)


def require_admin() -> None:
    """Abort with 401 unless the request carries ``Authorization: Bearer $ADMIN_TOKEN``.

    With no ``ADMIN_TOKEN`` configured, admin endpoints are closed (403), never open.
    """
    runtime = current_app.extensions["chat2crm"]
    token = runtime.settings.admin_token
    if token is None:
        abort(403, description="admin endpoints are closed: set ADMIN_TOKEN")
    given = request.headers.get("Authorization", "")
    expected = "Bearer " + token.get_secret_value()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        abort(401, description="admin token required")


@blueprint.get("/metrics")
def metrics() -> Response:
    """The shared counters, histograms and queue gauges in the Prometheus text format."""
    require_admin()
    runtime = current_app.extensions["chat2crm"]
    registry = CollectorRegistry()
    # patients' messages wait on the ready list, not as rq jobs: they count as the inbound queue's depth
    inbound = runtime.queue(QUEUE_INBOUND).name
    registry.register(RedisCollector(runtime.redis, runtime.queues(), also_waiting={inbound: READY.key()}))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
