"""What a conversation leaves behind: its transcript lines, and the lead the CRM gets.

:func:`build_lead` turns a conversation's answers into the :class:`~core.models.Lead` (well-known
field names fill its contact and request; every answer is kept as well), with its summary and tags
rendered from the flow's templates. :func:`describe` is how each patient message reads in the transcript.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.bot import fields as readers
from connector.bot import places
from connector.bot.flows import Flow
from connector.templating import render
from core.models import Attribution, Conversation, InboundMessage, Lead, LeadContact, LeadRequest


def describe(message: InboundMessage) -> str:
    """A message as one transcript line."""
    if message.kind in ("text", "start") and message.text:
        return message.text
    if message.kind == "choice":
        return message.choice_title or message.text or message.choice_id or "(choice)"
    if message.kind == "location" and message.location:
        loc = message.location
        return "📍 " + (loc.name or loc.address or f"{loc.latitude}, {loc.longitude}")
    if message.kind == "media":
        return "📎 " + ", ".join(m.kind for m in message.media) + (f": {message.text}" if message.text else "")
    if message.kind == "contact":
        return "👤 " + ", ".join(c.name or (c.phones[0] if c.phones else "contact") for c in message.contacts)
    if message.kind == "reaction":
        return message.reaction or "(reaction)"
    if message.kind == "form" and message.form is not None:
        return "📝 " + " · ".join(f"{name}: {value}" for name, value in message.form.items() if value not in ("", None))
    return f"({message.raw_type or message.kind})"


def _label(answers: dict[str, Any], key: str) -> Any:
    return answers.get(f"{key}_label") or answers.get(key)


#: answers that say where the patient lives (a location step keeps its city and country beside it)
_PLACE_FIELDS = ("location", "city", "country", "place", "address", "residence")


def _place(answers: dict[str, Any]) -> tuple[str | None, str | None]:
    """The city and country (ISO code) the answers give: a location step's parsed ones, a city or country
    step's answer; None where they say nothing."""
    city: str | None = None
    country: str | None = None
    for key, value in answers.items():
        if key.endswith("_city") and isinstance(value, str) and value and city is None:
            city = value
        elif key.endswith("_country") and isinstance(value, str) and value and country is None:
            country = value
    if isinstance(answers.get("city"), str) and answers["city"]:
        city = answers["city"]
        country = country or places.read_place(answers["city"]).country
    if answers.get("country"):
        country = places.iso(str(_label(answers, "country"))) or places.iso(str(answers["country"])) or country
    return city, country


def _asked_where(answers: dict[str, Any]) -> bool:
    """Whether the patient answered where they live (then the phone's country is not taken for it)."""
    return any(answers.get(key) for key in _PLACE_FIELDS)


def _username(conv: Conversation) -> str | None:
    name = conv.known.get("telegram_username")
    return name.lstrip("@") if isinstance(name, str) and name.strip("@ ") else None


def build_lead(conv: Conversation, flow: Flow, *, now: datetime, clinic_name: str, transcript_url: str | None) -> Lead:
    """The CRM-bound request from a conversation's answers (well-known field names map to the
    lead's contact and request; every answer is kept in ``answers`` too).

    Args:
        now: when the lead is made (its ``created_at``).
        clinic_name: the clinic, for the summary and tag templates.
        transcript_url: the link to the conversation's transcript, if there is one.
    """
    answers = dict(conv.answers)
    known = conv.known
    name = answers.get("name") or known.get("name")
    if not name and conv.profile_name:
        name, _ = readers.read_name(conv.profile_name)
    phone = answers.get("phone") or known.get("phone") or conv.phone or (
        readers.whatsapp_id_to_e164(conv.sender_id) if conv.channel == "whatsapp" else None)
    first, last = readers.split_name(name)
    city, country = _place(answers)
    if country is None and not _asked_where(answers):
        country = readers.phone_region(phone)  # nothing said where they live: the number's country
    when = answers.get("preferred_time")
    travel = answers.get("travel_dates") if isinstance(answers.get("travel_dates"), dict) else None
    location_parts = [str(_label(answers, k)) for k in ("city", "location") if answers.get(k)]
    if answers.get("country"):
        location_parts.append(str(_label(answers, "country")))
    topic_key = flow.topic_field or "topic"
    request = LeadRequest(
        topic=_label(answers, topic_key),
        location=", ".join(location_parts) or None,
        preferred_time=when or (travel or {}).get("start"),
        preferred_time_text=answers.get("preferred_time_text") or answers.get("travel_dates_text"),
        preferred_end=(travel or {}).get("end"),
        priority=_label(answers, "priority"),
        note=answers.get("note"),
    )
    contact = LeadContact(
        name=name, first_name=first, last_name=last, phone=phone, email=answers.get("email") or known.get("email"),
        language=conv.language, country=country, channel=conv.channel, channel_id=conv.sender_id, city=city,
        whatsapp_user_id=conv.user_id if conv.channel == "whatsapp" else None,
        telegram_username=_username(conv) if conv.channel == "telegram" else None,
    )
    lead = Lead(
        reference=conv.reference or "", conversation_key=conv.key, contact_key=f"{conv.channel}:{conv.sender_id}",
        contact=contact, organization=answers.get("company") or known.get("company"), request=request,
        answers=answers, first_touch=conv.first_touch or Attribution(), last_touch=conv.last_touch or Attribution(),
        language=conv.language, language_source=conv.language_source, consent=conv.consent,
        transcript=list(conv.transcript), handoff_reason=conv.handoff_reason, media=list(conv.media),
        opted_out=conv.opted_out, flow=flow.name, created_at=now,
        status="new",
    )
    context = {"lead": lead.model_dump(mode="json"), "answers": answers, "contact": lead.contact.model_dump(),
               "request": request.model_dump(), "reference": lead.reference, "language": conv.language,
               "flow": flow.name, "clinic": clinic_name}
    lead.summary = render(flow.summary, context)
    tags = [render(tag, context) for tag in flow.tags]
    lead.tags = list(dict.fromkeys(t for t in tags if t))
    lead.transcript_url = transcript_url
    return lead
