"""Sandboxed Jinja2 templates: flow summaries and tags, mapping fields, note and task bodies.

Templates run in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute
access to internals, no mutation of what they are given) with a closed, named set of filters.
Undefined names render as empty strings, so an answer the patient skipped leaves a blank, not an
error.

Two environments share the filters. Text targets (CRM fields, subjects, summaries, tags) render
values as they are. HTML targets (note bodies, and task bodies where the CRM keeps HTML) render with
autoescape: every value a patient wrote (``<script>``, ``Tom & Jerry``) is escaped, and only the
template's own markup is HTML.

Filters that make values readable for people (the agents who read the CRM):

- ``human``: any answer: a date range (``{start, end}``) as ``10–17 March 2027``, an ISO date or
  time as ``10 March 2027`` / ``10 March 2027, 11:00``, a yes/no as words, a list as its items;
- ``human_date``: a date, a time or a date range alone;
- ``yesno``: a boolean as ``yes``/``no`` (``evet``/``hayır``, ``ja``/``nein``…);
- ``label``: a field name as words (``travel_dates`` → ``Travel dates``);
- ``linebreaks``: in HTML, the lines of a text kept as lines;
- ``date`` (strftime) and ``truncate_text`` for fields.

Each of ``human``, ``human_date`` and ``yesno`` takes a language (``tr``, ``en``, ``de``, ``ar``, ``ru``;
English by default and for any other).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from jinja2 import Template, TemplateError, Undefined, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "tr": ("Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran", "Temmuz", "Ağustos", "Eylül", "Ekim", "Kasım",
           "Aralık"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    # the genitive, as a date is said: "10 марта 2027"
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
           "ноября", "декабря"),
    "ar": ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر",
           "ديسمبر"),
}
YES_NO: dict[str, tuple[str, str]] = {
    "en": ("yes", "no"), "tr": ("evet", "hayır"), "de": ("ja", "nein"), "ru": ("да", "нет"), "ar": ("نعم", "لا"),
}
_TRUE = (True, "true", "yes", "1", 1)
_FALSE = (False, "false", "no", "0", 0)


def _language(language: Any) -> str:
    code = str(language or "en").lower()[:2]
    return code if code in MONTHS else "en"


def _moment(value: Any) -> date | None:
    """An ISO 8601 date or date-time as a date or datetime; None for anything else."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str) or len(value) < 10 or not value[:4].isdigit() or value[4] != "-":
        return None
    try:
        return datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
    except ValueError:
        return None


def _day(moment: date, language: str, *, year: bool = True, month: bool = True) -> str:
    """``10 March 2027`` (``10. März 2027`` in German), leaving out the month or year when asked."""
    dot = "." if language == "de" else ""
    parts = [f"{moment.day}{dot}"]
    if month:
        parts.append(MONTHS[language][moment.month - 1])
    if year:
        parts.append(str(moment.year))
    return " ".join(parts)


def human_date(value: Any, language: str = "en") -> str:
    """A date, time or date range as people write it; anything else as it is.

    ``2027-03-10`` → ``10 March 2027``; ``2027-03-10T11:00:00+03:00`` → ``10 March 2027, 11:00`` (the
    time as written, in its own zone); ``{"start": "2027-03-10", "end": "2027-03-17"}`` → ``10–17 March
    2027`` (``28 February – 3 March 2027`` across months; one date when the end is missing or the same).
    """
    if value is None or isinstance(value, Undefined):
        return ""
    lang = _language(language)
    if isinstance(value, dict) and "start" in value:
        start, end = _moment(value.get("start")), _moment(value.get("end"))
        if start is None:
            return human_date(value.get("start"), lang)
        if end is None or _as_date(end) == _as_date(start):
            return human_date(start, lang)
        first, last = _as_date(start), _as_date(end)
        if (first.year, first.month) == (last.year, last.month):
            return f"{_day(first, lang, month=False, year=False)}–{_day(last, lang)}"
        return f"{_day(first, lang, year=first.year != last.year)} – {_day(last, lang)}"
    moment = _moment(value)
    if moment is None:
        return str(value)
    if isinstance(moment, datetime):
        return f"{_day(moment, lang)}, {moment.strftime('%H:%M')}"
    return _day(moment, lang)


def _as_date(moment: date) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def yesno(value: Any, language: str = "en") -> str:
    """A yes/no value as a word in ``language`` (empty when it is neither)."""
    yes, no = YES_NO[_language(language)]
    if isinstance(value, str):
        value = value.strip().lower()
    if value in _TRUE:
        return yes
    if value in _FALSE:
        return no
    return ""


def human(value: Any, language: str = "en") -> str:
    """Any answer as a person reads it: dates and ranges as dates, yes/no as words, lists as their items."""
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, bool):
        return yesno(value, language)
    if isinstance(value, dict):
        if "start" in value:
            return human_date(value, language)
        return "; ".join(f"{label(k)}: {human(v, language)}" for k, v in value.items() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return ", ".join(human(item, language) for item in value if item not in (None, ""))
    if _moment(value) is not None:
        return human_date(value, language)
    return str(value)


def label(name: Any) -> str:
    """A field name as words: ``travel_dates`` → ``Travel dates``."""
    words = str(name or "").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


@pass_eval_context
def linebreaks(eval_ctx: EvalContext, value: Any) -> str:
    """In an HTML template, the text's lines as lines (each escaped, joined by ``<br>`` and a newline, so that
    a reader that drops tags still sees lines); elsewhere the text."""
    text = "" if value is None or isinstance(value, Undefined) else str(value)
    if not eval_ctx.autoescape:
        return text
    return Markup("<br>\n").join(escape(line) for line in text.splitlines())


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
def environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment for text (``html=False``) or HTML targets (autoescape on)."""
    env = ImmutableSandboxedEnvironment(undefined=Undefined, autoescape=html, trim_blocks=True, lstrip_blocks=True,
                                        keep_trailing_newline=False)
    env.filters.update({"date": _date, "truncate_text": _truncate, "human": human, "human_date": human_date,
                        "yesno": yesno, "label": label, "linebreaks": linebreaks})
    return env


@functools.lru_cache(maxsize=1024)
def compiled(source: str, html: bool = False) -> Template:
    """``source`` compiled once per process (a Template is immutable and safe to share between threads).

    Raises:
        TemplateError: the template is invalid.
    """
    return environment(html).from_string(source)


def warm_templates(sources: Iterable[str]) -> int:
    """Compile every template among ``sources`` ahead of the first job (invalid ones are left for
    ``chat2crm check`` to report). Returns how many were compiled."""
    count = 0
    for source in sources:
        if "{{" in source or "{%" in source:
            for html in (False, True):
                try:
                    compiled(source, html)
                except TemplateError:
                    break
            count += 1
    return count


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside ``value`` (pydantic models, mappings, sequences), for :func:`warm_templates`."""
    if isinstance(value, str):
        yield value
    elif hasattr(value, "model_dump"):
        yield from strings_in(value.model_dump())
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from strings_in(item)


def render(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    """Render ``source`` with ``context``; with ``html`` every value is HTML-escaped (autoescape).

    Raises:
        ValueError: the template is invalid or failed (the message says why, without the data).
    """
    try:
        return str(compiled(source, html).render(**context)).strip()
    except TemplateError as exc:
        raise ValueError(f"template failed: {exc.message or type(exc).__name__}") from None


def check_template(source: str) -> str | None:
    """Why ``source`` is not a valid template (its syntax, or a filter that does not exist), or None."""
    try:
        environment().from_string(source)
    except TemplateError as exc:
        return exc.message or type(exc).__name__
    return None
