"""Ids an adapter already knows, shared by every worker through Redis, each key with a TTL.

A contact key's contact, a lead reference's record, a note's marker's note: what the relay wrote
is remembered so that a returning patient or a replayed job does not look it up (or write it)
again. Redis is not the record (the CRM is): a lost key costs a look-up, never a duplicate.

A write whose answer was lost (a time-out, a worker killed mid-call) may still have been carried
out. Before sending such a write the adapter marks it *pending*; the next attempt that finds the
mark looks on a strongly consistent read (get by id, an associations read, a list by parent, never
a search index, which lags behind writes) for what it may have made, before writing again.

Each kind of id lives in a key family declared with :func:`core.keys.family`; families that can
hold a person's identity (a contact key names a phone number) are erased by :meth:`IdCache.forget`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from core.keys import KeyFamily, rkey

if TYPE_CHECKING:
    from redis import Redis

_PENDING = "?"
_PLACEHOLDER = re.compile(r"\\\{([a-z_]+)\\\}")
_PHONE = re.compile(r"\+?[\d\s().\-]{6,}")


class IdCache:
    """The ids one adapter knows, by kind (``contact``, ``record``, ``note``…).

    Args:
        families: each kind's key family; its TTL (in seconds) is each key's.
        redis: the shared connection (None: a cache of this process only, for one-off commands).

    Raises:
        ValueError: a family's TTL is not a number of seconds.
    """

    def __init__(self, families: Mapping[str, KeyFamily], redis: Redis | None) -> None:
        for kind, family in families.items():
            if not isinstance(family.ttl, int) or family.ttl <= 0:
                raise ValueError(f"families[{kind!r}] must have a TTL in seconds, got {family.ttl!r}")
        self.families = dict(families)
        self.redis = redis
        self._local: dict[str, str] = {}

    def _key(self, kind: str, values: tuple[object, ...]) -> str:
        if kind not in self.families:
            raise ValueError(f"kind must be one of {sorted(self.families)}, got {kind!r}")
        return self.families[kind].key(*values)

    def _raw(self, key: str) -> str | None:
        if self.redis is None:
            return self._local.get(key)
        value = self.redis.get(key)
        return value.decode() if isinstance(value, bytes) else value

    def get(self, kind: str, *values: object) -> str | None:
        """The id kept for ``values`` (None when none is kept, or only a pending write)."""
        raw = self._raw(self._key(kind, values))
        return None if raw is None or raw.startswith(_PENDING) else raw

    def set(self, kind: str, value: str, *values: object) -> None:
        """Keep ``value`` for ``values`` (replacing a pending mark)."""
        if not value or value.startswith(_PENDING):
            raise ValueError(f"value must be an id, got {value!r}")
        self._put(self._key(kind, values), value, kind)

    def _put(self, key: str, value: str, kind: str) -> None:
        if self.redis is None:
            self._local[key] = value
        else:
            self.redis.set(key, value, ex=int(self.families[kind].ttl))  # type: ignore[arg-type]

    def drop(self, kind: str, *values: object) -> None:
        """Forget what is kept for ``values`` (an id, or a pending mark)."""
        key = self._key(kind, values)
        self._local.pop(key, None)
        if self.redis is not None:
            self.redis.delete(key)

    def mark_pending(self, kind: str, *values: object) -> float:
        """Note that a write for ``values`` is being sent (before sending it); returns the time noted."""
        now = time.time()
        self._put(self._key(kind, values), f"{_PENDING}{now:.3f}", kind)
        return now

    def pending(self, kind: str, *values: object) -> float | None:
        """When a write for ``values`` was sent whose outcome is unknown (None: there is none)."""
        raw = self._raw(self._key(kind, values))
        if raw is None or not raw.startswith(_PENDING):
            return None
        try:
            return float(raw[len(_PENDING):])
        except ValueError:
            return 0.0

    def forget(self, identities: Iterable[str]) -> int:
        """Delete every key of a family that holds personal data whose value names one of ``identities``
        (contact keys such as ``whatsapp:905321112233``, phone numbers, e-mail addresses); returns how
        many keys were deleted."""
        wanted = _forms(identities)
        if not wanted:
            return 0
        deleted = 0
        for family in self.families.values():
            if not family.holds_pii:
                continue
            regex = _regex(family)
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in self.redis.scan_iter(
                match=family.pattern, count=500)] if self.redis is not None else list(self._local)
            for key in keys:
                found = regex.fullmatch(key)
                if found and any(_names(value, wanted) for value in found.groups()):
                    self._local.pop(key, None)
                    if self.redis is not None:
                        deleted += int(self.redis.delete(key))
                    else:
                        deleted += 1
        return deleted


def _regex(family: KeyFamily) -> re.Pattern[str]:
    """A regex of the family's keys, one group per placeholder of its shape."""
    text = re.escape(rkey(family.name, family.shape) if family.shape else rkey(family.name))
    return re.compile(_PLACEHOLDER.sub(lambda m: f"(?P<{m.group(1)}>.+)", text))


def _forms(identities: Iterable[str]) -> set[str]:
    """The spellings an identity is kept under: as given (lower-cased) and, for a phone number, its digits."""
    out: set[str] = set()
    for identity in identities:
        text = str(identity or "").strip().lower()
        if len(text) < 3:
            continue
        out.add(text)
        if _PHONE.fullmatch(text):
            out.add(re.sub(r"\D", "", text))
    return out


def _names(value: str, wanted: set[str]) -> bool:
    """Whether a key's value names one of ``wanted``: itself, or its channel id (``whatsapp:<id>``)."""
    text = value.lower()
    channel_id = text.split(":", 1)[1] if ":" in text else text
    digits = channel_id.lstrip("+").isdigit() and re.sub(r"\D", "", channel_id) in wanted
    return text in wanted or channel_id in wanted or digits
