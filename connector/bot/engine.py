"""The bot engine: pure, ``(conversation, message) -> (conversation, replies, events)``.

No I/O, no clock, no Redis: the time, the reference-number source and the transcript link come
in through :class:`EngineContext`. The worker (:mod:`connector.turn`) does the I/O around it.
Each step type's answer is read by :mod:`connector.bot.reading`; the lead is built by
:mod:`connector.bot.lead`.

Order of business for each message:

1. commands in any language (stop, talk to a human, restart) act first;
2. an opted-out or handed-over conversation stays silent (until restart, or the handoff
   window passes); with the CRM's inbox on, a completed or handed-over one is the agents'
   (:mod:`connector.bot.after`): each message becomes a :class:`ForAgent` event, and no reply;
3. a finished request, a restart or another campaign starts a new request, keeping what the bot knows of
   the person; a request left longer than the resume window goes on, the patient greeted back
   (:mod:`connector.bot.returning`);
4. with no language yet, the bot asks with buttons; a patient may ask for another language at any
   step, in words or from the language menu (:mod:`connector.bot.language_step`): the current step is
   asked again in it, the answers kept;
5. a form sent back (a WhatsApp Flow, :mod:`connector.bot.form`) answers the steps it was offered for;
   otherwise the message answers the current step: typed values for other steps (an e-mail,
   a phone number) are taken from it first, the rest answers the step; a bad answer is asked
   again with the reason, and after ``max_attempts`` the conversation is handed over;
6. the next step is the first one not answered, not known already, whose ``when`` holds and
   which consent allows (where the flow's form has it and the channel has the form, the form is offered
   with that question); when none is left the request is complete: a reference number, a
   summary, a confirmation, and a :class:`LeadReady` event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from connector.bot import fields as readers
from connector.bot import form as form_module
from connector.bot import kinds, language_step, places, questions, returning, validate, when
from connector.bot.after import ForAgent, for_agents
from connector.bot.flows import ERROR_TEXTS, Flow, Step, form_text
from connector.bot.form import form_steps
from connector.bot.language_step import LANGUAGE_STEP
from connector.bot.lead import build_lead, describe
from connector.bot.questions import SKIP_ID, YES_NO_TITLES
from connector.bot.reading import Reading, match_option, norm, read_answer, take_typed_values
from core.models import Consent, Conversation, FormOffer, InboundMessage, Lead, Option, Reply, TranscriptEntry

#: answers carried over when a new request starts (:mod:`connector.bot.returning`)
REMEMBERED = returning.REMEMBERED
#: ``Conversation.pending``: the form offered in this request (its token, the fields open then, whether it came back)
FORM = "form"
#: ``Conversation.known``: the patient's Telegram username (the lead's contact carries it)
TELEGRAM_USERNAME = "telegram_username"


@dataclass
class EngineContext:
    """What the engine needs from outside, injected so that it stays pure."""

    now: datetime
    timezone: ZoneInfo
    languages: list[str]
    fallback_language: str
    resume_window: timedelta
    handoff_release: timedelta
    new_reference: Callable[[], str]
    transcript_url: Callable[[Conversation], str | None]
    clinic_name: str = "Clinic"
    #: whether the CRM's inbox takes the conversation after the bot (:mod:`connector.bot.after`)
    inbox: bool = False
    #: after a completed request, a patient silent this long is the bot's again (with the inbox on)
    inbox_idle: timedelta = timedelta(hours=72)
    #: the published form (a WhatsApp Flow's id) of a flow in a language on this conversation's channel, or None:
    #: then the form's steps are questions (:mod:`connector.forms`)
    form_id: Callable[[str, str], str | None] = field(default=lambda flow, language: None)


@dataclass
class FlowStarted:
    flow: str


@dataclass
class FlowCompleted:
    flow: str


@dataclass
class HandedOver:
    reason: str


@dataclass
class OptedOut:
    pass


@dataclass
class LeadReady:
    """A request is ready for the CRM (complete, or handed over with what was collected)."""

    lead: Lead
    reason: Literal["completed", "handoff"]


Event = FlowStarted | FlowCompleted | HandedOver | OptedOut | LeadReady | ForAgent


@dataclass
class Turn:
    """The engine's answer to one message."""

    conversation: Conversation
    replies: list[Reply] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def handle(conversation: Conversation, message: InboundMessage, *, flow: Flow, ctx: EngineContext) -> Turn:
    """Handle one patient message. Never raises for anything the patient writes."""
    return _Run(conversation.deep_copy(), flow, ctx).run(message)


class _Run:
    def __init__(self, conv: Conversation, flow: Flow, ctx: EngineContext) -> None:
        self.conv, self.flow, self.ctx = conv, flow, ctx
        self.turn = Turn(conv)

    # -- speaking -------------------------------------------------------------------------------
    @property
    def lang(self) -> str:
        language = self.conv.language
        if language in self.flow.languages:
            return language
        if self.ctx.fallback_language in self.flow.languages:
            return self.ctx.fallback_language
        return self.flow.languages[0]

    def text(self, key: str, **values: Any) -> str:
        texts = self.flow.texts.get(key, {})
        return self._pick(texts).format(clinic=self.ctx.clinic_name, **values)

    def _pick(self, texts: dict[str, str] | None) -> str:
        if not texts:
            return ""
        return texts.get(self.lang) or texts.get(self.ctx.fallback_language) or next(iter(texts.values()))

    def say(self, text: str, options: list[Option] | None = None, **extra: Any) -> None:
        reply = Reply(text=text, options=options or [], **extra)
        self.turn.replies.append(reply)
        shown = text + ("\n" + " · ".join(f"[{o.title}]" for o in reply.options) if reply.options else "")
        self.conv.transcript.append(TranscriptEntry(direction="out", at=self.ctx.now, text=shown))

    # -- the turn ------------------------------------------------------------------------------
    def run(self, message: InboundMessage) -> Turn:
        if kinds.settled(self, message):  # a system notice, an edit (connector.bot.kinds)
            return self.turn
        idle = self._receive(message)
        command, ctx = self._command(message), self.ctx
        if ctx.inbox and for_agents(self.conv, message, command, idle=idle, inbox_idle=ctx.inbox_idle):
            self.turn.events.append(ForAgent(message.message_id))
            return self.turn
        if kinds.quiet(message):  # a reaction
            return self.turn
        decided = self._obey(command, message)
        if decided is None and message.kind == "form":
            decided = self._take_form(message)
        if decided is None:
            decided = self._start_again_if_due(message, idle)
        if decided is None:
            decided = language_step.switch(self, message, self.flow.step(self.conv.step or ""))
        if decided is not None:
            return decided
        conv = self.conv
        if conv.step is None:
            return self._start(message, greeting="greeting")
        if kinds.stray_file(self, message, language=conv.step == LANGUAGE_STEP, max_attempts=self.flow.max_attempts):
            return self.turn
        if conv.step == LANGUAGE_STEP:
            return language_step.answer(self, message)
        step = self.flow.step(conv.step)
        if step is None:  # the flow changed under a running conversation
            return self._start(message, greeting="welcome_back")
        self._answer(step, message)
        kinds.remember(conv, step, message)  # what an edit of this answer may correct
        return self.turn

    def _receive(self, message: InboundMessage) -> timedelta:
        """Record the message in the conversation (transcript, media, phone, profile name); return how long
        the conversation had been idle before it."""
        conv, now = self.conv, self.ctx.now
        idle = now - conv.updated_at if conv.transcript else timedelta(0)
        conv.transcript.append(TranscriptEntry(direction="in", at=now, text=describe(message), kind=message.kind))
        conv.last_inbound_at = now
        conv.updated_at = now
        if message.media:
            conv.media.extend(m for m in message.media if m not in conv.media)
        if message.sender_phone and not conv.phone:
            conv.phone = message.sender_phone
        if message.profile.name and not conv.profile_name:
            conv.profile_name = message.profile.name
        if message.sender_user_id and not conv.user_id:
            conv.user_id = message.sender_user_id  # WhatsApp's business-scoped id (BSUID), for the CRM contact
        if message.channel == "telegram" and message.profile.username:
            conv.known[TELEGRAM_USERNAME] = message.profile.username  # the latest: a username can change
        return idle

    def _obey(self, command: str | None, message: InboundMessage) -> Turn | None:
        """Carry out a command (stop, human, restart), or keep an opted-out conversation silent; None when
        the message is for the flow."""
        conv = self.conv
        if command == "stop" and conv.opted_out:
            return self.turn  # confirmed once already: nothing more is sent
        if command == "stop":
            conv.opted_out = True
            self.say(self.text("stopped"))
            self.turn.events.append(OptedOut())
            return self.turn
        if conv.opted_out:
            if command == "restart" or message.kind == "start":
                conv.opted_out = False
                return self._restart(message, welcome_back=True)
            return self.turn
        if command == "human":
            self._handoff("patient_request")
            return self.turn
        if command == "restart":
            return self._restart(message, welcome_back=False)
        return None

    def _start_again_if_due(self, message: InboundMessage, idle: timedelta) -> Turn | None:
        """Start a new request, or go on with the one under way after a long silence (the rule is
        :mod:`connector.bot.returning`'s); None when the conversation simply goes on. A handed-over conversation
        stays quiet until the release window passed."""
        conv, now = self.conv, self.ctx.now
        if conv.status == "handoff":
            since = datetime.fromisoformat(conv.pending.get("handoff_at", now.isoformat()))
            if now - since < self.ctx.handoff_release:
                return self.turn  # an agent has it; the bot keeps quiet
            return self._restart(message, welcome_back=True)
        if conv.status == "closed":
            return self._restart(message, welcome_back=True)
        if conv.step is None:
            return None
        if returning.new_campaign(conv, self.flow):
            return self._restart(message, welcome_back=True)
        if message.kind == "start" and not message.start_payload:
            return self._restart(message, welcome_back=False)  # a bare /start: the restart command
        late = idle > self.ctx.resume_window
        if conv.step == LANGUAGE_STEP and late:
            return self._restart(message, welcome_back=True)
        if late or message.kind == "start":
            return self._resume(message, greet=late)
        return None

    def _resume(self, message: InboundMessage, *, greet: bool) -> Turn:
        returning.resume(self, message, greet=greet)
        return self.turn

    def _reads(self, step: Step, message: InboundMessage) -> bool:
        """Whether ``message`` reads as an answer to ``step`` (tried on a copy: nothing is said or kept)."""
        _, error = _Run(self.conv.deep_copy(), self.flow, self.ctx)._read(step, message, message.text or "")
        return error in (None, "confirm", validate.QUESTION)

    def _command(self, message: InboundMessage) -> str | None:
        """The command the message is (:mod:`connector.bot.commands`): a text, whole or inside a sentence, or
        a template's quick-reply button (its label and payload: a marketing template's "Stop promotions")."""
        if message.kind == "text" and message.text:
            return self.flow.commands.intents().find(message.text)
        if message.kind == "choice" and message.raw_type == "button":
            return self.flow.commands.intents().find(message.choice_title or message.text, message.choice_id)
        return None

    # -- starting ------------------------------------------------------------------------------
    def _restart(self, message: InboundMessage, *, welcome_back: bool) -> Turn:
        conv = self.conv
        for key in REMEMBERED:
            if conv.answers.get(key):
                conv.known[key] = conv.answers[key]
        conv.answers, conv.attempts, conv.pending = {}, {}, {}
        conv.step, conv.reference, conv.status, conv.handoff_reason = None, None, "bot", None
        conv.consent = None
        return self._start(message, greeting="welcome_back" if welcome_back else "greeting")

    def _start(self, message: InboundMessage, *, greeting: str) -> Turn:
        conv = self.conv
        conv.started_at = self.ctx.now
        returning.mark_start(conv, self.flow)
        self.turn.events.append(FlowStarted(self.flow.name))
        if conv.language not in self.flow.languages:
            conv.language = None
            conv.pending["first_text"] = message.text or ""
            conv.pending["greeting"] = greeting
            self._ask_language()
            return self.turn
        self.say(self.text(greeting))
        if message.kind in ("text", "start") and message.text and message.kind != "start":
            self._extract_first(message.text)
        self._advance()
        return self.turn

    def _ask_language(self) -> None:
        language_step.ask(self)

    def _extract_first(self, text: str) -> None:
        """A first message often says more than hello: take typed values and obvious choices."""
        remaining = take_typed_values(text, self.flow.steps, self.conv.answers, phone=self.conv.phone)
        for step in self.flow.steps:
            if step.type == "choice" and step.field not in self.conv.answers and not step.health:
                option = match_option(step, remaining, loose=True)
                if option is not None:
                    self._store_choice(step, option)

    # -- answering -----------------------------------------------------------------------------
    def _answer(self, step: Step, message: InboundMessage) -> None:
        conv = self.conv
        if step.optional and (message.choice_id == SKIP_ID or norm(message.text) in {
                norm(t) for t in self.flow.texts.get("skip", {}).values()}):
            conv.answers[step.field] = None
            self._advance()
            return
        text = message.text or ""
        if message.kind == "text" and step.type in ("text", "name", "note", "location"):
            text = take_typed_values(text, self.flow.steps, self.conv.answers, phone=self.conv.phone,
                                     exclude=step.field)
        value, error = self._read(step, message, text)
        if error == "confirm":
            return
        if error is not None:
            attempts = conv.attempts.get(step.field, 0) + 1
            conv.attempts[step.field] = attempts
            if attempts >= self.flow.max_attempts:
                self._handoff("too_many_attempts")
                return
            self.say(self._pick(validate.error_texts(self.flow, step, error)))
            self._ask(step)
            return
        conv.attempts.pop(step.field, None)
        if self._keep(step, value, message):
            self._advance()

    def _keep(self, step: Step, value: Any, message: InboundMessage) -> bool:
        """Keep a good answer to ``step``; False when it hands the conversation over (an option that does)."""
        conv = self.conv
        if step.type == "consent":
            conv.consent = Consent(given=bool(value), text_version=step.version or "", at=self.ctx.now)
            if not value and "consent_declined" in self.flow.texts:
                self.say(self.text("consent_declined"))
        if step.type not in ("choice",):
            conv.answers[step.field] = readers.tidy_topic(value) if self._is_topic(step) else value
        if step.type == "location":
            places.keep(conv.answers, step.field, value, message.location)
        if step.type == "choice":
            option = next(o for o in step.options if o.id == value)
            self._store_choice(step, option)
            if option.handoff:
                self._handoff(f"option:{option.id}")
                return False
        return True

    def _is_topic(self, step: Step) -> bool:
        """A free-text answer that names what the request is about (kept without trailing punctuation)."""
        return step.type == "text" and (step.field == self.flow.topic_field or step.field in readers.TOPIC_FIELDS)

    def _store_choice(self, step: Step, option: Any) -> None:
        self.conv.answers[step.field] = option.id
        self.conv.answers[f"{step.field}_label"] = self._pick(option.title)

    def _read(self, step: Step, message: InboundMessage, text: str) -> tuple[Any, str | None]:
        kind = step.type
        confirming = kind in ("datetime", "date_range") and self.conv.pending.get("confirm")
        # Only text (or a button) answers most steps; a choice, yes/no or consent may be answered by any
        # message (it is read as a bad answer), a place, media or a phone number by its own kind.
        if (kind not in ("choice", "yes_no", "consent") and not confirming and message.kind not in ("text", "choice")
                and kind not in ("location", "media", "phone")):
            return None, kind if kind in ERROR_TEXTS else "text"
        if kind in ("datetime", "date_range"):
            return self._read_when(step, message, text)
        return read_answer(Reading(step=step, message=message, text=text, answers=self.conv.answers,
                                   language=self.conv.language, now=self.ctx.now, zone=self.ctx.timezone,
                                   phone=self.conv.phone))

    def _read_when(self, step: Step, message: InboundMessage, text: str) -> tuple[Any, str | None]:
        """A day and time, or travel dates: taken, or what is not sure asked back (:mod:`connector.bot.when`)."""
        conv, ctx = self.conv, self.ctx
        pending = conv.pending.pop("confirm", None)
        answer = when.settle(pending, message)
        if answer is not None and not answer.declined:
            answer = when.finish(step, answer.value, answer.words)
        if answer is None:
            answer = when.read(step, text, pending=pending, language=conv.language, speaking=self.lang,
                               yes_no=YES_NO_TITLES.get(self.lang, ("Yes", "No")), now=ctx.now, zone=ctx.timezone)
        if answer.declined:  # "No, not that day": the question again
            self._ask(step)
            return None, "confirm"
        if answer.question is not None:
            question = answer.question
            conv.pending["confirm"] = question.pending
            wording = self.text(question.text_key, date=question.shown)
            self.say(wording or self._pick(when.CONFIRM_DATE).format(date=question.shown), question.options)
            return None, "confirm"
        if answer.keep:
            conv.pending["confirm"] = answer.keep
        if answer.error is not None:
            return None, answer.error
        conv.answers[f"{step.field}_text"] = answer.words
        return answer.value, None

    # -- moving on -----------------------------------------------------------------------------
    def _allowed(self, step: Step) -> bool:
        if step.when and not step.when.holds(self.conv.answers):
            return False
        return not (step.health and not (self.conv.consent and self.conv.consent.given))

    def _advance(self) -> None:
        conv = self.conv
        for step in self.flow.steps:
            if step.field in conv.answers or not self._allowed(step):
                continue
            known = self._known(step)
            if known is not None:
                conv.answers[step.field] = known
                places.known(conv, step.field, step.type == "location", self.lang)
                continue
            if not self._offer_form(step):
                self._ask(step)
            return
        self._complete()

    def _offer_form(self, step: Step) -> bool:
        """Ask ``step`` and the form's other open steps in one form, where the flow has one with ``step`` in it,
        it was not offered yet in this request, at least two of its steps are still open, and the channel has it
        published in the patient's language. The message also asks ``step`` itself: a patient who writes
        instead answers it, and the rest are questions as without a form."""
        conv, form = self.conv, self.flow.form
        if form is None or step.field not in form.steps or FORM in conv.pending:
            return False
        open_fields = [s.field for s in form_steps(self.flow)
                       if s.field not in conv.answers and self._allowed(s) and self._known(s) is None]
        if len(open_fields) < 2:
            return False
        flow_id = self.ctx.form_id(self.flow.name, self.lang)
        if not flow_id:
            return False
        token = hashlib.sha256(f"{conv.key}|{conv.started_at.isoformat()}".encode()).hexdigest()[:20]
        conv.pending[FORM] = {"token": token, "open": open_fields}
        conv.step = step.field
        prompt, options, _ = questions.question(step, language=self.lang, pick=self._pick, system=self.text)
        # the first question as text under the offer (its options numbered: a number or a title answers it)
        asked = "\n".join([prompt, *(f"{k}. {o.title}" for k, o in enumerate(options, 1))])
        self.say(f"{self._pick(form_text(self.flow, 'intro'))}\n\n{asked}", form=FormOffer(
            flow_id=flow_id, token=token, screen=form_module.SCREEN, button=self._pick(form_text(self.flow, "button"))))
        return True

    def _take_form(self, message: InboundMessage) -> Turn:
        """A form sent back: each open step it answers well is kept as if asked (the same reading, the same
        checks); a step it leaves empty or answers badly is asked in the chat afterwards. A form of an earlier
        request, or the same form sent twice, changes nothing (it stays in the transcript)."""
        conv = self.conv
        offered = conv.pending.get(FORM)
        if (not isinstance(offered, dict) or offered.get("token") != message.form_token or offered.get("taken")
                or conv.status != "bot" or conv.step is None):
            return self.turn
        offered["taken"] = True
        values = message.form or {}
        for name in offered.get("open", []):
            step, raw = self.flow.step(name), values.get(name)
            if step is None or name in conv.answers or raw in (None, "", []) or not self._allowed(step):
                continue
            said = raw if isinstance(raw, str) else str(raw)
            kind = "choice" if step.type in ("choice", "yes_no") else "text"
            answer = message.model_copy(update={"kind": kind, "text": said, "choice_id": said if kind == "choice"
                                                else None, "form": None})
            value, error = self._read(step, answer, said)
            if error is None and not self._keep(step, value, answer):
                return self.turn  # an option that hands over
        self._advance()
        return self.turn

    def _known(self, step: Step) -> Any:
        return questions.known_value(self.conv, step, self.lang)

    def _ask(self, step: Step) -> None:
        self.conv.step = step.field
        prompt, options, extra = questions.question(step, language=self.lang, pick=self._pick, system=self.text)
        self.say(prompt, options, **extra)

    def _complete(self) -> None:
        conv = self.conv
        reference = conv.reference or self.ctx.new_reference()
        conv.reference = reference
        conv.step = None
        conv.status = "closed"
        conv.completed_at = self.ctx.now
        conv.lead_count += 1
        self.say(self.text("done", reference=reference))
        self.turn.events.append(FlowCompleted(self.flow.name))
        self.turn.events.append(LeadReady(self._lead(), "completed"))

    def _handoff(self, reason: str) -> None:
        conv = self.conv
        conv.reference = conv.reference or self.ctx.new_reference()
        conv.status = "handoff"
        conv.handoff_reason = reason
        conv.pending["handoff_at"] = self.ctx.now.isoformat()
        conv.step = None
        conv.lead_count += 1
        self.say(self.text("handoff", reference=conv.reference))
        self.turn.events.append(HandedOver(reason))
        self.turn.events.append(LeadReady(self._lead(), "handoff"))

    def _lead(self) -> Lead:
        conv, ctx = self.conv, self.ctx
        return build_lead(conv, self.flow, now=ctx.now, clinic_name=ctx.clinic_name,
                          transcript_url=ctx.transcript_url(conv))
