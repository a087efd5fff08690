"""Sample leads, and templates rendered against them in strict mode, for ``chat2crm check``.

At run time a template's unknown name renders as an empty string (an answer the patient skipped must leave a
blank, not an error), so a misspelled name would go unnoticed until an agent wonders why a CRM field is always
empty. ``chat2crm check`` renders every flow summary and tag, and every mapping template, against two sample
leads of each flow (every question answered; nothing answered), with an environment that has the relay's
filters and records each name that does not exist:

- a name the template's context does not have (``{{ refrence }}``);
- a field a record of the lead does not have (``{{ contact.nmae }}``, ``{{ last_touch.utm_campain }}``);
- an answer no question of the flows collects (``{{ answers.treatmnet }}``), the ``_label`` and ``_text``
  companions the bot keeps beside an answer included.

An answer missing from the sample that answered nothing is not a mistake (a skipped question), nor is
anything read from a value that is empty (``None``) at run time too. A template that raises on a sample
(calling something undefined, a filter given the wrong type) is reported with the error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import TemplateError, TemplateRuntimeError, Undefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from connector.bot.flows import Flow
from connector.bot.lead import build_lead
from connector.bot.validate import QUESTIONS_FIELD
from connector.templating import environment
from core.models import Attribution, Consent, Conversation, Lead, MediaRef, TranscriptEntry

#: when the sample conversations happen (a fixed time: the check says the same thing every run)
SAMPLE_NOW = datetime(2027, 3, 10, 9, 30, tzinfo=UTC)
#: the placeholders each system text of a flow is given (``clinic`` is given to every text)
TEXT_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "done": frozenset({"reference"}), "handoff": frozenset({"reference"}),
    "confirm_time": frozenset({"date"}), "confirm_date": frozenset({"date"}),
}


class Record(dict[str, Any]):
    """The fields of one record of the lead (a model's dump): a name it lacks is a mistake in a template.

    Where it is (``contact``, ``lead.first_touch``) is kept in an attribute no template reads (the sandbox
    refuses names that start with ``_``)."""

    _where: str = ""

    @property
    def named(self) -> str:
        """Where the record is in the template's context (``contact``, ``lead.first_touch``)."""
        return self._where


class Answers(Record):
    """The answers: a name no question collects is a mistake; a question not answered is not. The values are
    the patient's, kept as they are."""


def wrap(value: Any, where: str) -> Any:
    """``value`` (a model's dump) with each record marked, so a missing name can be told from an empty one."""
    if isinstance(value, list):
        return [wrap(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    made: Record
    if where.rsplit(".", 1)[-1] == "answers":
        made = Answers(value)
    else:
        made = Record({key: wrap(item, f"{where}.{key}") for key, item in value.items()})
    made._where = where
    return made


# -- sample leads ---------------------------------------------------------------------------------
def answer_names(flows: Iterable[Flow]) -> set[str]:
    """Every answer name the flows can leave: each question's field, its ``_label`` and ``_text``, and what
    the bot keeps on its own (the patient's questions)."""
    names = {QUESTIONS_FIELD}
    for flow in flows:
        for step in flow.steps:
            names |= {step.field, f"{step.field}_label", f"{step.field}_text"}
    return names


def _sample_answers(flow: Flow) -> tuple[dict[str, Any], Consent | None]:
    """An answer of the right kind to every question of ``flow``."""
    answers: dict[str, Any] = {}
    consent = None
    language = flow.languages[0]
    for step in flow.steps:
        field, kind = step.field, step.type
        options = sorted(step.options, key=lambda o: o.handoff)  # an option that carries on first
        if kind == "choice":
            answers[field] = options[0].id
            answers[f"{field}_label"] = options[0].title.get(language, options[0].id)
        elif kind == "multi_choice":
            answers[field] = [o.id for o in options[:2]]
        elif kind == "datetime":
            answers[field], answers[f"{field}_text"] = "2027-03-17T11:00:00+03:00", "Wednesday 11:00"
        elif kind == "date_range":
            answers[field], answers[f"{field}_text"] = {"start": "2027-03-17", "end": "2027-03-24"}, "17-24 March"
        elif kind in ("yes_no", "consent"):
            answers[field] = True
            if kind == "consent":
                consent = Consent(given=True, text_version=step.version or "1", at=SAMPLE_NOW)
        else:
            answers[field] = {
                "name": "Ayşe Yılmaz", "email": "patient@example.com", "phone": "+905321112233",
                "location": "Istanbul, Turkey", "number": int(step.min) if step.min is not None else 3,
                "media": ["media-1"], "language": language,
            }.get(kind, "Sample answer")
    return answers, consent


def sample_conversation(flow: Flow, *, full: bool, campaign: str | None = None) -> Conversation:
    """A conversation of ``flow`` that answered every question (``full``), or none, ready for its lead."""
    answers, consent = _sample_answers(flow) if full else ({}, None)
    touch = Attribution(campaign=campaign or "sample", click_ref="ABC123", utm_source="facebook",
                        utm_medium="paid_social", utm_campaign="sample-2027", utm_content="ad-1", utm_term="clinic",
                        utm_lang=flow.languages[0], fbclid="fb.1", gclid="g.1", landing_page="https://example.com",
                        clicked_at=SAMPLE_NOW, ad_source_id="120210000000001", ad_source_type="ad",
                        ad_source_url="https://fb.me/1", ad_headline="Headline", ad_body="Body", ad_media_type="image",
                        ctwa_clid="ctwa.1", start_payload="ABC123", touched_at=SAMPLE_NOW) if full else None
    transcript = [TranscriptEntry(direction="in", at=SAMPLE_NOW, text="Merhaba"),
                  TranscriptEntry(direction="out", at=SAMPLE_NOW, text="Hello!")]
    return Conversation(
        key="whatsapp:1065:905321112233", channel="whatsapp", account="1065", sender_id="905321112233",
        flow=flow.name, answers=answers, language=flow.languages[0] if full else None,
        language_source="detected" if full else None, first_touch=touch, last_touch=touch,
        status="handoff" if full else "closed", handoff_reason="patient_request" if full else None,
        transcript=transcript, reference="#1001", profile_name="Ayşe Yılmaz" if full else None,
        phone="+905321112233" if full else None, consent=consent,
        media=[MediaRef(kind="image", media_id="media-1", mime_type="image/jpeg")] if full else [],
        started_at=SAMPLE_NOW, updated_at=SAMPLE_NOW, completed_at=SAMPLE_NOW)


def sample_lead(flow: Flow, *, full: bool, clinic: str, campaign: str | None = None) -> Lead:
    """The lead the bot would make from :func:`sample_conversation` (its summary and tags not rendered: they
    are checked on their own)."""
    quiet = flow.model_copy(update={"summary": "", "tags": []})
    lead = build_lead(sample_conversation(flow, full=full, campaign=campaign), quiet, now=SAMPLE_NOW,
                      clinic_name=clinic, transcript_url="https://relay.example/t/sample" if full else None)
    lead.summary = "Sample summary" if full else ""
    lead.tags = ["sample"] if full else []
    return lead


def summary_context(lead: Lead, flow: Flow, clinic: str) -> dict[str, Any]:
    """What a flow's summary and tags are rendered with (as :func:`connector.bot.lead.build_lead` gives them)."""
    return {"lead": lead.model_dump(mode="json"), "answers": dict(lead.answers), "contact": lead.contact.model_dump(),
            "request": lead.request.model_dump(), "reference": lead.reference, "language": lead.language,
            "flow": flow.name, "clinic": clinic}


# -- strict rendering -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One mistake in a template: what, and a hint."""

    message: str
    hint: str | None = None


class StrictRenderer:
    """Renders templates with the relay's filters, recording every name that does not exist.

    Args:
        answers: the answer names the templates may read (:func:`answer_names`).
    """

    def __init__(self, answers: set[str]) -> None:
        self.answers = answers
        self._missing: list[tuple[Any, str]] = []
        recorded = self._missing

        class Recording(Undefined):
            """Renders as the relay's undefined does (empty), and remembers what it stood for."""

            __slots__ = ()

            def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                         exc: type[TemplateRuntimeError] = UndefinedError) -> None:
                super().__init__(hint, obj, name, exc)
                if name is not None and (obj is missing or isinstance(obj, Record)):
                    recorded.append((obj, name))

        self._environments = {html: self._environment(Recording, html) for html in (False, True)}

    @staticmethod
    def _environment(undefined: type[Undefined], html: bool) -> ImmutableSandboxedEnvironment:
        env = ImmutableSandboxedEnvironment(undefined=undefined, autoescape=html, trim_blocks=True,
                                            lstrip_blocks=True, keep_trailing_newline=False)
        env.filters.update(environment(html).filters)
        return env

    def check(self, source: str, context: dict[str, Any], *, html: bool = False) -> list[Finding]:
        """The mistakes ``source`` shows when rendered with ``context`` (a template that does not compile is
        left to the loaders, which report it already)."""
        if "{" not in source:
            return []
        try:
            template = self._environments[html].from_string(source)
        except TemplateError:
            return []
        wrapped = {name: wrap(value, name) for name, value in context.items()}
        self._missing.clear()
        findings: list[Finding] = []
        try:
            template.render(**wrapped)
        except Exception as exc:  # a filter given the wrong type raises anything; the sample holds no patient data
            message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
            findings.append(Finding(f"template fails on a sample lead: {message or type(exc).__name__}"))
        for obj, name in self._missing:
            found = self._finding(obj, name, wrapped)
            if found is not None:
                findings.append(found)
        return list(dict.fromkeys(findings))

    def _finding(self, obj: Any, name: str, context: dict[str, Any]) -> Finding | None:
        if obj is missing:
            return Finding(f"undefined name {name!r}", suggest(name, context, "names"))
        if isinstance(obj, Answers):
            if name in self.answers:
                return None  # a question not answered: not a mistake
            return Finding(f"{obj.named}.{name}: no question collects it", suggest(name, self.answers, "answers"))
        record: Record = obj
        return Finding(f"{record.named}.{name} does not exist", suggest(name, record, "fields"))


def suggest(name: str, choices: Iterable[str], what: str) -> str:
    """A hint for a name that does not exist: the closest of ``choices``, else them all (the first 15)."""
    names = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(names[:15]) + (", …" if len(names) > 15 else "")
    return f"{what}: {shown}"


def text_problem(key: str, text: str) -> Finding | None:
    """Why a flow's system text ``key`` cannot be filled at run time (a placeholder the bot does not give, a
    stray brace), or None."""
    given = {"clinic", *TEXT_PLACEHOLDERS.get(key, ())}
    try:
        text.format(**dict.fromkeys(given, "x"))
    except KeyError as exc:
        return Finding(f"unknown placeholder {{{exc.args[0]}}}",
                       "this text can use " + ", ".join(f"{{{n}}}" for n in sorted(given)))
    except (IndexError, ValueError, AttributeError) as exc:
        return Finding(f"the text cannot be filled: {exc}", "write {{ and }} for a brace shown as it is")
    return None
