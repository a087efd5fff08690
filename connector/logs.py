"""Structured logging that never writes secrets or patient data in clear.

- :func:`configure_logging` sets JSON lines (production) or readable text (a terminal).
- :class:`RedactingFilter` runs on every record of every handler it is installed on:
  phone numbers and e-mail addresses are masked wherever they appear; values of sensitive
  ``extra`` keys (``name``, ``text``, ``phone``, ``email``…) are masked whatever they hold;
  secrets registered with :func:`register_secret` are masked everywhere; and the names and
  message texts of the patient being handled, declared with :func:`pii_scope`, are masked
  for as long as that work runs (a name cannot be recognised by a pattern; it can be known).
- Transcript tokens (the ``/t/<token>`` path, any ``…token=`` query value) are masked in every line:
  whoever reads the logs must not be able to open a patient's transcript.
- :func:`access_line` makes a line of an access log safe: redacted as above, and with control
  characters (CR, LF, NUL…) escaped, so a request cannot forge or split log lines. The text format
  escapes them too; the JSON format escapes them by construction.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

#: ``extra`` keys whose values are always masked
SENSITIVE_KEYS = frozenset({
    "name", "first_name", "last_name", "profile_name", "text", "body", "caption", "message", "phone",
    "email", "address", "note", "answers", "summary", "transcript", "token", "secret", "password",
    "authorization", "access_token", "wa_id", "from", "contact", "sender_phone",
})

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# 8 to 15 digits, optionally with a + and the separators people type; not inside a longer token.
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[\s().\-]?\d){7,14}(?![\w])")

# a transcript link's token, in a path (``/t/<token>``) or a query (``token=``, ``access_token=``…)
_TRANSCRIPT_PATH = re.compile(r"(/t/)[^/?#\s\"'&]+")
_TOKEN_QUERY = re.compile(r"(?<![A-Za-z0-9])([\w.\-]*token=)[^&;#\s\"']+", re.IGNORECASE)
# C0 and C1 control characters and DEL (tab included: it splits fields in many log tools)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_secrets: set[str] = set()
_scope: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("chat2crm_pii", default=())

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (tokens, app secrets, passwords)."""
    if value and len(value) >= 4:
        _secrets.add(value)


@contextlib.contextmanager
def pii_scope(*values: str | None) -> Iterator[None]:
    """Mask these values (a patient's name, their message text…) in logs written inside the block."""
    found = tuple(v.strip() for v in values if v and len(v.strip()) >= 2)
    token = _scope.set(_scope.get() + found)
    try:
        yield
    finally:
        _scope.reset(token)


def redact(text: str) -> str:
    """Mask secrets, scoped patient values, e-mail addresses and phone numbers in ``text``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[secret]")
    # longest first, so a full message is masked before a name inside it
    for value in sorted(_scope.get(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, "[redacted]")
    text = _TRANSCRIPT_PATH.sub(r"\1[token]", text)
    text = _TOKEN_QUERY.sub(r"\1[token]", text)
    text = _EMAIL.sub("[email]", text)
    return _PHONE.sub(_mask_phone, text)


def escape_controls(text: str) -> str:
    r"""``text`` with every control character written as an escape (``\r``, ``\n``, ``\x00``…): one line."""
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}.get(char)
    return named or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


#: the access-log line ``chat2crm serve`` writes (gunicorn's atoms): method, path, status, seconds taken
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(L)ss"


def access_line(line: str) -> str:
    """An access-log line as it may be written: redacted (:func:`redact`) and on one line (:func:`escape_controls`)."""
    return escape_controls(redact(line))


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"[phone …{digits[-2:]}]"


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in SENSITIVE_KEYS and value not in (None, "", [], {}):
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites every record so that nothing sensitive reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key in list(record.__dict__):
            if key not in _RESERVED and not key.startswith("_"):
                record.__dict__[key] = _redact_value(key, record.__dict__[key])
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks print exception arguments; render and redact them now.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  chat2crm.web  message  key=value …`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        # one record, one line: control characters a value may carry are escaped (the traceback keeps its lines)
        extras = " ".join(f"{k}={escape_controls(str(v))}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<5} {record.name}  {escape_controls(record.getMessage())}"
        if extras:
            line += f"  {extras}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Install one redacting handler on the root logger (idempotent).

    Args:
        fmt: ``json``, ``text`` or ``auto`` (text on a terminal, JSON otherwise).
        level: the root level.
        stream: where to write (standard error by default).
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler.set_name("chat2crm")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "chat2crm"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel("WARNING")
