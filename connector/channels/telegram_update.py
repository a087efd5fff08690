"""The Telegram Bot API ``Update`` as typed models, written from the Bot API's documentation.

What the relay reads from ``POST /webhooks/telegram``: ``update_id`` and one of ``message``,
``edited_message``, ``callback_query`` and ``my_chat_member``, with the ``User``, ``Chat``,
``PhotoSize``, ``Document``, ``Sticker``, ``Contact``, ``Location`` and ``InlineKeyboardMarkup`` objects
they hold. Names, types and which fields are required follow the Bot API reference (the same description
the emulator checks against: ``emulators/vendor_specs/telegram/api.json``). Other update kinds
(channel posts, polls, inline queries…) are kept unread.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from connector.channels.parts import Id, Part, Text, UnixTime
from connector.channels.telegram_media import Audio, Video, VideoNote, Voice

Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class User(Part):
    """``User``: the person (or bot) behind a message or a button press."""

    id: int
    is_bot: bool
    first_name: Text
    last_name: Text | None = None
    username: Text | None = None
    language_code: Text | None = None


class Chat(Part):
    """``Chat``: where a message was written (``private`` for a patient talking to the bot)."""

    id: int
    type: Text
    title: Text | None = None
    username: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None


class PhotoSize(Part):
    """``PhotoSize``: one size of a photo (the last is the largest)."""

    file_id: Id
    file_unique_id: Id
    width: int
    height: int
    file_size: int | None = None


class Document(Part):
    """``Document``: a file the user sent."""

    file_id: Id
    file_unique_id: Id
    file_name: Text | None = None
    mime_type: Text | None = None
    file_size: int | None = None


class Sticker(Part):
    """``Sticker``: a sticker the user sent (``is_animated``: a .TGS animation, ``is_video``: a .WEBM video,
    else a .WEBP image)."""

    file_id: Id
    file_unique_id: Id
    type: Text
    width: int
    height: int
    is_animated: bool
    is_video: bool
    emoji: Text | None = None
    set_name: Text | None = None
    file_size: int | None = None


class SharedContact(Part):
    """``Contact``: a phone number the user shared (their own, from the reply keyboard)."""

    phone_number: Text
    first_name: Text
    last_name: Text | None = None
    user_id: int | None = None
    vcard: Text | None = None


class Place(Part):
    """``Location``."""

    latitude: Latitude
    longitude: Longitude


class InlineKeyboardButton(Part):
    """``InlineKeyboardButton``."""

    text: Text
    callback_data: Text | None = None


class InlineKeyboardMarkup(Part):
    """``InlineKeyboardMarkup``: the buttons under a message the bot sent."""

    inline_keyboard: list[list[InlineKeyboardButton]]


class Message(Part):
    """``Message``: a message the user wrote (or edited)."""

    message_id: int
    from_: User | None = Field(default=None, alias="from")
    chat: Chat
    date: UnixTime
    edit_date: UnixTime | None = None
    text: Text | None = None
    caption: Text | None = None
    photo: list[PhotoSize] | None = None
    document: Document | None = None
    contact: SharedContact | None = None
    location: Place | None = None
    sticker: Sticker | None = None
    voice: Voice | None = None
    audio: Audio | None = None
    video: Video | None = None
    video_note: VideoNote | None = None


class KeyboardMessage(Part):
    """``MaybeInaccessibleMessage`` of a button press: the bot's own message that carried the keyboard.

    Only its keyboard is read (to find the pressed button's title); ``date`` is 0 when the message is
    no longer accessible, so it is not held to a plausible range.
    """

    message_id: int
    chat: Chat
    date: int
    reply_markup: InlineKeyboardMarkup | None = None


class CallbackQuery(Part):
    """``CallbackQuery``: the user pressed an inline button."""

    id: Id
    from_: User = Field(alias="from")
    message: KeyboardMessage | None = None
    chat_instance: Text
    data: Text | None = None

    def button_title(self) -> str | None:
        """The title of the pressed button, found in the keyboard of the message that carried it."""
        markup = self.message.reply_markup if self.message else None
        for row in markup.inline_keyboard if markup else []:
            for button in row:
                if button.callback_data == self.data:
                    return button.text
        return None


class ChatMember(Part):
    """``ChatMember``: a member's status in a chat (``member``, ``kicked`` when the user blocked the bot…)."""

    status: Text
    user: User


class ChatMemberUpdated(Part):
    """``ChatMemberUpdated``: the bot's own membership changed (``my_chat_member``)."""

    chat: Chat
    from_: User = Field(alias="from")
    date: UnixTime
    old_chat_member: ChatMember
    new_chat_member: ChatMember


class Update(Part):
    """``Update``: at most one of its optional fields is present."""

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    callback_query: CallbackQuery | None = None
    my_chat_member: ChatMemberUpdated | None = None
