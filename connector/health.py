"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers and the configuration loads)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """Always 200 while the process serves requests."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when Redis answers PING and every configuration file is valid; 503 with the reasons otherwise."""
    runtime = current_app.extensions["chat2crm"]
    checks: dict[str, str] = {}
    try:
        runtime.redis_probe.ping()
        checks["redis"] = "ok"
    except (redis.RedisError, OSError) as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    except Exception as exc:
        checks["redis"] = str(exc).splitlines()[0]
    problems = runtime.check()
    checks["configuration"] = "ok" if not problems else f"{len(problems)} problem(s): {problems[0]}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
