"""Webhooks received and not yet read: the door keeps the raw body, a job process reads it.

The webhook (:mod:`connector.webhooks`) checks the proof on the raw body and appends the body, as
received, to its channel's intake in one small Lua call (:func:`receive`): no JSON decoding, no
parsing, no routing in the web process. The intake is a list like a conversation's inbox, under the
key ``@<channel>`` (no conversation key starts with ``@``), so it travels the same road: the work list,
the ready list, the lock and the sweeper (:mod:`connector.inbox`). A job process drains it in arrival
order, in batches (:func:`connector.jobs.process_conversation`) and, for each body (:func:`handle`), does what the
webhook used to do: decode it strictly, parse it with the channel's typed parser, route its messages
to their people's conversations, queue each new message, keep and count statuses, record opt-outs.

Nothing is lost or doubled on the way: a body leaves the intake only after it was handled (the bodies
read are popped with the next ones, in one call), and handling a body twice (a job process killed after some of
its messages were queued) is harmless, because each message is queued under its id only once and an
opt-out's id is derived from the body. A body whose bytes were already received within the hour is
dropped at the door (a vendor's retry after a lost answer).

A body that is bad as a whole (invalid JSON, ``NaN``, absurd nesting, not the channel's webhook) can
no longer be answered with a 4xx: the door does not read it. It is dropped when read, logged without
its contents and counted as ``webhooks_rejected{reason="400"}``; a body the relay fails on
unexpectedly is set aside in the failed registry (``chat2crm failed``), replayable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel

from connector import agent, conversations, inbox, routing
from connector.channels import plugin as plugins
from connector.channels.base import ParsedWebhook
from connector.channels.plugin import ChannelContext, ChannelPlugin, WebhookRequest
from connector.keeper import keeper
from connector.runtime import current_runtime
from core import metrics, strictjson
from core.errors import WebhookRejectedError

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.received")

#: an intake's key starts with this (a conversation's never does)
PREFIX = "@"
#: how long the door remembers a body's bytes, to drop a vendor's retry of the same webhook
BODY_SEEN_SECONDS = 3600
#: deepest nesting of a JSON body that is read
MAX_DEPTH = 32

#: what handling a body did, summed by :func:`accept_waiting`
Counts = Counter[str]


def intake_key(channel: str) -> str:
    """The intake of plug-in ``channel`` (its key on the work and ready lists)."""
    return f"{PREFIX}{channel}"


def is_intake(key: str) -> bool:
    """Whether a key of the work or ready list is an intake rather than a conversation."""
    return key.startswith(PREFIX)


def receive(runtime: Runtime, channel: str, args: dict[str, str], raw: bytes) -> bool:
    """Keep one verified webhook body for the job processes (the door's only Redis call, shared with the
    process's other requests in flight: :mod:`connector.keeper`).

    The body must be UTF-8 (checked by the caller); the query's parameters travel with it (a vendor that
    carries something in the URL it calls). Returns False when the same bytes arrived within
    :data:`BODY_SEEN_SECONDS` (nothing kept).

    Raises:
        redis.RedisError: Redis failed; nothing was kept (the webhook answers 5xx and the vendor retries).
    """
    digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    return keeper(runtime).keep(inbox.Entry(intake_key(channel), frame(channel, args, raw),
                                            inbox.SEEN.key(channel, f"body:{digest}"), BODY_SEEN_SECONDS))


def frame(channel: str, args: dict[str, str], raw: bytes) -> bytes:
    """A body as kept in its intake: a line of JSON (the channel, the query's parameters), then the bytes."""
    return json.dumps({"c": channel, "a": args}, separators=(",", ":")).encode() + b"\n" + raw


def handle(runtime: Runtime, item: bytes) -> Counts:
    """Read one kept body: decode, parse, route, and queue what it holds (run by a job process).

    A body bad as a whole is dropped, logged and counted (its vendor was answered 200 already); parts the
    parser dropped are counted as rejected with reason ``part``.

    Raises:
        redis.RedisError: Redis failed; the body stays at the intake's head and is read again.
    """
    head, _, raw = item.partition(b"\n")
    meta = json.loads(head)
    name = str(meta["c"])
    plugin = served(runtime).get(name)
    if plugin is None:  # the channel was disabled since: nothing serves it any more
        log.warning("webhook of a channel no longer enabled: dropped", extra={"channel": name})
        return Counts(dropped=1)
    try:
        ctx = channel_context(runtime, plugin)
        body = decode(raw) if plugin.body_format == "json" else _form(raw)
        incoming = WebhookRequest(method="POST", path=f"/webhooks/{name}", headers={}, args=meta.get("a") or {},
                                  raw=raw, url="")
        parsed = plugin.parse_request(incoming, plugin.envelope(body), ctx)
    except WebhookRejectedError as exc:
        metrics.incr(runtime.redis, "webhooks_rejected", channel=name, reason=str(exc.status))
        log.warning("webhook dropped", extra={"channel": name, "status": exc.status, "reason": exc.message})
        return Counts(rejected=1)
    return _accept(runtime, plugin, parsed, item)


def _accept(runtime: Runtime, plugin: ChannelPlugin, parsed: ParsedWebhook, item: bytes) -> Counts:
    """Queue every new message; drop redeliveries; record statuses and opt-outs."""
    client = runtime.redis
    ttl = runtime.config.retention.dedup_days
    name = plugin.name
    if parsed.skipped:
        metrics.incr(client, "webhooks_rejected", parsed.skipped, channel=name, reason="part")
    parsed = routing.route(runtime, plugin.network, parsed)  # served numbers only; each message to its person's conversation
    counts = Counts(skipped=parsed.skipped, ignored=parsed.ignored, statuses=len(parsed.statuses))
    for message in parsed.messages:
        # remembered and queued in one atomic step: never queued twice, never remembered but lost
        if inbox.enqueue_inbound(runtime, message, dedup_days=ttl):
            counts["queued"] += 1
        else:
            counts["duplicates"] += 1
            metrics.incr(client, "duplicates_dropped", channel=name)
    for status in parsed.statuses:
        # kept, counted, and (an agent's reply) told to the CRM: one call
        agent.on_status(runtime, status, counted_as=metrics.counter_field("statuses", channel=name,
                                                                        status=status.status))
        for error in status.errors:
            log.warning("delivery failed", extra={"channel": name, "code": error.get("code"),
                                                  "title": str(error.get("title", ""))[:120]})
    body_id = hashlib.sha1(item, usedforsecurity=False).hexdigest() if parsed.opt_outs else ""
    for index, (account, sender) in enumerate(parsed.opt_outs):
        # its id comes from the body: a body read twice records the opt-out once
        inbox.enqueue_opt_out(runtime, plugin.network, account, sender, message_id=f"opt-out:{body_id}:{index}")
    for error in parsed.errors:
        log.warning("channel reported an error", extra={"channel": name, "code": error.get("code"),
                                                        "title": str(error.get("title", ""))[:120]})
    return counts


def accept_waiting(runtime: Runtime, channels: list[str] | None = None) -> Counts:
    """Read every body waiting in the intakes of ``channels`` (default: every enabled channel), in this
    process, and return what they held.

    What a job process does when it pops an intake, for ``chat2crm forget`` (:func:`read_through`) and tests
    that read a webhook's effect without a worker. An intake a job process is reading is left to it. A
    body that fails here raises (nothing is set aside).
    """
    totals = Counts()
    for name in channels if channels is not None else served(runtime):
        key = intake_key(name)
        lock = conversations.lock(runtime, key)
        found, items = inbox.take_batch(runtime, key, lock, 50)
        ended = found != "head"
        try:
            while not ended:
                handled: list[bytes] = []
                for item in items:
                    totals.update(handle(runtime, item))
                    handled.append(item)
                found, items = inbox.next_batch(runtime, key, lock, handled, 50)
                ended = found != "head"
        finally:
            if not ended:
                inbox.release_and_finish(runtime, key, lock)
        if found == "done":
            runtime.redis.lrem(inbox.READY.key(), 0, key)  # read here: no job process needs to look
    return totals


def read_through(runtime: Runtime, *, timeout: float = 30.0) -> bool:
    """Wait until every body received before this call was read (by a job process, or here when none is
    reading it): the patients' messages are then in their conversations' inboxes, where ``chat2crm
    forget`` finds them. Returns False when some were still unread after ``timeout`` seconds."""
    client = runtime.redis
    last = {name: client.lindex(inbox.INBOX.key(intake_key(name)), -1) for name in served(runtime)}
    waiting: dict[str, bytes] = {name: item for name, item in last.items() if isinstance(item, bytes)}
    deadline = time.monotonic() + timeout
    while waiting:
        accept_waiting(runtime, sorted(waiting))
        waiting = {name: item for name, item in waiting.items()
                   if client.lpos(inbox.INBOX.key(intake_key(name)), item) is not None}  # type: ignore[arg-type]
        if waiting and time.monotonic() > deadline:
            return False
        if waiting:
            time.sleep(0.05)  # a job process is reading that intake: it is at most a moment away
    return True


def replay(item: str) -> None:
    """Put a body that was set aside back at the head of its intake (``chat2crm failed replay``)."""
    head, _, _ = item.partition("\n")
    inbox.push_front_to(current_runtime(), intake_key(str(json.loads(head)["c"])), item)


def channel_of(item: bytes) -> str:
    """The channel a kept body came from (for logs and the failed registry)."""
    return str(json.loads(item.partition(b"\n")[0])["c"])


def served(runtime: Runtime) -> dict[str, ChannelPlugin]:
    """The enabled plug-ins by name (``CHAT2CRM_CHANNELS``), loaded once per process."""
    return runtime.cached("channels:served", lambda: {p.name: p for p in plugins.enabled(runtime.settings)})


def channel_context(runtime: Runtime, plugin: ChannelPlugin) -> ChannelContext:
    """The plug-in's context in this process: its settings, its ``channels:`` section, the bots policy."""
    def make() -> ChannelContext:
        section = getattr(runtime.config.channels, plugin.name, None)
        options = section.model_dump() if isinstance(section, BaseModel) else {}
        return plugins.context(plugin, runtime.settings, options, ignore_bots=runtime.config.channels.ignore_bots)
    return runtime.cached(f"channels:context:{plugin.name}", make)


def decode(raw: bytes) -> Any:
    """A JSON body, read strictly.

    Raises:
        WebhookRejectedError: 400 for a body that is not UTF-8, not JSON, holds ``NaN`` or ``Infinity``
            (Python reads them; they are not JSON), or nests deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "body is not UTF-8") from None
    try:
        body = strictjson.loads(text)
    except RecursionError:
        raise WebhookRejectedError(400, "body nests too deeply") from None
    except strictjson.NotFinite:
        raise WebhookRejectedError(400, "body holds NaN or Infinity") from None
    except ValueError:
        raise WebhookRejectedError(400, "body is not valid JSON") from None
    if _depth(body) > MAX_DEPTH:
        raise WebhookRejectedError(400, "body nests too deeply")
    return body


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _form(raw: bytes) -> dict[str, str]:
    """A form-encoded body (``application/x-www-form-urlencoded``): each field's last value."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejectedError(400, "body is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))
