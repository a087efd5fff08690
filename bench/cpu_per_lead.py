"""CPU the whole product spends per completed lead, and the exchanges a lead takes, on the product as
production runs it: the web app under the production gunicorn command and ``chat2crm worker`` processes,
with the WhatsApp and HubSpot emulators (no added latency) answering in this process.

Patients go through the complete health intake (the default flow) over WhatsApp, several at a time,
each answering once the bot has asked, with the bot's WhatsApp form published (``chat2crm forms``) as a
clinic on Meta's Cloud API runs it: the city, name, e-mail and contact language come in one form.
The CPU counted (user + system, from /proc) is that of the gunicorn processes and of the worker processes (the
supervisor, its job processes and their children), from the first message until every queue is empty and every
lead's note is in HubSpot; a couple of patients go through first, uncounted, so the one-off work of the first
lead (the CRM's tag options) is not in the figures. The emulators and the patients' side (this process) are not counted.

Baselines in the same run:

- ``bench._direct_relay``, the least a relay can do ("webhook → contact, deal, note" with three synchronous
  HubSpot calls, as a generic workflow tool does it), served by the very same gunicorn command and fed one
  webhook per lead;
- the floor of this flow's exchanges: ``bench._bare_app`` (a Flask endpoint that answers 200 and does
  nothing) under the same command, posted as many webhooks per lead as the measured leads brought, the way
  they came (the patients' messages over kept-alive connections, ``AT_ONCE`` at a time; Meta's statuses over a
  new connection each, from one thread), plus the direct relay's lead. Whatever the relay does with them, a
  lead that takes that many webhooks costs at least that much CPU on this server.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from rq import Queue
from rq.registry import StartedJobRegistry

from bench._common import (
    FORM_INTAKE,
    SECRETS,
    IntakeSender,
    RelayStack,
    RepliesSeen,
    cpu_seconds,
    serve_gunicorn,
    stop_group,
)
from connector.channels.whatsapp import sign

LEADS, WARM_UP, AT_ONCE = 100, 2, 10  # measured leads, uncounted ones first, patients chatting at once
WEB_WORKERS, WORKER_PROCESSES = 2, 2
GOAL_MS = 25.0
IDLE_SECONDS = 5.0


def idle(stack: RelayStack) -> bool:
    """No job queued, scheduled or running on any of the relay's queues."""
    for queue in Queue.all(connection=stack.redis):
        if queue.count or StartedJobRegistry(queue=queue).count or queue.scheduled_job_registry.count:
            return False
    return True


def intake(wa_id: str, sender: IntakeSender, replies: RepliesSeen) -> None:
    """One patient's whole intake, each answer sent once the bot has answered the previous one."""
    for step in range(len(sender.steps)):
        expected = replies.per_recipient[wa_id] + 1
        sender.send(wa_id, step)
        deadline = time.monotonic() + 120
        while replies.per_recipient[wa_id] < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer to step {step} of the intake")
            time.sleep(0.01)


def run_intakes(stack: RelayStack, sender: IntakeSender, replies: RepliesSeen, first: int, count: int) -> None:
    """``count`` patients through the intake, ``AT_ONCE`` at a time; returns once their notes are in HubSpot
    and the queues are empty."""
    notes = stack.crm.count("notes")
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        list(pool.map(lambda i: intake(f"4918{i:08d}", sender, replies), range(first, first + count)))
    deadline = time.monotonic() + 300
    while (stack.crm.count("notes") < notes + count or not idle(stack)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if stack.crm.count("notes") < notes + count:
        raise RuntimeError("leads missing in HubSpot")


def lead_webhook(i: int) -> bytes:
    """The one webhook per lead the baseline relay is fed: a patient's enquiry."""
    sender = f"4919{i:08d}"
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": SECRETS["whatsapp_phone_number_id"]},
            "contacts": [{"profile": {"name": "Bench Patient"}, "wa_id": sender}],
            "messages": [{"from": sender, "id": f"wamid.direct{i}", "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": "Hair transplant, Berlin, 10-17 March"}}]}}]}]}).encode()


_local = threading.local()


def _session() -> requests.Session:
    """This thread's kept-alive session (each poster thread keeps its connection, as a patient's does)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def baseline(stack: RelayStack) -> tuple[float, int]:
    """(CPU seconds the direct relay's gunicorn processes spent on ``LEADS`` webhooks, HubSpot calls made)."""
    proc, url = serve_gunicorn("bench._direct_relay:app", stack.env, WEB_WORKERS)
    def post(i: int) -> None:
        raw = lead_webhook(i)
        response = _session().post(f"{url}/webhooks/whatsapp", data=raw, timeout=60, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, SECRETS["whatsapp_app_secret"])})
        response.raise_for_status()

    try:
        with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
            list(pool.map(post, range(WARM_UP)))
            time.sleep(1.0)
            calls, before = len(stack.crm.calls), cpu_seconds(proc.pid)
            list(pool.map(post, range(WARM_UP, WARM_UP + LEADS)))
        return cpu_seconds(proc.pid) - before, len(stack.crm.calls) - calls
    finally:
        stop_group(proc)


#: a status webhook as Meta posts it (a reply delivered), for the floor's posts
STATUS_SAMPLE = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
    "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "1"},
    "statuses": [{"id": "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjdBRTM5RkQ1QUY3RjcxNkQ1QQA=", "status": "delivered",
                  "timestamp": "1700000000", "recipient_id": "491511234567",
                  "conversation": {"id": "c0ffee", "origin": {"type": "service"}},
                  "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"}}]}}]}]}


def bare_floor(stack: RelayStack, messages: int, statuses: int) -> float:
    """CPU seconds the same gunicorn command spends answering ``messages`` and ``statuses`` webhooks from a
    bare endpoint, posted as the measured leads' were."""
    proc, url = serve_gunicorn("bench._bare_app:app", stack.env, WEB_WORKERS)
    hook = f"{url}/webhooks/whatsapp"
    message, status = lead_webhook(0), json.dumps(STATUS_SAMPLE).encode()

    def post_message(_: int) -> None:
        _session().post(hook, data=message, timeout=60, headers={"Content-Type": "application/json"}).raise_for_status()

    def post_statuses(count: int) -> None:
        for _ in range(count):  # as the emulator posts Meta's statuses: a new connection each
            requests.post(hook, data=status, timeout=60, headers={"Content-Type": "application/json"}).raise_for_status()

    try:
        with ThreadPoolExecutor(max_workers=AT_ONCE + 1) as pool:
            list(pool.map(post_message, range(AT_ONCE * 2)))  # every connection open, every thread started
            time.sleep(1.0)
            before = cpu_seconds(proc.pid)
            side = pool.submit(post_statuses, statuses)
            list(pool.map(post_message, range(messages)))
            side.result()
        return cpu_seconds(proc.pid) - before
    finally:
        stop_group(proc)


def main() -> None:
    stack = RelayStack(web_workers=WEB_WORKERS, worker_processes=WORKER_PROCESSES)
    try:
        replies = stack.whatsapp.sent = RepliesSeen(stack.whatsapp.sent)
        sender = IntakeSender(stack.whatsapp, stack.url, FORM_INTAKE)
        run_intakes(stack, sender, replies, 0, WARM_UP)
        time.sleep(1.0)
        idle0 = sum(stack.cpu_seconds())
        time.sleep(IDLE_SECONDS)  # what the product spends doing nothing, for reading the figures
        idle_rate = (sum(stack.cpu_seconds()) - idle0) / IDLE_SECONDS
        web0, workers0 = stack.cpu_seconds()
        statuses0 = len(stack.whatsapp.statuses.posted)  # Meta's status webhooks (sent, delivered…) reach the web too
        sent0, read0, channel0, crm0 = (len(stack.whatsapp.sent), len(stack.whatsapp.read), stack.whatsapp.calls,
                                        len(stack.crm.calls))
        start = time.perf_counter()
        run_intakes(stack, sender, replies, WARM_UP, LEADS)
        elapsed = time.perf_counter() - start
        web1, workers1 = stack.cpu_seconds()
        replies_sent, receipts = len(stack.whatsapp.sent) - sent0, len(stack.whatsapp.read) - read0
        statuses = len(stack.whatsapp.statuses.posted) - statuses0
        channel_calls, crm_calls = stack.whatsapp.calls - channel0, len(stack.crm.calls) - crm0
        direct_cpu, direct_calls = baseline(stack)
        floor_cpu = bare_floor(stack, LEADS * len(FORM_INTAKE), statuses)
    finally:
        stack.stop()
    web, workers = web1 - web0, workers1 - workers0
    per_lead = (web + workers) * 1000 / LEADS
    webhooks = LEADS * len(FORM_INTAKE)
    direct = direct_cpu * 1000 / LEADS
    load = os.getloadavg()
    print(f"{LEADS} complete health intakes over WhatsApp, with the bot's WhatsApp form ({len(FORM_INTAKE)} messages "
          f"each, {AT_ONCE} patients at a time) "
          f"in {elapsed:.1f} s; HubSpot emulator, no added latency; web: gunicorn ({WEB_WORKERS} processes), "
          f"workers: `chat2crm worker --processes {WORKER_PROCESSES}`; {os.cpu_count()} cores; "
          f"load average after (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"chat2crm CPU per lead: {per_lead:.1f} ms (web {web * 1000 / LEADS:.1f} ms + workers "
          f"{workers * 1000 / LEADS:.1f} ms); per inbound webhook: {(web + workers) * 1000 / webhooks:.2f} ms "
          f"(goal: at most about {GOAL_MS:.0f} ms per lead)")
    print(f"of which idle time (the product at rest spends {idle_rate * 1000:.1f} ms CPU per second): "
          f"{idle_rate * elapsed * 1000 / LEADS:.1f} ms per lead")
    print(f"exchanges per lead: {webhooks / LEADS:.0f} inbound message webhooks and {statuses / LEADS:.1f} status "
          f"webhooks; {channel_calls / LEADS:.1f} WhatsApp API "
          f"calls ({replies_sent / LEADS:.1f} replies, {receipts / LEADS:.1f} read receipts); "
          f"{crm_calls / LEADS:.1f} HubSpot calls")
    print(f"baseline, direct relay (1 webhook → contact, deal, note; same gunicorn command): {direct:.1f} ms CPU "
          f"per lead, {direct_calls / LEADS:.1f} HubSpot calls per lead")
    floor = floor_cpu * 1000 / LEADS + direct
    print(f"floor of this flow's exchanges: the same {(webhooks + statuses) / LEADS:.0f} webhooks a lead to a bare "
          f"endpoint under the same command, {floor_cpu * 1000 / LEADS:.1f} ms, plus the direct relay's lead: "
          f"{floor:.1f} ms per lead (the replies the bot sends come on top)")
    print(f"ratio chat2crm / baseline: {per_lead / direct:.1f}; chat2crm / floor: {per_lead / floor:.1f}")


if __name__ == "__main__":
    main()
