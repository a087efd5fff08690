"""Webhook acknowledgement: latency and throughput of POST /webhooks/whatsapp (signature check, de-dup
and enqueue on a real Redis) next to a bare Flask endpoint that returns 200, both served the same way
(werkzeug, threaded, 127.0.0.1) and measured in the same run."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, jsonify

from bench._common import SECRETS, describe, settings_for
from connector.app import create_app
from connector.channels.whatsapp import sign
from connector.redis_server import EmbeddedRedis
from connector.runtime import Runtime
from emulators.server import ServedApp

N_LATENCY, N_THROUGHPUT, THREADS = 1500, 4000, 8


def body(i: int) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "1", "phone_number_id": "106540352242922"},
                                       "contacts": [{"profile": {"name": "P"}, "wa_id": f"90532{i % 500:07d}"}],
                                       "messages": [{"from": f"90532{i % 500:07d}", "id": f"wamid.bench{i}",
                                                     "timestamp": "1763800000", "type": "text",
                                                     "text": {"body": "Merhaba"}}]}}]}]}).encode()


def measure(url: str, make: callable, offset: int) -> tuple[list[float], float]:  # type: ignore[valid-type]
    session = requests.Session()
    latencies = []
    for i in range(N_LATENCY):
        data, headers = make(offset + i)
        start = time.perf_counter()
        response = session.post(url, data=data, headers=headers)
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    sessions = [requests.Session() for _ in range(THREADS)]

    def worker(t: int) -> None:
        for i in range(t, N_THROUGHPUT, THREADS):
            data, headers = make(offset + N_LATENCY + i)
            assert sessions[t].post(url, data=data, headers=headers).status_code == 200

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    return latencies, N_THROUGHPUT / (time.perf_counter() - start)


def main() -> None:
    bare = Flask("bare")

    @bare.post("/hook")
    def hook():  # type: ignore[no-untyped-def]
        return jsonify(ok=True)

    with EmbeddedRedis() as redis_server:
        runtime = Runtime(settings_for(redis_server.url))
        relay = create_app(runtime=runtime)
        with ServedApp(bare) as bare_served, ServedApp(relay) as relay_served:
            def plain(i: int) -> tuple[bytes, dict[str, str]]:
                return body(i), {"Content-Type": "application/json"}

            def signed(i: int) -> tuple[bytes, dict[str, str]]:
                raw = body(i)
                return raw, {"Content-Type": "application/json",
                             "X-Hub-Signature-256": sign(raw, SECRETS["whatsapp_app_secret"])}

            measure(f"{bare_served.url}/hook", plain, 10_000_000)  # warm-up
            base_lat, base_tp = measure(f"{bare_served.url}/hook", plain, 0)
            ours_lat, ours_tp = measure(f"{relay_served.url}/webhooks/whatsapp", signed, 0)
            queued = runtime.queue("inbound").count
    print(f"requests: {N_LATENCY} sequential (latency), {N_THROUGHPUT} over {THREADS} threads (throughput)")
    print(f"bare Flask endpoint:      {describe(base_lat)}; {base_tp:.0f} req/s")
    print(f"/webhooks/whatsapp:       {describe(ours_lat)}; {ours_tp:.0f} req/s")
    print(f"throughput ratio (ours / bare): {ours_tp / base_tp:.2f}  (goal ≥ 0.70)")
    print(f"jobs enqueued: {queued} (every message, none lost)")


if __name__ == "__main__":
    main()
