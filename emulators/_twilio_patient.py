"""The patients of the Twilio emulator: each message kind posted as the form Twilio posts for it.

Written from Twilio's "request to your incoming message webhook URL" reference: every message carries
``MessageSid``/``SmsSid``/``SmsMessageSid``, ``AccountSid``, ``From``, ``To``, ``Body``, ``NumMedia``,
``NumSegments``, ``SmsStatus`` and ``ApiVersion``; WhatsApp adds ``ProfileName``, ``WaId``, ``MessageType``
and, by kind, ``ButtonText``/``ButtonPayload``, ``ListId``/``ListTitle``, ``Latitude``/``Longitude``/
``Address``/``Label``, ``MediaUrl{n}``/``MediaContentType{n}`` and the ``Referral*`` fields of an ad; SMS with
Advanced Opt-Out adds ``OptOutType``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulators.twilio import TwilioEmulator


@dataclass
class MediaFile:
    """A file a patient sent: served at its ``MediaUrl`` (Basic auth), then at a short link (``token``)."""

    sid: str
    message_sid: str
    content: bytes
    mime_type: str
    token: str


@dataclass
class Patient:
    """A patient writing from ``address`` (``whatsapp:+…`` or ``+…``) to the account's sender ``to``."""

    emulator: TwilioEmulator
    address: str
    to: str
    name: str

    @property
    def whatsapp(self) -> bool:
        """Whether the patient writes on WhatsApp (else by SMS)."""
        return self.address.startswith("whatsapp:")

    def _form(self, message_sid: str, body: str, extra: list[tuple[str, str]], *,
              kind: str = "text", media: int = 0) -> list[tuple[str, str]]:
        form = [("SmsMessageSid", message_sid), ("NumMedia", str(media)), ("ProfileName", self.name),
                ("SmsSid", message_sid), ("SmsStatus", "received"), ("Body", body), ("To", self.to),
                ("NumSegments", "1"), ("MessageSid", message_sid), ("AccountSid", self.emulator.account_sid),
                ("From", self.address), ("ApiVersion", "2010-04-01")]
        if self.whatsapp:
            form += [("WaId", self.address.removeprefix("whatsapp:+")), ("MessageType", kind),
                     ("ReferralNumMedia", "0")]
        else:
            form = [(k, v) for k, v in form if k != "ProfileName"]
        return form + extra

    def _send(self, body: str, extra: list[tuple[str, str]] | None = None, *, kind: str = "text",
              media: int = 0, message_sid: str | None = None) -> int:
        from emulators.twilio import sid

        message_sid = message_sid or sid("MM" if media else "SM")
        self.emulator.last_inbound[self.address] = time.time()
        return self.emulator.post_webhook(self._form(message_sid, body, extra or [], kind=kind, media=media))

    def send_text(self, text: str, *, referral: dict[str, str] | None = None, message_sid: str | None = None) -> int:
        """A text message (with a click-to-WhatsApp ad's ``Referral*`` fields, named without the prefix)."""
        extra = [(f"Referral{k}", v) for k, v in (referral or {}).items()]
        return self._send(text, extra, message_sid=message_sid)

    def press_button(self, payload: str, text: str) -> int:
        """A quick-reply button of a content template."""
        return self._send(text, [("ButtonText", text), ("ButtonPayload", payload)], kind="button")

    def choose_from_list(self, item_id: str, title: str) -> int:
        """A row of a list-picker content template."""
        return self._send(title, [("ListId", item_id), ("ListTitle", title)], kind="interactive")

    def share_location(self, latitude: float, longitude: float, label: str | None = None,
                       address: str | None = None) -> int:
        """A location pin (with the place's label and address when they chose one)."""
        extra = [("Latitude", str(latitude)), ("Longitude", str(longitude))]
        extra += [("Label", label)] if label else []
        extra += [("Address", address)] if address else []
        return self._send("", extra, kind="location")

    def send_media(self, content: bytes, mime_type: str, caption: str = "") -> int:
        """A file (its bytes kept by the emulator and served at the ``MediaUrl0`` the form names)."""
        from emulators.twilio import API, sid

        message_sid, media_sid = sid("MM"), sid("ME")
        self.emulator.media[media_sid] = MediaFile(media_sid, message_sid, content, mime_type, secrets.token_urlsafe(16))
        url = f"{self.emulator.url}/{API}/Accounts/{self.emulator.account_sid}/Messages/{message_sid}/Media/{media_sid}"
        kind = mime_type.split("/", 1)[0] if mime_type.split("/", 1)[0] in ("image", "audio", "video") else "document"
        return self._send(caption, [("MediaContentType0", mime_type), ("MediaUrl0", url)], kind=kind, media=1,
                          message_sid=message_sid)

    def stop(self) -> int:
        """SMS ``STOP``: Twilio unsubscribes the patient (21610 from then on) and tells the relay."""
        self.emulator.opted_out.add(self.address)
        return self._send("STOP", [("OptOutType", "STOP")])

    def start(self) -> int:
        """SMS ``START``: subscribed again."""
        self.emulator.opted_out.discard(self.address)
        return self._send("START", [("OptOutType", "START")])
