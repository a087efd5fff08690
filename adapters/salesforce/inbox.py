"""Salesforce as the relay's CRM inbox, through the chat2crm package (``crm/salesforce``): the REST API for
what the relay writes, the Pub/Sub API for agents' replies.

- :meth:`SalesforceInbox.publish`: one composite call upserts the message record on ``External_Id__c`` (a
  republished message updates the same record) and links its stored files to it (a link that exists is
  taken as done).
- :meth:`SalesforceInbox.upload`: a patient's file becomes a ContentVersion (1 call), linked at publish.
- :meth:`SalesforceInbox.report`: one PATCH of the reply's ``Status__c``, ``Error__c``, ``Sent_At__c``.
- :meth:`SalesforceInbox.file_url`: an agent's file can only be read with the integration user's token, so the
  channel is given the relay's own short-lived signed link (:class:`~adapters.inbox.FileLinks`), which
  :meth:`SalesforceInbox.open_file` serves from ``VersionData`` (1 call per fetch).
- :meth:`SalesforceInbox.stream`: agents' replies and closed conversations as change events
  (:class:`~adapters.salesforce.stream.ChangeStream`); a reply whose event does not hold it (its files were
  attached while it was a draft) is read with its files in one composite call (up to 5 replies per call).
- There are no webhooks: :meth:`SalesforceInbox.parse_webhook` refuses (404).
"""

from __future__ import annotations

import base64
import logging
import mimetypes
from typing import TYPE_CHECKING, Any

from adapters.inbox import CRMInbox, FileContent, FileLinks, InboxLimits, Published, WebhookRequest
from adapters.salesforce.changes import ReadRecord, reply_from_record
from adapters.salesforce.deploy import package_lines
from adapters.salesforce.errors import _error_code
from adapters.salesforce.messages import DEPLOY, OBJECT, TOPIC, publish_subrequests, reply_subrequests, report_body
from adapters.salesforce.session import SalesforceSession
from core.errors import AuthError, FatalError, RetryableError, WebhookRejectedError
from core.inbox import AgentReply, DeliveryReport, FileRef, InboxEvent, ThreadMessage

if TYPE_CHECKING:
    from adapters.base import Deployment
    from adapters.salesforce.options import SalesforceCredentials, SalesforceOptions
    from adapters.salesforce.stream import ChangeStream

log = logging.getLogger("chat2crm.salesforce.inbox")

_MB = 1024 * 1024
#: what a file in the inbox may be: a JSON body holds at most 50 MB of base64 (37.5 MB of file)
LIMITS = InboxLimits(max_file_bytes=36 * _MB, mime_types=InboxLimits().mime_types | frozenset({
    "image/gif", "image/heic", "text/plain", "application/msword", "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}))
#: how many replies one composite call reads (a query each, and Salesforce runs at most 5 per call)
READ_BATCH = 5


class SalesforceInbox(CRMInbox):
    """The chat2crm package's message object as the CRM's inbox.

    Args:
        session: the adapter's session.
        credentials: the adapter's settings (the Pub/Sub endpoint).
        options: the adapter's options (the Case reference field).
        deployment: where the relay is reached, and the key of its links.
    """

    name = "salesforce"
    limits = LIMITS

    def __init__(self, session: SalesforceSession, *, credentials: SalesforceCredentials, options: SalesforceOptions,
                 deployment: Deployment) -> None:
        self.session = session
        self.credentials = credentials
        self.options = options
        self.deployment = deployment

    # -- what the relay writes -------------------------------------------------------------------
    def publish(self, message: ThreadMessage) -> Published:
        subs = publish_subrequests(message, self.session.path, self.options.inbox_case_reference)
        response = self.session.request("inbox_publish", "POST", "composite",
                                        json={"allOrNone": False, "compositeRequest": subs})
        results = {r["referenceId"]: r for r in response["compositeResponse"]}
        written = results["message"]
        if written["httpStatusCode"] == 404:
            raise FatalError(f"salesforce: the chat2crm package is not deployed (no {OBJECT}): `{DEPLOY}`",
                             details={"status": 404})
        if written["httpStatusCode"] >= 300:
            raise self.session.subresponse(written["httpStatusCode"], written["body"], "inbox_publish")
        for ref, result in results.items():
            if ref.startswith(("version", "link")) and result["httpStatusCode"] >= 300 \
                    and _error_code(result["body"]) != "DUPLICATE_VALUE":  # linked by an earlier attempt
                raise self.session.subresponse(result["httpStatusCode"], result["body"], "inbox_publish")
        return Published(crm_message_id=str(written["body"]["id"]))

    def report(self, report: DeliveryReport) -> None:
        self.session.request("inbox_report", "PATCH", f"sobjects/{OBJECT}/{report.crm_message_id}",
                             json=report_body(report))

    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        if len(content) > self.limits.max_file_bytes:
            raise FatalError(f"salesforce: a file of {len(content)} bytes is larger than the inbox takes",
                             details={"max_bytes": self.limits.max_file_bytes})
        if "." not in name and (extension := mimetypes.guess_extension(mime_type)):
            name += extension  # Salesforce derives the file's type from its name
        answer = self.session.request("inbox_upload", "POST", "sobjects/ContentVersion", json={
            "Title": name.rsplit(".", 1)[0][:255], "PathOnClient": name[:500],
            "VersionData": base64.b64encode(content).decode()})
        return FileRef(crm_file_id=str(answer["id"]), name=name, mime_type=mime_type, size=len(content))

    # -- agents' files ---------------------------------------------------------------------------
    def _links(self) -> FileLinks:
        secret = self.deployment.link_secret
        if secret is None:
            raise FatalError("salesforce: an agent's file is sent through the relay's signed link: set "
                             "TRANSCRIPT_SECRET", setting="TRANSCRIPT_SECRET")
        return FileLinks(secret.get_secret_value(), base_url=self.deployment.public_base_url, crm=self.name)

    def file_url(self, file: FileRef) -> str:
        if not file.crm_file_id:
            raise FatalError("salesforce: the agent's file has no ContentVersion id")
        return self._links().url(file)

    def links(self) -> FileLinks:
        """The relay's signed links to files of this inbox (the web route reads them)."""
        return self._links()

    def open_file(self, file: FileRef) -> FileContent:
        content, served = self.session.download("inbox_file", f"sobjects/ContentVersion/{file.crm_file_id}/VersionData")
        mime = file.mime_type or (mimetypes.guess_type(file.name)[0] if file.name else None) or served.split(";")[0]
        return FileContent(content=content, mime_type=mime, name=file.name)

    # -- agents' replies -------------------------------------------------------------------------
    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        raise WebhookRejectedError(404, "salesforce: agents' replies arrive over the Pub/Sub API "
                                        "(`chat2crm listen salesforce`), not webhooks")

    def stream(self) -> ChangeStream:
        from adapters.salesforce.stream import ChangeStream

        return ChangeStream(self.session, endpoint=self.credentials.pubsub_endpoint, complete=self.read_replies,
                            topic=TOPIC)

    def read_replies(self, reads: list[ReadRecord]) -> dict[str, AgentReply | None]:
        """The replies whose change events did not hold them, read with their files (record id → reply; None
        when the record is gone or is not a reply ready to send)."""
        out: dict[str, AgentReply | None] = {}
        for start in range(0, len(reads), READ_BATCH):
            chunk = reads[start:start + READ_BATCH]
            subs = reply_subrequests([r.record_id for r in chunk], self.session.path)
            response = self.session.request("inbox_read", "POST", "composite",
                                            json={"allOrNone": False, "compositeRequest": subs})
            results = {r["referenceId"]: r for r in response["compositeResponse"]}
            for n, read in enumerate(chunk):
                record, files = results[f"record{n}"], results[f"files{n}"]
                if record["httpStatusCode"] == 404:
                    out[read.record_id] = None  # deleted since: nothing to send
                    continue
                for result in (record, files):
                    if result["httpStatusCode"] >= 300:
                        raise self.session.subresponse(result["httpStatusCode"], result["body"], "inbox_read")
                rows: list[dict[str, Any]] = list((files["body"] or {}).get("records") or [])
                out[read.record_id] = reply_from_record(read.record_id, record["body"] or {}, rows, read.commit_user)
        return out

    # -- diagnosis -------------------------------------------------------------------------------
    def check(self) -> list[str]:
        try:
            self.session.login(fresh=True)  # the identity URL names the integration user
            lines = package_lines(self.session, self.session.identity()[1])
        except (AuthError, RetryableError, FatalError) as exc:
            return [f"inbox: MISSING the package cannot be checked: {exc.message}"]
        if any("not deployed" in line for line in lines):
            return lines
        try:
            info = self.stream().topic_info()
            lines.append(f"inbox: ok change events of {OBJECT} reachable on {self.credentials.pubsub_endpoint} "
                         f"({TOPIC}, schema {info.schema_id})")
        except (AuthError, RetryableError, FatalError) as exc:
            lines.append(f"inbox: MISSING the change events cannot be subscribed to: {exc.message}")
        if self.deployment.link_secret is None:
            lines.append("inbox: MISSING TRANSCRIPT_SECRET: agents' files are sent through the relay's signed links")
        else:
            lines.append(f"inbox: ok agents' files are served from {self.deployment.public_base_url.rstrip('/')}"
                         "/crm/salesforce/files/… (links valid 15 minutes)")
        return lines
