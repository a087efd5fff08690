"""Files on WhatsApp: the media messages that carry an agent's attachments, and checking a patient's file.

Outbound, written from Meta's "supported media types" table and the ``/messages`` reference: each
attachment becomes one media message sent by ``link`` (Meta fetches the file itself), of the kind its MIME
type names: ``image`` (JPEG, PNG; 5 MB), ``video`` (MP4, 3GPP; 16 MB), ``audio`` (AAC, AMR, MP3, M4A,
OGG/Opus; 16 MB) or ``document`` (text, PDF, Word, Excel, PowerPoint; 100 MB; with its file name). A
type the table does not list, or a file known to be over its kind's limit, is refused before anything
is sent (:class:`~core.errors.FatalError` naming the type). The reply's text rides as the first file's
``caption`` (at most 1024 characters; images, videos and documents only), else goes first as a text
message of its own.

Inbound: :func:`sha256_matches` checks a downloaded file against the hash Meta gave (hex in the media
URL answer, base64 in webhooks: both are accepted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import mimetypes
import posixpath
from typing import Any
from urllib.parse import urlsplit

from core.errors import FatalError
from core.models import Attachment, Reply

MB = 1024 * 1024
#: MIME type -> (message type, the most bytes Meta takes for it), from Meta's supported media types
SUPPORTED: dict[str, tuple[str, int]] = {
    "image/jpeg": ("image", 5 * MB), "image/png": ("image", 5 * MB),
    "video/mp4": ("video", 16 * MB), "video/3gpp": ("video", 16 * MB),
    "audio/aac": ("audio", 16 * MB), "audio/amr": ("audio", 16 * MB), "audio/mpeg": ("audio", 16 * MB),
    "audio/mp4": ("audio", 16 * MB), "audio/ogg": ("audio", 16 * MB),
    **{mime: ("document", 100 * MB) for mime in (
        "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation")},
}
#: spellings of the same types that files and servers use
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "video/3gp": "video/3gpp",
           "audio/mp3": "audio/mpeg", "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/opus": "audio/ogg",
           "audio/x-aac": "audio/aac"}
#: the message types that take a caption (audio and stickers do not)
CAPTIONED = ("image", "video", "document")
MAX_CAPTION = 1024
MAX_TEXT = 4096
MAX_FILENAME = 240


def media_type(attachment: Attachment) -> str:
    """The attachment's MIME type, normalised: the one given, else guessed from its name, else from its link.

    Raises:
        FatalError: no type is given and none can be guessed.
    """
    given = (attachment.mime_type or "").split(";", 1)[0].strip().lower()
    if not given:
        for source in (attachment.name or "", urlsplit(attachment.url).path):
            given = (mimetypes.guess_type(source, strict=False)[0] or "") if source else ""
            if given:
                break
    if not given:
        raise FatalError("whatsapp: the attachment's file type is not known (no MIME type, and none in its name)",
                         field="mime_type")
    return ALIASES.get(given, given)


def media_message(attachment: Attachment) -> dict[str, Any]:
    """The message object (without recipient) that sends one attachment by ``link``.

    Raises:
        FatalError: the link is not HTTP(S), the type is not one WhatsApp carries, or the file is over the
            limit of its kind.
    """
    link = urlsplit(attachment.url)
    if link.scheme not in ("http", "https") or not link.netloc:
        raise FatalError("whatsapp: an attachment's link must be an http(s) URL", field="url")
    mime = media_type(attachment)
    if mime not in SUPPORTED:
        raise FatalError(f"whatsapp: cannot send a file of type {mime} (WhatsApp takes JPEG and PNG images, "
                         "MP4 and 3GPP videos, AAC, AMR, MP3, M4A and OGG audio, and text, PDF and Office "
                         "documents)", field="mime_type", details={"mime_type": mime})
    kind, limit = SUPPORTED[mime]
    if attachment.size is not None and attachment.size > limit:
        raise FatalError(f"whatsapp: the {kind} is {attachment.size} bytes; WhatsApp takes at most {limit}",
                         field="size", details={"size": attachment.size, "limit": limit})
    content: dict[str, Any] = {"link": attachment.url}
    if kind == "document":
        content["filename"] = _filename(attachment, mime)
    return {"type": kind, kind: content}


def _filename(attachment: Attachment, mime: str) -> str:
    """The name the patient sees on a document: the attachment's, else its link's, with an extension."""
    name = attachment.name or posixpath.basename(urlsplit(attachment.url).path) or "document"
    if not posixpath.splitext(name)[1]:
        name += mimetypes.guess_extension(mime, strict=False) or ""
    return name[-MAX_FILENAME:]


def with_attachments(reply: Reply, text_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages that carry a reply with attachments, in order.

    ``text_messages`` is how the reply's text goes on its own (:func:`connector.channels.whatsapp.render`).
    A plain text that fits a caption rides on the first file when that file takes one; otherwise (a long
    text, options, or an audio file first) the text goes first. Every attachment is checked before any
    message is built, so a reply with one file WhatsApp cannot carry is refused whole.
    """
    files = [media_message(attachment) for attachment in reply.attachments]
    text = reply.text.strip()
    if not text:
        return files
    first = files[0]
    if not reply.options and first["type"] in CAPTIONED and len(reply.text) <= MAX_CAPTION:
        first[first["type"]]["caption"] = reply.text
        return files
    return text_messages + files


def sha256_matches(content: bytes, expected: str) -> bool:
    """Whether ``content`` hashes to ``expected``, given as hex or as base64 (Meta uses both)."""
    digest = hashlib.sha256(content).digest()
    given = expected.strip()
    if len(given) == 64:
        try:
            return hmac.compare_digest(bytes.fromhex(given), digest)
        except ValueError:
            pass
    try:
        return hmac.compare_digest(base64.b64decode(given, validate=True), digest)
    except (binascii.Error, ValueError):
        return False
