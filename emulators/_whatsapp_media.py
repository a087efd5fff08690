"""The WhatsApp emulator's media: the files patients send, the links Meta serves them at, and the checks
on outgoing media and template messages that Meta's OpenAPI description does not state.

- :class:`MediaStore` keeps each file a patient sends under a media id, with its type and hash, and signs the
  short-lived download links ``GET /{version}/{media-id}`` answers (``/whatsapp_business/attachments/?mid=…
  &ext=<expiry>&hash=<signature>``, shaped like Meta's lookaside URLs, valid 5 minutes as Meta's are).
- :func:`query_errors` checks a GET's query against the parameters Meta's description lists for its path.
- :func:`message_errors` adds what Meta's reference says in words: a caption at most 1024 characters and
  only on images, videos and documents, a file name only on documents, links over HTTP(S), and
  ``biz_opaque_callback_data`` at most 512 characters.
- :func:`template_error` refuses a template parameter Meta refuses (132018: new lines, tabs, more than four
  spaces in a row; 132005: the filled-in body over 1024 characters).
- :func:`link_failure` is what Meta reports afterwards, in a ``failed`` status (131053), for a link whose
  file is of a type its message kind does not take. The emulator fetches nothing: the link's extension
  names the type, and a link without one is taken as fitting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import mimetypes
import posixpath
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from emulators._checks import whatsapp_spec

#: how long a download link lasts (Meta: 5 minutes)
LINK_SECONDS = 300.0
MAX_CAPTION = 1024
MAX_TRACKING = 512
MAX_TEMPLATE_BODY = 1024
#: the MIME types Meta takes for each media message kind (its "supported media types" table)
ACCEPTED: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "document": frozenset({
        "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"}),
    "sticker": frozenset({"image/webp"}),
}
#: the keys a media object of each kind may hold, by Meta's /messages reference
_MEDIA_KEYS = {"image": {"id", "link", "caption"}, "video": {"id", "link", "caption"},
               "document": {"id", "link", "caption", "filename"}, "audio": {"id", "link"},
               "sticker": {"id", "link"}}
_EXTENSIONS = {".oga": "audio/ogg", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4",
               ".amr": "audio/amr", ".aac": "audio/aac", ".3gp": "video/3gpp", ".webp": "image/webp"}
_ids = itertools.count(int(time.time()) * 1000)


@dataclass
class StoredMedia:
    """A file a patient sent, as Meta keeps it; its hash is taken once, when it arrives (a test that changes
    ``content`` afterwards serves a file damaged on the way)."""

    id: str
    content: bytes
    mime_type: str
    filename: str | None = None
    digest: bytes = b""

    def __post_init__(self) -> None:
        self.digest = self.digest or hashlib.sha256(self.content).digest()

    @property
    def sha256_hex(self) -> str:
        """The hash the media URL answer gives (hex)."""
        return self.digest.hex()

    @property
    def sha256_base64(self) -> str:
        """The hash a webhook gives (base64, as in Meta's examples)."""
        return base64.b64encode(self.digest).decode()


class MediaStore:
    """The media of one emulated business account, and its signed download links.

    Args:
        link_seconds: how long a download link lasts.
    """

    def __init__(self, link_seconds: float = LINK_SECONDS) -> None:
        self.link_seconds = link_seconds
        self._key = secrets.token_bytes(32)
        self._files: dict[str, StoredMedia] = {}
        self._lock = threading.Lock()

    def add(self, content: bytes, mime_type: str, filename: str | None = None) -> StoredMedia:
        """Keep ``content`` under a new media id."""
        media = StoredMedia(str(next(_ids)), content, mime_type, filename)
        with self._lock:
            self._files[media.id] = media
        return media

    def get(self, media_id: str) -> StoredMedia | None:
        """The file under ``media_id``, if any."""
        with self._lock:
            return self._files.get(media_id)

    def _signature(self, media_id: str, expiry: str) -> str:
        return hmac.new(self._key, f"{media_id}:{expiry}".encode(), hashlib.sha256).hexdigest()[:32]

    def link(self, media: StoredMedia, base_url: str) -> str:
        """A download link for ``media`` on ``base_url``, valid ``link_seconds``."""
        expiry = str(int(time.time() + self.link_seconds))
        query = urlencode({"mid": media.id, "ext": expiry, "hash": self._signature(media.id, expiry)})
        return f"{base_url.rstrip('/')}/whatsapp_business/attachments/?{query}"

    def resolve(self, args: dict[str, str]) -> tuple[StoredMedia | None, str]:
        """The file a download link names, or None and why not (``unknown`` or ``expired``)."""
        media_id, expiry, signature = args.get("mid", ""), args.get("ext", ""), args.get("hash", "")
        if not (expiry.isdigit() and hmac.compare_digest(signature, self._signature(media_id, expiry))):
            return None, "unknown"
        if int(expiry) < time.time():
            return None, "expired"
        media = self.get(media_id)
        return (media, "") if media is not None else (None, "unknown")


def query_errors(path: str, method: str, args: dict[str, str]) -> list[str]:
    """Query parameters Meta's description does not list for ``method`` on ``path`` (``/{Version}/{Media-ID}``)."""
    operation = whatsapp_spec()["paths"][path][method.lower()]
    known = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
    return [f"{name}: not a query parameter of this call" for name in args if name not in known]


def _is_link(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def message_errors(body: dict[str, Any]) -> list[str]:
    """What Meta's /messages reference says in words and its OpenAPI description does not check."""
    errors = []
    tracking = body.get("biz_opaque_callback_data")
    if tracking is not None and (not isinstance(tracking, str) or len(tracking) > MAX_TRACKING):
        errors.append(f"biz_opaque_callback_data: a string of at most {MAX_TRACKING} characters")
    kind = body.get("type")
    media = body.get(kind) if isinstance(kind, str) and kind in _MEDIA_KEYS else None
    if isinstance(media, dict):
        for key in sorted(set(media) - _MEDIA_KEYS[str(kind)]):
            errors.append(f"{kind}/{key}: not a parameter of a {kind} message")
        caption = media.get("caption")
        if caption is not None and (not isinstance(caption, str) or len(caption) > MAX_CAPTION):
            errors.append(f"{kind}/caption: at most {MAX_CAPTION} characters")
        if "link" in media and not _is_link(media["link"]):
            errors.append(f"{kind}/link: an http(s) URL")
    return errors


def template_error(body: dict[str, Any]) -> tuple[int, str, str] | None:
    """The error (code, title, details) Meta answers for a template's parameters, or None."""
    if body.get("type") != "template":
        return None
    texts = [p.get("text") for component in (body.get("template") or {}).get("components") or []
             if isinstance(component, dict) and component.get("type") == "body"
             for p in component.get("parameters") or [] if isinstance(p, dict) and p.get("type") == "text"]
    for text in texts:
        if isinstance(text, str) and ("\n" in text or "\t" in text or " " * 5 in text):
            return (132018, "There was an issue with the parameters in your template.",
                    "Param text cannot have new-line/tab characters or more than 4 consecutive spaces")
    if sum(len(t) for t in texts if isinstance(t, str)) > MAX_TEMPLATE_BODY:
        return 132005, "Translated text too long", "Translated text is too long."
    return None


def _link_type(link: str) -> str | None:
    extension = posixpath.splitext(urlsplit(link).path)[1].lower()
    if not extension:
        return None
    return _EXTENSIONS.get(extension) or mimetypes.guess_type(f"file{extension}", strict=False)[0]


def link_failure(body: dict[str, Any]) -> dict[str, Any] | None:
    """The error of the ``failed`` status Meta sends when it cannot use the file a media message links to."""
    kind = body.get("type")
    media = body.get(kind) if isinstance(kind, str) and kind in ACCEPTED else None
    if not isinstance(media, dict) or "link" not in media:
        return None
    found = _link_type(str(media["link"]))
    if found is None or found in ACCEPTED[str(kind)]:
        return None
    return {"code": 131053, "title": "Media upload error", "message": "Media upload error",
            "error_data": {"details": f"Unsupported {kind} mime type {found}. Please use one of "
                                      f"{', '.join(sorted(ACCEPTED[str(kind)]))}."},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}
