"""Flood control: per-patient and relay-wide limits on inbound messages (fixed windows in Redis).

A patient over ``limits.per_sender_per_minute`` gets one polite pause notice per minute (through
the outbox, like every reply); their extra messages produce no bot replies and no CRM work. Over
``limits.global_per_second``, messages are held back silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.keys import family
from core.models import InboundMessage, Reply

if TYPE_CHECKING:
    from connector.runtime import Runtime

SENDER = family("flood", "{conversation}:{minute}", ttl=120, holds_pii=True, owner=__name__)
GLOBAL = family("flood", "global:{second}", ttl=5, holds_pii=False, owner=__name__)

#: the pause notice, by language (English for any other)
PAUSE_TEXTS = {
    "en": "We received many messages; please wait a minute, then continue.",
    "tr": "Çok sayıda mesaj aldık; lütfen bir dakika bekleyin, sonra devam edelim.",
    "de": "Wir haben sehr viele Nachrichten erhalten; bitte warten Sie eine Minute.",
    "ar": "تلقينا رسائل كثيرة؛ يرجى الانتظار دقيقة ثم المتابعة.",
    "ru": "Мы получили слишком много сообщений; пожалуйста, подождите минуту.",
}


@dataclass(frozen=True)
class Verdict:
    """Whether a message is held back (``scope``: ``sender`` or ``global``) and whether the patient is owed
    the pause notice (the first message over their limit in this minute)."""

    scope: str | None = None
    notify: bool = False

    @property
    def limited(self) -> bool:
        """Whether the message is held back."""
        return self.scope is not None


def check(runtime: Runtime, message: InboundMessage) -> Verdict:
    """Count ``message`` against both limits and say whether it is held back."""
    sender_key, global_key = keys(message.conversation_key, time.time())
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.incr(sender_key)
    pipe.expire(sender_key, SENDER.ttl)  # type: ignore[arg-type]
    pipe.incr(global_key)
    pipe.expire(global_key, GLOBAL.ttl)  # type: ignore[arg-type]
    sender_count, _, global_count, _ = pipe.execute()
    return judge(runtime, sender_count, global_count)


def keys(conversation_key: str, now: float) -> tuple[str, str]:
    """The two counters a message of ``conversation_key`` counts in at ``now``: its patient's minute and the
    relay's second (the turn counts them where it takes its message: :func:`connector.inbox.take_turn`)."""
    return SENDER.key(conversation_key, int(now // 60)), GLOBAL.key(int(now))


def ttls() -> tuple[int, int]:
    """How long each counter of :func:`keys` is kept, in seconds."""
    return SENDER.ttl, GLOBAL.ttl  # type: ignore[return-value]


def judge(runtime: Runtime, sender_count: int, global_count: int) -> Verdict:
    """The verdict on a message that made its patient's counter ``sender_count`` and the relay's ``global_count``."""
    limits = runtime.config.limits
    if sender_count > limits.per_sender_per_minute:
        return Verdict("sender", notify=sender_count == limits.per_sender_per_minute + 1)
    if global_count > limits.global_per_second:
        return Verdict("global")
    return Verdict()


def pause_notice(language: str | None) -> Reply:
    """The notice a flooding patient gets, in their language."""
    return Reply(text=PAUSE_TEXTS.get(language or "", PAUSE_TEXTS["en"]))
