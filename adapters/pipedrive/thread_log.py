"""The conversation as the Pipedrive panel shows it: every message the relay published for the agents (the
bot's history and each patient's message), every reply an agent wrote in the panel, in order, and what
became of each reply.

Pipedrive keeps the record (a note per patient message and per final delivery status); this log is the
relay's own, so the panel shows the thread without reading notes back (a notes list costs 20 of the
company's API tokens, and the panel polls). It lives in Redis:

- one hash per conversation (:data:`~adapters.pipedrive.keys.PANEL_LOG`): a field per entry id holding the
  entry (JSON, with its sequence number), and ``_seq``; adding an entry whose id is there already changes
  nothing (a republished message, a redelivered reply), in one Lua step;
- one key per agent's reply (:data:`~adapters.pipedrive.keys.PANEL_STATUS`): its last status (``sent``,
  ``delivered``, ``read``, ``failed``) and the reason of a failure; a status never goes backwards (a
  ``sent`` arriving after ``read`` is dropped). It holds no patient data: a report names only the reply.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.pipedrive.keys import PANEL_LOG, PANEL_SECONDS, PANEL_STATUS
from core import lua

if TYPE_CHECKING:
    from redis import Redis

RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}

_ADD = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then return 0 end
local seq = redis.call('hincrby', KEYS[1], '_seq', 1)
local entry = cjson.decode(ARGV[2])
entry['seq'] = seq
redis.call('hset', KEYS[1], ARGV[1], cjson.encode(entry))
redis.call('expire', KEYS[1], ARGV[3])
return seq
"""
_STATUS = """
local found = redis.call('get', KEYS[1])
if found then
  local told = cjson.decode(found)
  if tonumber(told['rank']) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class PanelLog:
    """The panel's log of conversations (see the module).

    Args:
        redis: the shared connection.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def add(self, person: str, entry: dict[str, Any]) -> bool:
        """Append ``entry`` (it has an ``id`` and a ``conversation``) to the person's log unless it is there."""
        text = json.dumps(entry, default=_iso)
        return bool(lua.run(self.redis, _ADD, [PANEL_LOG.key(person)], [entry["id"], text, PANEL_SECONDS]))

    def entry(self, person: str, entry_id: str) -> dict[str, Any] | None:
        """One entry of the person's log (None: not there)."""
        raw = self.redis.hget(PANEL_LOG.key(person), entry_id)
        return dict(json.loads(raw)) if raw else None

    def set_status(self, reply: str, status: str, *, reason: str | None = None, code: str | None = None) -> bool:
        """Record what became of an agent's reply; False when it said more already."""
        rank = RANK.get(status, 0)
        value = json.dumps({"status": status, "rank": rank, "reason": reason, "code": code})
        return bool(lua.run(self.redis, _STATUS, [PANEL_STATUS.key(reply)], [value, rank, PANEL_SECONDS]))

    def status(self, reply: str) -> dict[str, Any] | None:
        """An agent's reply's last status (None: none reported yet)."""
        raw = self.redis.get(PANEL_STATUS.key(reply))
        return dict(json.loads(raw)) if raw else None

    def entries(self, person: str) -> list[dict[str, Any]]:
        """The person's log, oldest first, each agent's reply with its status (``queued`` until the first
        report)."""
        raw = self.redis.hgetall(PANEL_LOG.key(person))
        found = [json.loads(v) for k, v in raw.items() if _text(k) != "_seq"]
        found.sort(key=lambda e: int(e["seq"]))
        for entry in found:
            if not isinstance(entry.get("files"), list):
                entry["files"] = []  # Lua's cjson writes an empty list as an empty object
        replies = [e["id"] for e in found if e.get("kind") == "reply"]
        statuses = self.redis.mget([PANEL_STATUS.key(r) for r in replies]) if replies else []
        by_id = {r: json.loads(s) for r, s in zip(replies, statuses, strict=True) if s}
        for entry in found:
            if entry.get("kind") == "reply":
                told = by_id.get(entry["id"]) or {}
                entry["status"] = told.get("status", "queued")
                entry["reason"] = told.get("reason")
        return found


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
