"""One lead form submission taken: read from the Graph API, made a lead, stored for the CRM, the patient greeted.

:func:`take` is the ``read_lead_form`` job's work (:mod:`connector.jobs` carries out its retries). It reads the
lead (throttled, :mod:`connector.leadforms.graph`), builds it with the form's mapping
(:mod:`connector.leadforms.build`) and, in one transaction under the patient's conversation lock:

- stores the lead, pending, with its ``sync_lead`` job: the same CRM write as a chat lead's;
- ties the form to the patient's WhatsApp conversation on the business number (when the form gave a phone
  number): a request **under way** with the bot takes the form's reference and answers, so the chat's
  completion updates the form's CRM record instead of making a second one, and the bot does not ask what the
  form answered; with **no conversation** and the form's greeting configured and its messaging consent ticked,
  a conversation is started the same way, and an approved template greets the patient; a **finished** request
  (the agents' now) or an opted-out patient is left alone: the form is a request of its own on the same contact;
- marks the ``leadgen_id`` taken with the reference, so a job run again changes nothing.

A crash before that transaction leaves nothing: the job runs again with the same reference (reserved per
``leadgen_id``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from connector import conversations, leads, outbox
from connector.channels import identities
from connector.leadforms.build import FormLead, build
from connector.leadforms.graph import GraphClient, GraphLead, take_read
from connector.leadforms.model import LeadForm, LeadForms, load_lead_forms
from connector.leadforms.webhook import TAKEN
from connector.logs import pii_scope
from connector.mapping.planner import lead_context, resolve
from connector.transaction import Transaction
from core.errors import RetryableError
from core.models import Conversation, Lead, Reply, TranscriptEntry, utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.leadforms")

#: the reference reservation of a leadgen id (``connector.leads.reserve_reference``)
RESERVATION = "leadform:{}"


def lead_forms(runtime: Runtime) -> LeadForms:
    """The lead forms file (loaded once per process); an empty one when ``chat2crm.yaml`` names none."""
    def load() -> LeadForms:
        path = runtime.config.lead_forms_path
        return load_lead_forms(path) if path is not None else LeadForms(version=1)

    return runtime.cached("lead_forms", load)


def graph(runtime: Runtime) -> GraphClient:
    """The Graph API client of this process."""
    return runtime.cached("client:meta_graph", lambda: GraphClient(runtime.settings))


def form_of(runtime: Runtime, form_id: str | None) -> LeadForm:
    """The mapping of ``form_id``: its own, the file's ``default``, else the standard keys in ``default_flow``."""
    found = lead_forms(runtime).form(form_id)
    if found is not None:
        return found
    config = runtime.config
    return LeadForm(flow=config.default_flow, language=config.fallback_language)


def business_number(runtime: Runtime, form: LeadForm) -> str | None:
    """The WhatsApp business number (phone number id) the form's patient is reached on."""
    if form.greeting is not None and form.greeting.phone_number_id:
        return form.greeting.phone_number_id
    numbers = runtime.config.channels.whatsapp.numbers
    return runtime.settings.whatsapp_phone_number_id or (numbers[0].phone_number_id if numbers else None)


def take(runtime: Runtime, leadgen_id: str, *, form_id: str | None = None) -> Lead | None:
    """Read lead ``leadgen_id`` and store it for the CRM (see the module's description).

    Returns:
        The lead stored, or None when an earlier run stored it already.

    Raises:
        RetryableError: throttled (by the relay's bucket or by Meta), Meta failing for now, or the patient's
            conversation busy: the job is tried again.
        AuthError, FatalError, SkippableError: as :meth:`GraphClient.lead`.
    """
    client = runtime.redis
    done = client.get(TAKEN.key(leadgen_id))
    if done is not None and done not in (b"1", "1"):
        return None
    wait = take_read(client, runtime.settings.meta_lead_reads_per_hour)
    if wait > 0:
        raise RetryableError("meta: lead reads held back to stay within Meta's allowance", retry_after=wait)
    found = graph(runtime).lead(leadgen_id)
    form = form_of(runtime, found.form_id or form_id)
    reference = leads.reserve_reference(runtime, RESERVATION.format(leadgen_id))
    account = business_number(runtime, form)
    made = _build(runtime, found, form, reference, account=account or "0", sender=None)
    sender = identities.sender_of(client, "whatsapp", made.wa_id) if made.wa_id else None
    if sender and sender != made.wa_id:  # a person the relay knows by another id (their BSUID): that contact
        made = _build(runtime, found, form, reference, account=account or "0", sender=sender)
    sender = sender or made.wa_id
    with pii_scope(made.lead.contact.name, made.lead.contact.email, made.lead.contact.phone, sender):
        if sender and account:
            _store_with_conversation(runtime, leadgen_id, made, form, found, account=account, sender=sender)
        else:
            made.lead.conversation_key = f"leadform:{leadgen_id}"
            _store(runtime, leadgen_id, made.lead, Transaction(client))
    log.info("lead form taken", extra={"reference": reference, "form_id": found.form_id,
                                       "ad": bool(found.ad_id), "phone": bool(made.wa_id)})
    return made.lead


def _build(runtime: Runtime, found: GraphLead, form: LeadForm, reference: str, *, account: str,
           sender: str | None) -> FormLead:
    config = runtime.config
    return build(found, form, reference=reference, sender=sender, account=account, flow=runtime.flows.get(form.flow),
                 now=utcnow(), clinic_name=config.clinic_name)


def _store(runtime: Runtime, leadgen_id: str, lead: Lead, tx: Transaction, *,
           conversation: Conversation | None = None, entries: list[outbox.Entry] | None = None) -> None:
    """Stage the lead (and the conversation and greeting) and mark the leadgen id taken; commit.

    Raises:
        RetryableError: the transaction's guard failed (the conversation lock was lost).
    """
    pipe = tx.pipe
    leads.stage(runtime, pipe, lead)
    if conversation is not None:
        conversations.stage_save(runtime, pipe, conversation)
    if entries:
        outbox.stage(runtime, pipe, conversation.key if conversation else lead.conversation_key, entries)
    leads.stage_release(pipe, [RESERVATION.format(leadgen_id)])
    pipe.set(TAKEN.key(leadgen_id), lead.reference, ex=runtime.config.retention.dedup_days * 86400)
    if not tx.commit():
        raise RetryableError("leadform: the conversation's lock was lost before the lead was stored")


def _store_with_conversation(runtime: Runtime, leadgen_id: str, made: FormLead, form: LeadForm, found: GraphLead,
                             *, account: str, sender: str) -> None:
    """Store the lead, tying it to the patient's WhatsApp conversation, under that conversation's lock."""
    key = f"whatsapp:{account}:{sender}"
    lock = conversations.lock(runtime, key)
    if not lock.acquire():
        raise RetryableError("leadform: the patient's conversation is busy", retry_after=1.0)
    try:
        conv = conversations.load(runtime, key)
        changed, entries = _tie(runtime, conv, made, form, found, key=key, account=account, sender=sender)
        tx = Transaction(runtime.redis)
        tx.require_value(lock.key, lock.token)
        _store(runtime, leadgen_id, made.lead, tx, conversation=changed, entries=entries)
    finally:
        lock.release()


def _tie(runtime: Runtime, conv: Conversation | None, made: FormLead, form: LeadForm, found: GraphLead, *,
         key: str, account: str, sender: str) -> tuple[Conversation | None, list[outbox.Entry]]:
    """The conversation as the form leaves it (None: unchanged), and the greeting to send (if any)."""
    lead = made.lead
    if conv is not None:
        if conv.opted_out or conv.status != "bot":
            return None, []  # opted out, or a finished request the agents have: the form is a request of its own
        # a request under way with the bot (or one a form started): it becomes the form's request
        conv.reference = lead.reference
        for name, value in made.known.items():
            conv.known.setdefault(name, value)
        conv.updated_at = utcnow()
        return conv, []
    greeting = form.greeting
    if greeting is None or not found.consented(greeting.consent):
        return None, []
    conv = Conversation(
        key=key, channel="whatsapp", account=account, sender_id=sender, flow=form.flow, known=dict(made.known),
        language=form.language, language_source="ad", first_touch=lead.first_touch, last_touch=lead.last_touch,
        reference=lead.reference, phone=lead.contact.phone, profile_name=lead.contact.name,
        transcript=[*lead.transcript, TranscriptEntry(direction="out", at=utcnow(), kind="template",
                                                      text=f"(template {greeting.template.name})")])
    data = lead_context(lead)
    params = [str(resolve(path, data) or "-") for path in greeting.template.params]
    reply = Reply(text=f"(template {greeting.template.name})", template=greeting.template.name,
                  template_language=greeting.template.language, template_params=params)
    entry_id = hashlib.sha256(f"{key}|leadform|{lead.reference}".encode()).hexdigest()[:24]
    entry = outbox.Entry(id=entry_id, kind="reply", conversation=key, channel="whatsapp", account=account,
                         sender_id=sender, language=form.language, reply=reply)
    return conv, [entry]
