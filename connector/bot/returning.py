"""A patient who comes back: go on with the request they left, or start a new one (pure, like the engine).

The rule (docs/flows.md, "Commands, handoff, time-outs"), applied by the engine before a message answers a
step:

- a **new request** starts (the request's answers dropped, what the bot knows of the person kept:
  :data:`REMEMBERED`) after a finished request (completed, or handed over once the release window passed),
  on the restart command, on a bare ``/start``, and on a campaign link, ad or start payload naming another
  campaign than the one the request came from, or starting another flow (:func:`new_campaign`);
- otherwise the request **goes on**: within ``bot.resume_window_minutes`` as if nothing happened; after it,
  the patient is greeted back (``resume``) and nothing already answered is asked again. The message that
  brings them back answers the question the bot waits on when it reads as an answer (a greeting does not),
  and the question is asked again otherwise (:func:`worth_reading`).

The request's flow and campaign are kept in the conversation's ``pending`` state (:data:`REQUEST`) when it
starts, so a later touch can be compared with them.
"""

from __future__ import annotations

from typing import Any, Protocol

from connector.attribution.greetings import greeting_languages
from connector.bot import kinds
from connector.bot.flows import Flow, Step
from core.models import Conversation, InboundMessage

#: ``Conversation.pending``: the flow and campaign the request under way started with
REQUEST = "request"
#: answers about the person (not the request) that a new request keeps as known: never asked again
REMEMBERED = ("name", "email", "phone", "company", "country", "city", "contact_language", "location",
              "location_city", "location_country")
#: what the bot says to a patient who comes back to a request after the resume window (a flow may say it its own
#: way: the system text ``resume``)
RESUME = {
    "tr": "Tekrar hoş geldiniz! Kaldığımız yerden devam edelim.",
    "en": "Welcome back! Let us go on where we left off.",
    "de": "Willkommen zurück! Machen wir dort weiter, wo wir aufgehört haben.",
    "ar": "مرحبًا بعودتك! لنكمل من حيث توقفنا.",
    "ru": "С возвращением! Продолжим с того места, где остановились.",
}


def mark_start(conv: Conversation, flow: Flow) -> None:
    """Keep the flow and campaign a request starts with."""
    conv.pending[REQUEST] = {"flow": flow.name, "campaign": conv.last_touch.campaign if conv.last_touch else None}


def new_campaign(conv: Conversation, flow: Flow) -> bool:
    """Whether the request under way was overtaken by a campaign: the conversation runs another flow now (a
    campaign link or ad starting it), or its last touch names another campaign than the request's."""
    started: Any = conv.pending.get(REQUEST)
    if not isinstance(started, dict):
        return False  # a request that started before this was recorded: nothing to compare
    if started.get("flow") != flow.name:
        return True
    campaign = conv.last_touch.campaign if conv.last_touch else None
    return bool(campaign) and campaign != started.get("campaign")


def worth_reading(message: InboundMessage) -> bool:
    """Whether a message bringing a patient back may answer the question waiting (a greeting, a bare start or a
    reaction may not)."""
    if message.kind in ("start", "reaction", "unsupported"):
        return False
    if message.kind == "text":
        return greeting_languages(message.text or "") is None
    return True


class Run(kinds.Run, Protocol):
    """What :func:`resume` needs of the engine's turn (``connector.bot.engine._Run``) beyond :class:`kinds.Run`."""

    def _advance(self) -> None: ...

    def _reads(self, step: Step, message: InboundMessage) -> bool: ...


def resume(run: Run, message: InboundMessage, *, greet: bool) -> None:
    """Go on with the request under way: the patient greeted back (``greet``: after a long silence), nothing
    answered asked again; the message answers the waiting question when it reads as one, else the question is
    asked again (and no failed try is counted)."""
    conv = run.conv
    if greet:
        run.say(run.text("resume") or run._pick(RESUME))
    step = run.flow.step(conv.step or "")
    if step is None:
        run._advance()
    elif worth_reading(message) and run._reads(step, message):
        run._answer(step, message)
        kinds.remember(conv, step, message)
    else:
        conv.pending.pop("confirm", None)  # a day to confirm is asked again with the question
        run._ask(step)
