"""The Telegram emulator's files: what users send the bot, ``getFile`` and the download link, and the
``sendPhoto``/``sendDocument``/``sendAudio``/``sendVoice``/``sendVideo`` calls, as the Bot API's "Sending
files" and ``getFile`` describe them.

- A file is named by a ``file_id`` (what the bot passes back) and kept with its bytes, type and a
  ``file_path``; ``getFile`` answers the path (a bot downloads at most 20 MB: "file is too big" beyond),
  and ``/file/bot<token>/<file_path>`` serves the bytes.
- A file the bot sends is a ``file_id`` it already has, an HTTP URL Telegram fetches (at most 5 MB for
  photos, 20 MB for the rest; ``sendDocument`` by URL "will currently only work for GIF, PDF and ZIP
  files"), or a multipart upload (at most 10 MB for photos, 50 MB for the rest). Like Telegram, the
  emulator fetches a URL itself; what cannot be fetched, or is of the wrong type, gets Telegram's
  ``Bad Request`` answer. A voice note over 1 MB sent by URL arrives as a document, as the docs say.
- A caption holds at most 1024 characters ("message caption is too long").
"""

from __future__ import annotations

import itertools
import mimetypes
import posixpath
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import requests
from werkzeug.datastructures import FileStorage

MB = 1024 * 1024
MAX_DOWNLOAD = 20 * MB
MAX_CAPTION = 1024
#: method -> the parameter that names the file
FILE_METHODS = {"sendPhoto": "photo", "sendDocument": "document", "sendAudio": "audio", "sendVoice": "voice",
                "sendVideo": "video"}
URL_DOCUMENT_TYPES = frozenset({"application/pdf", "application/zip", "image/gif"})
VOICE_TYPES = frozenset({"audio/ogg", "audio/mpeg", "audio/mp4"})
#: where getFile puts each kind of file, and the extension it gives it
_FOLDERS = {"photo": "photos", "document": "documents", "audio": "music", "voice": "voice", "video": "videos"}
_counter = itertools.count(1)


class BadRequest(Exception):
    """A call Telegram answers with 400 ``Bad Request: <description>``.

    ``violation``: the call itself was wrong (a caption too long, a file id that names nothing), rather than
    the file it links to (a link that fails, a type Telegram will not fetch).
    """

    def __init__(self, description: str, *, violation: bool = False) -> None:
        super().__init__(description)
        self.violation = violation


@dataclass
class StoredFile:
    """A file on Telegram's servers."""

    file_id: str
    file_unique_id: str
    content: bytes
    mime_type: str
    kind: str
    file_path: str
    file_name: str | None = None

    def as_object(self, **extra: Any) -> dict[str, Any]:
        """The Bot API object's common fields (``Document``, ``Voice``…)."""
        found: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id,
                                 "file_size": len(self.content), **extra}
        if self.kind not in ("photo", "video_note"):  # PhotoSize and VideoNote have no mime_type
            found["mime_type"] = self.mime_type
        if self.file_name and self.kind in ("document", "audio", "video"):
            found["file_name"] = self.file_name
        return found


class FileStore:
    """The files of one emulated bot, by ``file_id`` and by ``file_path``."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def add(self, content: bytes, mime_type: str, kind: str, file_name: str | None = None) -> StoredFile:
        """Keep ``content`` under a new ``file_id`` and ``file_path``."""
        number = next(_counter)
        extension = posixpath.splitext(file_name or "")[1] or {"audio/ogg": ".oga"}.get(mime_type) or (
            mimetypes.guess_extension(mime_type, strict=False) or "")
        stored = StoredFile("BQACAgIAAxkBAAI" + secrets.token_urlsafe(24), "AgAD" + secrets.token_urlsafe(8),
                            content, mime_type, kind, f"{_FOLDERS.get(kind, 'documents')}/file_{number}{extension}",
                            file_name)
        with self._lock:
            self._by_id[stored.file_id] = stored
            self._by_path[stored.file_path] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file named by ``file_id``."""
        with self._lock:
            return self._by_id.get(file_id)

    def at(self, file_path: str) -> StoredFile | None:
        """The file at ``file_path`` (the download link)."""
        with self._lock:
            return self._by_path.get(file_path)


def get_file(store: FileStore, params: dict[str, Any]) -> dict[str, Any]:
    """``getFile``: the ``File`` object, with its path when the bot may download it.

    Raises:
        BadRequest: an unknown file id, or a file over 20 MB.
    """
    stored = store.get(str(params.get("file_id", "")))
    if stored is None:
        raise BadRequest("invalid file_id")
    if len(stored.content) > MAX_DOWNLOAD:
        raise BadRequest("file is too big")
    return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.content),
            "file_path": stored.file_path}


def _fetch(url: str, limit: int) -> tuple[bytes, str]:
    """What Telegram's servers get from ``url``: the bytes and their type."""
    try:
        with requests.get(url, timeout=5, stream=True) as response:
            if response.status_code != 200:
                raise BadRequest("failed to get HTTP URL content")
            content = bytearray()
            for chunk in response.iter_content(64 * 1024):
                content.extend(chunk)
                if len(content) > limit:
                    raise BadRequest("failed to get HTTP URL content")
            mime = response.headers.get("Content-Type", "application/octet-stream").split(";", 1)[0].strip()
            return bytes(content), mime.lower()
    except requests.RequestException:
        raise BadRequest("failed to get HTTP URL content") from None


def _source(store: FileStore, method: str, value: Any, upload: FileStorage | None) -> tuple[bytes, str, str | None]:
    """The bytes, type and name of the file a send call names (an upload, a file id or a URL)."""
    photo = method == "sendPhoto"
    if upload is not None:
        content = upload.read(50 * MB + 1)
        if len(content) > (10 if photo else 50) * MB:
            raise BadRequest("file is too big")
        mime = (upload.mimetype or mimetypes.guess_type(upload.filename or "")[0] or "application/octet-stream")
        return content, mime, upload.filename or None
    text = value if isinstance(value, str) else ""
    if text.startswith(("http://", "https://")):
        content, mime = _fetch(text, (5 if photo else 20) * MB)
        if (photo and not mime.startswith("image/")) or (method == "sendDocument" and mime not in URL_DOCUMENT_TYPES):
            raise BadRequest("wrong type of the web page content")
        return content, mime, posixpath.basename(text.split("?", 1)[0]) or None
    stored = store.get(text)
    if stored is None:
        raise BadRequest("wrong file identifier/HTTP URL specified", violation=True)
    return stored.content, stored.mime_type, stored.file_name


def send_file(store: FileStore, method: str, params: dict[str, Any],
              upload: FileStorage | None) -> tuple[dict[str, Any], StoredFile]:
    """The content of the message a send call makes (``photo``, ``document``… and ``caption``), and its file.

    Raises:
        BadRequest: what Telegram refuses (see the module).
    """
    field = FILE_METHODS[method]
    caption = params.get("caption")
    if isinstance(caption, str) and len(caption) > MAX_CAPTION:
        raise BadRequest("message caption is too long", violation=True)
    content, mime, name = _source(store, method, params.get(field), upload)
    kind = field
    if method == "sendVoice" and (mime not in VOICE_TYPES or (upload is None and len(content) > MB)):
        kind = "document"  # "1-20MB voice notes will be sent as files"
    stored = store.add(content, mime, kind, name)
    message: dict[str, Any] = {}
    if kind == "photo":
        message["photo"] = [stored.as_object(width=90, height=90), stored.as_object(width=1280, height=960)]
    elif kind in ("audio", "voice"):
        message[kind] = stored.as_object(duration=max(1, len(content) // 4000))
    elif kind == "video":
        message[kind] = stored.as_object(width=640, height=360, duration=max(1, len(content) // 100_000))
    else:
        message["document"] = stored.as_object()
    if caption:
        message["caption"] = caption
    return message, stored
