"""The demo page's agent inbox: HubSpot's conversations inbox as an agent sees it, and what the phone shows of
the agents' messages.

The HubSpot emulator keeps the inbox (threads, their messages, each agent's reply with the status the relay
reported); its control endpoints (``/_emulator/inbox/threads``, ``…/reply``, ``…/close``, ``/_emulator/files``)
are what an agent does in HubSpot's UI. This module shapes what they answer for the page, and keeps the few
sample files an agent may attach (made here, so the demo ships no binary files). Nothing here reads the relay's
state: which message on the phone an agent wrote is found the way the relay itself marks it, by the tracking
every agent's reply carries (:func:`connector.agent.entry_id` of the CRM's message id).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from connector.agent import entry_id, parse_key

#: the access the sample files are uploaded with: a public, unindexed file's link opens from the page (a private
#: file's link answers 404, as HubSpot's does, and the page holds no HubSpot sign-in)
SAMPLE_ACCESS = "PUBLIC_NOT_INDEXABLE"


@dataclass(frozen=True)
class SampleFile:
    """A file an agent can attach to a reply from the demo page."""

    id: str
    name: str
    mime_type: str
    label: str
    content: bytes


def _png(width: int = 64, height: int = 40, rgb: tuple[int, int, int] = (18, 140, 126)) -> bytes:
    """A small, valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF showing ``lines`` (ASCII) in Helvetica."""
    shown = " ".join("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
                     for line in lines)
    stream = f"BT /F1 14 Tf 60 800 Td 20 TL {shown} ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    return out + f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()


#: a 1×1 lossless WebP image
_WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")

#: the files the page offers: two WhatsApp carries, and one it refuses (the agent sees the reply fail, and why)
SAMPLES: dict[str, SampleFile] = {s.id: s for s in (
    SampleFile("price-list", "price-list.pdf", "application/pdf", "price-list.pdf (PDF document)",
               _pdf(["Demo Clinic - price list", "Hair transplant (FUE): from 2,400 EUR",
                     "Dental implant: from 450 EUR", "Prices are examples of the chat2crm demo."])),
    SampleFile("clinic-entrance", "clinic-entrance.png", "image/png", "clinic-entrance.png (PNG image)", _png()),
    SampleFile("before-after", "before-after.webp", "image/webp",
               "before-after.webp (WebP image: WhatsApp does not carry this type)", _WEBP),
)}


def samples() -> list[dict[str, str]]:
    """The sample files as the page's file picker lists them."""
    return [{"id": s.id, "label": s.label} for s in SAMPLES.values()]


def upload_body(sample: SampleFile) -> dict[str, Any]:
    """The body of the emulator's ``POST /_emulator/files`` that puts a sample into the file manager."""
    return {"name": sample.name, "mimeType": sample.mime_type, "access": SAMPLE_ACCESS,
            "contentBase64": base64.b64encode(sample.content).decode()}


# -- the inbox, as the page shows it ----------------------------------------------------------------
def _patient(thread: dict[str, Any]) -> tuple[str, str]:
    """The channel and the patient's id of a thread (its visitor is the relay's conversation key)."""
    value = str(((thread.get("visitor") or {}).get("deliveryIdentifier") or {}).get("value") or "")
    parts = parse_key(value)
    return (parts[0], parts[2]) if parts else ("", "")


def _who(message: dict[str, Any]) -> str:
    """Who wrote a message: ``patient``, ``bot`` (the relay's integration), ``agent`` or ``system``."""
    actor = str((message.get("sender") or {}).get("actorId") or "")
    if message.get("type") != "MESSAGE":
        return "system"
    if message.get("direction") == "INCOMING":
        return "patient"
    return "agent" if actor.startswith("A-") else "bot"


def _message(message: dict[str, Any], thread: dict[str, Any]) -> dict[str, Any]:
    who = _who(message)
    shown: dict[str, Any] = {"id": message["id"], "who": who, "at": message.get("createdAt"),
                             "name": (message.get("sender") or {}).get("name"), "text": message.get("text") or "",
                             "files": [{"name": a.get("name") or "file", "url": a.get("url")}
                                       for a in message.get("attachments") or []]}
    if who == "agent":
        shown["status"] = message.get("status")
        shown["failure"] = message.get("failure")
    if who == "system":
        actor = str((message.get("sender") or {}).get("actorId") or "")
        assignee = thread.get("assignee") or {}
        shown["name"] = assignee.get("name") if actor and actor == thread.get("assignedTo") else None
        shown["status"] = message.get("newStatus")
    return shown


def summary(thread: dict[str, Any]) -> dict[str, Any]:
    """A thread as the inbox's list shows it: the patient, the channel, the last message, open or closed."""
    channel, patient = _patient(thread)
    contact = thread.get("contact") or {}
    last = next((m for m in reversed(thread.get("messages") or []) if m.get("type") == "MESSAGE"), None)
    text = ""
    if last is not None:
        text = last.get("text") or ("📎 " + str(last["attachments"][0].get("name")) if last.get("attachments") else "")
    return {"id": thread["id"], "status": thread.get("status"), "channel": channel, "patient": patient,
            "name": contact.get("name") or (thread.get("visitor") or {}).get("name") or "Visitor",
            "phone": contact.get("phone"), "last": text, "last_who": _who(last) if last else None,
            "at": last.get("createdAt") if last else thread.get("createdAt"),
            "assignee": (thread.get("assignee") or {}).get("name")}


def detail(thread: dict[str, Any]) -> dict[str, Any]:
    """One thread as the agent reads it: its summary and every message, oldest first."""
    return {**summary(thread), "messages": [_message(m, thread) for m in thread.get("messages") or []]}


# -- the phone: which messages an agent wrote ---------------------------------------------------------
def agents_replies(threads: list[dict[str, Any]], channel: str, patient: str) -> list[dict[str, Any]]:
    """The agents' replies in the threads of one patient, oldest first: each with its tracking (the relay
    sends it with the message), the agent's name and the text."""
    found = []
    for thread in threads:
        if _patient(thread) != (channel, patient):
            continue
        for message in thread.get("messages") or []:
            if _who(message) == "agent":
                found.append({"tracking": entry_id(str(message["id"])), "agent": (message.get("sender") or {}).get(
                    "name") or "Agent", "text": message.get("text") or ""})
    return found


def mark_agents(messages: list[dict[str, Any]], replies: list[dict[str, Any]], *, by_text: bool) -> None:
    """Name the agent on each phone message an agent wrote: by the tracking it was sent with (WhatsApp keeps
    it), or with ``by_text`` (Telegram keeps none) by its text, each reply once, in order."""
    by_tracking = {r["tracking"]: r["agent"] for r in replies}
    waiting = list(replies)
    for message in messages:
        tracking = message.pop("tracking", None)
        if message.get("direction") != "out":
            continue
        if not by_text:
            if tracking in by_tracking:
                message["agent"] = by_tracking[tracking]
            continue
        match = next((r for r in waiting if r["text"] and r["text"] == message.get("text")), None)
        if match is not None:
            waiting.remove(match)
            message["agent"] = match["agent"]
