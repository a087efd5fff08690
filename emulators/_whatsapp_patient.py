"""The WhatsApp emulator's patients: the webhooks Meta sends the relay when one writes, taps or sends a file.

:class:`Patient` builds each message as Meta puts it in ``value.messages`` (a reply to buttons or a list
names the message that carried them in ``context``); a file (photo, document, voice note, sticker) is
stored in the emulator's media first, with its real bytes, type and hash, so the relay can download it as
it would from Meta. The emulator checks, signs and posts every webhook (:meth:`WhatsAppEmulator.post_webhook`).

Identities as Meta's reference describes them: every message names the sender's business-scoped user id
(``from_user_id``, ``contacts[].user_id``) when the patient has one; a patient who adopted a username
shows it (``contacts[].profile.username``) and, when Meta withholds their number, writes without ``from``
or ``wa_id``. A patient may write to any of the account's numbers, react to a message, share contact
cards (their own, or someone else's), and change number (the ``system`` notice ``user_changed_number``,
which carries no ``contacts``).

A patient fills in the form of a WhatsApp Flow the relay sent (:meth:`Patient.fill_flow`): the values are checked as
the WhatsApp client checks them before the form can be submitted, and the relay gets the message Meta sends on
completion (Receiving Flow Response, developers.facebook.com/docs/whatsapp/flows/guides/receiveflowresponse): type
``interactive``, ``interactive.type`` ``nfm_reply`` with ``name`` ``flow``, ``body`` ``Sent`` and the ``complete``
payload and ``flow_token`` as the string ``response_json``, in ``context`` the business number and the flow message.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emulators._samples import sample_jpeg

if TYPE_CHECKING:
    from emulators.whatsapp import Sent, WhatsAppEmulator

#: a 1×1 WebP image: the bytes of a sticker when a test gives none
SAMPLE_WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


def wamid() -> str:
    """A message id shaped like Meta's."""
    return "wamid.HBgM" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")


class Patient:
    """Sends webhooks to the relay as Meta would for one WhatsApp user."""

    def __init__(self, emulator: WhatsAppEmulator, wa_id: str | None, name: str, user_id: str | None, *,
                 username: str | None = None, phone_hidden: bool = False, to: str | None = None) -> None:
        if not wa_id and not user_id:
            raise ValueError("a patient needs wa_id or user_id")
        if phone_hidden and not user_id:
            raise ValueError("a patient whose number Meta withholds is known by user_id")
        self.emulator, self.wa_id, self.name, self.user_id = emulator, wa_id, name, user_id
        self.username, self.phone_hidden = username, phone_hidden
        #: the business number (phone number id) this patient writes to
        self.to = to or emulator.phone_number_id
        self.last_body: bytes | None = None
        #: the media id of the last file this patient sent
        self.last_media_id: str | None = None
        #: the id of the last message this patient sent
        self.last_message_id: str | None = None

    @property
    def identity(self) -> str:
        """The id the patient writes under: the phone digits, else (number withheld) the business-scoped id."""
        return (None if self.phone_hidden else self.wa_id) or self.user_id or ""

    @property
    def shown_wa_id(self) -> str | None:
        """The number Meta shows the business, if any."""
        return None if self.phone_hidden else self.wa_id

    def received(self) -> list[Sent]:
        """What the relay sent this patient, under their number or their business-scoped id, in order."""
        return self.emulator.messages_to(*(i for i in (self.wa_id, self.user_id) if i))

    def message(self, kind: str, content: dict[str, Any] | list[Any], *, referral: dict[str, Any] | None = None,
                context: dict[str, Any] | None = None) -> dict[str, Any]:
        """One message object as Meta puts it in ``value.messages``."""
        msg: dict[str, Any] = {"id": wamid(), "timestamp": str(int(time.time())), "type": kind, kind: content}
        self.last_message_id = msg["id"]
        if self.shown_wa_id:
            msg["from"] = self.shown_wa_id
        if self.user_id:
            msg["from_user_id"] = self.user_id
        if referral:
            msg["referral"] = referral
        if context:
            msg["context"] = context
        return msg

    def payload(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """A complete webhook body carrying ``messages``."""
        profile: dict[str, Any] = {"name": self.name}
        if self.username:
            profile["username"] = self.username
        contact: dict[str, Any] = {"profile": profile}
        if self.shown_wa_id:
            contact["wa_id"] = self.shown_wa_id
        if self.user_id:
            contact["user_id"] = self.user_id
        return self.emulator.envelope({"contacts": [contact], "messages": messages}, phone_number_id=self.to)

    def post(self, body: dict[str, Any] | bytes, *, signature: str | None = None) -> int:
        """POST a body to the relay, signed unless ``signature`` says otherwise; returns the HTTP status.

        A body built here (a dict) is first checked against Meta's webhook description: one Meta would
        never send is recorded in ``violations`` (and still posted: the relay must cope). Raw bytes are
        posted as given.
        """
        if isinstance(body, dict):
            with self.emulator.lock:
                # the arrival time, finer than the payload's whole seconds, orders the demo's chat
                self.emulator.inbound[self.identity].append({**body, "_received_at": time.time()})
        status, self.last_body = self.emulator.post_webhook(body, signature=signature)
        return status

    def redeliver(self) -> int:
        """Send the last webhook again, byte for byte (as Meta does when unsure it was received)."""
        if self.last_body is None:
            raise ValueError("nothing was sent yet")
        return self.post(self.last_body)

    def send_text(self, text: str, *, referral: dict[str, Any] | None = None) -> int:
        """Write ``text`` (the first message after an ad carries its ``referral``)."""
        return self.post(self.payload([self.message("text", {"body": text}, referral=referral)]))

    def _carrier(self, kind: str) -> Sent | None:
        """The last message the relay sent this patient with reply buttons or a list (``kind``)."""
        for sent in reversed(self.received()):
            if sent.payload.get("type") == "interactive" and sent.payload["interactive"].get("type") == kind:
                return sent
        return None

    def _context(self, carrier: Sent | None) -> dict[str, Any]:
        """``context`` of a reply: the business number and the message that carried what was tapped."""
        return {"from": self.emulator.numbers.get(self.to, self.emulator.display_phone_number),
                "id": carrier.id if carrier else wamid()}

    def press_button(self, button_id: str, title: str, *, referral: dict[str, Any] | None = None) -> int:
        """Tap a reply button of the last buttons sent."""
        return self.post(self.payload([self.message(
            "interactive", {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
            referral=referral, context=self._context(self._carrier("button")))]))

    def choose_from_list(self, row_id: str, title: str, description: str | None = None) -> int:
        """Tap a row of the last list sent; its description comes along when the row had one."""
        carrier = self._carrier("list")
        if description is None and carrier is not None:
            rows = [row for section in carrier.payload["interactive"]["action"].get("sections", [])
                    for row in section.get("rows", [])]
            description = next((row.get("description") for row in rows if row.get("id") == row_id), None)
        reply = {"id": row_id, "title": title, **({"description": description} if description else {})}
        return self.post(self.payload([self.message("interactive", {"type": "list_reply", "list_reply": reply},
                                                     context=self._context(carrier))]))

    def fill_flow(self, values: Mapping[str, Any], *, message: Sent | None = None) -> int:
        """Fill in and submit the form of the last WhatsApp Flow message sent to this patient (or ``message``).

        ``values`` are the form's fields by ``name`` (text as strings, a choice as its option id, ticked boxes as a
        list of ids, a date as ``YYYY-MM-DD``, an opt-in as a bool), over every screen the form's Footers lead
        through from the message's ``flow_action_payload.screen`` (else the first screen), that screen's data being
        the payload's ``data``. The response is the Footer's ``complete`` payload with each binding replaced, and
        ``flow_token`` (the message's, else Meta's default ``unused``); a field left empty is left out of it (see
        :func:`emulators._whatsapp_flows.submission`).

        Returns:
            The relay's HTTP status for the ``nfm_reply`` webhook.

        Raises:
            ValueError: no flow message was sent to the patient, its flow cannot be opened, or WhatsApp would not let
                these values through (a required field empty, an option the form does not offer, an implausible
                e-mail, a field the form does not have, …).
        """
        carrier = message if message is not None else self._carrier("flow")
        if carrier is None:
            raise ValueError("no WhatsApp Flow was sent to this patient")
        answers = self.emulator.flows.response_to(carrier.payload, values)
        reply = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                                                   "response_json": json.dumps(answers, ensure_ascii=False)}}
        return self.post(self.payload([self.message("interactive", reply, context=self._context(carrier))]))

    def share_location(self, latitude: float, longitude: float, name: str | None = None,
                       address: str | None = None) -> int:
        """Share a location (a pin has neither name nor address)."""
        content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if name:
            content["name"] = name
        if address:
            content["address"] = address
        return self.post(self.payload([self.message("location", content)]))

    def stop_marketing_messages(self) -> int:
        """Turn off the business's marketing messages in WhatsApp's settings (a ``user_preferences`` webhook)."""
        contact: dict[str, Any] = {"profile": {"name": self.name}}
        preference: dict[str, Any] = {"detail": "User requested to stop marketing messages",
                                      "category": "marketing_messages", "value": "stop", "timestamp": int(time.time())}
        for key, value in (("wa_id", self.shown_wa_id), ("user_id", self.user_id)):
            if value:
                contact[key] = preference[key] = value
        return self.post({"object": "whatsapp_business_account", "entry": [{"id": self.emulator.waba_id, "changes": [{
            "field": "user_preferences", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.emulator.numbers.get(self.to, ""),
                             "phone_number_id": self.to},
                "contacts": [contact], "user_preferences": [preference]}}]}]})

    def _send_file(self, kind: str, content: bytes, mime_type: str, extra: dict[str, Any]) -> int:
        """Store ``content`` in the emulator's media and send the message that names it, as Meta does."""
        media = self.emulator.media.add(content, mime_type, extra.get("filename"))
        self.last_media_id = media.id
        return self.post(self.payload([self.message(kind, {
            "mime_type": mime_type, "sha256": media.sha256_base64, "id": media.id, **extra})]))

    def send_image(self, caption: str | None = None, *, content: bytes | None = None,
                   mime_type: str = "image/jpeg") -> int:
        """Send a photo (``content``, or a small JPEG) with an optional caption; its media id is ``last_media_id``."""
        return self._send_file("image", sample_jpeg() if content is None else content, mime_type,
                               {"caption": caption} if caption else {})

    def send_document(self, content: bytes, filename: str, *, mime_type: str = "application/pdf",
                      caption: str | None = None) -> int:
        """Send a file as a document (Meta always gives its file name)."""
        return self._send_file("document", content, mime_type,
                               {"filename": filename, **({"caption": caption} if caption else {})})

    def send_voice(self, content: bytes, *, mime_type: str = "audio/ogg; codecs=opus") -> int:
        """Send a voice note recorded in WhatsApp (``audio`` with ``voice: true``)."""
        return self._send_file("audio", content, mime_type, {"voice": True})

    def read_all(self) -> int:
        """Open the chat: Meta then reports ``read`` for every message delivered to this patient (when the
        emulator sends status webhooks); returns how many."""
        return self.emulator.statuses.read_by(self.identity)

    # -- reactions, stickers, contact cards, identity changes ----------------------------------------
    def react(self, message_id: str, emoji: str = "\N{THUMBS UP SIGN}") -> int:
        """React to a message (an empty ``emoji`` takes a reaction back)."""
        return self.post(self.payload([self.message("reaction", {"message_id": message_id, "emoji": emoji})]))

    def send_sticker(self, *, content: bytes | None = None, animated: bool = False) -> int:
        """Send a sticker (a WebP image; its media id is ``last_media_id``)."""
        return self._send_file("sticker", SAMPLE_WEBP if content is None else content, "image/webp",
                               {"animated": animated})

    def share_contact(self, name: str, phone: str, wa_id: str | None = None, *, origin: str | None = None) -> int:
        """Share a contact card: ``phone`` as written on it, ``wa_id`` when that number is on WhatsApp,
        ``origin`` as Meta marks a card shared through the request-contact-info button (``contact_request``)."""
        first, _, last = name.partition(" ")
        card_phone: dict[str, Any] = {"phone": phone, "type": "CELL"}
        if wa_id:
            card_phone["wa_id"] = wa_id
        card: dict[str, Any] = {"name": {"formatted_name": name, "first_name": first, **({"last_name": last} if last
                                                                                          else {})},
                                "phones": [card_phone]}
        if origin:
            card["origin"] = origin
        return self.post(self.payload([self.message("contacts", [card])]))

    def share_own_contact(self, *, origin: str | None = "contact_request") -> int:
        """Share their own card (by default through the request-contact-info button, as a username user does)."""
        if not self.wa_id:
            raise ValueError("the patient has no number to share")
        return self.share_contact(self.name, f"+{self.wa_id}", self.wa_id, origin=origin)

    def change_number(self, new_wa_id: str) -> int:
        """Move to a new number: Meta's ``system`` notice ``user_changed_number`` (no ``contacts`` array), after
        which the patient writes from ``new_wa_id``."""
        if not self.wa_id:
            raise ValueError("the patient has no number to change")
        old = self.wa_id
        message = {"from": old, "id": wamid(), "timestamp": str(int(time.time())), "type": "system",
                   "system": {"body": f"User {self.name} changed from {old} to {new_wa_id}", "wa_id": new_wa_id,
                              "type": "user_changed_number"}}
        self.wa_id = new_wa_id
        return self.post(self.emulator.envelope({"messages": [message]}, phone_number_id=self.to))
