"""The LINE Messaging API webhook body as typed models, written from LINE's webhook reference.

What the relay reads from ``POST /webhooks/line``: ``destination`` (the bot's user id) and ``events[]``,
each with ``type``, ``mode``, ``timestamp`` (milliseconds), ``webhookEventId`` (a ULID, the same on a
redelivery), ``deliveryContext.isRedelivery``, ``source`` (``user``, ``group`` or ``room``) and, by type:
``message`` (text, image, video, audio, file, location, sticker, with ``replyToken``, ``quoteToken`` and
``markAsReadToken``), ``postback`` (``data`` and the date picker's ``params``), ``follow``
(``isUnblocked``) and ``unfollow``. Names and types follow ``emulators/vendor_specs/line/webhook.yml``.

Every model derives from :class:`connector.channels.parts.Part`: fields LINE adds are kept, wrong types are
refused, text must be clean. The events are validated one at a time by the parser, so one bad event never
drops the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, PlainValidator

from connector.channels.parts import Id, Part, Text, plausible

Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


def _millis(value: Any) -> datetime:
    """LINE's ``timestamp``: an integer of milliseconds since the epoch, plausible for a message."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("a Unix time in milliseconds expected")
    try:
        moment = datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("timestamp outside any plausible range") from None
    return plausible(moment)


#: a Unix time in milliseconds (``1462629479859``) that an event can plausibly carry
MilliTime = Annotated[datetime, PlainValidator(_millis)]


class Source(Part):
    """``source``: who the event comes from (``userId`` is absent from some group events)."""

    type: Text
    userId: Id | None = None
    groupId: Id | None = None
    roomId: Id | None = None


class DeliveryContext(Part):
    """``deliveryContext``: whether LINE is sending this event again (the bot did not answer 2xx in time)."""

    isRedelivery: bool


class ContentProvider(Part):
    """``message.contentProvider``: ``line`` (the bytes are at the content endpoint) or ``external``."""

    type: Text
    originalContentUrl: Text | None = None
    previewImageUrl: Text | None = None


class MessageContent(Part):
    """``message``: one message, its fields by ``type`` (text, image, video, audio, file, location, sticker)."""

    id: Id
    type: Text
    text: Text | None = None
    quoteToken: Text | None = None
    quotedMessageId: Text | None = None
    markAsReadToken: Text | None = None
    contentProvider: ContentProvider | None = None
    duration: int | None = None
    fileName: Text | None = None
    fileSize: int | None = None
    title: Text | None = None
    address: Text | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    packageId: Text | None = None
    stickerId: Text | None = None
    stickerResourceType: Text | None = None
    keywords: list[Text] | None = None


class PostbackContent(Part):
    """``postback``: the data of the button pressed, and what a date/time picker chose (``params``)."""

    data: Text
    params: dict[str, Text] | None = None


class FollowDetail(Part):
    """``follow``: a new friend (``isUnblocked`` false) or a user who unblocked the account."""

    isUnblocked: bool


class Event(Part):
    """One webhook event: the parts every type shares, and those the relay reads by type."""

    type: Text
    mode: Text
    timestamp: MilliTime
    webhookEventId: Id
    deliveryContext: DeliveryContext
    source: Source | None = None
    replyToken: Text | None = None
    message: MessageContent | None = None
    postback: PostbackContent | None = None
    follow: FollowDetail | None = None
