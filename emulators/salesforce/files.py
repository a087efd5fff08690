"""Salesforce Files in the emulated org: what saving a ContentVersion or a ContentDocumentLink does.

A ContentVersion is created with its bytes in ``VersionData`` (base64 in the JSON body); the org keeps the
bytes aside (``blobs``) and answers ``VersionData`` with the URL they are read from
(``GET /sobjects/ContentVersion/<id>/VersionData``, raw bytes). The first version of a file makes its
ContentDocument; a version naming a ``ContentDocumentId`` is the document's new latest version. A
``FirstPublishLocationId`` links the new document to that record. A ContentDocumentLink shares a document
with a record, once: linking the same document to the same record again is refused with
``DUPLICATE_VALUE``, as Salesforce does.
"""

from __future__ import annotations

import base64
from pathlib import PurePosixPath
from typing import Any

from emulators.salesforce.common import fail, sf_id
from emulators.salesforce.state import OrgState

#: the FileType Salesforce shows for an extension (anything else: UNKNOWN)
_FILE_TYPES = {"pdf": "PDF", "jpg": "JPG", "jpeg": "JPG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "txt": "TEXT",
               "doc": "WORD", "docx": "WORD_X", "xls": "EXCEL", "xlsx": "EXCEL_X", "mp3": "MP3", "mp4": "MP4",
               "ogg": "OGG", "csv": "CSV", "heic": "HEIC"}


class OrgFiles(OrgState):
    """The Files layer of the emulated org: versions, documents, links and the bytes they hold."""

    def _saving(self, sobject: str, record: dict[str, Any]) -> None:
        super()._saving(sobject, record)
        if sobject == "ContentVersion":
            self._new_version(record)
        elif sobject == "ContentDocumentLink":
            self._check_link(record)

    def _saved(self, sobject: str, record: dict[str, Any], change: str, values: dict[str, Any]) -> None:
        super()._saved(sobject, record, change, values)
        if sobject == "ContentVersion" and change == "CREATE":
            self._publish_version(record)

    def _new_version(self, record: dict[str, Any]) -> None:
        """Keep the bytes aside and fill what Salesforce derives from them and from the file's name."""
        content = base64.b64decode(str(record.get("VersionData") or ""))
        path = PurePosixPath(str(record.get("PathOnClient") or "file"))
        extension = path.suffix.lstrip(".").lower()
        self.blobs[record["Id"]] = content
        record.update({"VersionData": f"/services/data/v62.0/sobjects/ContentVersion/{record['Id']}/VersionData",
                       "Title": record.get("Title") or path.stem, "FileExtension": extension or None,
                       "FileType": _FILE_TYPES.get(extension, "UNKNOWN"), "ContentSize": len(content),
                       "IsLatest": True})
        document_id = record.get("ContentDocumentId")
        if document_id and document_id not in self.objects["ContentDocument"]:
            raise fail(400, f"ContentDocumentId: id value of incorrect type: {document_id}",
                       "INVALID_CROSS_REFERENCE_KEY", ["ContentDocumentId"])

    def _publish_version(self, record: dict[str, Any]) -> None:
        """The version's document (made with the first version) and its first link."""
        documents = self.objects["ContentDocument"]
        document_id = record.get("ContentDocumentId")
        if document_id:
            for other in self.objects["ContentVersion"].values():
                if other.get("ContentDocumentId") == document_id and other["Id"] != record["Id"]:
                    other["IsLatest"] = False
        else:
            document_id = sf_id(self.prefixes["ContentDocument"], next(self.counter))
            documents[document_id] = self._stamp("ContentDocument", document_id, {})
            record["ContentDocumentId"] = document_id
        documents[document_id].update({"Title": record["Title"], "FileExtension": record["FileExtension"],
                                       "FileType": record["FileType"], "ContentSize": record["ContentSize"],
                                       "LatestPublishedVersionId": record["Id"],
                                       "OwnerId": record.get("OwnerId")})
        place = record.get("FirstPublishLocationId")
        if place:
            link_id = sf_id(self.prefixes["ContentDocumentLink"], next(self.counter))
            self.objects["ContentDocumentLink"][link_id] = self._stamp("ContentDocumentLink", link_id, {
                "ContentDocumentId": document_id, "LinkedEntityId": place, "ShareType": "I",
                "Visibility": "AllUsers"})

    def _check_link(self, record: dict[str, Any]) -> None:
        """A document is linked to a record once."""
        document, entity = record.get("ContentDocumentId"), record.get("LinkedEntityId")
        for other in self.objects["ContentDocumentLink"].values():
            if other.get("ContentDocumentId") == document and other.get("LinkedEntityId") == entity:
                raise fail(400, f"Document with ID: {document} is already linked with the entity with ID: {entity}",
                           "DUPLICATE_VALUE", [])

    def version_data(self, version_id: str) -> bytes | None:
        """The bytes of a ContentVersion (None: no such version)."""
        with self.lock:
            return self.blobs.get(version_id)

    def add_file(self, name: str, content: bytes, *, link_to: str | None = None, owner: str | None = None) -> str:
        """Upload a file as a person in the org would (no API call counted), optionally linked to a record
        (as the file upload of a record page does); returns the ContentVersion id."""
        with self.lock:
            version_id = sf_id(self.prefixes["ContentVersion"], next(self.counter))
            values: dict[str, Any] = {"PathOnClient": name, "VersionData": base64.b64encode(content).decode()}
            if link_to:
                values["FirstPublishLocationId"] = link_to
            if owner:
                values["OwnerId"] = owner
            record = self._stamp("ContentVersion", version_id, values)
            self._saving("ContentVersion", record)
            self.objects["ContentVersion"][version_id] = record
            self._saved("ContentVersion", record, "CREATE", values)
            return version_id
