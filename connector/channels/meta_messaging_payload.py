"""The Messenger Platform webhook payload (Messenger and Instagram) as typed models, written from Meta's docs.

Meta publishes no machine-readable description of these webhooks; the names and types here follow its
reference pages ("Webhook Events Reference" of the Messenger Platform: ``messages``, ``messaging_postbacks``,
``messaging_referrals``, ``message_deliveries``, ``message_reads``, ``message_reactions``; and Instagram
Messaging's ``messages``, ``messaging_postbacks``, ``messaging_referral``, ``messaging_seen``,
``message_reactions``). A body is ``{"object": "page" | "instagram", "entry": [{"id", "time",
"messaging": [event…]}]}``; each event has ``sender``, ``recipient``, ``timestamp`` (milliseconds) and one
of ``message``, ``postback``, ``referral``, ``read``, ``delivery``, ``reaction``.

Lists whose items must stand alone (entries, events) are kept raw (``list[Any]``) and validated one item at
a time by the parser (:func:`connector.channels.parts.valid_parts`), so one bad event never drops the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, PlainValidator

from connector.channels.parts import Id, Part, Text, plausible

#: attachment types whose payload is a file at a URL (``file`` is a document)
FILE_TYPES = ("image", "video", "audio", "file")


def _milliseconds(value: Any) -> datetime:
    # the Messenger Platform sends milliseconds since the epoch as a number (postback pages show strings)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        millis = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        millis = value
    else:
        raise ValueError("a Unix time in milliseconds expected")
    try:
        moment = datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("timestamp outside any plausible range") from None
    return plausible(moment)


#: a Unix time in milliseconds (``1458692752478``) that a message can plausibly carry
MilliTime = Annotated[datetime, PlainValidator(_milliseconds)]


class Party(Part):
    """``sender`` / ``recipient``: a Page-scoped (PSID), Instagram-scoped (IGSID) or account id; the chat
    plugin names a visitor by ``user_ref`` instead."""

    id: Id | None = None
    user_ref: Id | None = None


class AdsContext(Part):
    """``referral.ads_context_data``: the Click-to-Messenger (or Instagram) ad a thread was opened from."""

    ad_title: Text | None = None
    photo_url: Text | None = None
    video_url: Text | None = None
    post_id: Text | None = None
    product_id: Text | None = None
    flow_id: Text | None = None


class Referral(Part):
    """``referral``: how the person came into the thread: an m.me link (``source: SHORTLINK``, its ``ref``),
    an ad (``ADS``, ``ad_id``, ``ads_context_data``), the chat plugin, a QR code…"""

    ref: Text | None = None
    source: Text | None = None
    type: Text | None = None
    ad_id: Text | None = None
    referer_uri: Text | None = None
    ads_context_data: AdsContext | None = None


class QuickReply(Part):
    """``message.quick_reply``: the payload of the quick reply the person tapped."""

    payload: Text | None = None


class ReplyTo(Part):
    """``message.reply_to``: the message (``mid``) or Instagram story this one answers."""

    mid: Text | None = None
    story: dict[str, Any] | None = None


class Coordinates(Part):
    """``payload.coordinates`` of a shared location."""

    lat: float = Field(ge=-90, le=90)
    long: float = Field(ge=-180, le=180)


class AttachmentPayload(Part):
    """``attachments[].payload``: a file's URL, a sticker's id, a location's coordinates, a share's title."""

    url: Text | None = None
    sticker_id: int | None = None
    coordinates: Coordinates | None = None
    title: Text | None = None


class Attachment(Part):
    """``message.attachments[]``: image, video, audio, file, location, fallback, reel, story mention…"""

    type: Text
    payload: AttachmentPayload | None = None


class Message(Part):
    """``message``: text, attachments, a quick reply's payload, an echo of the Page's own message."""

    mid: Id
    text: Text | None = None
    is_echo: bool | None = None
    is_deleted: bool | None = None
    is_unsupported: bool | None = None
    app_id: int | None = None
    quick_reply: QuickReply | None = None
    reply_to: ReplyTo | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    referral: Referral | None = None


class Postback(Part):
    """``postback``: a postback button, the Get Started button or a persistent menu item was tapped."""

    mid: Text | None = None
    title: Text | None = None
    payload: Text | None = None
    referral: Referral | None = None


class Read(Part):
    """``read``: Messenger's ``watermark`` (everything sent up to then was read) or Instagram's ``mid``."""

    watermark: int | None = None
    mid: Text | None = None


class Delivery(Part):
    """``delivery``: the messages delivered (``mids``, not always present) and the ``watermark``."""

    mids: list[Text] = Field(default_factory=list)
    watermark: int | None = None


class Reaction(Part):
    """``reaction``: a reaction to a message (``react``) or one taken back (``unreact``)."""

    mid: Text | None = None
    action: Text | None = None
    reaction: Text | None = None
    emoji: Text | None = None


class Event(Part):
    """``entry[].messaging[]``: one thing that happened in a thread."""

    sender: Party
    recipient: Party
    timestamp: MilliTime | None = None
    message: Message | None = None
    postback: Postback | None = None
    referral: Referral | None = None
    read: Read | None = None
    delivery: Delivery | None = None
    reaction: Reaction | None = None


class Entry(Part):
    """``entry[]``: the Page (or Instagram professional account) and its events."""

    id: Id
    time: int | None = None
    messaging: list[Any] = Field(default_factory=list)
    #: events for an app that is not the thread's owner (handover protocol): read the same way
    standby: list[Any] = Field(default_factory=list)
