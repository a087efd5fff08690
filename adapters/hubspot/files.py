"""Patients' and agents' files in HubSpot's file manager (files API v3), for both inboxes.

A patient's file is uploaded once (the relay keeps the file id before publishing the message that carries
it), as a PRIVATE file: its URL alone gives nothing; whoever needs the bytes asks for a signed URL that
expires (``GET /files/v3/files/{fileId}/signed-url``). An agent's attachment is sent to the patient from
such a URL, fetched by the channel within minutes.
"""

from __future__ import annotations

from adapters.hubspot.rest import Auth, HubSpotRest, dumps
from adapters.inbox import InboxLimits
from core.errors import FatalError
from core.inbox import FileRef

#: how long a signed URL handed to a channel stays valid (it fetches the file at once)
SIGNED_URL_SECONDS = 3600


def upload(rest: HubSpotRest, auth: Auth, *, folder: str, name: str, mime_type: str, content: bytes,
           limits: InboxLimits) -> FileRef:
    """Store a file privately in ``folder``; its reference for a message.

    Raises:
        FatalError: the file is larger, or of a type, than the inbox takes (the relay checks before; this
            keeps a mistake from reaching HubSpot).
        RetryableError, AuthError: as :meth:`HubSpotRest.send`.
    """
    if len(content) > limits.max_file_bytes:
        raise FatalError(f"hubspot: a file of {len(content)} bytes is over the inbox's {limits.max_file_bytes}",
                         field="attachments")
    base_type = mime_type.split(";", maxsplit=1)[0].strip().lower()  # ``audio/ogg; codecs=opus`` is an audio/ogg file
    if base_type not in limits.mime_types:
        raise FatalError(f"hubspot: the inbox does not take {base_type} files", field="attachments")
    answer = rest.send("file_upload", "POST", "/files/v3/files", auth=auth,
                       files={"file": (name, content, base_type)},
                       form={"fileName": name, "folderPath": folder,
                             "options": dumps({"access": "PRIVATE", "overwrite": False,
                                               "duplicateValidationStrategy": "NONE"})})
    return FileRef(name=name, mime_type=base_type, size=len(content), crm_file_id=str(answer["id"]))


def signed_url(rest: HubSpotRest, auth: Auth, file: FileRef) -> str:
    """A short-lived URL a channel can fetch ``file`` from.

    Raises:
        FatalError: the reference names neither a file id nor a URL.
        RetryableError, AuthError: as :meth:`HubSpotRest.send`.
    """
    if file.crm_file_id:
        answer = rest.send("file_signed_url", "GET", f"/files/v3/files/{file.crm_file_id}/signed-url", auth=auth,
                           params={"expirationSeconds": SIGNED_URL_SECONDS})
        return str(answer["url"])
    if file.url:
        return file.url
    raise FatalError("hubspot: an attachment names no file id and no URL", field="attachments")
