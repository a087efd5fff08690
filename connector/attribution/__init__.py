"""Attribution: which campaign, ad and language every patient came from.

:func:`attribute` runs in the worker for every inbound message, before the bot. It finds a click
reference (in the text, even edited, or in Telegram's start payload) or a click-to-WhatsApp ad
referral, records it as the conversation's last touch (and first touch when there was none),
picks the campaign's flow for a new conversation, and resolves the language in this order (the
first that answers wins; the conversation keeps which one did):

1. ``utm_lang`` of the click, or the click's campaign language;
2. the ad's campaign language (referral source id → registry);
3. the start payload's language suffix (``CODE-de``) or a ``lang_xx`` payload;
4. detection on the first message (restricted to the configured languages, with a threshold; a
   language the bot does not speak, or one sharing a configured one's script that it cannot tell
   apart, skips step 5: the bot asks);
5. the channel's hint: Telegram's ``language_code``, or the phone number's country;
6. nothing: the bot asks with buttons.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from connector.attribution.campaigns import Campaign
from connector.attribution.clicks import clicked_at, find_code, load_click
from connector.attribution.language import identify_language, language_of_country, note_detection
from connector.bot.fields import phone_region
from core.models import Attribution, Conversation, InboundMessage, LanguageSource

if TYPE_CHECKING:
    # the runtime loads the campaign registry from this package: importing it here would be a cycle
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.attribution")
_PAYLOAD = re.compile(r"^(?:(?P<code>[A-Za-z2-9]{6})(?:[-_](?P<lang>[a-z]{2}))?|lang_(?P<only>[a-z]{2}))$")


def _click_touch(code: str, click: dict[str, Any], now: Any) -> Attribution:
    utm = click.get("utm", {})
    return Attribution(
        campaign=click.get("campaign"), click_ref=code, utm_source=utm.get("utm_source"),
        utm_medium=utm.get("utm_medium"), utm_campaign=utm.get("utm_campaign"), utm_content=utm.get("utm_content"),
        utm_term=utm.get("utm_term"), utm_lang=utm.get("utm_lang"), fbclid=click.get("fbclid"),
        gclid=click.get("gclid"), landing_page=click.get("landing_page"), clicked_at=clicked_at(click), touched_at=now,
    )


def _ad_touch(message: InboundMessage, campaign: Campaign | None) -> Attribution:
    referral = message.referral
    assert referral is not None
    utm = campaign.utm if campaign else {}
    return Attribution(
        campaign=campaign.slug if campaign else None, utm_source=utm.get("source", "facebook"),
        utm_medium=utm.get("medium", "paid_social"), utm_campaign=utm.get("campaign"),
        ad_source_id=referral.source_id, ad_source_type=referral.source_type, ad_source_url=referral.source_url,
        ad_headline=referral.headline, ad_body=referral.body, ad_media_type=referral.media_type,
        ctwa_clid=referral.ctwa_clid, touched_at=message.timestamp,
    )


def attribute(runtime: Runtime, conversation: Conversation, message: InboundMessage) -> InboundMessage:
    """Record where the patient came from and in which language; return the message the bot reads.

    Uses Redis (click references) and the campaign registry only; never raises for patient input.
    """
    registry = runtime.campaigns
    touch, payload_language, text = _clicked(runtime, message)
    campaign: Campaign | None = None
    if touch is not None and touch.campaign:
        campaign = registry.get(touch.campaign)
    if message.referral is not None and touch is None:
        campaign = registry.for_source_id(message.referral.source_id)
        touch = _ad_touch(message, campaign)
        if campaign is None:
            log.info("ad referral with an id no campaign lists", extra={"source_id": message.referral.source_id})
    if touch is not None:
        _record_touch(conversation, touch, campaign)

    if conversation.language is None:
        _resolve_language(runtime, conversation, message, touch=touch, campaign=campaign,
                          payload_language=payload_language, text=text)
    if text != message.text:
        return message.model_copy(update={"text": text})
    return message


def _clicked(runtime: Runtime, message: InboundMessage) -> tuple[Attribution | None, str | None, str | None]:
    """The click a message comes from: a click reference in the start payload (Telegram's ``/start``, an m.me or
    ig.me link's ``ref``, also when it rides on a message, as a Click-to-Messenger ad's does), or one in the text.

    Returns:
        The click's touch (None when there is none, or its reference is unknown), the start payload's
        language (None without one), and the message's text with the click reference taken out.
    """
    text = message.text
    if message.start_payload:
        touch, language = _from_payload(runtime, message)
        # a start is read from its payload alone; a message carrying one may still name a click in its text
        if message.kind == "start" or touch is not None or language is not None:
            return touch, language, text
    if text:
        found = find_code(runtime.redis, text)
        if found is not None:
            code, click, text = found
            return _click_touch(code, click, message.timestamp), None, text
    return None, None, text


def _from_payload(runtime: Runtime, message: InboundMessage) -> tuple[Attribution | None, str | None]:
    """The click and the language a start payload names: ``CODE``, ``CODE-de`` or ``lang_de``."""
    match = _PAYLOAD.match(message.start_payload or "")
    if match is None:
        return None, None
    if match.group("only"):
        return None, match.group("only")
    touch = None
    click = load_click(runtime.redis, match.group("code"))
    if click is not None:
        touch = _click_touch(match.group("code").upper(), click, message.timestamp)
        touch.start_payload = message.start_payload
    return touch, match.group("lang")


def _record_touch(conversation: Conversation, touch: Attribution, campaign: Campaign | None) -> None:
    """Keep ``touch`` as the last touch (and the first, when there was none); a campaign picks the flow of a
    conversation not under way and adds what it already knows."""
    if conversation.first_touch is None:
        conversation.first_touch = touch
    conversation.last_touch = touch
    if campaign is not None:
        if conversation.flow is None or conversation.step is None:
            conversation.flow = campaign.flow
        conversation.known.update(campaign.known)


def _resolve_language(runtime: Runtime, conversation: Conversation, message: InboundMessage, *,
                      touch: Attribution | None, campaign: Campaign | None, payload_language: str | None,
                      text: str | None) -> None:
    languages = list(runtime.config.languages)

    def choose(language: str | None, source: LanguageSource) -> bool:
        if language and language in languages:
            conversation.language, conversation.language_source = language, source
            return True
        return False

    clicked = touch is not None and bool(touch.click_ref)
    if clicked and (choose(touch.utm_lang if touch else None, "utm_lang")
                    or choose(campaign.language if campaign else None, "campaign")):
        return
    if touch is not None and touch.ad_source_id and choose(campaign.language if campaign else None, "ad"):
        return
    if choose(payload_language, "start_payload"):
        return
    if text and message.kind in ("text",):
        detection = identify_language(text, languages)
        note_detection(runtime.redis, detection, languages)
        if detection.confidence >= runtime.config.bot.language_confidence and choose(detection.language, "detected"):
            return
        if detection.ask:
            return  # a language the bot does not speak, or one it cannot tell from a sibling: the bot asks
    if choose((message.profile.language_code or "")[:2].lower() or None, "channel_hint"):
        return
    choose(language_of_country(phone_region(message.sender_phone or conversation.phone), languages), "channel_hint")
