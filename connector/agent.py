"""Agents' replies: from the CRM's inbox to the patient, each once, and what became of them back to the CRM.

An agent's reply arrives as a CRM webhook (:mod:`connector.crm_web`); :func:`accept` takes it in one
transaction: a de-duplication mark on the CRM's message id (:data:`SEEN`: a redelivered webhook changes
nothing), an ``agent`` entry in the conversation's outbox with its delivery job, and the entry's record
(:data:`ENTRY`) that lets a status webhook find it. The outbox sends it in order with the bot's replies,
through :func:`send`:

- the patient's language and last message time come from the conversation; the agent's files become
  short-lived CRM links the channel fetches;
- on WhatsApp, more than 24 hours after the patient last wrote, only an approved template may go: the
  one configured for the patient's language carries the reply as its body parameter; with none, the
  reply is not sent and the agent is told why;
- every send carries the entry id as tracking (WhatsApp echoes it in its status webhooks); once the
  channel answers, one step pops the entry, records the channel's ids (:data:`SENT_IDS`) and queues a
  ``sent`` report.

A worker killed between the channel's answer and that step must not send the reply twice. Found marked
``sending``, an entry is not sent again at once: on WhatsApp the relay waits (retrying, up to
:data:`CONFIRM_GRACE_SECONDS`) for the status webhook carrying its tracking, which confirms it
(:func:`on_status`); with none in that time it was not sent, and is sent. Telegram echoes nothing: the
reply is reported failed (outcome unknown) rather than risk a double.

Delivery reports (sent, delivered, read, failed) wait in one durable queue (:data:`REPORTS`), drained
in order by a ``report_delivery`` job (:func:`drain_reports`) with the retry policy; a status never goes
backwards (:data:`STATUS`); the sweeper enqueues the queue again when its job was lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from connector import completeness, conversations, measures, outbox, queues
from connector.channels import STATUS as STATUS_OF
from connector.channels import client_for
from connector.channels.base import StatusUpdate
from connector.config import Retention
from connector.conversations import short
from connector.crash import crash_point
from connector.locks import Lock
from connector.transaction import Transaction
from core import lua, metrics
from core.errors import ConfigurationError, FatalError, RetryableError, SyncError
from core.inbox import AgentReply, DeliveryReport, DeliveryStatus
from core.keys import family
from core.models import Attachment, Channel, Conversation, Reply

if TYPE_CHECKING:
    from adapters.inbox import CRMInbox
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.agent")

SEEN = family("agent-reply", "{crm_message}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
ENTRY = family("agent-entry", "{entry}", ttl="retention.dedup_days", holds_pii=True, owner=__name__)
SENT_IDS = family("agent-sent", "{channel}:{message_id}", ttl="retention.dedup_days", holds_pii=False,
                  owner=__name__)
STATUS = family("agent-status", "{crm_message}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)
REPORTS = family("agent-reports", ttl="retention.transcript_days", holds_pii=False, owner=__name__)
REPORTS_DUE = family("agent-reports", "due", ttl=None, holds_pii=False, owner=__name__,
                     bounded_by="one key: when the reports' job could have been lost")
REPORTS_LOCK = family("agent-reports", "lock", ttl="delivery.job_timeout_seconds", holds_pii=False, owner=__name__)
#: the head report's failed tries and when its retry is due (the reports behind it wait)
REPORTS_HOLD = family("agent-reports", "hold", ttl="delivery.backoff_max_seconds", holds_pii=False, owner=__name__)

#: a person ``chat2crm forget`` erased (by a digest of their channel id, never the id): agents' replies to the
#: conversation they had are not sent, until they write again
FORGOTTEN = family("agent-forgotten", "{digest}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)

#: how long a reply found marked ``sending`` on WhatsApp waits for the status webhook that would confirm it
CONFIRM_GRACE_SECONDS = 60.0
#: the 24-hour customer-service window of WhatsApp
WINDOW = timedelta(hours=24)
#: the mark of a send confirmed by its tracked status webhook (followed by the channel's message id)
TRACKED = "tracked:"
WINDOW_REASON = ("the patient last wrote more than 24 hours ago; WhatsApp only allows an approved template; "
                 "none is configured for {language}")
UNKNOWN_REASON = "outcome unknown: the relay stopped while sending; not sent again"
WINDOW_FILES_REASON = ("the patient last wrote more than 24 hours ago; WhatsApp only allows an approved template, "
                       "which carries text only: send the text alone now, and the files once the patient writes again")
FORGOTTEN_REASON = ("the patient's data was erased at their request (chat2crm forget); nothing is sent until they "
                    "write again")
OPTED_OUT_REASON = ("the patient asked not to be messaged (they wrote STOP or blocked the bot); nothing is sent until "
                    "they write again")
#: what a ``failed`` the relay reported itself (nothing went out) is remembered as: a later send of the same
#: reply (``chat2crm failed replay``) may still report it sent
UNSENT = "failed-unsent"
_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4, UNSENT: 0}

# The tracked status confirms a send whose outcome the relay does not know (still marked ``sending``).
_CONFIRM = """
local mark = redis.call('get', KEYS[1])
if mark and string.sub(mark, 1, 7) == 'sending' then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
# Pop the report at the head if it is still the one handled, and remember the status it told.
_REPORTED = """
if redis.call('lindex', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('lpop', KEYS[1])
if ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
redis.call('del', KEYS[4])
if redis.call('llen', KEYS[1]) == 0 then redis.call('del', KEYS[3]) end
return 1
"""


class AwaitingConfirmation(RetryableError):
    """An earlier send's outcome is unknown: the channel's tracked status may still confirm it."""


# -- accepting ------------------------------------------------------------------------------------
def entry_id(crm_message_id: str) -> str:
    """The outbox entry id of an agent's reply (also its tracking on the channel): stable per CRM message."""
    return "a" + hashlib.sha256(f"agent|{crm_message_id}".encode()).hexdigest()[:23]


def parse_key(key: str) -> tuple[Channel, str, str] | None:
    """``(channel, account, sender)`` of a conversation key, or None when it is not one."""
    channel, _, rest = key.partition(":")
    account, _, sender = rest.partition(":")
    if not (account and sender):
        return None
    if channel == "whatsapp":
        return "whatsapp", account, sender
    return ("telegram", account, sender) if channel == "telegram" else None


def accept(runtime: Runtime, reply: AgentReply, key: str) -> bool:
    """Queue an agent's reply for conversation ``key`` in one transaction (see the module). Returns False
    for a reply already accepted (a redelivered webhook: nothing changes).

    Raises:
        ValueError: ``key`` is not a conversation key.
        redis.RedisError: Redis failed; nothing was queued (the CRM redelivers).
    """
    parts = parse_key(key)
    if parts is None:
        raise ValueError(f"not a conversation key: {short(key)}")
    channel, account, sender = parts
    entry = outbox.Entry(id=entry_id(reply.crm_message_id), kind="agent", conversation=key, channel=channel,
                         account=account, sender_id=sender, text=reply.text, files=list(reply.attachments),
                         crm_message_id=reply.crm_message_id)
    dedup = runtime.config.retention.dedup_days * 86400
    tx = Transaction(runtime.redis).require_absent(SEEN.key(reply.crm_message_id), dedup)
    tx.pipe.set(ENTRY.key(entry.id), json.dumps({"crm_message_id": reply.crm_message_id, "conversation": key}),
                ex=dedup)
    outbox.stage(runtime, tx.pipe, key, [entry])
    return tx.commit()


# -- sending --------------------------------------------------------------------------------------
def send(runtime: Runtime, key: str, raw: bytes, entry: outbox.Entry) -> int:
    """Send one agent entry at the head of the outbox and record it (see the module). Returns 1 when a
    message went out, else 0.

    Raises:
        AwaitingConfirmation: an earlier send may have gone out; its confirmation is awaited (retry later).
        FatalError: the reply cannot be sent (no inbox, WhatsApp's window without a template).
        Exception: the channel refused it, or did not answer.
    """
    client = runtime.redis
    crm = runtime.inbox
    if crm is None:
        raise FatalError("the CRM inbox is off (inbox.enabled, or an adapter without one): the reply is not sent")
    sent_key = outbox.SENT.key(entry.id)
    found = client.get(sent_key)
    mark = None if found is None else _text(found)
    if mark is not None and not mark.startswith("sending"):  # sent before: recorded, or confirmed by its status
        _ack(runtime, key, raw, entry, mark.removeprefix(TRACKED).split(","), report=not mark.startswith(TRACKED))
        return 0
    if mark is not None:
        if entry.channel != "whatsapp":
            _give_up(runtime, key, raw, entry, UNKNOWN_REASON)
            return 0
        deadline = float(mark.partition(":")[2] or 0) or time.time() + CONFIRM_GRACE_SECONDS
        if mark == outbox.SENDING.decode():
            client.set(sent_key, f"sending:{deadline}", ex=_ttl(runtime))
        if time.time() < deadline:
            raise AwaitingConfirmation("waiting for WhatsApp to confirm an earlier send of this reply",
                                       retry_after=min(deadline - time.time(), 1.0))
        log.warning("agent reply sent again: no status confirmed the earlier send",
                    extra={"conversation": short(key), "entry": entry.id})
    state = conversations.load(runtime, key)
    if state is not None and state.opted_out:
        raise FatalError(OPTED_OUT_REASON, details={"code": "opted_out"})
    erased = client.get(FORGOTTEN.key(_digest(entry.sender_id)))
    if erased is not None and (state is None or state.last_inbound_at is None
                               or state.last_inbound_at.timestamp() < float(erased)):
        raise FatalError(FORGOTTEN_REASON, details={"code": "forgotten"})
    recipient = Conversation(key=key, channel=entry.channel, account=entry.account, sender_id=entry.sender_id,
                             language=state.language if state else None,
                             last_inbound_at=state.last_inbound_at if state else None)
    reply = _reply(runtime, crm, entry, recipient)
    client.set(sent_key, outbox.SENDING, ex=_ttl(runtime))
    crash_point("agent-sending")
    try:
        ids = client_for(runtime, entry.channel).send(recipient, [reply], tracking=entry.id)
    except Exception as exc:
        if not isinstance(exc, RetryableError) or "status" in exc.details:
            client.delete(sent_key)  # the channel answered: nothing went out (a time-out keeps the mark)
        raise
    crash_point("agent-sent")
    _ack(runtime, key, raw, entry, ids, report=True)
    metrics.incr(client, "messages_out", channel=entry.channel, outcome="agent")
    measures.agent_replied(runtime, state)
    completeness.agent_replied(runtime, state, entry.text or "")
    log.info("agent reply sent", extra={"conversation": short(key), "entry": entry.id})
    return 1


def _reply(runtime: Runtime, crm: CRMInbox, entry: outbox.Entry, recipient: Conversation) -> Reply:
    """The message to send: the agent's text and files, or, outside WhatsApp's window, the template.

    Raises:
        FatalError: outside the window with no template for the patient's language.
    """
    text = entry.text or ""
    last = recipient.last_inbound_at
    if entry.channel == "whatsapp" and (last is None or datetime.now(UTC) - last >= WINDOW):
        language = recipient.language or ""
        template = runtime.config.inbox.window_templates.get(language)
        if template is None:
            raise FatalError(WINDOW_REASON.format(language=language or "an unknown language"),
                             details={"code": "window"})
        if entry.files:  # a template carries text only: the agent is told, rather than the files dropped
            raise FatalError(WINDOW_FILES_REASON, details={"code": "window"})
        return Reply(text=text, template=template.name, template_language=template.language,
                     template_params=[text or "-"])
    files = [Attachment(url=crm.file_url(f), mime_type=f.mime_type, name=f.name) for f in entry.files]
    return Reply(text=text, attachments=files)


def _ack(runtime: Runtime, key: str, raw: bytes, entry: outbox.Entry, ids: list[str], *, report: bool) -> bool:
    """Pop the head if it is still ``raw``, record the channel's ids for later statuses and queue the ``sent``
    report: one transaction."""
    ids = [i for i in ids if i]
    ttl = _ttl(runtime)
    tx = Transaction(runtime.redis).require_head(outbox.OUTBOX.key(key), raw)
    pipe = tx.pipe
    pipe.lpop(outbox.OUTBOX.key(key))
    pipe.set(outbox.SENT.key(entry.id), ",".join(ids) or "sent", ex=ttl)
    for channel_id in ids:
        pipe.set(SENT_IDS.key(entry.channel, channel_id), json.dumps({"crm_message_id": entry.crm_message_id}), ex=ttl)
    if report and entry.crm_message_id:
        stage_report(runtime, pipe, DeliveryReport(crm_message_id=entry.crm_message_id, status="sent",
                                                   channel_message_ids=ids))
    return tx.commit()


def _give_up(runtime: Runtime, key: str, raw: bytes, entry: outbox.Entry, reason: str) -> bool:
    """Pop the head and report it failed with ``reason`` (one transaction)."""
    tx = Transaction(runtime.redis).require_head(outbox.OUTBOX.key(key), raw)
    tx.pipe.lpop(outbox.OUTBOX.key(key))
    if entry.crm_message_id:
        stage_report(runtime, tx.pipe, DeliveryReport(crm_message_id=entry.crm_message_id, status="failed",
                                                      reason=reason))
    log.warning("agent reply not sent", extra={"conversation": short(key), "entry": entry.id, "reason": reason})
    metrics.incr(runtime.redis, "messages_out", channel=entry.channel, outcome="failed")
    return tx.commit()


def report_failure(runtime: Runtime, entry: outbox.Entry, exc: BaseException) -> None:
    """Queue the ``failed`` report of an agent's reply that will not be sent (refused, or out of retries):
    the channel's code and its reason, or the relay's own reason."""
    if not entry.crm_message_id:
        return
    code = exc.details.get("code") if isinstance(exc, SyncError) else None
    reason = exc.message if isinstance(exc, SyncError) else "the relay could not send it"
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.multi()  # rq joins an open transaction; it would otherwise run its commands at once
    stage_report(runtime, pipe, DeliveryReport(crm_message_id=entry.crm_message_id, status="failed",
                                               code=None if code in (None, "window", "opted_out", "forgotten") else str(code),
                                               reason=reason))
    pipe.execute()


# -- statuses and reports -------------------------------------------------------------------------
# A status webhook in one call: the message's latest status kept, the status counted, and what makes it an agent's
# reply read. KEYS: the message's status, its tracked entry ('' when untracked), its agent-sent record, the count's
# hash. ARGV: the status, the status's TTL, the count's field, '1' when tracked. Returns the two records ('' when
# absent).
_SEEN = """
local rank = {sent = 1, delivered = 2, read = 3, failed = 4}
local current = redis.call('get', KEYS[1])
if not current or (rank[ARGV[1]] or 0) >= (rank[current] or 0) then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
redis.call('hincrbyfloat', KEYS[4], ARGV[3], 1)
local entry = false
if ARGV[4] == '1' then entry = redis.call('get', KEYS[2]) end
return {entry or '', redis.call('get', KEYS[3]) or ''}
"""


def on_status(runtime: Runtime, status: StatusUpdate, *, counted_as: tuple[str, str]) -> bool:
    """A channel's status webhook: the message's latest status kept (statuses arrive out of order, a later one
    never overwritten by an earlier one), the status counted in ``counted_as`` (a counter's hash and field,
    :func:`core.metrics.counter_field`), and, if it is about an agent's reply (by its tracking or its message
    id), a send whose outcome was unknown confirmed and the report queued. Returns whether it was an agent's.

    The status, the count and the look-ups of an agent's reply are one call: most statuses are of the bot's
    replies, two or three for every one of them, so they are most of the webhooks a clinic receives.
    """
    client = runtime.redis
    tracking = status.tracking
    entry_raw, sent_raw = lua.run(client, _SEEN, keys=[
        STATUS_OF.key(status.channel, status.message_id), ENTRY.key(tracking) if tracking else "",
        SENT_IDS.key(status.channel, status.message_id), counted_as[0],
    ], args=[status.status, _ttl(runtime), counted_as[1], "1" if tracking else ""])
    crm_id = json.loads(entry_raw).get("crm_message_id") if entry_raw else None
    if crm_id is None:
        crm_id = json.loads(sent_raw).get("crm_message_id") if sent_raw else None
    if not crm_id or status.status not in _RANK:
        return False
    ttl = _ttl(runtime)
    if tracking:
        lua.run(client, _CONFIRM, [outbox.SENT.key(tracking)], [TRACKED + status.message_id, ttl])
    code, reason = _failure(status) if status.status == "failed" else (None, None)
    pipe = client.pipeline(transaction=True)
    pipe.multi()
    pipe.set(SENT_IDS.key(status.channel, status.message_id), json.dumps({"crm_message_id": crm_id}), ex=ttl)
    stage_report(runtime, pipe, DeliveryReport(crm_message_id=crm_id, status=_status(status.status), code=code,
                                               reason=reason, channel_message_ids=[status.message_id]))
    pipe.execute()
    return True


def mark_forgotten(runtime: Runtime, sender_ids: set[str] | list[str]) -> None:
    """Remember that these people were erased (``chat2crm forget``): an agent's reply to a conversation they had
    before is not sent. Only a digest of each id is kept, for as long as a reply could still be redelivered."""
    try:
        ttl = _ttl(runtime)
    except ConfigurationError:  # erasing must work even with a broken configuration: the default retention
        ttl = Retention().dedup_days * 86400
    now = str(time.time())
    pipe = runtime.redis.pipeline(transaction=False)
    for sender in sender_ids:
        pipe.set(FORGOTTEN.key(_digest(sender)), now, ex=ttl)
    pipe.execute()


def _digest(sender_id: str) -> str:
    return hashlib.sha256(f"chat2crm-forgotten|{sender_id}".encode()).hexdigest()[:32]


def _status(value: str) -> DeliveryStatus:
    statuses: dict[str, DeliveryStatus] = {"sent": "sent", "delivered": "delivered", "read": "read",
                                           "failed": "failed"}
    return statuses[value]


def _failure(status: StatusUpdate) -> tuple[str | None, str | None]:
    """The code and a reason a person can read, from a failed status's first error."""
    error: dict[str, Any] = status.errors[0] if status.errors else {}
    found = error.get("error_data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    reason = data.get("details") or error.get("title") or error.get("message") or "the channel did not deliver it"
    code = error.get("code")
    return (str(code) if code is not None else None), str(reason)[:300]


def stage_report(runtime: Runtime, pipe: redis.client.Pipeline, report: DeliveryReport) -> None:
    """Queue ``report`` for the CRM and enqueue its job, as part of a transaction."""
    pipe.rpush(REPORTS.key(), report.model_dump_json())
    pipe.expire(REPORTS.key(), REPORTS.seconds(runtime.config) or 0)
    pipe.set(REPORTS_DUE.key(), time.time() + runtime.config.delivery.lost_job_seconds)
    queues.enqueue(runtime, queues.CRM, queues.REPORT_DELIVERY, pipe=pipe, description="delivery report")


def reports(runtime: Runtime) -> list[DeliveryReport]:
    """The reports waiting for the CRM, in order (tests and diagnosis)."""
    return [DeliveryReport.model_validate_json(raw) for raw in runtime.redis.lrange(REPORTS.key(), 0, -1)]


#: what the job does with a report the CRM refused on the ``attempt``-th try: True to go on (it was
#: dropped), False to stop (a retry is scheduled: :func:`hold_reports`)
OnReportFailure = Callable[[DeliveryReport, Exception, int], bool]


def drain_reports(runtime: Runtime, crm: CRMInbox, on_failure: OnReportFailure, *, retrying: bool = False) -> int:
    """Write the waiting reports to the CRM, in order, under one lock; returns how many were written. A
    report saying less than one already told (``sent`` after ``delivered``) is dropped. A head waiting for
    its retry stops every job but that retry's own (``retrying``).

    Raises:
        redis.RedisError: Redis failed; the report stays at the head (the sweeper enqueues the job again).
    """
    hold = runtime.redis.get(REPORTS_HOLD.key())
    data = json.loads(hold) if hold else {}
    until, attempt = float(data.get("until", 0)), int(data.get("attempt", 0))
    if until > time.time() + 1 and not retrying:  # rq may start a retry up to a second early
        return 0
    held = Lock(runtime.redis, REPORTS_LOCK.key(), runtime.config.delivery.job_timeout_seconds)
    if not held.acquire():
        return 0
    written = 0
    try:
        while (head := runtime.redis.lindex(REPORTS.key(), 0)) is not None:
            raw = head if isinstance(head, bytes) else str(head).encode()
            report = DeliveryReport.model_validate_json(raw)
            told = _text(runtime.redis.get(STATUS.key(report.crm_message_id)) or b"")
            if _RANK[report.status] <= _RANK.get(told, 0):
                _reported(runtime, raw, "")
                continue
            try:
                crm.report(report)
            except redis.RedisError:
                raise
            except Exception as exc:
                if not on_failure(report, exc, attempt):
                    return written
                _reported(runtime, raw, "")
                attempt = 0
                continue
            _reported(runtime, raw, UNSENT if report.status == "failed" and not report.channel_message_ids
                      else report.status)
            attempt = 0
            written += 1
            held.extend()
    finally:
        held.release()
    return written


def _reported(runtime: Runtime, raw: bytes, status: str) -> None:
    """The head report is done with: pop it, remember the status it told, forget its failed tries."""
    report = DeliveryReport.model_validate_json(raw)
    lua.run(runtime.redis, _REPORTED,
            [REPORTS.key(), STATUS.key(report.crm_message_id), REPORTS_DUE.key(), REPORTS_HOLD.key()],
            [raw, status, _ttl(runtime)])


def hold_reports(runtime: Runtime, delay: float, attempt: int) -> None:
    """Hold the reports for ``delay`` seconds (the head's retry, its ``attempt``-th try, is scheduled) and
    leave them alone in the sweeper's eyes until the retry could have been lost."""
    ceiling = int(runtime.config.delivery.backoff_max_seconds)
    runtime.redis.set(REPORTS_HOLD.key(), json.dumps({"until": time.time() + delay, "attempt": attempt}),
                      ex=max(1, min(ceiling, int(delay) + 1)))
    postpone_reports(runtime, delay + runtime.config.delivery.lost_job_seconds)


def reports_due(runtime: Runtime, now: float) -> bool:
    """Whether reports wait and their job could have been lost by ``now``."""
    if not runtime.redis.llen(REPORTS.key()):
        runtime.redis.delete(REPORTS_DUE.key())
        return False
    due = runtime.redis.get(REPORTS_DUE.key())
    return due is None or float(due) <= now


def postpone_reports(runtime: Runtime, seconds: float) -> None:
    """Leave the reports alone (in the sweeper's eyes) for ``seconds``: a job is on its way."""
    runtime.redis.set(REPORTS_DUE.key(), time.time() + seconds)


def reports_locked(runtime: Runtime) -> float | None:
    """Seconds until the reports' lock frees itself, or None when it is free."""
    remaining = int(runtime.redis.pttl(REPORTS_LOCK.key()))
    return None if remaining == -2 else max(remaining, 0) / 1000


def enqueue_reports(runtime: Runtime, delay: float = 0.0) -> None:
    """Enqueue the reports' job (after ``delay`` seconds: the head's retry)."""
    if delay > 0:
        queues.enqueue_in(runtime, queues.CRM, delay, queues.REPORT_DELIVERY, retrying=True,
                          description="delivery report")
    else:
        queues.enqueue(runtime, queues.CRM, queues.REPORT_DELIVERY, description="delivery report")


def _ttl(runtime: Runtime) -> int:
    return runtime.config.retention.dedup_days * 86400


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
