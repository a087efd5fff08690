"""The WhatsApp Cloud API webhook payload as typed models, written from Meta's documentation.

What the relay reads from ``POST /webhooks/whatsapp``: ``object`` and ``entry[].changes[]``, each
with its ``field`` and ``value``: ``metadata``, ``contacts``, ``messages`` (text, interactive button
and list replies, flow replies, template quick-reply buttons, locations, shared contacts, images,
documents, audio, video, stickers, reactions, system notices of a changed number or business-scoped id,
and kinds the relay does not read), ``statuses``,
``errors`` and ``user_preferences``. A status echoes the ``biz_opaque_callback_data`` the message was
sent with. Names and types follow Meta's webhook reference and the
``WebhookPayload`` schema of its OpenAPI description (``emulators/vendor_specs``), with what that
description misses: users known only by a business-scoped id (``from_user_id``, ``user_id``,
``recipient_user_id``), locations without name or address, values carrying only ``errors``.

Lists whose items must stand alone (entries, changes, contacts, messages, statuses, errors,
preferences) are kept raw here (``list[Any]``) and validated item by item by the parser
(:func:`connector.channels.parts.valid_parts`), so one bad message never drops the others.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from connector.channels.parts import Id, Part, Text, UnixTime

#: message types whose content is a media object (``voice`` is kept for older payloads)
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker", "voice")
#: a delivery status as Meta names them (sent, delivered, read, failed…): a metric label, so kept short
StatusName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class Metadata(Part):
    """``value.metadata``: the business number the webhook is for."""

    display_phone_number: Text | None = None
    phone_number_id: Id


class Profile(Part):
    """``contacts[].profile``: the name, and the username of a user who adopted one (2026)."""

    name: Text | None = None
    username: Text | None = None


class Contact(Part):
    """``value.contacts[]``: the sender's profile, keyed by ``wa_id`` or business-scoped ``user_id``."""

    profile: Profile | None = None
    wa_id: Id | None = None
    user_id: Id | None = None


class ErrorData(Part):
    """``errors[].error_data``: what exactly went wrong."""

    details: Text | None = None


class VendorError(Part):
    """An error object (in ``value.errors``, a message's or a status's ``errors``)."""

    code: int | None = None
    title: Text | None = None
    message: Text | None = None
    error_data: ErrorData | None = None
    href: Text | None = None

    def as_dict(self) -> dict[str, Any]:
        """The error as Meta sent it (for logs: its code and title)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Context(Part):
    """``messages[].context``: the message this one answers."""

    from_: Text | None = Field(default=None, alias="from")
    id: Text | None = None


class Referral(Part):
    """``messages[].referral``: the click-to-WhatsApp ad the conversation started from."""

    source_url: Text | None = None
    source_id: Text | None = None
    source_type: Text | None = None
    headline: Text | None = None
    body: Text | None = None
    media_type: Text | None = None
    image_url: Text | None = None
    video_url: Text | None = None
    thumbnail_url: Text | None = None
    ctwa_clid: Text | None = None


class TextContent(Part):
    """``text``."""

    body: Text


class ButtonReply(Part):
    """``interactive.button_reply``."""

    id: Text
    title: Text


class ListReply(Part):
    """``interactive.list_reply``."""

    id: Text
    title: Text
    description: Text | None = None


class FlowReply(Part):
    """``interactive.nfm_reply``: a WhatsApp Flow's answer."""

    response_json: Text
    body: Text | None = None
    name: Text | None = None


class Interactive(Part):
    """``interactive``: a reply to buttons, a list or a flow (other replies are kept, not read)."""

    type: Text | None = None
    button_reply: ButtonReply | None = None
    list_reply: ListReply | None = None
    nfm_reply: FlowReply | None = None


class QuickReply(Part):
    """``button``: a template's quick-reply button."""

    payload: Text | None = None
    text: Text | None = None


class Place(Part):
    """``location``."""

    latitude: Latitude | None = None
    longitude: Longitude | None = None
    name: Text | None = None
    address: Text | None = None
    url: Text | None = None


class Media(Part):
    """``image``, ``document``, ``audio``, ``video``, ``sticker``: a media object (the bytes stay with Meta)."""

    id: Id
    mime_type: Text | None = None
    sha256: Text | None = None
    caption: Text | None = None
    filename: Text | None = None
    voice: bool | None = None
    animated: bool | None = None


class Reaction(Part):
    """``reaction`` (an empty emoji takes a reaction back)."""

    message_id: Text | None = None
    emoji: Text | None = None


class CardName(Part):
    """``contacts[].name`` of a shared contact card."""

    formatted_name: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None


class CardPhone(Part):
    """``contacts[].phones[]``."""

    phone: Text | None = None
    wa_id: Text | None = None
    type: Text | None = None


class CardEmail(Part):
    """``contacts[].emails[]``."""

    email: Text | None = None
    type: Text | None = None


class Card(Part):
    """A contact card the patient shared (``type: contacts``). ``origin`` is ``contact_request`` when the user
    shared their own details through WhatsApp's request-contact-info button."""

    name: CardName | None = None
    phones: list[CardPhone] = Field(default_factory=list)
    emails: list[CardEmail] = Field(default_factory=list)
    origin: Text | None = None


class SystemChange(Part):
    """``system``: WhatsApp's notice that a user's identity changed.

    ``user_changed_number`` names the new number in ``wa_id`` (``new_wa_id`` and the type
    ``customer_changed_number`` before Graph API v12); ``user_changed_user_id`` names the new
    business-scoped id in ``user_id`` (no number). ``body`` is a sentence for people, holding both numbers.
    """

    body: Text | None = None
    type: Text | None = None
    wa_id: Id | None = None
    new_wa_id: Id | None = None
    user_id: Id | None = None
    parent_user_id: Id | None = None
    customer: Text | None = None
    identity: Text | None = None


class Message(Part):
    """``value.messages[]``: one message from a WhatsApp user.

    The sender is ``from`` (phone digits) or, for a user known only by a business-scoped id,
    ``from_user_id``. The content sits under the key named by ``type``, which must be there for the
    kinds the relay reads.
    """

    from_: Id | None = Field(default=None, alias="from")
    from_user_id: Id | None = None
    id: Id
    timestamp: UnixTime
    type: Text = "unknown"
    context: Context | None = None
    referral: Referral | None = None
    errors: list[VendorError] = Field(default_factory=list)
    text: TextContent | None = None
    interactive: Interactive | None = None
    button: QuickReply | None = None
    location: Place | None = None
    contacts: list[Card] | None = None
    image: Media | None = None
    document: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    sticker: Media | None = None
    voice: Media | None = None
    reaction: Reaction | None = None
    system: SystemChange | None = None

    @model_validator(mode="after")
    def _sender_and_content(self) -> Message:
        if not (self.from_ or self.from_user_id):
            raise ValueError("a message names its sender (from or from_user_id)")
        if self.type in ("text", "interactive", "button", "location", "contacts", "reaction", "system",
                         *MEDIA_TYPES) and (getattr(self, self.type) is None):
            raise ValueError("the content named by type is missing")
        return self

    def media(self) -> Media | None:
        """The media object of a media message."""
        return getattr(self, self.type) if self.type in MEDIA_TYPES else None


class Status(Part):
    """``value.statuses[]``: what became of a message the relay sent."""

    id: Id
    status: StatusName
    recipient_id: Id | None = None
    recipient_user_id: Id | None = None
    errors: list[VendorError] = Field(default_factory=list)
    #: what the relay sent with the message (``biz_opaque_callback_data``, at most 512 characters), echoed
    biz_opaque_callback_data: Annotated[Text, StringConstraints(max_length=512)] | None = None


class UserPreference(Part):
    """``value.user_preferences[]``: a user stopped (or resumed) marketing messages."""

    wa_id: Id | None = None
    user_id: Id | None = None
    category: Text | None = None
    value: Text | None = None


class Value(Part):
    """``changes[].value``. Its lists are validated item by item (see the module)."""

    messaging_product: Text | None = None
    metadata: Metadata | None = None
    contacts: list[Any] = Field(default_factory=list)
    messages: list[Any] = Field(default_factory=list)
    statuses: list[Any] = Field(default_factory=list)
    errors: list[Any] = Field(default_factory=list)
    user_preferences: list[Any] = Field(default_factory=list)


class Change(Part):
    """``entry[].changes[]``: ``messages`` (messages, statuses, errors) or ``user_preferences``, among others."""

    field: Text | None = None
    value: Value


class Entry(Part):
    """``entry[]``: one WhatsApp Business Account's changes."""

    id: Text | None = None
    changes: list[Any] = Field(default_factory=list)
