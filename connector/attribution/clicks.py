"""Click references: a short code that carries a campaign click into the first message.

The code (six characters from an alphabet without look-alikes) travels in the prefilled WhatsApp
text or as Telegram's start payload. The first message is searched for any code-shaped word,
case-insensitively, and each candidate is checked against Redis, so a patient who edits the
prefilled text still brings their campaign with them. The code is then removed from the text the
bot reads.

Click records are bounded in number as well as in time: ``clicks`` lists every stored code by when it
was stored, and storing one more than ``limits.stored_clicks`` drops the oldest record (a flood of
clicks cannot fill Redis; a real click is kept for ``retention.click_days`` in any normal volume).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime
from typing import Any

import redis

from core import lua
from core.keys import family

#: a campaign click, by its code (campaign, UTM parameters, click ids; nothing about the person)
CLICK = family("click", "{code}", ttl="retention.click_days", holds_pii=False, owner=__name__)
#: every stored click's code, scored by when it was stored: the oldest go first past ``limits.stored_clicks``
STORED = family("clicks", "", ttl="retention.click_days", holds_pii=False, owner=__name__)

# Store a click and keep the records bounded, in one step. KEYS: the click, the index.
# ARGV: code, record, TTL (s), now (µs: clicks a moment apart keep their order), most records kept, the
# prefix of click keys.
_STORE = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then return 0 end
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000000)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do redis.call('DEL', ARGV[6] .. oldest[i]) end
end
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no I, L, O, U, 0, 1: easy to read and retype
CODE_LENGTH = 6
_CANDIDATE = re.compile(rf"(?<![A-Za-z0-9])([A-Za-z2-9]{{{CODE_LENGTH}}})(?![A-Za-z0-9])")
_WRAPPER = re.compile(r"[\(\[]?\s*(?:ref|kod|code|код|رمز|referenz)?\s*[:#]?\s*$", re.I)

#: the prefilled text per language when a campaign gives none; {code} is the reference
PREFILL = {
    "tr": "Merhaba! Bilgi almak istiyorum. (ref: {code})",
    "en": "Hello! I would like some information. (ref: {code})",
    "de": "Hallo! Ich hätte gern Informationen. (ref: {code})",
    "ar": "مرحبًا! أود الحصول على معلومات. (ref: {code})",
    "ru": "Здравствуйте! Хочу получить информацию. (ref: {code})",
}


def new_code() -> str:
    """A fresh reference code."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def store_click(client: redis.Redis, data: dict[str, Any], ttl_days: int, *, most: int = 100_000) -> str:
    """Store a click and return its code (a new one if the first few collide).

    Args:
        most: the most click records kept; storing one more drops the oldest (``limits.stored_clicks``).
    """
    record = json.dumps(data, ensure_ascii=False, default=str)
    prefix = CLICK.key("{code}").removesuffix("{code}")  # the script deletes the oldest records by their codes
    for _ in range(10):
        code = new_code()
        if lua.run(client, _STORE, keys=[CLICK.key(code), STORED.key()],
                   args=[code, record, ttl_days * 86400, time.time_ns() // 1000, most, prefix]):
            return code
    raise RuntimeError("could not allocate a click code")


def load_click(client: redis.Redis, code: str) -> dict[str, Any] | None:
    """The click behind ``code`` (any case), or None when unknown or expired."""
    raw = client.get(CLICK.key(code.upper()))
    return json.loads(raw) if raw else None


def find_code(client: redis.Redis, text: str) -> tuple[str, dict[str, Any], str] | None:
    """Find a known click code in ``text``.

    Returns:
        (code, click, the text without the code and its wrapper), or None.
    """
    for match in _CANDIDATE.finditer(text):
        candidate = match.group(1).upper()
        if any(ch not in ALPHABET for ch in candidate):
            continue
        click = load_click(client, candidate)
        if click is None:
            continue
        before = _WRAPPER.sub("", text[: match.start()])
        after = re.sub(r"^\s*[\)\]]", "", text[match.end():])
        cleaned = " ".join((before + " " + after).split()).strip()
        return candidate, click, cleaned
    return None


def clicked_at(click: dict[str, Any]) -> datetime | None:
    value = click.get("clicked_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None
