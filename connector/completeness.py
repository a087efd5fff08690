"""Completeness on first pass, time to CRM and time to owner: the figures clinics judge the bot by.

**Completeness on first pass.** When a lead's CRM write succeeds for the first time (:func:`lead_written`, from
:func:`connector.jobs.sync_lead`), its required fields are the steps of its flow that are not optional, whose
``when`` held and (for a health question) whose consent was given; the lead is ``complete`` when every one of
them has an answer (asked, or known before asking), else ``incomplete`` and each missing field is counted. The
lead's record (:data:`RECORD`: its labels, required and missing fields, first message time) is kept, and the
CRM records it was written to are mapped back to it (:data:`CRM_RECORD`).

Later, a required field is **asked again** when:

- a person edits, in the CRM, a field the mapping fills from it (:func:`fields_edited`, from
  :mod:`connector.crm_events`: the adapters read the CRM's change events as :class:`core.inbox.FieldsEdited`
  and tell a person's edit from the relay's own write); the CRM field is mapped back to the lead's field
  through the mapping's ``source`` paths (a field filled by a template or a constant maps to none);
- an agent's reply sent to the patient (:func:`agent_replied`, from :func:`connector.agent.send`) holds a
  question (a sentence ending with ``?`` or ``؟``) that shares a content word with that field's prompt in the
  conversation's language. Words are compared folded (case, diacritics, Turkish I/ı), only words of four
  letters or more that are not on :data:`STOP_WORDS`; two words match when equal or, both at least six letters
  long, when their first five letters agree (Turkish and German endings). Conservative on purpose: "What is
  your e-mail address?" matches the prompt "Your e-mail address?"; "Any questions?" matches nothing.

Each lead counts once per field (:data:`ASKED`, whichever way came first), and a lead complete on first pass is
counted once more, the first time any of its fields is asked again (``leads_asked_again``): the share complete
on first pass is ``(complete − asked again of those) / leads``.

**Time to CRM** is observed with the lead's labels when its write first succeeds (from the conversation's first
message); **time to owner** when the first agent reply of the lead is sent (once per lead). Every label is
bounded (:mod:`connector.measures`): flow, language, campaign, and the rollout level and group the lead ran
under (:func:`connector.measures.rollout_labels`).

Nothing here may hold up a patient or a CRM write: every hook logs and carries on when anything fails.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from connector import measures
from connector.bot.commands import fold
from core import metrics
from core.keys import family

if TYPE_CHECKING:
    from connector.bot.flows import Flow
    from connector.mapping import Mapping
    from connector.runtime import Runtime
    from core.inbox import FieldsEdited
    from core.models import Conversation, Lead
    from core.plan import SyncResult

log = logging.getLogger("chat2crm.completeness")

#: a lead's figures: its labels, required and missing fields, when its conversation began
RECORD = family("completeness", "{reference}", ttl="retention.transcript_days", holds_pii=False, owner=__name__)
#: the lead (reference) a CRM record the relay wrote belongs to (a returning patient's contact: the latest lead)
CRM_RECORD = family("completeness-crm", "{object}:{id}", ttl="retention.transcript_days", holds_pii=False,
                    owner=__name__)
#: the required fields of a lead already counted as asked again
ASKED = family("completeness-asked", "{reference}", ttl="retention.transcript_days", holds_pii=False,
               owner=__name__)
#: a lead whose first agent reply was timed from its first message
OWNED = family("completeness-owner", "{reference}", ttl="retention.transcript_days", holds_pii=False,
               owner=__name__)

#: a CRM source path → the step fields it is filled from (``answers.<field>`` maps to the field itself;
#: ``@topic`` is the flow's ``topic_field``)
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "contact.name": ("name",), "contact.first_name": ("name",), "contact.last_name": ("name",),
    "contact.phone": ("phone",), "contact.email": ("email",), "contact.country": ("country", "location"),
    "contact.city": ("city", "location"), "organization": ("company",), "request.topic": ("@topic",),
    "request.location": ("location", "city", "country"), "request.preferred_time": ("preferred_time", "travel_dates"),
    "request.preferred_time_text": ("preferred_time", "travel_dates"), "request.preferred_end": ("travel_dates",),
    "request.priority": ("priority",), "request.note": ("note",)}
#: words too common in questions to say which detail is asked for (folded, four letters or more)
STOP_WORDS = frozenset(fold(" ".join([
    "what which when where would could should your yours please also like tell that this with have there about "
    "from into want kindly write send share still again",
    "nedir hangi nasil musunuz misiniz midir lutfen sizin sizinle bize bizim icin olarak",
    "welche welcher welches wann wohin ihre ihrer ihren bitte noch auch konnten sollen mochten schreiben",
    "какой какая какое какие ваше ваша ваши ваш пожалуйста также можно напишите",
    "هل ما هو هي التي الذي يمكنك ايضا ارسل اكتب من فضلك",
])).split())
_SENTENCE = re.compile(r"[^.!?؟？\n]*[?؟？]")


def lead_labels(runtime: Runtime, lead: Lead) -> dict[str, str]:
    """The bounded labels of a lead's figures: flow, language, campaign, rollout, group."""
    return {"flow": measures.flow_label(runtime, lead.flow),
            "language": measures.language_label(runtime, lead.language),
            "campaign": measures.campaign_label(runtime, lead.last_touch.campaign),
            **measures.rollout_labels(runtime, lead.rollout, lead.rollout_group)}


def required_fields(flow: Flow, lead: Lead) -> list[str]:
    """The fields the flow required of this lead: steps not optional, whose ``when`` held on its answers, and
    (health questions) whose consent was given."""
    consented = bool(lead.consent and lead.consent.given)
    return [s.field for s in flow.steps
            if not s.optional and (s.when is None or s.when.holds(lead.answers)) and (consented or not s.health)]


def missing_fields(lead: Lead, required: list[str]) -> list[str]:
    """The required fields without an answer."""
    return [f for f in required if lead.answers.get(f) in (None, "", [], {})]


# -- at the CRM write -----------------------------------------------------------------------------
def lead_written(runtime: Runtime, lead: Lead, result: SyncResult) -> None:
    """Count a lead's first pass and time to CRM (once per lead), and map its CRM records back to it."""
    try:
        _lead_written(runtime, lead, result)
    except Exception as exc:  # a figure is never worth a failed CRM write
        log.warning("completeness not recorded", extra={"error": type(exc).__name__})


def _lead_written(runtime: Runtime, lead: Lead, result: SyncResult) -> None:
    client, ttl = runtime.redis, RECORD.seconds(runtime.config)
    flow = runtime.flows.get(lead.flow or "")
    required = required_fields(flow, lead) if flow is not None else []
    missing = missing_fields(lead, required)
    labels = lead_labels(runtime, lead)
    first_at = (lead.transcript[0].at if lead.transcript else lead.created_at).timestamp()
    record: dict[str, Any] = {"labels": labels, "flow": lead.flow, "language": lead.language, "required": required,
              "missing": missing, "first_at": first_at, "outcome": "incomplete" if missing else "complete"}
    pipe = client.pipeline(transaction=False)
    for ref in (result.contact, result.record):
        if ref is not None:
            pipe.set(CRM_RECORD.key(ref.object, ref.id), lead.reference_number, ex=ttl)
    pipe.execute()
    if not client.set(RECORD.key(lead.reference_number), json.dumps(record), nx=True, ex=ttl):
        return  # written before (a replay, a retried job after a lost answer): counted then
    metrics.incr(client, "leads_first_pass", 1, **labels, outcome=str(record["outcome"]))
    for field in missing:
        metrics.incr(client, "leads_missing_fields", flow=labels["flow"],
                     field=measures.step_label(runtime, lead.flow, field))
    metrics.observe(client, "time_to_crm_seconds", max(time.time() - first_at, 0.0), **labels)


def _record(runtime: Runtime, reference: str) -> dict[str, Any] | None:
    raw = runtime.redis.get(RECORD.key(reference.lstrip("#")))
    return json.loads(raw) if raw else None


def asked_again(runtime: Runtime, reference: str, fields: list[str], via: str) -> list[str]:
    """Count the required ``fields`` of lead ``reference`` asked again (``via`` ``crm_edit`` or
    ``agent_question``), each once per lead; returns the fields counted now."""
    record = _record(runtime, reference)
    if record is None:
        return []
    wanted = [f for f in dict.fromkeys(fields) if f in record["required"]]
    if not wanted:
        return []
    key, labels = ASKED.key(reference.lstrip("#")), record["labels"]
    pipe = runtime.redis.pipeline(transaction=True)
    for field in wanted:
        pipe.sadd(key, field)
    pipe.scard(key)
    pipe.expire(key, ASKED.seconds(runtime.config) or 86400)
    *added, size, _ = pipe.execute()
    counted = [f for f, new in zip(wanted, added, strict=True) if new]
    for field in counted:
        metrics.incr(runtime.redis, "fields_asked_again", flow=labels["flow"],
                     field=measures.step_label(runtime, record.get("flow"), field), via=via,
                     rollout=labels["rollout"], group=labels["group"])
    if counted and int(size) == len(counted):  # the lead's first field asked again
        metrics.incr(runtime.redis, "leads_asked_again", 1, **labels, first_pass=str(record["outcome"]))
    return counted


# -- a person's edit in the CRM -------------------------------------------------------------------
def crm_fields(mapping: Mapping, crm_object: str) -> dict[str, tuple[str, ...]]:
    """The CRM fields of ``crm_object`` the mapping fills from a lead's field (``source`` paths only), each with
    the step fields it comes from (``@topic``: the flow's topic field)."""
    sections = [mapping.contact] + ([mapping.record] if mapping.record is not None else [])
    found: dict[str, tuple[str, ...]] = {}
    for section in sections:
        if section.object != crm_object:
            continue
        for name, source in section.fields.items():
            path = source.source or ""
            if path.startswith("answers."):
                fields: tuple[str, ...] = (path.removeprefix("answers.").removesuffix("_label").removesuffix("_text"),)
            else:
                fields = SOURCE_FIELDS.get(path, ())
            if fields:
                found[name] = tuple(dict.fromkeys(found.get(name, ()) + fields))
    return found


def fields_edited(runtime: Runtime, event: FieldsEdited) -> list[str]:
    """Count the lead's required fields a person edited in the CRM; returns the fields counted now (nothing
    for the relay's own writes, a record the relay did not write, or fields no lead field fills)."""
    try:
        if not event.by_person:
            return []
        raw = runtime.redis.get(CRM_RECORD.key(event.crm_object, event.crm_id))
        if raw is None:
            return []
        reference = raw.decode() if isinstance(raw, bytes) else str(raw)
        record = _record(runtime, reference)
        if record is None:
            return []
        flow = runtime.flows.get(record.get("flow") or "")
        topic = (flow.topic_field if flow is not None else None) or "topic"
        mapped = crm_fields(runtime.mapping, event.crm_object)
        fields = [topic if f == "@topic" else f for name in event.fields for f in mapped.get(name, ())]
        return asked_again(runtime, reference, fields, "crm_edit")
    except Exception as exc:
        log.warning("CRM edit not measured", extra={"error": type(exc).__name__})
        return []


# -- an agent's reply -----------------------------------------------------------------------------
def questions(text: str) -> list[str]:
    """The sentences of ``text`` that are questions (end with ``?``, ``؟`` or ``？``)."""
    return [s.strip() for s in _SENTENCE.findall(text or "") if s.strip(" ?؟？")]


def content_words(text: str) -> set[str]:
    """The words of ``text`` that can say which detail is meant: folded, four letters or more, not stop words."""
    return {w for w in fold(text).split() if len(w) >= 4 and not w.isdigit() and w not in STOP_WORDS}


def _match(one: str, other: str) -> bool:
    return one == other or (len(one) >= 6 and len(other) >= 6 and one[:5] == other[:5])


def fields_asked(flow: Flow, fields: list[str], language: str | None, text: str) -> list[str]:
    """The ``fields`` an agent's ``text`` asks for: a question sharing a content word with the field's prompt
    in ``language`` (else English, else the prompt's first language)."""
    asked = set().union(*(content_words(q) for q in questions(text))) if questions(text) else set()
    if not asked:
        return []
    found = []
    for field in fields:
        step = flow.step(field)
        if step is None or not step.prompt:
            continue
        prompt = step.prompt.get(language or "") or step.prompt.get("en") or next(iter(step.prompt.values()))
        if any(_match(a, p) for a in asked for p in content_words(prompt)):
            found.append(field)
    return found


def agent_replied(runtime: Runtime, conversation: Conversation | None, text: str) -> None:
    """An agent's reply went to the patient: time the lead's first one from its first message, and count the
    required fields it asks for again."""
    try:
        if conversation is None or not conversation.reference:
            return
        reference = conversation.reference.lstrip("#")
        record = _record(runtime, reference)
        if record is None:
            return
        if runtime.redis.set(OWNED.key(reference), 1, nx=True, ex=OWNED.seconds(runtime.config)):
            metrics.observe(runtime.redis, "time_to_owner_seconds", max(time.time() - float(record["first_at"]), 0.0),
                            **record["labels"])
        flow = runtime.flows.get(record.get("flow") or "")
        if flow is not None and text:
            language = conversation.language or record.get("language")
            asked_again(runtime, reference, fields_asked(flow, record["required"], language, text), "agent_question")
    except Exception as exc:
        log.warning("agent reply not measured", extra={"error": type(exc).__name__})
