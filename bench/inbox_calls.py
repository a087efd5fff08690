"""API calls per message after the bot, in each direction, for HubSpot's inboxes (the ``custom_channel``
connected to a conversations inbox or to a help desk, and the ``timeline``), counted where they arrive: at
the HubSpot and WhatsApp emulators, over real HTTP.

The relay runs in this process as the end-to-end tests run it: its web app served over HTTP, rq jobs run to
completion by a burst worker, a private Redis. For each set-up, N patients write on WhatsApp and ask for a
person (a handoff: the lead is written, the bot's history goes to the agents); half are new, half returning
patients whose contact a coordinator owns (which decides how the new thread is assigned). Then M rounds
follow: every patient writes once (a text; every K-th round a photo), every agent answers once (in the custom
channel, the photo rounds' answers carry a PDF), every patient reads the answers. Each phase runs until
nothing is left to do, so every call is counted against the phase that caused it.

The baseline, measured in the same run, is a new patient's lead itself (the look-up at the first message and
the lead's write, as ``bench/run calls_per_lead`` counts the write): each figure is also given as a share of it.

    python bench/inbox_calls.py [--conversations N] [--rounds M] [--photo-every K]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis
import requests
from rq.registry import ScheduledJobRegistry
from ruamel.yaml import YAML

from adapters.hubspot.inbox import HubSpotInbox
from adapters.hubspot.timeline import REPLY_PROPERTY, HubSpotTimelineInbox
from bench._common import SECRETS, free_port, settings_for
from connector import queues
from connector.app import create_app
from connector.redis_server import EmbeddedRedis
from connector.resources import DEFAULT_CONFIG, shipped
from connector.runtime import Runtime, set_current_runtime
from connector.worker import run_worker
from core.inbox import thread_id
from demo.stack import hubspot_app_environment, install_crm_app, prepare_crm
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from emulators.whatsapp import WhatsAppEmulator


@dataclass(frozen=True)
class Scenario:
    """One way an account is set up: the inbox mode, and the HubSpot inbox the channel is connected to."""

    name: str
    mode: str
    #: ``options.inbox_id`` (None: the one ``crm setup`` picks, the account's conversations inbox)
    inbox_id: str | None = None


#: the emulated account's help desk (no routing rule of its own: the relay assigns threads to the contact's owner)
HELP_DESK = "147959635"
SCENARIOS = (Scenario("custom_channel, conversations inbox", "custom_channel"),
             Scenario("custom_channel, help desk", "custom_channel", HELP_DESK),
             Scenario("timeline", "timeline"))
#: the owner of returning patients' contacts (the emulated account's coordinator)
OWNER_ID = "75001"
#: what the patient says: a first message, then the words that ask for a person (the meeting flow's)
OPENING, HANDOFF = "Hello, I would like a meeting", "talk to a person"
PDF = b"%PDF-1.4\n% aftercare leaflet\n" + b"0" * 2048
#: the CRM's calls that serve the inbox; every other call of the handoff phase is the lead's own
INBOX_KINDS = frozenset({"thread message", "message status", "channel account read", "file upload",
                         "file signed URL", "OAuth token", "thread read", "thread assigned", "owner read",
                         "contacts read"})


# -- counting at the door ------------------------------------------------------------------------------
class Tally:
    """Counts the requests a WSGI app serves, by the kind ``classify`` names (None: not counted)."""

    def __init__(self, app: Any, classify: Callable[[str, str, bytes], str | None]) -> None:
        self.app, self.classify = app, classify
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # the app reads the same bytes
        kind = self.classify(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), body)
        if kind:
            with self.lock:
                self.counts[kind] += 1
        return self.app(environ, start_response)

    def snapshot(self) -> Counter[str]:
        with self.lock:  # a copy: the servers' threads go on counting
            return Counter(self.counts)


def count_requests(flask_app: Any, classify: Callable[[str, str, bytes], str | None]) -> Tally:
    """Put a :class:`Tally` in front of a Flask app (it can be done while the app is served)."""
    tally = Tally(flask_app.wsgi_app, classify)
    flask_app.wsgi_app = tally
    return tally


_CRM_KINDS: tuple[tuple[str, str, str], ...] = (
    ("POST", r"/conversations/v3/custom-channels/[^/]+/messages", "thread message"),
    ("PATCH", r"/conversations/v3/custom-channels/[^/]+/messages/[^/]+", "message status"),
    ("GET", r"/conversations/v3/custom-channels/[^/]+/channel-accounts/[^/]+", "channel account read"),
    ("POST", r"/files/v3/files", "file upload"),
    ("GET", r"/files/v3/files/[^/]+/signed-url", "file signed URL"),
    ("POST", r"/oauth/v1/token", "OAuth token"),
    ("GET", r"/conversations/v3/conversations/threads/[^/]+", "thread read"),
    ("PUT", r"/conversations/conversations/[^/]+/threads/[^/]+/assignee", "thread assigned"),
    ("GET", r"/crm/v3/owners/[^/]+", "owner read"),
    ("POST", r"/crm/v3/objects/(\w+)/search", "{0} search"),
    ("POST", r"/crm/v3/objects/(\w+)/batch/(\w+)", "{0} batch {1}"),
    ("POST", r"/crm/v3/objects/(\w+)", "{0} create"),
    ("PATCH", r"/crm/v3/objects/(\w+)/[^/]+", "{0} update"),
    ("GET", r"/crm/v3/objects/(\w+)/[^/]+", "{0} read"),
    ("GET", r"/crm/v3/properties/(\w+)/[^/]+", "{0} property read"),
    ("PATCH", r"/crm/v3/properties/(\w+)/[^/]+", "{0} property update"),
    ("\\w+", r"/crm/v4/objects/(\w+)/[^/]+/associations/(\w+)(/.*)?", "{0}-{1} associations"),
)


def crm_kind(method: str, path: str, _body: bytes) -> str | None:
    """The kind of a call to HubSpot (the emulator's own control paths are not the relay's calls)."""
    if path.startswith("/_emulator"):
        return None
    for verb, pattern, name in _CRM_KINDS:
        found = re.fullmatch(pattern, path)
        if found and re.fullmatch(verb, method):
            return name.format(*found.groups())
    return method + " " + re.sub(r"/\d+", "/{id}", path)


def whatsapp_kind(method: str, path: str, body: bytes) -> str | None:
    """The kind of a call to WhatsApp's Cloud API."""
    if path.startswith("/_emulator"):
        return None
    if method == "POST" and path.endswith("/messages"):
        return "read receipt" if b'"status"' in body and json.loads(body).get("status") == "read" else "message"
    if path.startswith("/whatsapp_business/attachments"):
        return "media download"
    return "media URL" if method == "GET" else f"{method} {path}"


def webhook_kind(method: str, path: str, body: bytes) -> str | None:
    """The kind of a webhook the relay received."""
    if path == "/webhooks/whatsapp" and method == "POST":
        value = json.loads(body)["entry"][0]["changes"][0]["value"]
        return "WhatsApp status" if "statuses" in value else "WhatsApp message"
    if path.startswith("/crm/"):
        return "HubSpot"
    return None


# -- the relay and its emulators -----------------------------------------------------------------------
@dataclass
class Phase:
    """What one kind of message cost: how many there were and the calls they caused."""

    messages: int = 0
    crm: Counter[str] = field(default_factory=Counter)
    channel: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)


class InboxStack:
    """A private Redis, the WhatsApp and HubSpot emulators, and the relay with HubSpot's ``mode`` inbox set up as
    an admin sets it up (``crm setup``; for the custom channel the app installed through the relay's page and
    ``crm setup`` run again; for the timeline the reply property's webhook subscribed)."""

    def __init__(self, scenario: Scenario, directory: Path) -> None:
        self.scenario, self.mode = scenario, scenario.mode
        self.redis_server = EmbeddedRedis().start()
        self.served: list[ServedApp] = []
        app = hubspot_app_environment() if self.mode == "custom_channel" else {}
        self.whatsapp = WhatsAppEmulator(access_token=SECRETS["whatsapp_access_token"],
                                         phone_number_id=SECRETS["whatsapp_phone_number_id"],
                                         app_secret=SECRETS["whatsapp_app_secret"], status_webhooks=True)
        options: dict[str, Any] = {"webhook_retry_delay": 0.05}
        if app:
            options |= {"client_id": app["HUBSPOT_CLIENT_ID"], "client_secret": app["HUBSPOT_CLIENT_SECRET"],
                        "app_id": int(app["HUBSPOT_APP_ID"]), "developer_api_key": app["HUBSPOT_DEVELOPER_API_KEY"]}
        self.hubspot = HubSpotEmulator(SECRETS["hubspot_access_token"], **options)
        self.wa_tally = count_requests(self.whatsapp.app, whatsapp_kind)
        self.crm_tally = count_requests(self.hubspot.app, crm_kind)
        whatsapp_url, hubspot_url = self._serve(self.whatsapp.app), self._serve(self.hubspot.app)
        self.hubspot.public_url = hubspot_url
        try:
            self._set_up(app, whatsapp_url, hubspot_url, directory)
        except BaseException:
            self._shut_down()
            raise

    def _set_up(self, app: dict[str, str], whatsapp_url: str, hubspot_url: str, directory: Path) -> None:
        """Serve the relay and set its inbox up as the admin does."""
        mode, port = self.mode, free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {"REDIS_URL": self.redis_server.url, "PUBLIC_BASE_URL": self.url, "HUBSPOT_API_BASE": hubspot_url,
               "HUBSPOT_APP_BASE": hubspot_url, "HUBSPOT_ACCESS_TOKEN": SECRETS["hubspot_access_token"], **app}
        if not app:  # the timeline's webhooks are signed with the app's client secret, as HubSpot signs them
            env["HUBSPOT_CLIENT_SECRET"] = self.hubspot.client_secret
        mapping, self.hubspot_url = write_mapping(directory, self.scenario.inbox_id), hubspot_url
        settings = settings_for(self.redis_server.url, chat2crm_config=write_config(directory, mapping),
                                whatsapp_api_base=whatsapp_url, telegram_api_base="http://127.0.0.1:9",
                                **{k.lower(): v for k, v in env.items() if k != "REDIS_URL"})
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.runtime = Runtime(settings, redis_client=self.redis)
        set_current_runtime(self.runtime)
        relay = create_app(runtime=self.runtime)
        self.webhook_tally = count_requests(relay, webhook_kind)
        self.served.append(ServedApp(relay, port=port).start())
        self.whatsapp.relay_url = f"{self.url}/webhooks/whatsapp"
        lines = prepare_crm("hubspot", env, mapping)
        if mode == "custom_channel":
            install_crm_app(self.url, "hubspot")
            lines = prepare_crm("hubspot", env, mapping)
            expect(any(line.startswith("connected channel account") for line in lines), f"crm setup said {lines}")
        else:
            expect(any(REPLY_PROPERTY in line for line in lines), f"crm setup said {lines}")
            self.hubspot.subscribe(f"{self.url}/crm/hubspot/webhooks", ("contact.propertyChange", REPLY_PROPERTY))
        wanted = HubSpotInbox if mode == "custom_channel" else HubSpotTimelineInbox
        expect(isinstance(self.runtime.inbox, wanted), f"the relay's inbox is not {mode}")

    def _serve(self, app: Any) -> str:
        served = ServedApp(app).start()
        self.served.append(served)
        return served.url

    def owned_contact(self, wa_id: str) -> None:
        """A contact the clinic already has for this patient, owned by a coordinator (made before anything is
        measured, as the clinic's own data)."""
        made = requests.post(f"{self.hubspot_url}/crm/v3/objects/contacts", timeout=10,
                             headers={"Authorization": f"Bearer {SECRETS['hubspot_access_token']}"},
                             json={"properties": {"chat2crm_contact_key": f"whatsapp:{wa_id}",
                                                  "hubspot_owner_id": OWNER_ID}, "associations": []})
        expect(made.status_code == 201, f"the owned contact was not made: {made.text[:200]}")

    def settle(self, seconds: float = 60.0) -> None:
        """Run the relay's jobs, and let the emulators' webhooks arrive, until nothing is left to do."""
        deadline = time.monotonic() + seconds
        while True:
            self.whatsapp.wait_for_webhooks(seconds)
            expect(self.hubspot.wait_for_deliveries(seconds), "HubSpot's webhooks were not delivered")
            worked = run_worker(self.runtime, burst=True)
            scheduled = sum(ScheduledJobRegistry(queue=q).count for q in self.runtime.queues())
            if not worked and not scheduled and not self.whatsapp.statuses.sender.pending:
                break
            expect(time.monotonic() < deadline, "the relay did not settle")
            if scheduled:
                time.sleep(0.1)  # a retry waits for its time
        failed = list(queues.failed_jobs(self.runtime))
        expect(not failed, f"{len(failed)} job(s) failed: {[queues.reason_of(j) for _q, j in failed][:3]}")

    def measure(self, phase: Phase, items: list[Any], act: Callable[[Any], object], *, counted: bool = True) -> None:
        """Do ``act`` for each item (one message each, unless not ``counted``), settle, and add the calls it
        caused to ``phase``."""
        crm, channel, hooks = self.crm_tally.snapshot(), self.wa_tally.snapshot(), self.webhook_tally.snapshot()
        for item in items:
            act(item)
        self.settle()
        phase.messages += len(items) if counted else 0
        phase.crm += self.crm_tally.snapshot() - crm
        phase.channel += self.wa_tally.snapshot() - channel
        phase.webhooks += self.webhook_tally.snapshot() - hooks

    def _shut_down(self) -> None:
        set_current_runtime(None)
        for served in reversed(self.served):
            served.stop()
        self.redis_server.stop()

    def stop(self) -> None:
        """Stop everything; the emulators must have refused nothing the relay sent."""
        self._shut_down()
        violations = self.hubspot.violations + self.whatsapp.violations
        expect(not violations, f"the emulators refused requests: {violations[:2]}")


def write_mapping(directory: Path, inbox_id: str | None) -> Path:
    """The shipped HubSpot mapping, connected to ``inbox_id`` when one is given."""
    yaml = YAML(typ="rt")
    data = yaml.load(shipped("mappings", "hubspot.yaml").read_text(encoding="utf-8"))
    if inbox_id:
        data["options"]["inbox_id"] = inbox_id
    path = directory / "hubspot.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def write_config(directory: Path, mapping: Path) -> Path:
    """The shipped main configuration on the meeting flow (short: two messages to a handoff), quick retries."""
    yaml = YAML(typ="rt")
    source = shipped(DEFAULT_CONFIG)
    data = yaml.load(source.read_text(encoding="utf-8"))
    for key in ("flows", "campaigns"):
        data[key] = str(source.parent / data[key])
    data["mapping"] = str(mapping)
    data["default_flow"] = "meeting_request"
    data["delivery"]["backoff_base_seconds"], data["delivery"]["backoff_max_seconds"] = 0.05, 0.5
    path = directory / "chat2crm.yaml"
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def expect(condition: bool, problem: str) -> None:
    """Stop the benchmark when what it measures did not happen (a figure of a broken run means nothing)."""
    if not condition:
        raise SystemExit(f"inbox_calls: {problem}")


# -- the conversations ---------------------------------------------------------------------------------
def run(scenario: Scenario, conversations: int, rounds: int, photo_every: int) -> dict[str, Phase]:
    """Play the conversations through the scenario's inbox; the calls of each kind of message."""
    phases = {name: Phase() for name, _label in ROWS}
    with tempfile.TemporaryDirectory() as tmp:
        stack = InboxStack(scenario, Path(tmp))
        try:
            patients = [stack.whatsapp.patient(f"49151{70000000 + n:08d}", f"Patient {n}") for n in range(conversations)]
            returning, new = patients[: conversations // 2], patients[conversations // 2:]
            for patient in returning:  # known to the clinic: a contact a coordinator owns
                stack.owned_contact(patient.identity)
            for group, phase in ((new, phases["lead new"]), (returning, phases["lead owned"])):
                # the look-up of the patient happens at the first message, the lead's write at the handoff
                stack.measure(phase, group, lambda p: posted(p.send_text(OPENING)), counted=False)
                stack.measure(phase, group, lambda p: posted(p.send_text(HANDOFF)))
            expect(stack.hubspot.count("tasks") == conversations, "not every conversation was handed over")
            routes = agents_routes(stack, patients)
            for number in range(1, rounds + 1):
                photo = number % photo_every == 0
                stack.measure(phases["patient photo" if photo else "patient text"], patients,
                              partial(patient_writes, photo, f"Question {number}, please answer"))
                with_file = photo and scenario.mode == "custom_channel"
                stack.measure(phases["agent file" if with_file else "agent text"], routes,
                              partial(answer, stack, f"Answer {number}", with_file))
                stack.measure(phases["patient reads"], patients, lambda p: p.read_all())
            check_delivered(stack, patients, rounds)
        finally:
            stack.stop()
    return phases


def posted(status: int) -> None:
    """A patient's webhook was taken (the relay answered 200)."""
    expect(status == 200, f"the relay answered a patient's webhook with {status}")


def agents_routes(stack: InboxStack, patients: Iterable[Any]) -> list[str]:
    """Where each patient's agent answers: the HubSpot thread (custom channel), or the contact (timeline)."""
    if stack.mode == "custom_channel":
        by_thread = {t["integrationThreadId"]: t["id"] for t in stack.hubspot.inbox_view()}
        account = SECRETS["whatsapp_phone_number_id"]
        found = [by_thread.get(thread_id(f"whatsapp:{account}:{p.wa_id}")) for p in patients]
    else:
        by_key = {c["properties"].get("chat2crm_contact_key"): c["id"] for c in stack.hubspot.records("contacts")}
        found = [by_key.get(f"whatsapp:{p.wa_id}") for p in patients]
    expect(all(found), "a conversation has no thread (or contact) in HubSpot")
    return [str(f) for f in found]


def patient_writes(photo: bool, text: str, patient: Any) -> None:
    """A patient sends a photo, or ``text``."""
    posted(patient.send_image() if photo else patient.send_text(text))


def answer(stack: InboxStack, text: str, with_file: bool, route: str) -> None:
    """An agent answers in HubSpot: in the thread (with a PDF from the file manager), or in the contact's
    reply property."""
    if stack.mode == "custom_channel":
        files = [stack.hubspot.add_file("aftercare.pdf", PDF, "application/pdf")["id"]] if with_file else []
        stack.hubspot.agent_reply(route, text, files)
    else:
        stack.hubspot.edit_contact(route, {REPLY_PROPERTY: f"{text} ({route})"})


def check_delivered(stack: InboxStack, patients: list[Any], rounds: int) -> None:
    """Every patient got every answer, and (custom channel) every message is in its thread."""
    for patient in patients:
        answers = [m for m in stack.whatsapp.messages_to(patient.wa_id) if m.tracking]
        expect(len(answers) == rounds, f"a patient got {len(answers)} of {rounds} answers")
    if stack.mode == "custom_channel":
        incoming = [m for t in stack.hubspot.inbox_view() for m in t["messages"] if m["direction"] == "INCOMING"]
        expect(len(incoming) >= len(patients) * (rounds + 2), "patients' messages are missing from the threads")


# -- the table -----------------------------------------------------------------------------------------
ROWS = (("lead new", "a handoff, new patient (lead, history)"),
        ("lead owned", "a handoff, patient with an owned contact"), ("patient text", "patient's text message"),
        ("patient photo", "patient's photo"), ("agent text", "agent's text reply"),
        ("agent file", "agent's reply with a PDF"), ("patient reads", "patient reads a reply"))


def breakdown(counts: Counter[str], messages: int) -> str:
    return ", ".join(f"{kind} {n / messages:.2f}" for kind, n in counts.most_common()) or "none"


def report(scenario: Scenario, phases: dict[str, Phase], conversations: int, rounds: int, photo_every: int) -> None:
    """Print one inbox's figures per message: CRM calls (and as a share of the lead's), WhatsApp calls, webhooks
    the relay received, each then by kind."""
    lead = phases["lead new"]
    # a property read and updated once per run (a new tag value) is left out: it is not each lead's cost
    once = sum(n for kind, n in lead.crm.items() if " property " in kind)
    baseline = (sum(n for kind, n in lead.crm.items() if kind not in INBOX_KINDS) - once) / max(lead.messages, 1)
    files = "; the agents answer those with a PDF" if scenario.mode == "custom_channel" else ""
    print(f"hubspot {scenario.name}: {conversations} conversations to a handoff (half of them returning patients "
          f"whose contact has an owner), then {rounds} rounds (a photo every {photo_every}{files})")
    print(f"  {'per':44} {'CRM':>6} {'÷lead':>6} {'WhatsApp':>9} {'webhooks in':>12}")
    for name, label in ROWS:
        phase = phases[name]
        if not phase.messages:
            continue
        crm, channel, hooks = (sum(c.values()) / phase.messages for c in (phase.crm, phase.channel, phase.webhooks))
        print(f"  {label:44} {crm:6.2f} {crm / baseline:6.2f} {channel:9.2f} {hooks:12.2f}")
        print(f"      CRM: {breakdown(phase.crm, phase.messages)}")
        print(f"      WhatsApp: {breakdown(phase.channel, phase.messages)}; "
              f"webhooks in: {breakdown(phase.webhooks, phase.messages)}")
    after = sum(sum(phases[n].crm.values()) for n in ("patient text", "patient photo", "agent text", "agent file",
                                                      "patient reads")) / max(conversations, 1)
    print(f"  baseline: a new patient's lead, its own CRM calls (look-up and write) {baseline:.2f}"
          f"{f' (and {once} in the run for a new tag value)' if once else ''}")
    print(f"  a conversation after its handoff ({rounds} messages each way, every reply read): {after:.2f} CRM "
          f"calls, {after / baseline:.2f} × its lead")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--photo-every", type=int, default=4)
    args = parser.parse_args(argv)
    expect(args.conversations >= 2, "at least 2 conversations (a new patient and a returning one)")
    for scenario in SCENARIOS:
        started = time.monotonic()
        phases = run(scenario, args.conversations, args.rounds, args.photo_every)
        report(scenario, phases, args.conversations, args.rounds, args.photo_every)
        print(f"  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
