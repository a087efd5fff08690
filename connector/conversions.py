"""Conversion events to Meta: which lead reached which stage, sent once, only with the patient's consent.

The mapping's ``conversions:`` section (:mod:`connector.mapping.conversions`) names the Meta dataset and which
stage sends which event; :mod:`connector.capi` builds each event and sends it.

- **At the lead's first write** (:func:`lead_written`, from :func:`connector.leads.mark_synced`): what the events
  will need is kept under the CRM record the relay wrote (:data:`CONTEXT`, for the attribution window): the
  reference, the hashed phone number and e-mail address, the click-to-WhatsApp click id, the lead form's lead id,
  and whether the patient consented. ``LeadSubmitted`` (when configured) is queued then, by the relay itself.
- **A stage change in the CRM** (:func:`fields_edited`, from :mod:`connector.crm_events`, whatever the CRM: the
  adapters hand it over as :class:`core.inbox.FieldsEdited` with the new value): when the field is the record's
  stage property, the record is one the relay wrote, and the new stage maps to an event, the event is queued.
  The relay's own writes set only the ``new`` stage, which no stage event may name: they never send one.
- **Once**: an event's id is the reference and the event's name; :data:`SENT` is set before its job is queued
  (``SET NX``), so a redelivered webhook, a replayed write or a stage moved back and forth sends nothing more.
- **Not without consent** (``consent: required``): a lead whose patient did not consent is logged (its reference,
  never patient data) and sends nothing; a lead form's submission counts as consent under the form's policy.
- **Within Meta's window**: an event more than 7 days old (``window_days``) when queued or sent is refused with
  a logged reason; the job (:func:`send`) retries Meta's transient errors with the relay's backoff.

Nothing here may hold up a CRM write: the hooks log and carry on when anything fails.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from connector import capi, queues
from connector.mapping.model import STATUSES
from core.errors import AuthError
from core.keys import family

if TYPE_CHECKING:
    from connector.mapping.conversions import ConversionEvent, ConversionsSection
    from connector.runtime import Runtime
    from core.inbox import FieldsEdited
    from core.models import Lead

log = logging.getLogger("chat2crm.conversions")

#: the longest anything here is kept: Meta's window for an event (7 days)
WINDOW_SECONDS = capi.MAX_AGE_SECONDS
#: what a record's events need (reference, hashed phone and e-mail, click id, lead id, consent), by CRM record
CONTEXT = family("conversion", "{object}:{id}", ttl=WINDOW_SECONDS, holds_pii=True, owner=__name__)
#: an event queued (``queued``), then ``sent`` or why it was not: one per event id (reference and event name)
SENT = family("conversion-sent", "{event_id}", ttl=WINDOW_SECONDS, holds_pii=False, owner=__name__)
#: the Meta lead id of a lead form's lead, by the reference it was stored as
LEADGEN = family("conversion-leadgen", "{reference}", ttl=WINDOW_SECONDS, holds_pii=False, owner=__name__)


def section(runtime: Runtime) -> ConversionsSection | None:
    """The mapping's ``conversions:`` section, or None when no events are configured."""
    return runtime.mapping.conversions


def window(conversions: ConversionsSection) -> int:
    """The attribution window in seconds (at most Meta's 7 days)."""
    return min(conversions.window_days * 86400, WINDOW_SECONDS)


# -- what the events need ------------------------------------------------------------------------
def lead_form_taken(runtime: Runtime, reference: str, leadgen_id: str) -> None:
    """Keep the Meta lead id of a lead form's lead (``reference``), for its events' ``user_data.lead_id``."""
    if section(runtime) is not None:
        runtime.redis.set(LEADGEN.key(reference.lstrip("#")), leadgen_id, ex=WINDOW_SECONDS)


def consented(lead: Lead, lead_id: str | None) -> bool:
    """Whether the patient's consent allows sending their events: the consent they gave the relay, or a lead
    form's submission (under the form's privacy policy)."""
    return bool(lead.consent and lead.consent.given) or bool(lead_id)


def context_of(lead: Lead, lead_id: str | None) -> dict[str, Any]:
    """What a lead's events need, patient data hashed: never the phone number or e-mail address in clear."""
    touch = lead.last_touch if lead.last_touch.ctwa_clid else lead.first_touch
    return {"reference": lead.reference, "contact_key": lead.contact_key,
            "ph": capi.hashed_phone(lead.contact.phone or (lead.contact.channel_id if lead.contact.channel ==
                                                           "whatsapp" else None)),
            "em": capi.hashed_email(lead.contact.email), "ctwa_clid": touch.ctwa_clid or lead.first_touch.ctwa_clid,
            "lead_id": lead_id, "consent": consented(lead, lead_id), "written_at": int(time.time())}


def lead_written(runtime: Runtime, lead: Lead, summary: dict[str, Any]) -> None:
    """The CRM has ``lead`` (``summary``: what the write returned): keep its events' context under its record
    and queue ``LeadSubmitted`` (once per lead). Never raises."""
    try:
        conversions = section(runtime)
        if conversions is None:
            return
        raw = runtime.redis.get(LEADGEN.key(lead.reference_number))
        lead_id = raw.decode() if isinstance(raw, bytes) else raw
        context = context_of(lead, lead_id)
        record = summary.get("record") or {}
        if record.get("id"):
            runtime.redis.set(CONTEXT.key(record["object"], record["id"]), json.dumps(context),
                              ex=window(conversions))
        first = conversions.at_write()
        if first is not None:
            queue(runtime, conversions, context, first, int(lead.created_at.timestamp()))
    except Exception as exc:  # an event is never worth a failed CRM write
        log.warning("conversion context not kept", extra={"reference": lead.reference, "error": type(exc).__name__})


# -- a stage change in the CRM -------------------------------------------------------------------
def _texts(label: Any) -> set[str]:
    values = label.values() if isinstance(label, dict) else [label]
    return {str(v).casefold() for v in values if v}


def stage_names(runtime: Runtime, stage: Any) -> set[str]:
    """Every name the mapping gives a configured ``stage``: its own text(s), and for a status of the scheme the
    record's stage for it (an id or a label, in any language), case aside."""
    names = _texts(stage)
    record = runtime.mapping.record
    if isinstance(stage, str) and stage in STATUSES and record is not None and stage in record.statuses:
        names |= _texts(record.statuses[stage])
    return names


def _crm_names(runtime: Runtime, crm_object: str, value: str) -> set[str]:
    """The id and label the CRM gives the stage ``value`` (a CRM that sends ids resolves them: its inbox's
    ``stage_names``); empty when it cannot say."""
    try:
        resolve = getattr(runtime.inbox, "stage_names", None)
        return {n.casefold() for n in resolve(crm_object, value)} if callable(resolve) else set()
    except Exception as exc:
        log.warning("stage not resolved", extra={"object": crm_object, "error": type(exc).__name__})
        return set()


def _carried_name(event: FieldsEdited) -> set[str]:
    """The stage's names the change itself carries beside its ids (Pipedrive's ``stage_name``, and a lead's
    ``label_names``: its status is a label), case aside."""
    names = [event.values.get("stage_name"), *(event.values.get("label_names") or [])]
    return {str(name).casefold() for name in names if name}


def fields_edited(runtime: Runtime, event: FieldsEdited) -> list[str]:
    """Queue the events a CRM record's new stage sends; returns the names queued now. Never raises."""
    try:
        conversions, record = section(runtime), runtime.mapping.record
        if conversions is None or record is None or not record.stage_property or event.crm_object != record.object:
            return []
        prop = record.stage_property
        if prop not in event.fields or event.values.get(prop) in (None, "", []):
            return []
        raw = runtime.redis.get(CONTEXT.key(event.crm_object, event.crm_id))
        if raw is None:
            return []  # not a record the relay wrote, or its window has passed
        context = json.loads(raw)
        # one stage, or a lead's labels (Pipedrive keeps a lead's status as a label among its others)
        raw_value = event.values[prop]
        values = [str(v) for v in raw_value] if isinstance(raw_value, list) else [str(raw_value)]
        at = int(event.at.timestamp()) if event.at is not None else int(time.time())
        queued: list[str] = []
        crm_names: set[str] | None = None
        for wanted in conversions.on_stages():
            names = stage_names(runtime, wanted.stage)
            if not any(v.casefold() in names for v in values):
                if crm_names is None:  # a CRM that sends the stage's id with its name (Pipedrive) says it itself
                    crm_names = _carried_name(event).union(*(_crm_names(runtime, event.crm_object, v) for v in values))
                if not names & crm_names:
                    continue
            if queue(runtime, conversions, context, wanted, at) == "queued":
                queued.append(wanted.name)
        return queued
    except Exception as exc:
        log.warning("stage change not taken for conversions", extra={"error": type(exc).__name__})
        return []


# -- queueing and sending ------------------------------------------------------------------------
def queue(runtime: Runtime, conversions: ConversionsSection, context: dict[str, Any], wanted: ConversionEvent,
          event_time: int) -> str:
    """Queue one event of a lead; returns ``queued``, or why not: ``no_consent``, ``no_ad``, ``too_old``,
    ``duplicate``."""
    reference = context["reference"]
    said = {"reference": reference, "event": wanted.name}
    if conversions.consent == "required" and not context.get("consent"):
        log.info("conversion not sent: no consent", extra=said)
        return "no_consent"
    payload = capi.event(context, name=wanted.name, event_time=event_time, value=wanted.value,
                         currency=wanted.currency, waba_id=conversions.whatsapp_business_account_id)
    if payload is None:
        log.info("conversion not sent: no ad click or lead form to attribute it to, or an event name business "
                 "messaging does not take", extra=said)
        return "no_ad"
    reason = capi.too_old(event_time, time.time(), window(conversions))
    if reason is not None:
        log.warning("conversion refused", extra={**said, "reason": reason})
        return "too_old"
    if not runtime.redis.set(SENT.key(payload["event_id"]), "queued", nx=True, ex=WINDOW_SECONDS):
        log.info("conversion already queued", extra=said)
        return "duplicate"
    queues.enqueue(runtime, queues.CRM, queues.SEND_CONVERSION, json.dumps(payload),
                   description=f"conversion {reference} {wanted.name}", result_ttl=3600, failure_ttl=WINDOW_SECONDS)
    log.info("conversion queued", extra=said)
    return "queued"


def token(conversions: ConversionsSection) -> str:
    """The Conversions API access token (the variable ``access_token_env`` names).

    Raises:
        AuthError: it is not set.
    """
    found = os.environ.get(conversions.access_token_env, "")
    if not found:
        raise AuthError(f"meta conversions: {conversions.access_token_env} is not set",
                        setting=conversions.access_token_env)
    return found


def send(runtime: Runtime, payload: str) -> str:
    """Send one queued event (the ``send_conversion`` job's work); returns ``sent``, or ``too_old`` when it can
    no longer be (it waited past Meta's window), or ``off`` when the mapping no longer has conversions.

    Raises:
        RetryableError: Meta's transient errors (the job retries them).
        AuthError, FatalError: the token refused, or the event refused (the job fails with Meta's reason).
    """
    event = json.loads(payload)
    conversions = section(runtime)
    said = {"event": event["event_name"], "event_id": event["event_id"]}
    if conversions is None:
        log.warning("conversion not sent: the mapping has no conversions any more", extra=said)
        return "off"
    reason = capi.too_old(int(event["event_time"]), time.time(), window(conversions))
    if reason is not None:
        runtime.redis.set(SENT.key(event["event_id"]), f"refused: {reason}", ex=WINDOW_SECONDS)
        log.warning("conversion refused", extra={**said, "reason": reason})
        return "too_old"
    try:
        settings = runtime.settings
        answer = capi.post(settings.meta_graph_base, settings.meta_graph_version, conversions.dataset_id,
                           token(conversions), [event], test_event_code=conversions.test_event_code)
    except AuthError as exc:
        raise AuthError(exc.message, setting=conversions.access_token_env, details=exc.details) from None
    runtime.redis.set(SENT.key(event["event_id"]), "sent", ex=WINDOW_SECONDS)
    log.info("conversion sent", extra={**said, "events_received": answer.get("events_received"),
                                       "fbtrace_id": answer.get("fbtrace_id")})
    return "sent"


def refused(runtime: Runtime, payload: str, reason: str) -> None:
    """Record that an event was refused for good (its job failed): its id stays taken, so nothing resends it."""
    event = json.loads(payload)
    runtime.redis.set(SENT.key(event["event_id"]), f"refused: {reason}"[:200], ex=WINDOW_SECONDS)


def status(runtime: Runtime, reference: str, name: str) -> str | None:
    """What became of event ``name`` of lead ``reference``: ``queued``, ``sent``, ``refused: …``, or None."""
    raw = runtime.redis.get(SENT.key(f"{reference.lstrip('#')}:{name}"))
    return raw.decode() if isinstance(raw, bytes) else raw
