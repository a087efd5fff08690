"""What the bot does with a message that is not simply the next answer (pure, like the engine).

The engine (:mod:`connector.bot.engine`) asks this module at three points of a turn:

- :func:`settled`, before anything else: WhatsApp's system notices (a changed number or business-scoped
  id) update the conversation's identity and get no bot turn; an edited message (Telegram) either
  corrects the answer the bot is waiting on, or is ignored (a log line, nothing else changes).
- :func:`quiet`, once the message is recorded: a reaction gets no bot turn and never counts as an answer.
- :func:`stray_file`, before the message answers the step: a file (image, document, audio, video,
  sticker, voice note) sent where the step wants text or a choice is kept for the note; the bot says
  once that it needs an answer and repeats the question. A burst of files gets that once; a file
  counts as one failed try at most, and never as the one that hands the conversation over.

An edit corrects the last answer when all of these hold:

1. it edits the message that answered the step (Telegram's ``message_id``), and it is text;
2. no other message came after that answer (any other message forgets it);
3. the bot is still in the flow (not completed, handed over or stopped) and still waits on what it
   asked right after that answer: the next question, or the same one again when the answer was refused.

Then the answer is taken back (with its label, its text and, for consent, the consent) and the edited
text answers the same step again: the bot goes on from there (it asks the next question once more).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Protocol

from connector.bot.flows import Flow, Step
from core.models import Conversation, InboundMessage

log = logging.getLogger("chat2crm.bot")

#: raw types of WhatsApp's system notices (``connector.channels.whatsapp``): the identity changes, or nothing
SYSTEM_NOTICES = frozenset({"user_changed_number", "user_changed_user_id", "system"})
#: ``Conversation.pending``: the answer an edit may still correct
LAST_ANSWER = "last_answer"
#: ``Conversation.pending``: the step the bot already said it needs an answer for, after a stray file
STRAY_FILE = "stray_file"
#: the flow's text a stray file gets, when the flow has its own
FILE_TEXT = "file_needs_answer"
#: what the bot says to a file sent where it waits on an answer (a flow may say it its own way: ``file_needs_answer``)
NEEDS_ANSWER = {
    "tr": "Teşekkürler, dosyanızı ekip için sakladım. Devam etmek için lütfen aşağıdaki soruyu yanıtlayın.",
    "en": "Thank you, I kept your file for the team. To go on, please answer the question below.",
    "de": "Danke, ich habe Ihre Datei für das Team aufbewahrt. Bitte beantworten Sie die Frage unten, um "
          "fortzufahren.",
    "ar": "شكرًا، احتفظت بملفك للفريق. للمتابعة، يرجى الإجابة عن السؤال أدناه.",
    "ru": "Спасибо, я сохранил ваш файл для команды. Чтобы продолжить, ответьте, пожалуйста, на вопрос ниже.",
}


class Run(Protocol):
    """What this module needs of the engine's turn (``connector.bot.engine._Run``)."""

    conv: Conversation
    flow: Flow

    def say(self, text: str, options: Any = None, **extra: Any) -> None: ...

    def text(self, key: str, **values: Any) -> str: ...

    def _pick(self, texts: dict[str, str] | None) -> str: ...

    def _receive(self, message: InboundMessage) -> timedelta: ...

    def _ask(self, step: Step) -> None: ...

    def _ask_language(self) -> None: ...

    def _answer(self, step: Step, message: InboundMessage) -> None: ...


def settled(run: Run, message: InboundMessage) -> bool:
    """Handle a system notice or an edit entirely; True when the turn is over (the engine stops there)."""
    conv = run.conv
    if message.raw_type in SYSTEM_NOTICES:
        if message.raw_type == "user_changed_number" and message.sender_phone:
            conv.phone = message.sender_phone  # replies and the CRM's phone follow the new number
        if message.raw_type != "system" and message.sender_user_id:
            conv.user_id = message.sender_user_id
        return True
    if message.edited:
        _edit(run, message)
        return True
    conv.pending.pop(LAST_ANSWER, None)  # the conversation moves on: no earlier answer is corrected any more
    return False


def quiet(message: InboundMessage) -> bool:
    """Whether the message gets no bot turn once recorded (a reaction: never an answer, never a failed one)."""
    return message.kind == "reaction"


def remember(conv: Conversation, step: Step, message: InboundMessage) -> None:
    """Keep what an edit of ``message``, which just answered ``step``, may correct (see the module)."""
    if message.chat_message_id and message.kind == "text" and conv.status == "bot" and conv.step is not None:
        conv.pending[LAST_ANSWER] = {"message": message.chat_message_id, "field": step.field,
                                     "accepted": step.field in conv.answers, "next": conv.step}


def _edit(run: Run, message: InboundMessage) -> None:
    conv = run.conv
    last = conv.pending.get(LAST_ANSWER)
    step = run.flow.step(last["field"]) if isinstance(last, dict) and isinstance(last.get("field"), str) else None
    if step is None or last is None:
        reason = "no answer to correct"
    elif message.chat_message_id != last.get("message"):
        reason = "not the last answer"
    elif message.kind != "text":
        reason = "not text"
    elif conv.status != "bot" or conv.opted_out or conv.step != last.get("next"):
        reason = "the conversation moved on"
    else:
        reason = ""
    if reason or step is None:
        log.info("edited message ignored", extra={"reason": reason, "kind": message.kind})
        return
    if last and last.get("accepted"):
        for key in (step.field, f"{step.field}_label", f"{step.field}_text"):
            conv.answers.pop(key, None)
        if step.type == "consent":
            conv.consent = None
    conv.step = step.field
    conv.pending.pop("confirm", None)
    run._receive(message)
    conv.transcript[-1].text = "✏️ " + conv.transcript[-1].text
    run._answer(step, message)
    remember(conv, step, message)
    log.info("edited message corrects the last answer", extra={"step": step.field})


def stray_file(run: Run, message: InboundMessage, *, language: bool, max_attempts: int) -> bool:
    """Handle a file sent where the bot waits on an answer; True when the turn is over. ``language``: the bot
    waits on the patient's language (it asks again, with its buttons)."""
    conv = run.conv
    if message.kind != "media":
        conv.pending.pop(STRAY_FILE, None)
        return False
    step = None if language else run.flow.step(conv.step or "")
    if not language and (step is None or step.type == "media"):
        return False  # a file answers a media step; a step the flow lost is the engine's to restart
    if conv.pending.get(STRAY_FILE) == conv.step:
        return True  # said once already: the file is kept, nothing more is said
    conv.pending[STRAY_FILE] = conv.step
    if step is None:
        run._ask_language()
        return True
    attempts = conv.attempts.get(step.field, 0)
    if attempts + 1 < max_attempts:  # one try at most, and never the one that hands over
        conv.attempts[step.field] = attempts + 1
    run.say(run.text(FILE_TEXT) or run._pick(NEEDS_ANSWER))
    run._ask(step)
    return True
