"""Messages through the workers: bot turns with their replies sent, per second, with the worker CPU and the
Redis commands each message costs, for 1, 2 and 4 job processes of ``chat2crm worker``.

Patients' messages (a health-tourism intake: a greeting, then the city, then the dates) are accepted
by the relay's webhook (in this process) once the workers are up and warm; the clock runs from the
first message until every queue is empty, and the CPU counted is the workers' (their work-horses
included) over that time. The WhatsApp and HubSpot emulators answer in this process.
The baseline is the floor of the queue itself: the same number of no-op drains (conversations made ready
with nothing in their inbox) through the same worker setup, measured the same way in the same run; the
floor of rq alone (no-op ``heartbeat`` jobs) is printed beside it, since messages no longer travel as rq jobs.
The Redis commands of the timed runs are Redis's own count (INFO commandstats: a script's commands each count);
a last, untimed pass counts under MONITOR what the relay sends (round trips, a script counting once) apart from
what the scripts run inside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue, Worker
from rq.registry import StartedJobRegistry

from bench._common import SECRETS, cpu_seconds
from bench._monitor import Monitor
from connector import inbox
from connector.app import create_app
from connector.channels.whatsapp import sign
from connector.redis_server import EmbeddedRedis
from connector.resources import DEFAULT_CONFIG, shipped
from connector.runtime import Runtime
from core.settings import Settings
from demo.stack import start_emulators
from emulators._checks import whatsapp_message_errors

PATIENTS = 100
SCRIPT = ("Hi, price for hair transplant?", "Berlin, Germany", "10-17 March")
WORKERS = (1, 2, 4)
#: patients of the counting pass (MONITOR)
COUNTED = 30


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Redis commands served so far, per command (INFO commandstats)."""
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in client.info("commandstats").items()}


def commands(client: redis.Redis) -> int:
    """Redis commands served so far (every command)."""
    return sum(command_counts(client).values())


def idle(client: redis.Redis) -> bool:
    """No conversation ready or listed, and no job queued, scheduled or running, on any of the relay's queues."""
    if client.llen(inbox.READY.key()) or client.zcard(inbox.DUE.key()):
        return False
    for queue in Queue.all(connection=client):
        if queue.count or StartedJobRegistry(queue=queue).count or queue.scheduled_job_registry.count:
            return False
    return True


def webhook(i: int, sender: str, text: str) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Bench Patient"}, "wa_id": sender}],
        "messages": [{"from": sender, "id": f"wamid.{sender}.{i}", "timestamp": str(int(time.time())), "type": "text",
                      "text": {"body": text}}]}}]}]}


def run(env: dict[str, str], client: redis.Redis, workers: int, load: Any) -> dict[str, Any]:
    """Start ``chat2crm worker`` with ``workers`` job processes, wait until they are warm and registered, then
    ``load()`` the work and measure from the first message until every queue is empty (warm-up is not
    counted)."""
    procs = [subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--processes", str(workers)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 120
        while Worker.count(connection=client) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # past registration: the first poll of the queues
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        own_before = time.process_time()  # this process: the webhooks posted, the emulators answering
        before = command_counts(client)
        start = time.perf_counter()
        count = load()
        while not idle(client):
            time.sleep(0.25)
        elapsed = time.perf_counter() - start
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        own = time.process_time() - own_before
        after = command_counts(client)
        per_command = {name: (calls - before.get(name, 0)) / count for name, calls in after.items()}
        used = sum(per_command.values()) * count
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    top = sorted(per_command.items(), key=lambda item: -item[1])[:10]
    return {"count": count, "seconds": elapsed, "per_second": count / elapsed, "cpu_ms": cpu * 1000 / count,
            "load_busy": own / elapsed,
            "commands": used / count, "top": ", ".join(f"{name} {calls:.1f}" for name, calls in top if calls >= 0.5)}


def round_trips(env: dict[str, str], url: str, client: redis.Redis, emulator: Any,
                post: Callable[[], int]) -> dict[str, Any]:
    """The Redis calls each message costs the relay (its webhook, reading the body, the turn, the reply), counted
    under MONITOR with one job process: the calls sent (round trips; a script is one) and the commands the
    scripts run inside. The clock is not read: MONITOR slows Redis down."""
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--processes", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while Worker.count(connection=client) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        before = len(emulator.sent)
        with Monitor(url) as seen:
            count = post()
            deadline = time.monotonic() + 120
            while len(emulator.sent) < before + count and time.monotonic() < deadline:
                time.sleep(0.1)  # every message answered (read from the emulator: no Redis call)
            time.sleep(1.0)  # the last replies acknowledged
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    sent = sum(seen.sent.values())
    return {"count": count, "sent": sent / count, "in_scripts": seen.in_scripts / count,
            "top": ", ".join(f"{name} {calls / count:.2f}" for name, calls in seen.sent.most_common(6))}


def main() -> None:
    with EmbeddedRedis() as server:
        env = {**os.environ, **{k.upper(): v for k, v in SECRETS.items()}, "REDIS_URL": server.url,
               "CHAT2CRM_CONFIG": str(shipped(DEFAULT_CONFIG)), "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
        stack = start_emulators("hubspot", env)
        env.update(stack.environment)
        # this process posts the webhooks through the relay's app, not over HTTP: the emulator has nowhere to post
        # its status webhooks (`cpu_per_lead` has them), and its checks of Meta's description are loaded before
        # the clock runs, as they are in a running emulator after its first message
        stack.whatsapp.status_webhooks = False
        for kind in ({"type": "text", "text": {"body": "warm"}},
                     {"type": "interactive", "interactive": {"type": "button", "body": {"text": "warm"}, "action": {
                         "buttons": [{"type": "reply", "reply": {"id": "w", "title": "warm"}}]}}}):
            whatsapp_message_errors({"messaging_product": "whatsapp", "to": "1", **kind})
        client = redis.Redis.from_url(server.url)
        settings = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
        runtime = Runtime(settings, redis_client=client)
        app = create_app({"TESTING": True}, runtime=runtime).test_client()
        rows: list[tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        try:
            def post(run_id: int, patients: int = PATIENTS) -> int:
                sent = 0
                for step, text in enumerate(SCRIPT):
                    for p in range(patients):
                        raw = json.dumps(webhook(step, f"4915{run_id:02d}{p:07d}", text)).encode()
                        response = app.post("/webhooks/whatsapp", data=raw, headers={
                            "Content-Type": "application/json",
                            "X-Hub-Signature-256": sign(raw, SECRETS["whatsapp_app_secret"])})
                        assert response.status_code == 200, response.data
                        sent += 1
                return sent

            for workers in WORKERS:
                def messages(run_id: int = workers) -> int:
                    return post(run_id)

                def noops() -> int:
                    for n in range(PATIENTS * len(SCRIPT)):
                        inbox.make_ready(runtime, f"whatsapp:106540352242922:noop{n}")
                    return PATIENTS * len(SCRIPT)

                def rq_noops() -> int:
                    queue = runtime.queue("inbound")
                    for _ in range(PATIENTS * len(SCRIPT)):
                        queue.enqueue("connector.worker.heartbeat", result_ttl=0)
                    return PATIENTS * len(SCRIPT)

                rq_floor = run(env, client, workers, rq_noops)
                floor = run(env, client, workers, noops)
                ours = run(env, client, workers, messages)
                rows.append((workers, floor, ours, rq_floor))
            counted = round_trips(env, server.url, client, stack.whatsapp, lambda: post(99, COUNTED))
        finally:
            stack.stop()
    load = os.getloadavg()
    print(f"{PATIENTS} patients x {len(SCRIPT)} messages of the health intake, accepted once the workers are warm; "
          f"{os.cpu_count()} cores; load average after (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for workers, floor, ours, rq_floor in rows:
        print(f"{workers} worker(s): {ours['per_second']:6.1f} msg/s, {ours['cpu_ms']:6.1f} ms CPU and "
              f"{ours['commands']:5.1f} Redis commands per message | no-op floor: {floor['per_second']:6.1f}/s, "
              f"{floor['cpu_ms']:5.1f} ms CPU, {floor['commands']:4.1f} commands each | "
              f"ratio to the floor {ours['per_second'] / floor['per_second']:.2f} | rq's no-op job: "
              f"{rq_floor['per_second']:6.1f}/s, {rq_floor['cpu_ms']:4.1f} ms, {rq_floor['commands']:4.1f} commands")
    print(f"Redis calls the relay sends per message (round trips: a script is one; {counted['count']} messages, 1 "
          f"job process, counted under MONITOR, not timed): {counted['sent']:.2f} ({counted['top']}); commands the "
          f"scripts run inside: {counted['in_scripts']:.1f} per message")
    print("the load's own process (webhooks posted through the relay's app, the WhatsApp and HubSpot emulators "
          "answering), busy: " + ", ".join(f"{ours['load_busy']:.0%} of a core with {workers}" for workers, _, ours, _ in rows))
    workers, floor, ours, rq_floor = rows[0]
    print(f"Redis commands per message with {workers} worker(s), the most frequent: {ours['top']}")
    print(f"Redis commands per no-op drain, the most frequent: {floor['top']}")
    print(f"Redis commands per rq no-op job, the most frequent: {rq_floor['top']}")
    best = max(ours["per_second"] for _, _, ours, _ in rows)
    print(f"best: {best:.1f} msg/s (goal ≥ 200, at ≤ 5 ms CPU and ≤ 10 Redis commands per message: "
          f"{counted['sent']:.2f} calls sent, {counted['sent'] + counted['in_scripts']:.1f} commands with the scripts' own)")


if __name__ == "__main__":
    main()
