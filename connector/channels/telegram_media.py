"""Files on Telegram: the Bot API's file objects the relay reads, and how an agent's attachment is sent.

Inbound: ``Voice``, ``Audio``, ``Video`` and ``VideoNote`` as typed models written from the Bot API
reference (``api.json``), beside the ``PhotoSize`` and ``Document`` of
:mod:`connector.channels.telegram_update`. :func:`file_name_and_type` names a downloaded file from its
``file_path`` (``getFile`` "may not preserve the original file name and MIME type").

Outbound, from the Bot API's "Sending files": :func:`plan_file` picks the method for an attachment by its
MIME type: ``sendPhoto`` (JPEG, PNG), ``sendVideo`` (MP4), ``sendVoice`` (OGG/Opus), ``sendAudio`` (MP3,
M4A), else ``sendDocument``; and whether Telegram can fetch it by URL (at most 5 MB for photos and 20 MB
for the rest; ``sendDocument`` by URL "will currently only work for GIF, PDF and ZIP files") or the relay
must upload it (multipart/form-data: at most 10 MB for photos, 50 MB for the rest). Captions hold at
most 1024 characters.
"""

from __future__ import annotations

import mimetypes
import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

from connector.channels.parts import Id, Part, Text
from core.errors import FatalError
from core.models import Attachment

MB = 1024 * 1024
MAX_CAPTION = 1024
#: the largest file a bot may download (``getFile``)
MAX_DOWNLOAD = 20 * MB
#: what Telegram fetches by URL: photos, and everything else
URL_PHOTO_LIMIT, URL_OTHER_LIMIT = 5 * MB, 20 * MB
#: what a bot may upload: photos, and everything else
UPLOAD_PHOTO_LIMIT, UPLOAD_OTHER_LIMIT = 10 * MB, 50 * MB
#: the only documents Telegram fetches by URL
URL_DOCUMENT_TYPES = frozenset({"application/pdf", "application/zip", "image/gif"})
#: MIME type -> (method, the parameter that names the file)
METHODS = {
    "image/jpeg": ("sendPhoto", "photo"), "image/png": ("sendPhoto", "photo"),
    "video/mp4": ("sendVideo", "video"),
    "audio/ogg": ("sendVoice", "voice"),
    "audio/mpeg": ("sendAudio", "audio"), "audio/mp4": ("sendAudio", "audio"),
}
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/mp3": "audio/mpeg",
           "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/opus": "audio/ogg",
           "application/x-zip-compressed": "application/zip"}
#: extensions of the paths ``getFile`` answers that Python's table lacks
_EXTENSIONS = {".oga": "audio/ogg", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4",
               ".webp": "image/webp", ".tgs": "application/x-tgsticker"}


class Voice(Part):
    """``Voice``: a voice note the user recorded."""

    file_id: Id
    file_unique_id: Id
    duration: int
    mime_type: Text | None = None
    file_size: int | None = None


class Audio(Part):
    """``Audio``: a music file the user sent."""

    file_id: Id
    file_unique_id: Id
    duration: int
    performer: Text | None = None
    title: Text | None = None
    file_name: Text | None = None
    mime_type: Text | None = None
    file_size: int | None = None


class Video(Part):
    """``Video``: a video the user sent."""

    file_id: Id
    file_unique_id: Id
    width: int
    height: int
    duration: int
    file_name: Text | None = None
    mime_type: Text | None = None
    file_size: int | None = None


class VideoNote(Part):
    """``VideoNote``: a round video message."""

    file_id: Id
    file_unique_id: Id
    length: int
    duration: int
    file_size: int | None = None


def file_name_and_type(file_path: str) -> tuple[str, str]:
    """The name and MIME type of a file ``getFile`` answered for (``voice/file_3.oga`` → ``audio/ogg``)."""
    name = posixpath.basename(file_path) or "file"
    extension = posixpath.splitext(name)[1].lower()
    mime = _EXTENSIONS.get(extension) or mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    return name, mime


@dataclass(frozen=True)
class FilePlan:
    """How one attachment is sent: the method, the parameter naming the file, and by URL or uploaded."""

    method: str
    field: str
    mime_type: str
    name: str
    by_url: bool

    @property
    def upload_limit(self) -> int:
        """The most bytes a bot may upload with this method."""
        return UPLOAD_PHOTO_LIMIT if self.method == "sendPhoto" else UPLOAD_OTHER_LIMIT


def _mime(attachment: Attachment) -> str:
    given = (attachment.mime_type or "").split(";", 1)[0].strip().lower()
    if not given:
        for source in (attachment.name or "", urlsplit(attachment.url).path):
            given = (mimetypes.guess_type(source, strict=False)[0] or "") if source else ""
            if given:
                break
    given = given or "application/octet-stream"
    return ALIASES.get(given, given)


def plan_file(attachment: Attachment) -> FilePlan:
    """How ``attachment`` is sent (see the module).

    Raises:
        FatalError: the link is not HTTP(S), or the file is over what a bot may send.
    """
    link = urlsplit(attachment.url)
    if link.scheme not in ("http", "https") or not link.netloc:
        raise FatalError("telegram: an attachment's link must be an http(s) URL", field="url")
    mime = _mime(attachment)
    method, field = METHODS.get(mime, ("sendDocument", "document"))
    size = attachment.size
    if method == "sendPhoto" and size is not None and size > UPLOAD_PHOTO_LIMIT:
        method, field = "sendDocument", "document"  # too big a photo still goes, as a file
    if method == "sendPhoto":
        by_url = size is None or size <= URL_PHOTO_LIMIT
    else:
        by_url = (method != "sendDocument" or mime in URL_DOCUMENT_TYPES) and (size is None or size <= URL_OTHER_LIMIT)
    if not by_url and size is not None and size > UPLOAD_OTHER_LIMIT:
        raise FatalError(f"telegram: the file is {size} bytes; a bot sends at most {UPLOAD_OTHER_LIMIT}",
                         field="size", details={"size": size, "limit": UPLOAD_OTHER_LIMIT})
    name = attachment.name or posixpath.basename(link.path) or "file"
    return FilePlan(method, field, mime, name, by_url)
