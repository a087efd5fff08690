"""The demo's other channels: WhatsApp through Twilio, Messenger, Instagram and LINE, each on its emulator.

``chat2crm demo`` enables their plug-ins (``CHAT2CRM_CHANNELS``) with :func:`channel_environment`'s fresh
credentials, starts their emulators with the same credentials (:func:`start_channels`, in the demo's own
process) and, once the relay answers, points the emulators' webhooks at it (:meth:`RunningChannels.connect`). The
relay's clients reach the emulators through the settings a deployment sets (``TWILIO_API_BASE``,
``META_MESSAGING_API_BASE``, ``LINE_API_BASE``), and the patients' messages reach the relay as the vendors' signed
webhooks, so each channel works as in production.

The page's phone plays these patients through :data:`blueprint` (``/demo/api/channels…``), which passes each
message to the emulator's :class:`demo.channel_desks.PatientDesk` and reads the chat back from it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, request

from demo.channel_desks import PatientDesk
from demo.providers import whatsapp_view

blueprint = Blueprint("demo_channels", __name__)

#: the channels this module adds to the page's picker: channel -> (its emulator in the demo, the picker's label)
CHANNELS: dict[str, tuple[str, str]] = {
    "twilio": ("twilio", "WhatsApp through Twilio"),
    "messenger": ("meta", "Messenger"),
    "instagram": ("meta", "Instagram"),
    "line": ("line", "LINE"),
}
#: every channel the demo's relay serves
DEMO_CHANNELS = "whatsapp,telegram,twilio,messenger,instagram,line"
#: the Twilio sender the demo's patients write to (Twilio's sandbox number)
TWILIO_SENDER = "whatsapp:+14155238886"


def channel_environment() -> dict[str, str]:
    """Fresh credentials of the demo's Twilio account, Meta app (Page and Instagram account) and LINE channel, and
    ``CHAT2CRM_CHANNELS`` naming every channel the demo serves."""
    return {
        "CHAT2CRM_CHANNELS": DEMO_CHANNELS,
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "TWILIO_FROM": TWILIO_SENDER,
        "META_MESSAGING_APP_SECRET": secrets.token_hex(16),
        "META_MESSAGING_VERIFY_TOKEN": secrets.token_urlsafe(12),
        "META_MESSAGING_PAGE_ACCESS_TOKEN": "EAAdemomsg" + secrets.token_urlsafe(24),
        "META_MESSAGING_PAGE_ID": "104729412345678",
        "META_MESSAGING_INSTAGRAM_ID": "17841405822304914",
        "LINE_CHANNEL_SECRET": secrets.token_hex(16),
        "LINE_CHANNEL_ACCESS_TOKEN": secrets.token_urlsafe(32),
    }


@dataclass
class RunningChannels:
    """The channel emulators the demo serves, their patients, and the environment that points the relay at them."""

    desks: dict[str, PatientDesk] = field(default_factory=dict)
    served: list[Any] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    def connect(self, relay_base: str) -> None:
        """Point every emulator's webhooks (and Twilio's status callbacks' signatures) at the relay."""
        for desk in self.desks.values():
            desk.connect(relay_base)

    def stop(self) -> None:
        """Stop serving the emulators (Twilio's status callbacks and Meta's webhooks stop with them)."""
        for served in reversed(self.served):
            served.stop()
        self.served.clear()
        for desk in self.desks.values():
            sender = getattr(desk.emulator, "callbacks", None) or getattr(desk.emulator, "sender", None)
            if sender is not None:
                sender.close()


def start_channels(env: dict[str, str], relay_base: str) -> RunningChannels:
    """Start the Twilio, Messenger Platform and LINE emulators with the credentials of :func:`channel_environment`
    found in ``env``, each with its patients' desk.

    Args:
        env: the demo's environment; its ``CHAT2CRM_DEMO_EMULATORS`` gains the emulators' addresses.
        relay_base: the relay's base URL (``TWILIO_PUBLIC_BASE_URL``: what Twilio's signatures cover).

    Returns:
        The emulators and the environment to add (each channel's API base, and the emulators' addresses).
    """
    # the emulators need the demo extra: imported only once the command has checked for it
    from emulators.line import LineEmulator
    from emulators.meta_messaging import MetaMessagingEmulator
    from emulators.server import ServedApp
    from emulators.twilio import TwilioEmulator

    twilio = TwilioEmulator(env["TWILIO_ACCOUNT_SID"], env["TWILIO_AUTH_TOKEN"])
    meta = MetaMessagingEmulator(page_access_token=env["META_MESSAGING_PAGE_ACCESS_TOKEN"],
                                 app_secret=env["META_MESSAGING_APP_SECRET"],
                                 page_id=env["META_MESSAGING_PAGE_ID"], instagram_id=env["META_MESSAGING_INSTAGRAM_ID"])
    line = LineEmulator(channel_secret=env["LINE_CHANNEL_SECRET"], access_token=env["LINE_CHANNEL_ACCESS_TOKEN"])
    running = RunningChannels()
    urls: dict[str, str] = {}
    for kind, emulator in (("twilio", twilio), ("meta", meta), ("line", line)):
        desk = PatientDesk(kind, emulator)
        desk.install(emulator.app)
        served = ServedApp(emulator.app).start()
        running.served.append(served)
        running.desks[kind] = desk
        urls[kind] = served.url
    twilio.url = urls["twilio"]  # the media URLs it hands out
    emulators = json.loads(env.get("CHAT2CRM_DEMO_EMULATORS") or "{}")
    emulators["channels"] = {channel: urls[kind] for channel, (kind, _label) in CHANNELS.items()}
    running.environment = {
        "TWILIO_API_BASE": urls["twilio"], "TWILIO_PUBLIC_BASE_URL": relay_base,
        "META_MESSAGING_API_BASE": urls["meta"], "META_MESSAGING_INSTAGRAM_API_BASE": urls["meta"],
        "LINE_API_BASE": urls["line"], "LINE_DATA_API_BASE": urls["line"],
        "CHAT2CRM_DEMO_EMULATORS": json.dumps(emulators),
    }
    return running


# -- the page's side (the relay's web process) ------------------------------------------------------
def _channel_urls() -> dict[str, str]:
    """The emulator of each of these channels (404 when the page is not the demo's, or the demo runs none)."""
    raw = current_app.extensions["chat2crm"].settings.chat2crm_demo_emulators
    urls = json.loads(raw).get("channels") if raw else None
    if not urls:
        abort(404)
    return dict(urls)


def _target(channel: str, patient: str) -> str:
    """The desk's address for ``patient`` on ``channel`` (400 for an unknown channel or a patient not in digits)."""
    urls = _channel_urls()
    if channel not in urls or not patient.isdigit() or len(patient) > 20:
        abort(400)
    return f"{urls[channel]}/_emulator/demo/{channel}/{patient}"


@blueprint.get("/demo/api/channels")
def channels() -> Response:
    """The channels the phone's picker adds to WhatsApp and Telegram, and WhatsApp's provider (its label in the
    picker, and the webhook its emulator posts to)."""
    urls = _channel_urls()
    emulators = json.loads(current_app.extensions["chat2crm"].settings.chat2crm_demo_emulators)
    return jsonify({"channels": [{"id": channel, "label": label} for channel, (_kind, label) in CHANNELS.items()
                                 if channel in urls], "whatsapp": whatsapp_view(emulators)})


@blueprint.post("/demo/api/channels/send")
def send() -> tuple[Response, int]:
    """Play one patient message (text, or a button they pressed) through the channel's emulator: its signed
    webhook reaches the relay."""
    data = request.get_json(silent=True) or {}
    target = _target(str(data.get("channel", "")), str(data.get("patient", "")))
    body: dict[str, Any] = {}
    if isinstance(data.get("text"), str):
        body["text"] = data["text"]
    if isinstance(data.get("button"), dict):
        body["button"] = {k: str(v) for k, v in data["button"].items() if k in ("id", "title", "kind", "display")}
    answer = requests.post(f"{target}/send", json=body, timeout=15)
    return jsonify(answer.json() if answer.ok else {"error": answer.text[:300]}), answer.status_code


@blueprint.get("/demo/api/channels/chat")
def chat() -> Response:
    """The conversation as the patient's phone shows it on that channel."""
    target = _target(request.args.get("channel", ""), request.args.get("patient", ""))
    return jsonify(requests.get(f"{target}/chat", timeout=5).json())
