"""Every Redis key family chat2crm writes: its name, its shape, its TTL and whether it can hold patient data.

One registry, so nothing is forgotten: ``chat2crm forget`` erases every family that can hold a
person's data, a test checks that every key the relay writes belongs to a registered family with
a TTL, and ``docs/architecture.md`` lists them. The module that owns a family declares it (as rq's
``Job.key_for`` and ``registry.key`` do) and builds its keys only through it::

    CONVERSATION = family("conv", "{conversation}", ttl="retention.conversation_hours",
                          holds_pii=True, owner=__name__)
    CONVERSATION.key("whatsapp:1065:905321112233")   # 'c2c:conv:whatsapp:1065:905321112233'

rq's own keys (``rq:job:…``) are declared too, with ``prefix="rq:"``, by the one module that speaks
to rq (:mod:`connector.queues`).

This module is at the bottom of the layers: it imports nothing of chat2crm, so channels,
adapters and the runtime can all use it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

#: Every Redis key chat2crm writes starts with this, so one Redis can serve other things too.
PREFIX = "c2c:"

_FIELD = re.compile(r"\{([a-z_]+)\}")
_SETTING = re.compile(r"[a-z_]+(\.[a-z_]+)*_(seconds|minutes|hours|days)")
_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


@functools.cache
def _literals(shape: str) -> tuple[str, ...]:
    """The text of ``shape`` around its placeholders (one more than there are placeholders)."""
    return tuple(_FIELD.split(shape)[::2])


def rkey(*parts: object) -> str:
    """A Redis key: ``c2c:part:part…``."""
    return PREFIX + ":".join(str(p) for p in parts)


@dataclass(frozen=True)
class KeyFamily:
    """One family of Redis keys.

    Args:
        name: the first part of the key after the prefix (``conv``, ``lead``, ``hubspot``…).
        shape: the rest, with ``{field}`` placeholders (``{conversation}``, ``{reference}``);
            empty for a single key.
        ttl: how long a key lives: seconds, or the configuration setting that says so
            (``retention.conversation_hours``); ``None`` only for keys that are bounded another way,
            named in ``bounded_by``.
        holds_pii: whether a key's name or value can contain patient data (then ``forget`` erases it).
        owner: the module that writes the family.
        bounded_by: for a family without a TTL, why it cannot grow without bound.
        prefix: what every key of the family starts with (``c2c:``; ``rq:`` for rq's own keys).

    Raises:
        ValueError: a bad name, a TTL that is neither seconds nor a setting, or no TTL and no bound.
    """

    name: str
    shape: str
    ttl: int | str | None
    holds_pii: bool
    owner: str
    bounded_by: str = ""
    prefix: str = PREFIX

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError(f"name must be lower-case letters, digits, '-' or '_'; got {self.name!r}")
        if self.ttl is None and not self.bounded_by:
            raise ValueError(f"family {self.name!r}: a key without a TTL must say what bounds it (bounded_by)")
        if isinstance(self.ttl, int) and self.ttl <= 0:
            raise ValueError(f"family {self.name!r}: ttl must be a positive number of seconds, got {self.ttl!r}")
        if isinstance(self.ttl, str) and not _SETTING.fullmatch(self.ttl):
            raise ValueError(f"family {self.name!r}: ttl must name a setting ending in _seconds, _minutes, _hours "
                             f"or _days, got {self.ttl!r}")

    def _join(self, rest: str) -> str:
        return self.prefix + (f"{self.name}:{rest}" if rest else self.name)

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders of ``shape``, in order."""
        return tuple(_FIELD.findall(self.shape))

    @property
    def pattern(self) -> str:
        """A Redis ``SCAN MATCH`` pattern for every key of the family."""
        return self._join(_FIELD.sub("*", self.shape))

    def key(self, *values: object) -> str:
        """The key for ``values``, one per placeholder of ``shape``.

        Raises:
            ValueError: the number of values does not match the placeholders.
        """
        literals = _literals(self.shape)  # a key is built on every Redis call: the shape is split once
        if len(values) != len(literals) - 1:
            raise ValueError(f"family {self.name!r} takes {len(self.fields)} value(s) {self.fields}, got {len(values)}")
        parts = [literals[0]]
        for value, literal in zip(values, literals[1:], strict=True):
            parts += (str(value), literal)
        return self._join("".join(parts))

    def matches(self, key: str) -> bool:
        """Whether ``key`` belongs to this family."""
        return self.parse(key) is not None

    def parse(self, key: str) -> dict[str, str] | None:
        """The placeholder values of ``key`` (``{"conversation": "whatsapp:1065:9053…"}``), or None when the
        key is not of this family. A placeholder may span ``:`` (a conversation key does)."""
        regex = re.escape(self._join(self.shape))
        for field in self.fields:
            regex = regex.replace(re.escape("{" + field + "}"), f"(?P<{field}>.+)", 1)
        found = re.fullmatch(regex, key)
        return None if found is None else found.groupdict()

    def seconds(self, config: object) -> int | None:
        """The TTL in seconds: the number, or the setting it names read from ``config`` (an object with
        ``retention``, ``delivery``… sections) and scaled by its unit; None for a family without a TTL.

        Raises:
            AttributeError: ``config`` has no such setting.
        """
        if self.ttl is None or isinstance(self.ttl, int):
            return self.ttl
        value: object = config
        for part in self.ttl.split("."):
            value = getattr(value, part)
        unit = _UNITS[self.ttl.rsplit("_", 1)[1]]
        return int(float(value) * unit)  # type: ignore[arg-type]


#: every family, by name (filled by the modules that own them, at import)
REGISTRY: dict[str, KeyFamily] = {}


def family(name: str, shape: str = "", *, ttl: int | str | None, holds_pii: bool, owner: str,
           bounded_by: str = "", prefix: str = PREFIX) -> KeyFamily:
    """Declare (register) a key family; declaring the same family twice the same way is harmless.

    Raises:
        ValueError: another family of that name and shape was declared differently, or the declaration
            itself is bad (see :class:`KeyFamily`).
    """
    declared = KeyFamily(name, shape, ttl, holds_pii, owner, bounded_by, prefix)
    handle = f"{name}:{shape}" if prefix == PREFIX else f"{prefix}{name}:{shape}"
    existing = REGISTRY.get(handle)
    if existing is not None and existing != declared:
        raise ValueError(f"key family {handle!r} declared twice, differently: {existing} and {declared}")
    REGISTRY[handle] = declared
    return declared


def family_of(key: str) -> KeyFamily | None:
    """The registered family ``key`` belongs to (the most specific one: the longest fixed text), or None."""
    found = [f for f in REGISTRY.values() if f.matches(key)]
    return max(found, key=lambda f: len(f.pattern.replace("*", "")), default=None)


def pii_families() -> list[KeyFamily]:
    """Every registered family whose keys can hold patient data (what ``chat2crm forget`` looks through)."""
    return [f for f in REGISTRY.values() if f.holds_pii]
