"""Flow files (``bot_flows/*.yaml``, ``version: 1``): the question sets integrators write.

A flow is a list of steps, each collecting one field of one type, with texts in every language
the flow speaks. :func:`load_flows` validates shape first (pydantic, ``extra="forbid"``), then
cross-references (a ``when`` names an earlier field; every text exists in every language; option
ids are unique), and reports every problem as ``file:line: path: message (hint)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from connector.bot.commands import Intents, parse_phrase
from connector.templating import check_template
from connector.yamlfile import load_model, write_schema
from core.errors import ConfigurationError, Problem

StepType = Literal["text", "name", "email", "phone", "choice", "multi_choice", "datetime", "date_range", "location",
                   "number", "yes_no", "note", "consent", "media", "language"]

#: Texts by language code: ``{tr: "...", en: "..."}``
Texts = dict[str, str]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptionSpec(_Base):
    """One option of a choice step."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,40}$", description="Stored as the answer; sent as button id.")
    title: Texts = Field(description="Button or list title per language (≤ 20 characters fit a button).")
    description: Texts | None = Field(default=None, description="List row description per language.")
    synonyms: dict[str, list[str]] = Field(default_factory=dict,
                                           description="Words that pick this option when typed, per language.")
    handoff: bool = Field(default=False, description="Choosing this hands the conversation to a person.")


class Condition(_Base):
    """``when``: the step is asked only if an earlier answer matches."""

    field: str
    equals: Any = None
    not_equals: Any = None
    is_in: list[Any] | None = Field(default=None, alias="in")
    answered: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def holds(self, answers: dict[str, Any]) -> bool:
        """True when the condition holds for ``answers``."""
        value = answers.get(self.field)
        if self.answered is not None and (value is not None) != self.answered:
            return False
        if self.equals is not None and value != self.equals:
            return False
        if self.not_equals is not None and value == self.not_equals:
            return False
        return not (self.is_in is not None and value not in self.is_in)


class Step(_Base):
    """One question."""

    field: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Where the answer is kept (answers.<field>).")
    type: StepType
    prompt: Texts
    optional: bool = Field(default=False, description="The patient may skip it (a Skip button is offered).")
    when: Condition | None = None
    options: list[OptionSpec] = Field(default_factory=list)
    error: Texts | None = Field(default=None, description="Re-prompt when the answer is not valid.")
    health: bool = Field(default=False, description="Health information: asked only after consent was given.")
    min: float | None = None
    max: float | None = None
    require_time: bool = Field(default=False, description="datetime: a day without a time is asked again.")
    version: str | None = Field(default=None, description="consent: the version of the consent text.")
    known_from: list[str] = Field(default_factory=list,
                                  description="Skip when one of these known values exists (profile_name, phone…).")
    list_button: Texts | None = Field(default=None, description="Label of the list button (many options).")
    expects: Literal["place", "city", "country", "name", "company", "text", "free"] | None = Field(
        default=None, description="What a written answer must look like (text, name and location steps): a "
        "question is passed on and the step asked again; 'free' takes anything. Default: from the type and "
        "the field's name (location: place, name: name, a field named city/country/company: that, note: free).")

    @model_validator(mode="after")
    def _type_rules(self) -> Step:
        if self.type in ("choice", "multi_choice") and len(self.options) < 2:
            raise ValueError(f"a {self.type} step needs at least two options")
        if self.type not in ("choice", "multi_choice") and self.options:
            raise ValueError("only choice steps have options")
        if self.type == "consent" and not self.version:
            raise ValueError("a consent step needs the version of its text (version: \"2026-01\")")
        ids = [o.id for o in self.options]
        if len(ids) != len(set(ids)):
            raise ValueError("option ids must be unique")
        return self


class Commands(_Base):
    """Commands that act in every state, per language: words that are one as the whole message, and
    phrases that are one inside a sentence (:mod:`connector.bot.commands`; both compared folded: case,
    diacritics, Turkish I/ı, Arabic forms)."""

    restart: dict[str, list[str]] = Field(default_factory=dict)
    human: dict[str, list[str]] = Field(default_factory=dict)
    stop: dict[str, list[str]] = Field(default_factory=dict)
    human_phrases: dict[str, list[str]] = Field(
        default_factory=dict, description="Phrases asking for a person inside a sentence: words in order, "
        "a|b alternatives, stem* / *end / *part* word forms, '..' for up to three other words.")
    stop_phrases: dict[str, list[str]] = Field(
        default_factory=dict, description="Phrases opting out inside a sentence (and template buttons' labels, "
        "such as \"Stop promotions\"), written as human_phrases.")
    _intents: Intents | None = PrivateAttr(default=None)

    def intents(self) -> Intents:
        """The commands, ready to be found in a message (built once)."""
        if self._intents is None:
            self._intents = Intents({"stop": self.stop, "human": self.human, "restart": self.restart},
                                    {"stop": self.stop_phrases, "human": self.human_phrases})
        return self._intents


#: step types a form can collect (a day and time, dates, files, consent and the language stay questions in the chat:
#: they are confirmed, kept or recorded there)
FORM_TYPES = frozenset({"text", "name", "email", "phone", "number", "choice", "yes_no", "location", "note"})
#: WhatsApp's limits on a form's words (Flow JSON components; the message's ``flow_cta``)
FORM_LIMITS = {"label": 20, "title": 30, "button": 20, "submit": 35, "option": 30}


class Form(_Base):
    """``form``: on WhatsApp, several steps collected in one form inside the chat (a WhatsApp Flow) instead of one
    question each. Where no form is published (other channels, a language without one) the steps are questions,
    and a patient who writes instead of opening the form answers the first of them."""

    steps: list[str] = Field(min_length=2, description="The fields of the steps the form collects, in its order.")
    labels: dict[str, Texts] = Field(default_factory=dict, description="A short label for each field (at most 20 "
                                     "characters) per language; name, email, phone, note and location have one.")
    title: Texts | None = Field(default=None, description="The form's title (at most 30 characters).")
    intro: Texts | None = Field(default=None, description="The message that offers the form; the first question "
                                "follows it, for a patient who would rather write.")
    button: Texts | None = Field(default=None, description="The button that opens the form (at most 20 characters).")
    submit: Texts | None = Field(default=None, description="The form's send button (at most 35 characters).")


class Flow(_Base):
    """A question set."""

    version: Literal[1]
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    description: str = ""
    languages: list[str] = Field(min_length=1)
    max_attempts: int = Field(default=3, ge=1, le=10, description="Invalid answers before handing over.")
    texts: dict[str, Texts] = Field(description="System messages: greeting, welcome_back, done, handoff, "
                                                "stopped, skip, choose_language, confirm_time, confirm_date "
                                                "(optional, with {date}), consent_declined, "
                                                "question_noted, options (the list button's label), "
                                                "resume (greeting a patient back to a request under way)…")
    commands: Commands = Field(default_factory=Commands)
    summary: str = Field(description="Jinja2 template of the lead's summary (sandboxed).")
    tags: list[str] = Field(default_factory=list, description="Jinja2 templates; empty results are dropped.")
    topic_field: str | None = Field(default=None, description="The answer that is the request's topic.")
    steps: list[Step] = Field(min_length=1)
    form: Form | None = Field(default=None, description="WhatsApp: several steps in one form (a WhatsApp Flow).")

    REQUIRED_TEXTS: ClassVar[tuple[str, ...]] = ("greeting", "done", "handoff", "stopped", "skip", "welcome_back",
                                       "choose_language", "confirm_time")

    def step(self, field: str) -> Step | None:
        """The step collecting ``field``."""
        return next((s for s in self.steps if s.field == field), None)


ERROR_TEXTS: dict[str, Texts] = {
    "email": {"tr": "Bu bir e-posta adresine benzemiyor. Örnek: ad@ornek.com", "en": "That does not look like an "
              "e-mail address. Example: name@example.com", "de": "Das sieht nicht wie eine E-Mail-Adresse aus. "
              "Beispiel: name@beispiel.de", "ar": "هذا لا يبدو عنوان بريد إلكتروني. مثال: name@example.com",
              "ru": "Это не похоже на адрес электронной почты. Пример: name@example.com"},
    "phone": {"tr": "Numarayı ülke koduyla yazın, örneğin +90 532 123 45 67.", "en": "Please write the number with its "
              "country code, e.g. +44 7700 900123.", "de": "Bitte die Nummer mit Ländervorwahl, z. B. +49 151 "
              "12345678.", "ar": "يرجى كتابة الرقم مع رمز الدولة، مثل ‎+971 50 123 4567.", "ru": "Напишите номер "
              "с кодом страны, например +7 916 123-45-67."},
    "name": {"tr": "Adınızı ve soyadınızı yazar mısınız?", "en": "Could you write your first and last name?",
             "de": "Könnten Sie Ihren Vor- und Nachnamen schreiben?", "ar": "هل يمكنك كتابة اسمك الكامل؟",
             "ru": "Напишите, пожалуйста, имя и фамилию."},
    "choice": {"tr": "Lütfen seçeneklerden birini seçin.", "en": "Please pick one of the options.",
               "de": "Bitte wählen Sie eine der Optionen.", "ar": "يرجى اختيار أحد الخيارات.",
               "ru": "Пожалуйста, выберите один из вариантов."},
    "datetime": {"tr": "Tarihi ve saati anlayamadım. Örnek: Çarşamba 11:00", "en": "I could not read a day and time. "
                 "Example: Wednesday 11:00", "de": "Ich konnte Tag und Uhrzeit nicht lesen. Beispiel: Mittwoch "
                 "11 Uhr", "ar": "لم أتمكن من فهم اليوم والوقت. مثال: الأربعاء 11:00", "ru": "Не удалось понять "
                 "день и время. Пример: среда 11:00"},
    "time": {"tr": "Saat kaçta uygun olur?", "en": "What time would suit you?", "de": "Um wie viel Uhr passt es "
             "Ihnen?", "ar": "ما الوقت المناسب لك؟", "ru": "В какое время вам удобно?"},
    "date_range": {"tr": "Tarih aralığını anlayamadım. Örnek: 10-17 Mart", "en": "I could not read the dates. "
                   "Example: 10-17 March", "de": "Ich konnte die Daten nicht lesen. Beispiel: 10.-17. März",
                   "ar": "لم أفهم التواريخ. مثال: 10-17 مارس", "ru": "Не удалось понять даты. Пример: 10-17 марта"},
    "number": {"tr": "Lütfen bir sayı yazın.", "en": "Please write a number.", "de": "Bitte eine Zahl schreiben.",
               "ar": "يرجى كتابة رقم.", "ru": "Пожалуйста, напишите число."},
    "range": {"tr": "Bu sayı aralığın dışında.", "en": "That number is out of range.", "de": "Diese Zahl liegt "
              "außerhalb des Bereichs.", "ar": "هذا الرقم خارج النطاق.", "ru": "Число вне допустимого диапазона."},
    "yes_no": {"tr": "Evet ya da hayır diye cevaplar mısınız?", "en": "Could you answer yes or no?",
               "de": "Bitte mit Ja oder Nein antworten.", "ar": "هل يمكنك الإجابة بنعم أو لا؟",
               "ru": "Ответьте, пожалуйста, да или нет."},
    "location": {"tr": "Şehir ve ülke yazın ya da konum paylaşın.", "en": "Write a city and country, or share a "
                 "location.", "de": "Schreiben Sie Stadt und Land oder teilen Sie einen Standort.",
                 "ar": "اكتب المدينة والبلد أو شارك موقعًا.", "ru": "Напишите город и страну или поделитесь "
                 "геопозицией."},
    "media": {"tr": "Fotoğraf veya belge gönderebilir ya da 'Atla' diyebilirsiniz.", "en": "Send a photo or a "
              "document, or press Skip.", "de": "Senden Sie ein Foto oder Dokument, oder tippen Sie auf "
              "Überspringen.", "ar": "أرسل صورة أو مستندًا، أو اضغط تخطي.", "ru": "Отправьте фото или документ "
              "или нажмите «Пропустить»."},
    "question": {"tr": "Sorunuzu ekibimize iletiyorum; size buradan yanıt verecekler.", "en": "I will pass your "
                 "question on to our team; they will answer you here.", "de": "Ich gebe Ihre Frage an unser Team "
                 "weiter; es antwortet Ihnen hier.", "ar": "سأنقل سؤالك إلى فريقنا، وسيجيبونك هنا.",
                 "ru": "Я передам ваш вопрос нашей команде, вам ответят здесь."},
    "text": {"tr": "Biraz daha ayrıntı yazar mısınız?", "en": "Could you write a little more?",
             "de": "Könnten Sie etwas mehr schreiben?", "ar": "هل يمكنك كتابة المزيد قليلاً؟",
             "ru": "Напишите, пожалуйста, чуть подробнее."},
}

#: the label of the button that opens a list of options, when neither the step (``list_button``) nor the flow
#: (the system text ``options``) gives one
OPTIONS_TEXTS: Texts = {"tr": "Seçenekler", "en": "Options", "de": "Optionen", "ar": "الخيارات", "ru": "Варианты"}

#: a form's own words, when the flow gives none (``form.title``, ``intro``, ``button``, ``submit``)
FORM_TEXTS: dict[str, Texts] = {
    "title": {"tr": "Talebiniz", "en": "Your request", "de": "Ihre Anfrage", "ar": "طلبك", "ru": "Ваша заявка"},
    "intro": {"tr": "Kalan soruları tek bir formda doldurabilir ya da burada tek tek yanıtlayabilirsiniz.",
              "en": "You can fill in the remaining questions in one form, or answer them here one by one.",
              "de": "Sie können die übrigen Fragen in einem Formular ausfüllen oder hier einzeln beantworten.",
              "ar": "يمكنك ملء الأسئلة المتبقية في نموذج واحد، أو الإجابة عنها هنا واحدًا تلو الآخر.",
              "ru": "Оставшиеся вопросы можно заполнить в одной форме или ответить здесь по одному."},
    "button": {"tr": "Formu doldur", "en": "Fill in the form", "de": "Formular öffnen", "ar": "املأ النموذج",
               "ru": "Заполнить форму"},
    "submit": {"tr": "Gönder", "en": "Send", "de": "Senden", "ar": "إرسال", "ru": "Отправить"},
}
#: a form field's label when the flow gives none: by step type, or by field name (``location``)
FORM_LABELS: dict[str, Texts] = {
    "name": {"tr": "Ad soyad", "en": "Full name", "de": "Vor- und Nachname", "ar": "الاسم الكامل",
             "ru": "Имя и фамилия"},
    "email": {"tr": "E-posta", "en": "E-mail", "de": "E-Mail", "ar": "البريد الإلكتروني", "ru": "E-mail"},
    "phone": {"tr": "Telefon", "en": "Phone", "de": "Telefon", "ar": "الهاتف", "ru": "Телефон"},
    "note": {"tr": "Not", "en": "Note", "de": "Notiz", "ar": "ملاحظة", "ru": "Примечание"},
    "location": {"tr": "Şehir ve ülke", "en": "City and country", "de": "Stadt und Land", "ar": "المدينة والبلد",
                 "ru": "Город и страна"},
}


def form_label(flow: Flow, step: Step) -> Texts:
    """A form field's label per language: the flow's own, else the bot's for its type or field name, else the
    step's prompt (only usable when that is short enough: :func:`load_flow` says so)."""
    assert flow.form is not None
    own = flow.form.labels.get(step.field)
    if own:
        return own
    return FORM_LABELS.get(step.type) or FORM_LABELS.get(step.field) or step.prompt


def form_text(flow: Flow, key: str) -> Texts:
    """One of a form's own words (``title``, ``intro``, ``button``, ``submit``): the flow's, else the bot's."""
    assert flow.form is not None
    return getattr(flow.form, key) or FORM_TEXTS[key]


def _check_form(flow: Flow, problem: Any) -> None:
    form = flow.form
    if form is None:
        return
    for k, field in enumerate(form.steps):
        step = flow.step(field)
        if step is None:
            problem(("form", "steps", k), f"no step collects {field!r}")
        else:
            _check_form_step(flow, k, step, problem)
    if len(set(form.steps)) != len(form.steps):
        problem(("form", "steps"), "a field is in the form twice")
    for key in ("title", "button", "submit", "intro"):
        texts = form_text(flow, key)
        for lang in flow.languages:
            text = texts.get(lang)
            if text is None:
                problem(("form", key), f"no {key} in {lang}", hint=f"form.{key}.{lang}")
            elif key in FORM_LIMITS and len(text) > FORM_LIMITS[key]:
                problem(("form", key), f"the form's {key} in {lang} is longer than {FORM_LIMITS[key]} characters")


def _check_form_step(flow: Flow, k: int, step: Step, problem: Any) -> None:
    """One step of the form: a kind a form collects, not health information, not hanging on another form field,
    options and a label short enough."""
    assert flow.form is not None
    form, field = flow.form, step.field
    position = next(i for i, s in enumerate(flow.steps) if s.field == field)
    if step.type not in FORM_TYPES:
        problem(("form", "steps", k), f"a {step.type} step cannot be in a form",
                hint=f"a form collects {', '.join(sorted(FORM_TYPES))}; the others are asked in the chat")
    if step.health:
        problem(("form", "steps", k), f"{field!r} is health information, asked only after consent in the chat")
    if step.when and step.when.field in form.steps:
        problem(("form", "steps", k), f"{field!r} depends on {step.when.field!r}, which the same form collects",
                hint="a form cannot show a field depending on another field's answer: leave one of them out")
    if len(step.options) > 200:
        problem(("form", "steps", k), "a form's list takes at most 200 options")
    for j, option in enumerate(step.options):
        for lang, title in option.title.items():
            if len(title) > FORM_LIMITS["option"]:
                problem(("steps", position, "options", j, "title", lang),
                        f"{title!r} is longer than a form's option ({FORM_LIMITS['option']} characters)")
    if step.type in FORM_TYPES:
        _check_form_label(flow, step, problem)


def _check_form_label(flow: Flow, step: Step, problem: Any) -> None:
    field, limit = step.field, FORM_LIMITS["label"]
    label = form_label(flow, step)
    labelled = label is not step.prompt  # else the question itself stands in for a label, if it is short enough
    hint = f"form.labels.{field}.<language>: a few words, at most {limit} characters"
    for lang in flow.languages:
        text = label.get(lang)
        if text is None or (not labelled and len(text) > limit):
            problem(("form", "labels"), f"no label for {field!r} in {lang}"
                    + ("" if text is None else " (its question is too long to be one)"), hint=hint)
        elif len(text) > limit:
            problem(("form", "labels"), f"the label of {field!r} in {lang} is longer than {limit} characters: "
                    f"{text!r}", hint=hint)

LANGUAGE_NAMES = {"tr": "Türkçe", "en": "English", "de": "Deutsch", "ar": "العربية", "ru": "Русский",
                  "fr": "Français", "es": "Español", "it": "Italiano", "nl": "Nederlands", "pl": "Polski",
                  "uk": "Українська", "fa": "فارسی", "az": "Azərbaycanca", "ka": "ქართული"}


def _check_phrases(flow: Flow, problem: Any) -> None:
    for name in ("stop_phrases", "human_phrases"):
        for lang, phrases in getattr(flow.commands, name).items():
            for k, phrase in enumerate(phrases):
                try:
                    parse_phrase(phrase)
                except ValueError as exc:
                    problem(("commands", name, lang, k), str(exc),
                            hint="words in order; a|b alternatives; stem*, *end, *part*; '..' for other words")


def _cross_check(flow: Flow, path: Path, line_of: Any) -> list[Problem]:
    problems: list[Problem] = []

    def problem(loc: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        problems.append(Problem(message, file=str(path), line=line_of(loc), path=".".join(map(str, loc)), hint=hint))

    if path.stem != flow.name:
        problem(("name",), f"the flow is named {flow.name!r} but its file is {path.name}",
                hint=f"rename the file to {flow.name}.yaml or the flow to {path.stem}")
    for key in flow.REQUIRED_TEXTS:
        if key not in flow.texts:
            problem(("texts",), f"system text {key!r} is missing")

    def texts(loc: tuple[Any, ...], value: Texts | None) -> None:
        if value is None:
            return
        missing = [lang for lang in flow.languages if lang not in value]
        if missing:
            problem(loc, f"no text in {', '.join(missing)}", hint="every text needs every language of the flow")
        extra = [lang for lang in value if lang not in flow.languages]
        if extra:
            problem(loc, f"text in {', '.join(extra)}, which the flow does not list in languages")

    for key, value in flow.texts.items():
        texts(("texts", key), value)
    fields_so_far: list[str] = []
    for i, step in enumerate(flow.steps):
        texts(("steps", i, "prompt"), step.prompt)
        texts(("steps", i, "error"), step.error)
        texts(("steps", i, "list_button"), step.list_button)
        for j, option in enumerate(step.options):
            texts(("steps", i, "options", j, "title"), option.title)
            texts(("steps", i, "options", j, "description"), option.description)
        if step.field in fields_so_far:
            problem(("steps", i, "field"), f"field {step.field!r} is collected twice")
        if step.when and step.when.field not in fields_so_far:
            problem(("steps", i, "when", "field"), f"'when' names {step.when.field!r}, which no earlier step collects",
                    hint="conditions may only look at answers given before")
        fields_so_far.append(step.field)
    _check_phrases(flow, problem)
    _check_form(flow, problem)
    if flow.topic_field and flow.topic_field not in fields_so_far:
        problem(("topic_field",), f"topic_field names {flow.topic_field!r}, which no step collects")
    for loc, source in [(("summary",), flow.summary), *[(("tags", k), t) for k, t in enumerate(flow.tags)]]:
        error = check_template(source)
        if error:
            problem(loc, f"template error: {error}")
    return problems


def load_flow(path: Path) -> Flow:
    """Read and validate one flow file. Raises ConfigurationError with every problem."""
    flow, doc = load_model(path, Flow)
    problems = _cross_check(flow, path, doc.line_of)
    if problems:
        raise ConfigurationError(problems)
    return flow


def load_flows(directory: Path) -> dict[str, Flow]:
    """Every ``*.yaml`` flow in ``directory``, by name.

    Raises:
        ConfigurationError: every problem of every file (the folder missing or empty is one).
    """
    if not directory.is_dir():
        raise ConfigurationError(Problem("flows folder not found", file=str(directory)))
    flows: dict[str, Flow] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            flow = load_flow(path)
        except ConfigurationError as exc:
            problems.extend(exc.problems)
            continue
        flows[flow.name] = flow
    if not flows and not problems:
        problems.append(Problem("no flow files (*.yaml)", file=str(directory)))
    if problems:
        raise ConfigurationError(problems)
    return flows


def write_flow_schema(path: Path) -> None:
    """Publish the JSON Schema of flow files (for editors)."""
    write_schema(Flow, path, "chat2crm flow")

