"""Helpers shared by the benchmarks: a private Redis, settings, percentiles."""

from __future__ import annotations

import contextlib
import os
import statistics
from typing import Any

SECRETS = {
    "whatsapp_app_secret": "bench-app-secret", "whatsapp_verify_token": "bench-verify",
    "whatsapp_access_token": "EAAbench", "whatsapp_phone_number_id": "106540352242922",
    "telegram_bot_token": "7000000001:AAbench", "telegram_secret_token": "bench-tg",
    "hubspot_access_token": "pat-bench", "transcript_secret": "bench-transcript", "admin_token": "bench-admin",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def describe(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.2f} ms, p95 {percentile(values, 95) * 1000:.2f} ms, "
            f"p99 {percentile(values, 99) * 1000:.2f} ms")


def settings_for(redis_url: str, **overrides: Any) -> Any:
    from connector.resources import DEFAULT_CONFIG, shipped
    from core.settings import Settings

    # the shipped configuration: a benchmark runs from the checkout, where no chat2crm.yaml is looked for
    return Settings(**{**SECRETS, "redis_url": redis_url, "chat2crm_config": shipped(DEFAULT_CONFIG), **overrides})


class CrmStack:
    """A private Redis, a HubSpot emulator with the mapping's properties, and worker processes."""

    def __init__(self, *, latency: float = 0.0, rate_limit: tuple[int, float] | None = None, workers: int = 1) -> None:
        import os
        import subprocess
        import sys

        import redis

        from adapters.hubspot import HubSpotAdapter
        from connector.mapping import load_mapping, required_schema
        from connector.redis_server import EmbeddedRedis
        from connector.resources import shipped
        from connector.runtime import Runtime
        from emulators.hubspot import HubSpotEmulator
        from emulators.server import ServedApp

        self.redis_server = EmbeddedRedis().start()
        self.emulator = HubSpotEmulator(SECRETS["hubspot_access_token"])
        self.served = ServedApp(self.emulator.app).start()
        settings = settings_for(self.redis_server.url, hubspot_api_base=self.served.url)
        mapping = load_mapping(shipped("mappings", "hubspot.yaml"), crm="hubspot")
        HubSpotAdapter.from_settings(settings, options=mapping.crm_options()).setup(required_schema(mapping), apply=True)
        self.emulator.latency, self.emulator.rate_limit = latency, rate_limit
        self.emulator.calls.clear()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.runtime = Runtime(settings, redis_client=self.redis)
        env = {**os.environ, **{k.upper(): v for k, v in SECRETS.items()}, "REDIS_URL": self.redis_server.url,
               "CHAT2CRM_CONFIG": str(settings.chat2crm_config), "HUBSPOT_API_BASE": self.served.url,
               "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
        self.workers = [subprocess.Popen([sys.executable, "-m", "connector.cli", "worker"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for _ in range(workers)]

    def enqueue_lead(self, lead: Any) -> None:
        """Hand a lead to the CRM side exactly as the conversation job does."""
        from connector import leads

        pipe = self.redis.pipeline(transaction=True)
        pipe.multi()
        leads.stage(self.runtime, pipe, lead)
        pipe.execute()

    def stop(self) -> None:
        import signal

        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=60)
        self.served.stop()
        self.redis_server.stop()


# -- the relay as production runs it: gunicorn web processes and `chat2crm worker` processes --------------

#: the clock ticks /proc counts CPU time in
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_gunicorn(app: str, env: dict[str, str], workers: int = 2) -> tuple[Any, str]:
    """Serve ``app`` with the production command (``connector.cli.gunicorn_command``) in its own process
    group; returns the process and the base URL once ``/healthz`` answers."""
    import subprocess
    import time

    import requests

    from connector.cli import gunicorn_command

    port = free_port()
    proc = subprocess.Popen(gunicorn_command(app, port, workers), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/healthz", timeout=0.5)
            return proc, url
        except requests.RequestException:
            time.sleep(0.2)
    stop_group(proc)
    raise SystemExit(f"{app} did not come up")


def stop_group(proc: Any, timeout: float = 60) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and everything it started, then wait."""
    import signal

    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=timeout)


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process under it (from /proc's children lists)."""
    from pathlib import Path

    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [p for child in children for p in descendants(int(child))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its waited-for children, and recursively of its live ones."""
    from pathlib import Path

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS
    return own + sum(cpu_seconds(int(child)) for child in children)


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB, from ``/proc/<pid>/smaps_rollup``; (0, 0) once it is gone.

    PSS shares each page among the processes mapping it, so a sum over processes counts a page
    that forked processes share once, as the machine's memory does; RSS counts it in every one.
    """
    from pathlib import Path

    values = {"Pss:": 0, "Rss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(" ")
            if name in values:
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values["Pss:"], values["Rss:"]


def tree_memory_mb(roots: list[int]) -> tuple[float, float]:
    """(PSS sum, RSS sum) in MB of every process under ``roots`` (the roots included)."""
    pss = rss = 0
    for root in roots:
        for pid in descendants(root):
            p, r = memory_kb(pid)
            pss, rss = pss + p, rss + r
    return pss / 1024, rss / 1024


class RelayStack:
    """The whole product as production runs it, on a private Redis: the web app under the production
    gunicorn command in its own processes, ``chat2crm worker`` processes, and the WhatsApp, Telegram and
    CRM emulators (served in this process) its calls go to."""

    def __init__(self, *, crm: str = "hubspot", web_workers: int = 2, worker_processes: int = 2,
                 forms: bool = True) -> None:
        import subprocess
        import sys
        import time

        import redis
        from rq import Worker

        from connector.redis_server import EmbeddedRedis
        from connector.resources import DEFAULT_CONFIG, shipped
        from demo.stack import start_emulators

        self.redis_server = EmbeddedRedis().start()
        self.env = {**os.environ, **{k.upper(): v for k, v in SECRETS.items()}, "REDIS_URL": self.redis_server.url,
                    "CHAT2CRM_CONFIG": str(shipped(DEFAULT_CONFIG)), "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json",
                    "WEB_CONCURRENCY": str(web_workers), "WORKER_PROCESSES": str(worker_processes)}
        self.emulators = start_emulators(crm, self.env)
        self.env.update(self.emulators.environment)
        self.whatsapp: Any = self.emulators.whatsapp
        assert self.emulators.crm is not None  # start_emulators always starts the CRM's
        self.crm: Any = self.emulators.crm.emulator
        self.redis = redis.Redis.from_url(self.redis_server.url)
        if forms:  # as a clinic on Meta's Cloud API runs it: the bot's WhatsApp forms published first
            subprocess.run([sys.executable, "-m", "connector.cli", "forms"], env=self.env, check=True,
                           stdout=subprocess.DEVNULL, timeout=120)
        else:
            self.env.pop("WHATSAPP_BUSINESS_ACCOUNT_ID", None)
        self.web, self.url = serve_gunicorn("connector.wsgi:app", self.env, web_workers)
        self.emulators.connect(self.url)
        self.worker = subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--processes",
                                        str(worker_processes)], env=self.env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while Worker.count(connection=self.redis) < worker_processes and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # past registration: the first poll of the queues

    def pids(self) -> list[int]:
        """The roots of the product's processes: the gunicorn master and the ``chat2crm worker`` process."""
        return [self.web.pid, self.worker.pid]

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU so far of (the web processes, the worker processes), their job processes included."""
        return cpu_seconds(self.web.pid), cpu_seconds(self.worker.pid)

    def stop(self) -> None:
        """Stop the web and the workers, then the emulators and Redis."""
        for proc in (self.web, self.worker):
            stop_group(proc)
        self.emulators.stop()
        self.redis_server.stop()


# -- patients going through the health intake (the default flow) over WhatsApp ---------------------------

#: one complete intake of the default flow, as a patient on WhatsApp answers it: typed answers, then the
#: list row and buttons the bot offers (the treatment is read from the first message, the name from the
#: profile); the last answer, the note, completes the lead. ``{n}`` makes an answer the patient's own.
INTAKE: tuple[tuple[str, str, str], ...] = (
    ("text", "Hi, price for hair transplant?", ""), ("text", "Berlin, Germany", ""), ("text", "10-17 March", ""),
    ("text", "patient{n}@example.com", ""), ("list_reply", "en", "English"), ("button_reply", "yes", "I agree"),
    ("button_reply", "__skip__", "Skip"), ("text", "Bench note {n}", ""))

#: the same intake where WhatsApp forms are published: the bot offers the form with its first question, and
#: the patient sends the city, name, e-mail and contact language in it (a ``form`` answer: the fields' values)
FORM_INTAKE: tuple[tuple[str, Any, str], ...] = (
    ("text", "Hi, price for hair transplant?", ""),
    ("form", {"location": "Berlin, Germany", "name": "Bench Patient", "email": "patient{n}@example.com",
              "contact_language": "en"}, ""),
    ("text", "10-17 March", ""), ("button_reply", "yes", "I agree"), ("button_reply", "__skip__", "Skip"),
    ("text", "Bench note {n}", ""))


class IntakeSender:
    """Posts the intake's webhooks to the relay as Meta does: signed bodies, one message each, sent over
    one keep-alive connection per sending thread."""

    def __init__(self, whatsapp: Any, relay_url: str, steps: tuple[tuple[str, Any, str], ...] = INTAKE) -> None:
        import threading

        self.whatsapp, self.url, self.steps = whatsapp, f"{relay_url}/webhooks/whatsapp", steps
        self._local = threading.local()

    def body(self, wa_id: str, step: int) -> bytes:
        """The webhook carrying answer ``step`` of the intake of the patient ``wa_id``."""
        import json

        kind, value, title = self.steps[step]
        patient = self.whatsapp.patient(wa_id, "Bench Patient")
        if kind == "text":
            message = patient.message("text", {"body": value.format(n=wa_id)})
        elif kind == "form":  # the form of the last WhatsApp Flow message sent to the patient, as WhatsApp sends it
            carrier = next(m for m in reversed(self.whatsapp.messages_to(wa_id))
                           if m.payload.get("type") == "interactive" and m.payload["interactive"]["type"] == "flow")
            answers = self.whatsapp.flows.response_to(carrier.payload, {
                k: v.format(n=wa_id) if isinstance(v, str) else v for k, v in value.items()})
            message = patient.message("interactive", {"type": "nfm_reply", "nfm_reply": {
                "name": "flow", "body": "Sent", "response_json": json.dumps(answers, ensure_ascii=False)}},
                context={"from": self.whatsapp.display_phone_number, "id": carrier.id})
        else:  # a tap on the row or button the bot's last message offered
            message = patient.message("interactive", {"type": kind, kind: {"id": value, "title": title}},
                                      context={"from": self.whatsapp.display_phone_number, "id": f"wamid.{wa_id}"})
        return json.dumps(patient.payload([message]), ensure_ascii=False).encode()

    def send(self, wa_id: str, step: int) -> None:
        """POST answer ``step`` of ``wa_id``'s intake; raises unless the relay accepted it."""
        import requests

        from connector.channels.whatsapp import sign

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        raw = self.body(wa_id, step)
        response = session.post(self.url, data=raw, timeout=30, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, SECRETS["whatsapp_app_secret"])})
        response.raise_for_status()


class RepliesSeen(list[Any]):
    """The WhatsApp emulator's list of sent messages, also counted per recipient, so a patient can wait
    for the bot's answer without scanning every message sent so far."""

    def __init__(self, items: list[Any]) -> None:
        import collections

        super().__init__(items)
        self.per_recipient: collections.Counter[str] = collections.Counter(m.to for m in items)

    def append(self, item: Any) -> None:
        """Keep the message and count it for its recipient."""
        super().append(item)
        self.per_recipient[item.to] += 1
