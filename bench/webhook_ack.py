"""Webhook acknowledgement: latency and throughput of POST /webhooks/whatsapp (signature check, de-dup
and enqueue on a real Redis) next to a bare Flask endpoint that returns 200, both served the same way
(werkzeug, threaded, 127.0.0.1) and measured in the same run."""

from __future__ import annotations

import json
import statistics
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

N_LATENCY, N_THROUGHPUT, THREADS, ROUNDS = 1000, 3000, 8, 5


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
            # Alternate the two, several rounds: whatever else the machine does then weighs on both alike.
            base_lat: list[float] = []
            ours_lat: list[float] = []
            base_tps: list[float] = []
            ours_tps: list[float] = []
            for round_ in range(ROUNDS):
                latencies, throughput = measure(f"{bare_served.url}/hook", plain, round_ * 100_000)
                base_lat += latencies
                base_tps.append(throughput)
                latencies, throughput = measure(f"{relay_served.url}/webhooks/whatsapp", signed, round_ * 100_000)
                ours_lat += latencies
                ours_tps.append(throughput)
            queued = runtime.queue("inbound").count
    ratios = [ours / base for ours, base in zip(ours_tps, base_tps, strict=True)]
    print(f"requests: {ROUNDS} rounds of {N_LATENCY} sequential (latency) and {N_THROUGHPUT} over {THREADS} threads "
          "(throughput), the two endpoints alternating")
    print(f"bare Flask endpoint:      {describe(base_lat)}; {statistics.median(base_tps):.0f} req/s (median round)")
    print(f"/webhooks/whatsapp:       {describe(ours_lat)}; {statistics.median(ours_tps):.0f} req/s (median round)")
    print(f"throughput ratio (ours / bare) by round: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}  (goal ≥ 0.70)")
    print(f"jobs enqueued: {queued} of {ROUNDS * (N_LATENCY + N_THROUGHPUT)} messages (every one, none lost)")


if __name__ == "__main__":
    main()
