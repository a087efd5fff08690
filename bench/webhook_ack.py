"""Webhook acknowledgement under the production server: ``chat2crm serve`` (gunicorn, exactly as
deployed) in its own processes, loaded by ``wrk`` from another process, against a bare Flask
endpoint served by the very same gunicorn command in the same run, and against the relay's door with
its one Redis call taken out (what keeping the body costs).

Every request is a distinct, correctly signed WhatsApp webhook (a new message id each time), so the
relay does its whole acknowledgement: signature check, de-duplication, recording and queueing on a
real Redis. Throughput at concurrency 32 with keep-alive, latency percentiles at concurrency 8.
Needs ``wrk`` (Debian's package; ``bench/run`` installs it when run as root with apt).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from bench._common import SECRETS, cpu_seconds, serve_gunicorn
from connector.channels.whatsapp import sign
from connector.redis_server import EmbeddedRedis
from connector.resources import DEFAULT_CONFIG, shipped

SECONDS, THROUGHPUT_CONNECTIONS, LATENCY_CONNECTIONS, ROUNDS = 10, 32, 8, 5
#: distinct signed requests prepared per run (more than the relay can take in all rounds)
PREPARED = 200_000

# Each of wrk's threads sends its own share of the prepared requests (thread n: n + 1, n + 1 + threads, ...), so
# no body is posted twice, as Meta posts each webhook once (a retry is the exception, not half the load).
_LUA = """
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local requests, i, step = {}, 0, 1
init = function(args)
  step = tonumber(args[2])
  i = id + 1 - step
  for line in io.lines(args[1]) do
    local sig, body = line:match("^(%S+) (.*)$")
    requests[#requests + 1] = wrk.format("POST", "/webhooks/whatsapp",
      {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = sig}, body)
  end
end
request = function()
  i = i + step
  if i > #requests then i = id + 1 end
  return requests[i]
end
"""
#: wrk's threads (each with its own connections and its own share of the requests)
THREADS = 2


def body(i: int) -> bytes:
    sender = f"90532{i % 5000:07d}"
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "1", "phone_number_id": "106540352242922"},
                                       "contacts": [{"profile": {"name": "P"}, "wa_id": sender}],
                                       "messages": [{"from": sender, "id": f"wamid.bench{i}",
                                                     "timestamp": "1763800000", "type": "text",
                                                     "text": {"body": "Merhaba"}}]}}]}]},
                      separators=(",", ":")).encode()


def serve(app: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``app`` under the production gunicorn command, in processes of its own."""
    return serve_gunicorn(app, env, int(env.get("WEB_CONCURRENCY", "2")))  # type: ignore[no-any-return]


def wrk(url: str, connections: int, script: Path, prepared: Path) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{SECONDS}s", "--latency", "-s",
                          str(script), url, "--", str(prepared), str(THREADS)],
                         capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)  # type: ignore[union-attr]
        figures[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    return figures


def main() -> None:
    if shutil.which("wrk") is None:
        print("skipped: needs wrk (Debian's 'wrk' package; bench/run installs it when run as root with apt)")
        return
    with EmbeddedRedis() as redis_server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepared = folder / "requests.txt"
        with prepared.open("w", encoding="utf-8") as handle:
            for i in range(PREPARED):
                raw = body(i)
                handle.write(f"{sign(raw, SECRETS['whatsapp_app_secret'])} {raw.decode()}\n")
        script = folder / "post.lua"
        script.write_text(_LUA, encoding="utf-8")
        env = {**os.environ, **{k.upper(): v for k, v in SECRETS.items()}, "REDIS_URL": redis_server.url,
               "CHAT2CRM_CONFIG": str(shipped(DEFAULT_CONFIG)), "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING",
               "WEB_CONCURRENCY": "2"}
        rows: list[tuple[str, dict[str, float], dict[str, float]]] = []
        assert redis_server.process is not None
        redis_pid = redis_server.process.pid
        # the door without its Redis call (bench._door_app) shows what keeping the body costs
        for name, app in (("bare", "bench._bare_app:app"), ("door", "bench._door_app:app"),
                          ("relay", "connector.wsgi:app")) * ROUNDS:
            proc, url = serve(app, env)
            try:
                before = cpu_seconds(proc.pid), cpu_seconds(redis_pid)
                busy = wrk(url, THROUGHPUT_CONNECTIONS, script, prepared)
                # CPU per request at c=32: the server's processes, and Redis's
                done = busy["rps"] * SECONDS
                busy["server_us"] = (cpu_seconds(proc.pid) - before[0]) / done * 1e6
                busy["redis_us"] = (cpu_seconds(redis_pid) - before[1]) / done * 1e6
                quiet = wrk(url, LATENCY_CONNECTIONS, script, prepared)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            rows.append((name, busy, quiet))
            redis.Redis.from_url(redis_server.url).flushdb()  # each round starts from empty de-dup and queues
    load = os.getloadavg()
    print(f"server: `chat2crm serve` (gunicorn gthread, 2 workers x 8 threads) on {os.cpu_count()} cores; "
          f"load from wrk in another process; {SECONDS} s per run, {ROUNDS} alternating rounds")
    print(f"load average after the runs (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, busy, quiet in rows:
        print(f"{name:<6} c={THROUGHPUT_CONNECTIONS}: {busy['rps']:7.0f} req/s, p99 {busy['p99_ms']:6.1f} ms, "
              f"errors {busy['errors']:.0f}, CPU a request: server {busy['server_us']:.0f} µs, "
              f"Redis {busy['redis_us']:.0f} µs | c={LATENCY_CONNECTIONS}: {quiet['rps']:7.0f} req/s, "
              f"p50 {quiet['p50_ms']:.2f} ms, p99 {quiet['p99_ms']:.1f} ms")
    bare = sorted(busy["rps"] for name, busy, _ in rows if name == "bare")
    relay = sorted(busy["rps"] for name, busy, _ in rows if name == "relay")
    door = sorted(busy["rps"] for name, busy, _ in rows if name == "door")
    p99 = sorted(quiet["p99_ms"] for name, _, quiet in rows if name == "relay")
    print(f"relay at c={THROUGHPUT_CONNECTIONS}: median {relay[len(relay) // 2]:.0f} req/s (goal ≥ 2000); "
          f"ratio to bare {relay[len(relay) // 2] / bare[len(bare) // 2]:.2f} (goal ≥ 0.9); "
          f"p99 at c={LATENCY_CONNECTIONS}: median {p99[len(p99) // 2]:.1f} ms (goal < 50 ms); "
          f"the door without its Redis call: {door[len(door) // 2] / bare[len(bare) // 2]:.2f} of bare")


if __name__ == "__main__":
    sys.exit(main())
