"""Pipedrive as the relay's CRM inbox: the conversation after the bot as notes on the person and the lead or
deal, and agents' replies written in the app's custom panel.

Pipedrive has no conversations inbox an app can publish into (its Channels API, the Messaging app
extension, was removed on 1 February 2026), so:

- each patient's message is a note on the person and on the lead or deal the relay wrote (one note
  attached to both), written once: its id is kept in the adapter's id cache under a marker made from the
  message id, and a note whose create went unanswered is looked for among the record's notes (a list,
  current) before it is written again, as the adapter does for a lead's note. A patient's file is uploaded
  with the files API and named in the note;
- the bot's part of the conversation is not written again (the lead's note carries its summary and the
  transcript link), but the panel shows it;
- an agent answers in the panel (:mod:`adapters.pipedrive.panel` checks who they are and what they may
  see; the relay's web side takes the reply, :mod:`connector.panel_web`), its id
  ``pipedrive-panel:{person}:{the panel's idempotency key}``; its files are stored in Pipedrive on the
  person and sent to the patient from a short-lived link on the relay;
- what became of a reply is a note on the person once it is sent, or once it is not (with the reason);
  delivered and read only change what the panel shows.

Every message and reply is also kept in the panel's own log (:mod:`adapters.pipedrive.thread_log`).

Calls per patient message: 1 (the note, 10 API tokens), plus 1 upload per file (10). Per agent's reply:
1 note when sent or failed (10), plus per file 1 upload (10) and 1 download when the channel fetches it (20).
The panel: 1 permitted-users read (10) per user and record every 5 minutes; a deal's person is read once (1)
when the relay did not publish on that deal.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.base import NoteWrite, Ref
from adapters.inbox import CRMInbox, InboxLimits, Published, WebhookRequest
from adapters.pipedrive.keys import CLAIM_SECONDS, PANEL_CLAIMS
from adapters.pipedrive.thread_log import PanelLog
from core.errors import AuthError, ConfigurationError, FatalError, WebhookRejectedError
from core.inbox import AgentReply, DeliveryReport, FileRef, InboxEvent, ThreadMessage

if TYPE_CHECKING:
    from adapters.pipedrive.adapter import PipedriveAdapter
    from adapters.pipedrive.oauth import PipedriveOAuth, PipedriveTokenStore
    from adapters.pipedrive.panel import PanelGuard
    from adapters.pipedrive.session import Download

#: the prefix of an agent's reply written in the panel: ``pipedrive-panel:{person}:{key}``
REPLY_PREFIX = "pipedrive-panel"
#: an idempotency key the panel generates per reply (a UUID, or any such token)
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CHANNELS = {"whatsapp": "WhatsApp", "telegram": "Telegram"}


def marker(kind: str, key: str) -> str:
    """The idempotency marker of one note: opaque (a message id can name a patient's number)."""
    return f"chat2crm:{kind}:{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def reply_id(person: str, key: str) -> str:
    """The relay's id of an agent's reply written in the panel of ``person`` with idempotency ``key``.

    Raises:
        ValueError: ``person`` is not a Pipedrive id, or ``key`` not an idempotency key.
    """
    if not person.isdigit() or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"an idempotency key is 8 to 64 letters, digits, '-' or '_', got {key!r}")
    return f"{REPLY_PREFIX}:{person}:{key}"


def person_of(reply: str) -> str | None:
    """The person a panel reply's id names (None: not a panel reply's id)."""
    prefix, _, rest = reply.partition(":")
    person, _, key = rest.partition(":")
    return person if prefix == REPLY_PREFIX and person.isdigit() and KEY_PATTERN.fullmatch(key) else None


class PipedriveInbox(CRMInbox):
    """The conversation as notes, replies from the panel (see the module).

    Args:
        adapter: the Pipedrive adapter (its session, id cache and note writing).
        mode: ``panel`` (notes and the panel) or ``notes`` (notes only).
        oauth: the app's OAuth (None: the API token is used, and there is no panel).
        store: the app's installation.
        guard: the panel's checks (None: no panel).
        limits: the files the inbox takes.
    """

    name = "pipedrive"
    local_history = True  # history lines go to the panel's log in Redis, not to Pipedrive

    def __init__(self, adapter: PipedriveAdapter, *, mode: str, oauth: PipedriveOAuth | None,
                 store: PipedriveTokenStore, guard: PanelGuard | None, limits: InboxLimits) -> None:
        if adapter.redis is None:
            raise ConfigurationError("the Pipedrive inbox keeps its panel's log in Redis; set REDIS_URL")
        self.adapter = adapter
        self.mode = mode
        self.oauth = oauth
        self.store = store
        self.guard = guard
        self.limits = limits
        self.log = PanelLog(adapter.redis)

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, message: ThreadMessage) -> Published:
        person = message.contact_id
        if not person or not person.isdigit():
            raise FatalError("pipedrive: a message needs the patient's person (the lead is not written yet)",
                             field="contact_id")
        entry: dict[str, Any] = {
            "id": message.id, "kind": "message", "conversation": message.conversation, "channel": message.channel,
            "direction": message.direction, "text": message.text, "at": message.at, "history": message.history,
            "name": message.name, "files": [_file_entry(f) for f in message.attachments if f.crm_file_id]}
        if message.history:
            # the bot's part is on the lead's note already (summary, transcript link): the panel shows it
            self.log.add(person, entry)
            return Published(crm_message_id=f"log:{message.id}")
        record = self._record(message.reference)
        note = self.adapter._note(NoteWrite(body=_message_html(message), marker=marker("msg", message.id)),
                                  contact=Ref(object="person", id=person), record=record)
        if record is not None and record.object == "deal" and self.guard is not None:
            self.guard.note_deal(record.id, person)
        self.log.add(person, {**entry, "note": note.id})
        return Published(crm_message_id=note.id)

    def _record(self, reference: str | None) -> Ref | None:
        """The lead's record, when the id cache still knows it (no call is made to find it)."""
        if not reference:
            return None
        for kind in ("lead", "deal"):
            found = self.adapter.cache.get("record", kind, reference)
            if found:
                return Ref(object=kind, id=found.partition("|")[0])
        return None

    # -- agents' replies (the panel) -------------------------------------------------------------
    def thread(self, person: str) -> list[dict[str, Any]]:
        """The person's conversations as the panel shows them, oldest first (files with links that work for
        a few minutes)."""
        entries = self.log.entries(person)
        for entry in entries:
            for file in entry.get("files") or []:
                if self.guard is not None and file.get("id"):
                    file["url"] = self.guard.file_link(str(file["id"]), str(file.get("name") or "file"),
                                                       str(file.get("mime_type") or "application/octet-stream"))
        return entries

    def claim(self, reply: str) -> bool:
        """Take an agent's reply (its id) for the request at hand: False when another request has it (a
        double click): that one stores its file and queues it."""
        assert self.adapter.redis is not None
        return bool(self.adapter.redis.set(PANEL_CLAIMS.key(reply), "1", nx=True, ex=CLAIM_SECONDS))

    def unclaim(self, reply: str) -> None:
        """Let the reply be taken again (the request failed before it was queued)."""
        assert self.adapter.redis is not None
        self.adapter.redis.delete(PANEL_CLAIMS.key(reply))

    def record_reply(self, person: str, conversation: str, reply: AgentReply) -> None:
        """Keep an accepted agent's reply in the panel's log."""
        self.log.add(person, {"id": reply.crm_message_id, "kind": "reply", "conversation": conversation,
                              "direction": "outgoing", "text": reply.text, "agent": reply.agent,
                              "at": reply.at or datetime.now(UTC),
                              "files": [_file_entry(f) for f in reply.attachments if f.crm_file_id]})

    def record_event(self, person: str, conversation: str, event_id: str, text: str) -> None:
        """Keep something that happened in the conversation (it was handed back to the bot) in the log."""
        self.log.add(person, {"id": event_id, "kind": "event", "conversation": conversation, "text": text,
                              "at": datetime.now(UTC)})

    def report(self, report: DeliveryReport) -> None:
        person = person_of(report.crm_message_id)
        if person is None:
            raise FatalError(f"pipedrive: {report.crm_message_id!r} is not a panel reply's id", field="crm_message_id")
        reason = report.reason + (f" ({report.code})" if report.code else "") if report.reason else None
        self.log.set_status(report.crm_message_id, report.status, reason=reason, code=report.code)
        if report.status not in ("sent", "failed"):
            return  # delivered and read: the panel shows them; a note each would bury the conversation
        entry = self.log.entry(person, report.crm_message_id) or {}
        said = html.escape(str(entry.get("text") or "")).replace("\n", "<br>")
        who = html.escape(str(entry.get("agent") or "an agent"))
        if report.status == "sent":
            head = f"<p><strong>Reply by {who}</strong> → patient: ✅ sent</p>"
        else:
            head = (f"<p><strong>Reply by {who}</strong> → patient: ❌ NOT sent: "
                    f"{html.escape(reason or 'not sent')}</p>")
        body = head + (f"<p>{said}</p>" if said else "")
        self.adapter._note(NoteWrite(body=body, marker=marker(f"reply-{report.status}", report.crm_message_id)),
                           contact=Ref(object="person", id=person), record=None)

    # -- files ---------------------------------------------------------------------------------
    def upload(self, name: str, mime_type: str, content: bytes) -> FileRef:
        return self._upload(name, mime_type, content, person=None)

    def store_agent_file(self, name: str, mime_type: str, content: bytes, person: str) -> FileRef:
        """Store an agent's file from the panel on the person; its reference for the reply.

        Raises:
            FatalError: too large, or of a type the channels do not take.
            RetryableError, AuthError: as the session's calls.
        """
        return self._upload(name, mime_type, content, person=person)

    def _upload(self, name: str, mime_type: str, content: bytes, *, person: str | None) -> FileRef:
        if len(content) > self.limits.max_file_bytes:
            raise FatalError(f"pipedrive: a file of {len(content)} bytes is over the {self.limits.max_file_bytes} "
                             "the relay sends", field="attachments")
        base_type = mime_type.split(";", maxsplit=1)[0].strip().lower()
        if base_type not in self.limits.mime_types:
            raise FatalError(f"pipedrive: {base_type or 'such'} files are not sent to patients", field="attachments")
        form = {"person_id": person} if person else {}
        answer = self.adapter.session.request("file_upload", "POST", "/v1/files", body=form,
                                              files={"file": (name, content, base_type)})
        return FileRef(name=name, mime_type=base_type, size=len(content), crm_file_id=str(answer["data"]["id"]))

    def file_url(self, file: FileRef) -> str:
        if file.crm_file_id and self.guard is not None:
            return self.guard.file_link(file.crm_file_id, file.name or "file",
                                        file.mime_type or "application/octet-stream")
        if file.url:
            return file.url
        raise FatalError("pipedrive: an attachment names no file the relay can serve (the panel is off)",
                         field="attachments")

    def download(self, file_id: str) -> Download:
        """A stored file's bytes (``GET /v1/files/{id}/download``)."""
        return self.adapter.session.download("file_download", f"/v1/files/{file_id}/download")

    # -- webhooks ------------------------------------------------------------------------------
    def parse_webhook(self, request: WebhookRequest) -> list[InboxEvent]:
        raise WebhookRejectedError(404, "pipedrive: agents answer from the app's panel "
                                        "(/crm/pipedrive/panel/reply); there are no webhooks here")

    # -- diagnosis -----------------------------------------------------------------------------
    def check(self) -> list[str]:
        if self.mode == "notes" or self.guard is None or self.oauth is None:
            return ["inbox: notes (each patient message is a note on the person and the lead or deal; "
                    "no panel: agents cannot answer from Pipedrive)"]
        lines = ["inbox: panel (notes on the person and the lead or deal; agents answer in the app's custom panel)"]
        try:
            tokens = self.store.load()
        except (ConfigurationError, AuthError) as exc:
            return [*lines, f"inbox: MISSING the app's tokens cannot be read: {exc.message.splitlines()[-1].strip()}"]
        if tokens is None:
            return [*lines, f"inbox: MISSING the Pipedrive app is not installed: {self.oauth.reinstall_hint()}"]
        left = tokens.expires_at - self.oauth.clock()
        lines.append(f"inbox: app installed in company {tokens.company_id} ({tokens.api_domain}); access token "
                     + (f"good for {int(left // 60)} more minutes" if left > 0 else "expired (refreshed on next use)"))
        base = self.guard.public_base_url
        lines.append(f"inbox: the custom panel's URL (Developer Hub, person and deal detail views): {base}/crm/pipedrive/panel")
        lines.append(f"inbox: the app's OAuth callback URL: {base}/crm/pipedrive/oauth/callback")
        return lines


def _file_entry(file: FileRef) -> dict[str, Any]:
    return {"id": file.crm_file_id, "name": file.name, "mime_type": file.mime_type, "size": file.size}


def _message_html(message: ThreadMessage) -> str:
    """A patient's message as a note: who wrote, on which channel, when, the text (escaped: it is HTML) and the
    files stored with it."""
    channel = _CHANNELS.get(message.channel, str(message.channel))
    who = html.escape(message.name or "Patient")
    at = message.at if message.at.tzinfo else message.at.replace(tzinfo=UTC)
    lines = [f"<p><strong>{who}</strong> → clinic · {channel} · {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC</p>"]
    if message.text:
        lines.append("<p>" + html.escape(message.text).replace("\n", "<br>") + "</p>")
    for file in message.attachments:
        name = html.escape(file.name or file.mime_type or "attachment")
        stored = f" (Pipedrive file {html.escape(file.crm_file_id)})" if file.crm_file_id else " (not stored)"
        lines.append(f"<p>📎 {name}{stored}</p>")
    return "".join(lines)
