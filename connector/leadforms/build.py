"""A lead form's answers as a :class:`~core.models.Lead` (pure: no I/O, no clock).

The lead goes through the same mapping and adapters as a chat lead. Its contact key is the WhatsApp identity
of the phone number the form gave (``whatsapp:<sender id>``), so a patient who wrote on WhatsApp before, or
writes later, is the same CRM contact; a form without a phone number keys its contact ``leadform:<leadgen id>``
(the adapters then find a contact people made by its e-mail, as for any lead). First and last touch are the
form's ad (``utm_source`` ``facebook`` or ``instagram`` by Meta's ``platform``). The transcript is the form's
questions and answers, one line each; the summary's first line says the lead came from a form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers

from connector.bot import fields as readers
from connector.bot import places
from connector.bot.flows import Flow
from connector.leadforms.graph import GraphLead
from connector.leadforms.model import LeadForm
from connector.templating import render
from core.models import Attribution, Lead, LeadContact, LeadRequest, TranscriptEntry

#: an answer key that can be an ``answers.<field>`` of its own when no mapping names it
_PLAIN_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: the answers a conversation keeps as known about the person (``connector.bot.returning.REMEMBERED``)
_PERSON = {"contact.name": "name", "contact.email": "email", "contact.phone": "phone", "organization": "company",
           "contact.city": "city", "contact.country": "country"}


@dataclass
class FormLead:
    """What one form submission gives: the lead, the answers a chat need not ask again, and its phone's
    WhatsApp id (digits, None without a valid number)."""

    lead: Lead
    known: dict[str, Any] = field(default_factory=dict)
    wa_id: str | None = None


def e164(text: str) -> str | None:
    """A phone number as a form gives it, in E.164 (``+905321234567``), or None when it is not a valid one."""
    cleaned = text.strip()
    if not cleaned:
        return None
    try:
        number = phonenumbers.parse(cleaned if cleaned.startswith("+") else "+" + cleaned.lstrip("0"), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def created_at(lead: GraphLead, fallback: datetime) -> datetime:
    """When the person sent the form (Meta's ``created_time``, ``2026-03-01T10:00:00+0000``)."""
    if lead.created_time:
        try:
            return datetime.strptime(lead.created_time, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            pass
    return fallback


def _mapped(value: str, table: dict[str, str]) -> str:
    """A choice answer through the form's ``values`` (the option's key or its label, exactly or in any case)."""
    if value in table:
        return table[value]
    folded = {k.casefold(): v for k, v in table.items()}
    return folded.get(value.casefold(), value)


def attribution(lead: GraphLead, form: LeadForm, at: datetime) -> Attribution:
    """The form's ad as the lead's touch. An organic or test lead has no ``ad_id``: no ad fields then."""
    paid = bool(lead.ad_id) and not lead.is_organic
    return Attribution(
        campaign=form.campaign or lead.campaign_name, utm_source="instagram" if lead.platform == "ig" else "facebook",
        utm_medium="paid_social" if paid else "organic_social", utm_campaign=lead.campaign_name if paid else None,
        utm_content=lead.ad_name if paid else None, utm_lang=form.language,
        ad_source_id=lead.ad_id if paid else None, ad_source_type="lead_form", ad_headline=lead.ad_name if paid else None,
        touched_at=at)


def build(lead: GraphLead, form: LeadForm, *, reference: str, sender: str | None, account: str,
          flow: Flow | None, now: datetime, clinic_name: str) -> FormLead:
    """The lead of one form submission.

    Args:
        reference: the request's reference (``#1042``).
        sender: the WhatsApp sender id the form's phone number belongs to (the identity book's; its digits when
            the relay never saw it), or None to derive it from the number.
        account: the WhatsApp business number (phone number id) of the conversation the lead belongs to.
        flow: the form's flow (its summary and tags), when it exists.
    """
    at = created_at(lead, now)
    target: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    lines = [f"Lead form: {form.name or lead.form_id or 'unnamed'} ({lead.form_id or '-'})"]
    for answer in lead.field_data:
        values = [v for v in answer.values if isinstance(v, str) and v.strip()]
        if not values:
            continue
        spec = form.field_map(answer.name)
        mapped = [_mapped(v, spec.values) for v in values] if spec else values
        value: Any = mapped[0] if len(mapped) == 1 else mapped
        lines.append(f"{answer.name}: {', '.join(values)}")
        if spec is None:
            answers[answer.name if _PLAIN_KEY.match(answer.name) else answer.name.strip()] = value
        elif spec.to.startswith("answers."):
            answers[spec.to.removeprefix("answers.")] = value
        else:
            target.setdefault(spec.to, ", ".join(mapped))
    phone = e164(str(target.get("contact.phone", "")))
    if target.get("contact.phone") and phone is None:
        answers["phone_number"] = target["contact.phone"]  # kept as written: not a number WhatsApp can reach
    wa_id = phone.lstrip("+") if phone else None
    email, _ = readers.read_email(str(target.get("contact.email", "")))
    name = target.get("contact.name") or " ".join(
        p for p in (target.get("contact.first_name"), target.get("contact.last_name")) if p) or None
    first, last = readers.split_name(name)
    country_text = target.get("contact.country")
    country = (places.iso(str(country_text)) or (country_text.upper() if isinstance(country_text, str)
                                                 and len(country_text) == 2 else None)) if country_text else None
    touch = attribution(lead, form, at)
    sender = sender or wa_id
    contact = LeadContact(
        name=name, first_name=target.get("contact.first_name") or first, last_name=target.get("contact.last_name") or last,
        phone=phone, email=email.lower() if email else None, language=form.language,
        country=country or readers.phone_region(phone), channel="whatsapp", channel_id=sender or lead.id,
        city=target.get("contact.city"))
    request = LeadRequest(topic=answers.get(flow.topic_field or "topic") if flow else target.get("request.topic"),
                          location=target.get("request.location") or target.get("contact.city"),
                          preferred_time_text=target.get("request.preferred_time_text"),
                          note=target.get("request.note"))
    if target.get("request.topic"):
        request.topic = target["request.topic"]
    made = Lead(
        reference=reference, conversation_key=f"whatsapp:{account}:{sender}" if sender else f"leadform:{lead.id}",
        contact_key=f"whatsapp:{sender}" if sender else f"leadform:{lead.id}", contact=contact,
        organization=target.get("organization"), request=request, answers=answers, first_touch=touch,
        last_touch=touch, language=form.language, language_source="ad",
        transcript=[TranscriptEntry(direction="in", at=at, text=line, kind="leadform") for line in lines],
        flow=form.flow, created_at=now, tags=["lead-form"])
    made.summary = _summary(made, form, lead, flow, clinic_name)
    if flow is not None:
        context = _context(made, flow, clinic_name)
        made.tags = list(dict.fromkeys(t for t in [*(render(tag, context) for tag in flow.tags), "lead-form"] if t))
    known = {k: v for k, v in answers.items() if v not in (None, "", [])}
    for path, name_known in _PERSON.items():
        found = {"contact.name": contact.name, "contact.email": contact.email, "contact.phone": contact.phone,
                 "organization": made.organization, "contact.city": contact.city,
                 "contact.country": country_text}.get(path)
        if found:
            known[name_known] = found
    return FormLead(made, known, wa_id)


def _context(lead: Lead, flow: Flow, clinic_name: str) -> dict[str, Any]:
    return {"lead": lead.model_dump(mode="json"), "answers": lead.answers, "contact": lead.contact.model_dump(),
            "request": lead.request.model_dump(), "reference": lead.reference, "language": lead.language,
            "flow": flow.name, "clinic": clinic_name}


def _summary(lead: Lead, form: LeadForm, graph: GraphLead, flow: Flow | None, clinic_name: str) -> str:
    """The first line says where the lead came from; then the flow's own summary (what a chat lead shows)."""
    where = "Instagram" if graph.platform == "ig" else "Facebook"
    kind = "ad" if graph.ad_id and not graph.is_organic else "organic or test lead, no ad"
    head = f"Meta lead form {form.name or graph.form_id or ''} ({where}, {kind}) {lead.reference}".replace("  ", " ")
    if flow is None or not flow.summary:
        return head
    return head + "\n" + render(flow.summary, _context(lead, flow, clinic_name)).strip()
