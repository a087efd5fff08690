"""The canonical model: the one shape every part of chat2crm speaks.

Channel parsers produce :class:`InboundMessage`; the bot engine consumes and produces
:class:`Conversation` and :class:`Reply`; on completion or handoff it builds a :class:`Lead`,
which the mapping engine turns into CRM operations (:mod:`adapters.base`). Nothing
CRM-specific lives here, nothing channel-specific beyond the channel's name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: a messaging channel's name (``whatsapp``, ``telegram``, or a plug-in's: channels are found through the
#: ``chat2crm.channels`` entry points, so the model cannot list them)
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
MessageKind = Literal["text", "choice", "location", "media", "contact", "start", "reaction", "form", "unsupported"]
ConversationStatus = Literal["bot", "handoff", "closed"]
LeadStatus = Literal["new", "reviewing", "planned", "done", "on_hold"]
LanguageSource = Literal["utm_lang", "campaign", "ad", "start_payload", "detected", "channel_hint", "asked",
                         "configured_default"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    def deep_copy(self) -> Self:
        """A copy sharing no mutable part with this one, rebuilt by pydantic-core from its fields (a bot turn
        works on one): about six times faster than ``model_copy(deep=True)``, which runs ``copy.deepcopy``."""
        return self.model_validate(self.model_dump())


class Location(_Model):
    """A shared location, or a place written as text (``latitude``/``longitude`` then absent)."""

    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class MediaRef(_Model):
    """A reference to media the patient sent; the bytes stay with the channel."""

    kind: Literal["image", "document", "audio", "video", "sticker", "voice", "other"]
    media_id: str
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    sha256: str | None = None


class SharedContact(_Model):
    """A contact card the patient shared."""

    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    user_id: str | None = None


class SenderProfile(_Model):
    """What the channel tells us about the sender."""

    name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False


class AdReferral(_Model):
    """The ``referral`` object of a click-to-WhatsApp ad's first message."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None


class InboundMessage(_Model):
    """One patient message, whatever channel it came from.

    ``sender_id`` is the conversation identity: the WhatsApp id (phone digits, no ``+``),
    the business-scoped user id when WhatsApp gives no phone, or the Telegram user id.
    """

    channel: Channel
    account: str
    sender_id: str
    message_id: str
    timestamp: datetime
    kind: MessageKind
    raw_type: str = ""
    text: str | None = None
    choice_id: str | None = None
    choice_title: str | None = None
    location: Location | None = None
    media: list[MediaRef] = Field(default_factory=list)
    contacts: list[SharedContact] = Field(default_factory=list)
    reaction: str | None = None
    profile: SenderProfile = Field(default_factory=SenderProfile)
    sender_phone: str | None = None
    sender_user_id: str | None = None
    referral: AdReferral | None = None
    start_payload: str | None = None
    edited: bool = False
    reply_to: str | None = None
    #: Telegram callback query id, to be answered with answerCallbackQuery
    callback_id: str | None = None
    #: the message's id in the patient's chat (Telegram's ``message_id``; an edit carries the id of the message
    #: it changes), where it differs from ``message_id``
    chat_message_id: str | None = None
    #: the flow of the business number written to, for a conversation that starts with this message (set by
    #: the relay from ``channels.whatsapp.numbers``; None: ``default_flow``)
    number_flow: str | None = None
    #: a form's answers (``kind == "form"``: a WhatsApp Flow sent back), by the field of the bot flow they answer
    form: dict[str, Any] | None = None
    #: the token the form was sent with, naming the request it belongs to
    form_token: str | None = None

    @property
    def conversation_key(self) -> str:
        """``channel:account:sender``: the key of the conversation this message belongs to."""
        return conversation_key(self.channel, self.account, self.sender_id)


def conversation_key(channel: str, account: str, sender_id: str) -> str:
    """Build the conversation key ``channel:account:sender``."""
    return f"{channel}:{account}:{sender_id}"


class Option(_Model):
    """One choice offered to the patient (a button, a list row, or a numbered line)."""

    id: str
    title: str
    description: str | None = None


class Attachment(_Model):
    """A file sent to the patient with a reply: the channel fetches it from ``url`` (a short-lived link)."""

    url: str
    mime_type: str | None = None
    name: str | None = None
    #: bytes, when known: a file over the channel's limit for its kind is refused before anything is sent
    size: int | None = Field(default=None, ge=0)


class MediaFile(_Model):
    """A patient's file as downloaded from the channel."""

    content: bytes
    mime_type: str
    name: str | None = None


class FormOffer(_Model):
    """A published form (a WhatsApp Flow) the patient opens from the message: several answers in one exchange."""

    flow_id: str
    #: comes back with the answers (``InboundMessage.form_token``): which request they belong to
    token: str
    #: the form's first screen
    screen: str
    #: the label of the button that opens it
    button: str


class Reply(_Model):
    """One message the bot sends. The channel renders it in the richest form it allows.

    ``options`` become buttons (≤ 3), a list (≤ 10) or numbered text on WhatsApp, and an inline
    keyboard on Telegram. ``template`` is used outside WhatsApp's 24-hour window.
    """

    text: str
    options: list[Option] = Field(default_factory=list)
    list_button: str | None = None
    request_phone: bool = False
    request_location: bool = False
    template: str | None = None
    template_language: str | None = None
    template_params: list[str] = Field(default_factory=list)
    #: files sent with the text (an agent's attachments); the text goes as the first file's caption or before it
    attachments: list[Attachment] = Field(default_factory=list)
    #: a form to open with a button (a WhatsApp Flow); a channel without forms sends ``text`` alone
    form: FormOffer | None = None


class Attribution(_Model):
    """Where a patient came from: a click link, an ad, or a start payload."""

    campaign: str | None = None
    click_ref: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    utm_lang: str | None = None
    fbclid: str | None = None
    gclid: str | None = None
    landing_page: str | None = None
    clicked_at: datetime | None = None
    ad_source_id: str | None = None
    ad_source_type: str | None = None
    ad_source_url: str | None = None
    ad_headline: str | None = None
    ad_body: str | None = None
    ad_media_type: str | None = None
    ctwa_clid: str | None = None
    start_payload: str | None = None
    touched_at: datetime | None = None

    def is_empty(self) -> bool:
        """True when nothing is known about where the patient came from."""
        return not any(v for k, v in self.model_dump().items() if k != "touched_at")


class Consent(_Model):
    """Explicit consent given (or declined) before health information is asked."""

    given: bool
    text_version: str
    at: datetime


class TranscriptEntry(_Model):
    """One line of the conversation as a person would read it."""

    direction: Literal["in", "out"]
    at: datetime
    text: str
    kind: str = "text"


class Conversation(_Model):
    """The bot's state for one patient on one channel account, kept in Redis with a TTL."""

    key: str
    channel: Channel
    account: str
    sender_id: str
    flow: str | None = None
    step: str | None = None
    answers: dict[str, Any] = Field(default_factory=dict)
    #: answers known before asking (profile, phone, attribution, CRM look-up): steps with one are skipped
    known: dict[str, Any] = Field(default_factory=dict)
    attempts: dict[str, int] = Field(default_factory=dict)
    #: state a step keeps between messages (for example a date awaiting confirmation)
    pending: dict[str, Any] = Field(default_factory=dict)
    language: str | None = None
    language_source: LanguageSource | None = None
    first_touch: Attribution | None = None
    last_touch: Attribution | None = None
    status: ConversationStatus = "bot"
    handoff_reason: str | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    reference: str | None = None
    profile_name: str | None = None
    phone: str | None = None
    user_id: str | None = None
    consent: Consent | None = None
    opted_out: bool = False
    media: list[MediaRef] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_inbound_at: datetime | None = None
    completed_at: datetime | None = None
    #: how many leads this conversation has produced (a returning patient makes another)
    lead_count: int = 0


class LeadContact(_Model):
    """The person, as the CRM contact will show them."""

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    country: str | None = None
    channel: Channel
    channel_id: str
    #: the Telegram username (without ``@``), when the patient has one
    telegram_username: str | None = None
    #: WhatsApp's business-scoped user id (BSUID), when Meta sent one: stable when the number changes
    whatsapp_user_id: str | None = None
    #: the city the patient named (the words they wrote stay in ``request.location``)
    city: str | None = None


class LeadRequest(_Model):
    """What the patient asks for."""

    topic: str | None = None
    location: str | None = None
    preferred_time: str | None = None
    preferred_time_text: str | None = None
    preferred_end: str | None = None
    priority: str | None = None
    note: str | None = None


class Lead(_Model):
    """One complete request, handed from the bot to the CRM side.

    ``reference`` (``#1042``) is unique per deployment and is the idempotency key of every
    CRM write for this request; ``contact_key`` (``whatsapp:905321234567``) is the unique key
    of the CRM contact, so a patient with no e-mail is never duplicated.
    """

    reference: str
    conversation_key: str
    contact_key: str
    contact: LeadContact
    organization: str | None = None
    request: LeadRequest = Field(default_factory=LeadRequest)
    answers: dict[str, Any] = Field(default_factory=dict)
    first_touch: Attribution = Field(default_factory=Attribution)
    last_touch: Attribution = Field(default_factory=Attribution)
    language: str | None = None
    language_source: LanguageSource | None = None
    consent: Consent | None = None
    tags: list[str] = Field(default_factory=list)
    status: LeadStatus = "new"
    summary: str = ""
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    transcript_url: str | None = None
    handoff_reason: str | None = None
    media: list[MediaRef] = Field(default_factory=list)
    opted_out: bool = False
    flow: str | None = None
    #: what the bot was allowed to do for this conversation (``off``, ``collect``, ``create``, ``full``)
    rollout: str | None = None
    #: the split group the conversation fell in (``a``/``b``…), when the rollout splits conversations
    rollout_group: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def reference_number(self) -> str:
        """The reference without its ``#`` (for CRM fields that hold plain values)."""
        return self.reference.lstrip("#")
