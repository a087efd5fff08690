"""Sandboxed Jinja2 templates: flow summaries and tags, mapping fields and note bodies.

Templates run in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute
access to internals, no mutation of what they are given) with a closed, named set of filters.
Undefined names render as empty strings, so an answer the patient skipped leaves a blank, not an
error.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _date(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).strftime(fmt)
    except ValueError:
        return str(value)


def _truncate(value: Any, length: int = 255) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment (filters: date, truncate, plus Jinja2's safe built-ins)."""
    env = ImmutableSandboxedEnvironment(undefined=Undefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
                                        keep_trailing_newline=False)
    env.filters["date"] = _date
    env.filters["truncate_text"] = _truncate
    return env


def render(source: str, context: dict[str, Any]) -> str:
    """Render ``source`` with ``context``.

    Raises:
        ValueError: the template is invalid or failed (the message says why, without the data).
    """
    try:
        return environment().from_string(source).render(**context).strip()
    except TemplateError as exc:
        raise ValueError(f"template failed: {exc.message or type(exc).__name__}") from None


def check_template(source: str) -> str | None:
    """Why ``source`` is not a valid template, or None."""
    try:
        environment().parse(source)
    except TemplateError as exc:
        return exc.message or type(exc).__name__
    return None
