"""A step as the patient sees it, and the answer the bot may already know for it (pure, like the engine).

:func:`question` builds what asking a step says: its prompt in the patient's language, its options (a choice's
options with the list button's label, Yes and No, Skip for an optional step) and what the channel is to offer
(the phone or location request). :func:`known_value` is a step's answer known before asking: from the
conversation's ``known`` values, the profile name, the phone number, or where a returning patient lives as the
CRM holds it (:mod:`connector.bot.places`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.bot import fields as readers
from connector.bot import places
from connector.bot.flows import OPTIONS_TEXTS, Step, Texts
from core.models import Conversation, Option

SKIP_ID = "__skip__"
YES_NO_TITLES = {"tr": ("Evet", "Hayır"), "en": ("Yes", "No"), "de": ("Ja", "Nein"), "ar": ("نعم", "لا"),
                 "ru": ("Да", "Нет")}
CONSENT_TITLES = {"tr": ("Onaylıyorum", "Onaylamıyorum"), "en": ("I agree", "I do not agree"),
                  "de": ("Ich stimme zu", "Ich stimme nicht zu"), "ar": ("أوافق", "لا أوافق"),
                  "ru": ("Согласен(на)", "Не согласен(на)")}


def question(step: Step, *, language: str, pick: Callable[[Texts | None], str], system: Callable[[str], str],
             ) -> tuple[str, list[Option], dict[str, Any]]:
    """The prompt, options and channel extras that ask ``step``.

    Args:
        language: the language the bot speaks.
        pick: a text of the flow in that language.
        system: a system text of the flow in that language ("" when the flow has none).
    """
    options: list[Option] = []
    extra: dict[str, Any] = {}
    if step.type in ("choice", "multi_choice"):
        options = [Option(id=o.id, title=pick(o.title), description=pick(o.description) or None)
                   for o in step.options]
        # the list's button: the step's own label, else the flow's `options` text, else the bot's own
        extra["list_button"] = pick(step.list_button) or system("options") or pick(OPTIONS_TEXTS)
    elif step.type in ("yes_no", "consent"):
        yes, no = (CONSENT_TITLES if step.type == "consent" else YES_NO_TITLES).get(language, ("Yes", "No"))
        options = [Option(id="yes", title=yes), Option(id="no", title=no)]
    elif step.type == "phone":
        extra["request_phone"] = True
    elif step.type == "location":
        extra["request_location"] = True
    if step.optional:
        options.append(Option(id=SKIP_ID, title=system("skip")))
    return pick(step.prompt), options, extra


def known_value(conv: Conversation, step: Step, language: str) -> Any:
    """The answer to ``step`` known before asking, or None."""
    for key in (step.field, *step.known_from):
        if conv.known.get(key) not in (None, "", []):
            return conv.known[key]
        if step.type == "location" and key == step.field:
            words = places.known_words(conv.known, language)  # the city and country the CRM holds
            if words:
                return words
        if key == "profile_name" and conv.profile_name and step.type == "name":
            name, _ = readers.read_name(conv.profile_name)
            return name
        if key == "phone" and step.type == "phone":
            phone = conv.phone or (readers.whatsapp_id_to_e164(conv.sender_id) if conv.channel == "whatsapp" else None)
            if phone:
                return phone
    return None
