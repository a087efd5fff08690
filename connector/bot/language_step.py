"""The bot's language question, and a patient changing language at any step (pure, like the engine).

The engine (:mod:`connector.bot.engine`) hands this module a turn at three points:

- :func:`ask`: with no language yet (or the menu asked for), the question with a button per language;
- :func:`answer`: the reply to that question: the language taken, then the greeting and the first message
  read (a first message that came before the language was known is kept until then), or, for a menu opened
  mid-way, the conversation goes on where it was; too many replies that name no language hand over;
- :func:`switch`: another language asked for in words or from the menu (:mod:`connector.bot.languages`):
  the current step asked again in it, the answers kept.
"""

from __future__ import annotations

from typing import Any, Protocol

from connector.bot import languages
from connector.bot.flows import Flow, Step
from core.models import Conversation, InboundMessage

#: the step a conversation waits at while the bot asks for the language
LANGUAGE_STEP = "__language__"


class Run(Protocol):
    """What this module needs of the engine's turn (``connector.bot.engine._Run``)."""

    conv: Conversation
    flow: Flow
    turn: Any

    @property
    def lang(self) -> str: ...

    def say(self, text: str, options: Any = None, **extra: Any) -> None: ...

    def text(self, key: str, **values: Any) -> str: ...

    def _advance(self) -> None: ...

    def _handoff(self, reason: str) -> None: ...

    def _extract_first(self, text: str) -> None: ...


def ask(run: Run) -> None:
    """Ask the patient's language, with a button per language the flow speaks."""
    run.say(*languages.menu(run.flow))
    run.conv.step = LANGUAGE_STEP


def answer(run: Run, message: InboundMessage) -> Any:
    """Read the reply to the language question; return the engine's turn."""
    conv, flow = run.conv, run.flow
    chosen = languages.chosen_language(message, flow.languages)
    if chosen is None:
        conv.attempts[LANGUAGE_STEP] = conv.attempts.get(LANGUAGE_STEP, 0) + 1
        if conv.attempts[LANGUAGE_STEP] >= flow.max_attempts:
            conv.language = run.lang
            run._handoff("language_not_chosen")
            return run.turn
        ask(run)
        return run.turn
    conv.attempts.pop(LANGUAGE_STEP, None)
    conv.language, conv.language_source = chosen, "asked"
    conv.step = None
    if conv.pending.pop("resume", None):  # chosen from the menu mid-way: the conversation goes on
        run._advance()
        return run.turn
    greeting = conv.pending.pop("greeting", "greeting")
    first = conv.pending.pop("first_text", "")
    run.say(run.text(greeting))
    if first:
        run._extract_first(first)
    run._advance()
    return run.turn


def switch(run: Run, message: InboundMessage, step: Step | None) -> Any:
    """Another language asked for in words or from the menu: the current ``step`` asked again in it, the
    answers kept. None when the message is not about the language (or the flow starts in the language)."""
    conv = run.conv
    if conv.step == LANGUAGE_STEP:
        return None  # the language question reads it
    wanted = languages.switch(message, step=step, current=conv.language, languages=run.flow.languages)
    if wanted is None:
        return None
    if conv.step is None:  # a first message: the flow starts in that language, or asks which
        conv.language, conv.language_source = wanted.language, "asked" if wanted.language else None
        return None
    if wanted.language is None:
        conv.pending["resume"] = conv.step
        ask(run)
        return run.turn
    conv.language, conv.language_source = wanted.language, "asked"
    conv.pending.pop("confirm", None)  # a question asked back in the other language is asked again
    run._advance()
    return run.turn
