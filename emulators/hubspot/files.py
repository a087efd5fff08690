"""The emulated file manager (files API v3): upload, read, signed URLs, and the bytes behind them.

``POST /files/v3/files`` takes HubSpot's multipart form (``file``, ``options`` as a JSON string whose
``access`` is required, exactly one of ``folderId`` and ``folderPath``, ``fileName``, ``charsetHunch``) and
answers 201 with the file as the files guide shows it. A private file's ``url`` answers 404, as HubSpot's
does; ``GET /files/v3/files/{fileId}/signed-url`` gives a URL that serves the bytes until it expires (then
403). ``POST /_emulator/files`` puts a file into the file manager as an agent would (tests, the demo).
"""

from __future__ import annotations

import base64
import itertools
import json
import mimetypes
import secrets
import zlib
from datetime import UTC, datetime
from typing import Any

from flask import Response, has_request_context, jsonify, request

from emulators.hubspot.oauth import HubSpotOAuth, Route
from emulators.hubspot.state import timestamp

ACCESS = ("PUBLIC_INDEXABLE", "PUBLIC_NOT_INDEXABLE", "HIDDEN_INDEXABLE", "HIDDEN_NOT_INDEXABLE", "HIDDEN_PRIVATE",
          "PRIVATE", "HIDDEN_SENSITIVE", "SENSITIVE")
_OPTIONS = {"access", "ttl", "overwrite", "duplicateValidationStrategy", "duplicateValidationScope", "expiresAt"}
_FORM = {"options", "folderId", "folderPath", "fileName", "charsetHunch"}
#: the largest file the file manager takes
MAX_FILE_BYTES = 300 * 1024 * 1024
#: how long a signed URL works when ``expirationSeconds`` is not given
SIGNED_URL_SECONDS = 3600
_READ = ("files", "files.read", "files.ui_hidden.read")
_WRITE = ("files", "files.write", "files.ui_hidden.write")


def file_type(mime_type: str) -> str:
    """HubSpot's file ``type`` for a MIME type."""
    if mime_type.startswith("image/"):
        return "IMG"
    if mime_type.startswith("audio/"):
        return "AUDIO"
    if mime_type.startswith("video/"):
        return "MOVIE"
    if mime_type.startswith(("application/pdf", "application/msword", "application/vnd.", "text/")):
        return "DOCUMENT"
    return "OTHER"


class HubSpotFiles(HubSpotOAuth):
    """The file manager."""

    #: file id → the file as the API shows it, and (under ``_``-prefixed keys) its bytes and MIME type
    files: dict[str, dict[str, Any]]
    #: signed URL token → file id and expiry (epoch seconds)
    signed_urls: dict[str, tuple[str, float]]
    file_ids: itertools.count[int]
    #: where the emulator is served (for the URLs it builds outside a request: set it after serving)
    public_url: str | None

    def _init_files(self) -> None:
        self.files, self.signed_urls = {}, {}
        self.file_ids = itertools.count(180_000_000_001)
        self.public_url = None

    def _base_url(self) -> str:
        """The emulator's own address, as the current request reached it (or :attr:`public_url`)."""
        if has_request_context():
            return request.host_url.rstrip("/")
        return (self.public_url or "http://127.0.0.1").rstrip("/")

    def public_file(self, record: dict[str, Any]) -> dict[str, Any]:
        """A file as the API shows it: without its bytes, its URLs on the emulator's address."""
        hosted = f"{self._base_url()}{record['_hosted']}"
        return {**{k: v for k, v in record.items() if not k.startswith("_")}, "defaultHostingUrl": hosted,
                "url": hosted}

    def _extra_routes(self) -> list[Route]:
        return [*super()._extra_routes(),
                (("POST",), "/files/v3/files", self._serve_upload),
                (("GET",), "/files/v3/files/<file_id>", self._serve_file),
                (("GET",), "/files/v3/files/<file_id>/signed-url", self._serve_signed_url),
                (("GET",), "/hubfs/<int:portal>/<path:path>", self._serve_hosted),
                (("GET",), "/signed-files/<token>/<name>", self._serve_signed),
                (("POST",), "/_emulator/files", self._control_add_file)]

    # -- for tests and the demo ------------------------------------------------------------------
    def add_file(self, name: str, content: bytes, mime_type: str | None = None, *, access: str = "PRIVATE",
                 folder_path: str = "/conversations") -> dict[str, Any]:
        """Put a file into the file manager (as an agent uploading it); the file as the API shows it."""
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, (mimetypes.guess_extension(mime) or "").lstrip(".")
        path = f"{folder_path.rstrip('/')}/{name}"
        now = timestamp()
        with self.lock:
            file_id = str(next(self.file_ids))
            record = {"id": file_id, "createdAt": now, "updatedAt": now, "archived": False,
                      "parentFolderId": str(170_000_000_000 + zlib.crc32(folder_path.encode()) % 10**9),
                      "name": stem, "path": path, "size": len(content), "encoding": extension,
                      "type": file_type(mime), "extension": extension, "isUsableInContent": True, "access": access,
                      "_content": content, "_mime": mime, "_hosted": f"/hubfs/{self.portal_id}{path}"}
            self.files[file_id] = record
        return self.public_file(record)

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a file in the file manager."""
        with self.lock:
            return bytes(self.files[file_id]["_content"])

    # -- the API ---------------------------------------------------------------------------------
    def _serve_upload(self) -> Any:
        """Upload one file (multipart), as ``POST /files/v3/files`` does."""
        if early := self._before("files", _WRITE):
            return early
        upload = request.files.get("file")
        unknown = sorted(set(request.form) - _FORM) + sorted(set(request.files) - {"file"})
        problem = None
        try:
            options = json.loads(request.form.get("options") or "null")
        except ValueError:
            options, problem = None, "options: not valid JSON"
        if unknown:
            problem = f"{unknown[0]}: unknown field of the upload form"
        elif upload is None:
            problem = "file: required"
        elif not isinstance(options, dict) or options.get("access") not in ACCESS:
            problem = problem or f"options.access: required, one of {', '.join(ACCESS)}"
        elif set(options) - _OPTIONS:
            problem = f"options.{sorted(set(options) - _OPTIONS)[0]}: unknown field of FileUploadOptions"
        elif ("folderId" in request.form) == ("folderPath" in request.form):
            problem = "Either 'folderId' or 'folderPath' is required (not both)"
        if problem:
            with self.lock:
                self.violations.append({"path": request.path, "problem": problem})
            return self._error(400, f"Invalid input: {problem}", "VALIDATION_ERROR")
        assert upload is not None and isinstance(options, dict)
        content = upload.read()
        if len(content) > MAX_FILE_BYTES:
            return self._error(413, "The file exceeds the maximum size.", "VALIDATION_ERROR")
        name = request.form.get("fileName") or upload.filename or "file"
        folder = request.form.get("folderPath") or f"/folder-{request.form.get('folderId')}"
        created = self.add_file(name, content, upload.mimetype if upload.mimetype != "application/octet-stream"
                                else None, access=options["access"], folder_path=folder)
        return jsonify(created), 201

    def _serve_file(self, file_id: str) -> Any:
        """A file's details."""
        if early := self._before("files", _READ):
            return early
        with self.lock:
            record = self.files.get(file_id)
        if record is None or record["archived"]:
            return self._error(404, f"File {file_id} not found", "OBJECT_NOT_FOUND")
        return jsonify(self.public_file(record)), 200

    def _serve_signed_url(self, file_id: str) -> Any:
        """A URL that serves a (private) file's bytes until it expires."""
        if early := self._before("files", _READ):
            return early
        try:
            seconds = int(request.args.get("expirationSeconds") or SIGNED_URL_SECONDS)
        except ValueError:
            return self._error(400, "expirationSeconds: expected an integer", "VALIDATION_ERROR")
        with self.lock:
            record = self.files.get(file_id)
            if record is None or record["archived"]:
                return self._error(404, f"File {file_id} not found", "OBJECT_NOT_FOUND")
            token = secrets.token_urlsafe(24)
            expires = self.clock() + seconds
            self.signed_urls[token] = (file_id, expires)
        name = f"{record['name']}.{record['extension']}" if record["extension"] else record["name"]
        return jsonify({"url": f"{self._base_url()}/signed-files/{token}/{name}",
                        "expiresAt": datetime.fromtimestamp(expires, UTC).isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z"), "name": record["name"], "extension": record["extension"],
                        "type": record["type"], "size": record["size"]}), 200

    def _serve_signed(self, token: str, name: str) -> Any:
        """The bytes behind a signed URL (403 once it has expired)."""
        with self.lock:
            file_id, expires = self.signed_urls.get(token, ("", 0.0))
            record = self.files.get(file_id)
        if record is None or expires < self.clock():
            return Response("Request has expired", status=403, mimetype="text/plain")
        return Response(record["_content"], mimetype=record["_mime"])

    def _serve_hosted(self, portal: int, path: str) -> Any:
        """A file's hosting URL: public files only (a private file's URL answers 404)."""
        with self.lock:
            record = next((f for f in self.files.values() if f["path"] == f"/{path}" and not f["archived"]), None)
        if record is None or not record["access"].startswith("PUBLIC") or portal != self.portal_id:
            return Response("Not Found", status=404, mimetype="text/plain")
        return Response(record["_content"], mimetype=record["_mime"])

    def _control_add_file(self) -> Any:
        """``POST /_emulator/files``: multipart ``file`` (``fileName``, ``access`` optional), or JSON
        ``{"name", "mimeType", "contentBase64", "access"}``."""
        if "file" in request.files:
            upload = request.files["file"]
            created = self.add_file(request.form.get("fileName") or upload.filename or "file", upload.read(),
                                    upload.mimetype, access=request.form.get("access", "PRIVATE"))
        else:
            body = request.get_json(silent=True) or {}
            if not body.get("name") or "contentBase64" not in body:
                return jsonify({"error": "name and contentBase64 (or a multipart file) are required"}), 400
            created = self.add_file(body["name"], base64.b64decode(body["contentBase64"]), body.get("mimeType"),
                                    access=body.get("access", "PRIVATE"))
        return jsonify(created), 201

