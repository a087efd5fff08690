"""The emulated Pipedrive operations on files (v1: upload, read, download) and on who may see a record (v1:
a person's or a deal's permitted users, one user).

A file is uploaded as ``multipart/form-data`` (the part ``file``, and optionally the ids of the deal, person,
organization, activity, product or lead it belongs to; each must exist); its bytes are kept and downloaded
as they came.

Who may see a record follows its visibility (``visible_to``): ``1`` (owner and followers) lets the owner
and the company's admins see it; ``3``, ``5`` and ``7`` (the whole company, the owner's visibility group and
its sub-groups) every active user. :meth:`FilesOperations.add_user` adds a regular user to the company.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, request

from emulators.pipedrive.state import PipedriveState, timestamp

#: the associations a file may have, and the kind of object each names
_FILE_TARGETS = {"deal_id": "deals", "person_id": "persons", "org_id": "organizations", "activity_id": "activities",
                 "lead_id": "leads"}


class FilesOperations(PipedriveState):
    """Files, permitted users and users (each ``_op_<operationId>`` answers one operation)."""

    #: file id → its bytes
    file_contents: dict[str, bytes]

    # -- users -----------------------------------------------------------------------------------
    def add_user(self, name: str, *, admin: bool = False) -> int:
        """Add a user to the company (a regular user unless ``admin``); returns its id."""
        with self.lock:
            first = self.users[0]
            user = {**first, "id": max(u["id"] for u in self.users) + 1, "name": name,
                    "email": f"user{len(self.users) + 1}@clinic.example", "is_admin": int(admin)}
            self.users.append(user)
            return int(user["id"])

    def permitted_users(self, kind: str, record_id: Any) -> list[int] | None:
        """The users who may see a record (None: no such record)."""
        with self.lock:
            record = self._live(kind, record_id)
            if record is None:
                return None
            active = [u for u in self.users if u.get("active_flag", True)]
            if str(record.get("visible_to", 3)) == "1":
                return sorted({int(record.get("owner_id") or 0)} | {int(u["id"]) for u in active if u.get("is_admin")})
            return sorted(int(u["id"]) for u in active)

    def _op_getPersonUsers(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        users = self.permitted_users("persons", params["id"])
        if users is None:
            return self._error(404, "Person not found", error_info="Object was not found.")
        return self._ok(users)

    def _op_getDealUsers(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        users = self.permitted_users("deals", params["id"])
        if users is None:
            return self._error(404, "Deal not found", error_info="Object was not found.")
        return self._ok(users)

    def _op_getUser(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        found = next((u for u in self.users if str(u["id"]) == params["id"]), None)
        if found is None:
            return self._error(404, "User not found", error_info="Object was not found.")
        return self._ok(found)

    # -- files -----------------------------------------------------------------------------------
    def _op_addFile(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return self._error(400, "No file was uploaded.", error_info="Validation failed.")
        form = body if isinstance(body, dict) else {}
        targets: dict[str, Any] = {}
        for field, kind in _FILE_TARGETS.items():
            value = form.get(field)
            if value in (None, ""):
                continue
            if field != "lead_id" and not re.fullmatch(r"\d+", str(value)):
                return self._error(400, f"{field} must be an integer", error_info="Validation failed.")
            if self._live(kind, value) is None:
                return self._error(400, f"{field}: entity not found", error_info="Validation failed.")
            targets[field] = value if field == "lead_id" else int(value)
        content = upload.read()
        fid = next(self.ids)
        now = timestamp().replace("T", " ")[:19]
        kind = (upload.mimetype or "application/octet-stream").split("/")[-1]
        record = {"id": fid, "user_id": 1, "deal_id": None, "person_id": None, "org_id": None, "product_id": None,
                  "activity_id": None, "lead_id": None, "add_time": now, "update_time": now,
                  "file_name": upload.filename, "file_size": len(content), "file_type": kind,
                  "active_flag": True, "inline_flag": False, "remote_location": "s3", "remote_id": None,
                  "s3_bucket": None, "url": f"{request.host_url.rstrip('/')}/v1/files/{fid}/download",
                  "name": upload.filename, "description": None, **targets}
        with self.lock:
            self.objects["files"][str(fid)] = record
            self.file_contents[str(fid)] = content
            self.file_types[str(fid)] = upload.mimetype or "application/octet-stream"
        return self._ok(record)

    def _op_getFile(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        found = self.objects["files"].get(params["id"])
        if found is None:
            return self._error(404, "File not found", error_info="Object was not found.")
        return self._ok(found)

    def _op_downloadFile(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        content = self.file_contents.get(params["id"])
        if content is None:
            return self._error(404, "File not found", error_info="Object was not found.")
        return Response(content, mimetype=self.file_types.get(params["id"], "application/octet-stream"))

    #: file id → its media type as uploaded
    file_types: dict[str, str]
