"""Every Redis key family chat2crm writes: its name, its shape, its TTL and whether it can hold patient data.

One registry, so nothing is forgotten: ``chat2crm forget`` erases every family that can hold a
person's data, a test checks that every key the relay writes belongs to a registered family with
a TTL, and ``docs/operations.md`` lists them. The module that owns a family declares it (as rq's
``Job.key_for`` and ``registry.key`` do) and builds its keys only through it::

    CONVERSATION = family("conv", "{conversation}", ttl="retention.conversation_hours",
                          holds_pii=True, owner=__name__)
    CONVERSATION.key("whatsapp:1065:905321112233")   # 'c2c:conv:whatsapp:1065:905321112233'

This module is at the bottom of the layers: it imports nothing of chat2crm, so channels,
adapters and the runtime can all use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every Redis key chat2crm writes starts with this, so one Redis can serve other things too.
PREFIX = "c2c:"

_FIELD = re.compile(r"\{([a-z_]+)\}")


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
    """

    name: str
    shape: str
    ttl: int | str | None
    holds_pii: bool
    owner: str
    bounded_by: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError(f"name must be lower-case letters, digits, '-' or '_'; got {self.name!r}")
        if self.ttl is None and not self.bounded_by:
            raise ValueError(f"family {self.name!r}: a key without a TTL must say what bounds it (bounded_by)")

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders of ``shape``, in order."""
        return tuple(_FIELD.findall(self.shape))

    @property
    def pattern(self) -> str:
        """A Redis ``SCAN MATCH`` pattern for every key of the family."""
        rest = _FIELD.sub("*", self.shape)
        return rkey(self.name, rest) if rest else rkey(self.name)

    def key(self, *values: object) -> str:
        """The key for ``values``, one per placeholder of ``shape``.

        Raises:
            ValueError: the number of values does not match the placeholders.
        """
        if len(values) != len(self.fields):
            raise ValueError(f"family {self.name!r} takes {len(self.fields)} value(s) {self.fields}, got {len(values)}")
        rest = self.shape
        for value in values:
            rest = _FIELD.sub(lambda _m, v=value: str(v), rest, count=1)  # type: ignore[misc]
        return rkey(self.name, rest) if rest else rkey(self.name)

    def matches(self, key: str) -> bool:
        """Whether ``key`` belongs to this family."""
        regex = re.escape(self.pattern).replace(r"\*", ".+")
        return re.fullmatch(regex, key) is not None


#: every family, by name (filled by the modules that own them, at import)
REGISTRY: dict[str, KeyFamily] = {}


def family(name: str, shape: str = "", *, ttl: int | str | None, holds_pii: bool, owner: str,
           bounded_by: str = "") -> KeyFamily:
    """Declare (register) a key family; declaring the same family twice the same way is harmless.

    Raises:
        ValueError: another family of that name and shape was declared differently.
    """
    declared = KeyFamily(name, shape, ttl, holds_pii, owner, bounded_by)
    handle = f"{name}:{shape}"
    existing = REGISTRY.get(handle)
    if existing is not None and existing != declared:
        raise ValueError(f"key family {handle!r} declared twice, differently: {existing} and {declared}")
    REGISTRY[handle] = declared
    return declared


def family_of(key: str) -> KeyFamily | None:
    """The registered family ``key`` belongs to (the most specific one), or None."""
    found = [f for f in REGISTRY.values() if f.matches(key)]
    return max(found, key=lambda f: len(f.pattern), default=None)
