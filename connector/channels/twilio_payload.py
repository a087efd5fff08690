"""Twilio's webhook forms as typed models: an incoming message, and a message's status callback.

Twilio posts ``application/x-www-form-urlencoded`` bodies (twilio.com/docs/messaging/guides/webhook-request
and the Message resource's status callback reference). Every value is a string; the models keep the fields
they do not name (Twilio adds parameters without notice, and the signature covers them all) and refuse
what cannot be a Twilio form: a missing ``MessageSid``, a NUL byte, a ``NumMedia`` that is not digits.

WhatsApp through Twilio adds ``ProfileName``, ``WaId``, ``ButtonText``/``ButtonPayload`` (a quick-reply
button of a content template), ``ListId``/``ListTitle`` (a list-picker row), ``Latitude``/``Longitude``
with ``Address``/``Label``, ``Referral*`` (a click-to-WhatsApp ad) and ``OriginalRepliedMessageSid``.
SMS with Advanced Opt-Out adds ``OptOutType`` (``STOP``, ``START``, ``HELP``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from connector.channels.parts import Id, Part, Text

#: statuses Twilio reports for a message it sends (``message_enum_status`` of its API description)
OUTBOUND_STATUSES = frozenset({"queued", "sending", "sent", "failed", "delivered", "undelivered", "accepted",
                               "scheduled", "read", "partially_delivered", "canceled"})
#: the most media one message carries (Twilio's limit, error 21623)
MAX_MEDIA = 10


def _digits(value: str) -> str:
    if not (value.isascii() and value.isdigit()):
        raise ValueError("digits expected")
    return value


def _decimal(value: str) -> str:
    try:
        float(value)
    except ValueError:
        raise ValueError("a decimal number expected") from None
    return value


Digits = Annotated[str, AfterValidator(_digits)]
Decimal = Annotated[str, AfterValidator(_decimal)]


class InboundForm(Part):
    """The form Twilio posts for a message a patient sent to one of the account's numbers."""

    message_sid: Id = Field(alias="MessageSid")
    account_sid: Id | None = Field(default=None, alias="AccountSid")
    from_: Id = Field(alias="From")
    to: Id = Field(alias="To")
    body: Text | None = Field(default=None, alias="Body")
    num_media: Digits = Field(default="0", alias="NumMedia")
    message_type: Text | None = Field(default=None, alias="MessageType")
    profile_name: Text | None = Field(default=None, alias="ProfileName")
    wa_id: Text | None = Field(default=None, alias="WaId")
    button_text: Text | None = Field(default=None, alias="ButtonText")
    button_payload: Text | None = Field(default=None, alias="ButtonPayload")
    list_id: Text | None = Field(default=None, alias="ListId")
    list_title: Text | None = Field(default=None, alias="ListTitle")
    latitude: Decimal | None = Field(default=None, alias="Latitude")
    longitude: Decimal | None = Field(default=None, alias="Longitude")
    address: Text | None = Field(default=None, alias="Address")
    label: Text | None = Field(default=None, alias="Label")
    replied_to: Text | None = Field(default=None, alias="OriginalRepliedMessageSid")
    opt_out_type: Text | None = Field(default=None, alias="OptOutType")
    referral_source_url: Text | None = Field(default=None, alias="ReferralSourceUrl")
    referral_source_id: Text | None = Field(default=None, alias="ReferralSourceId")
    referral_source_type: Text | None = Field(default=None, alias="ReferralSourceType")
    referral_headline: Text | None = Field(default=None, alias="ReferralHeadline")
    referral_body: Text | None = Field(default=None, alias="ReferralBody")
    referral_media_content_type: Text | None = Field(default=None, alias="ReferralMediaContentType")
    referral_media_url: Text | None = Field(default=None, alias="ReferralMediaUrl")
    referral_ctwa_clid: Text | None = Field(default=None, alias="ReferralCtwaClid")

    def media(self) -> list[tuple[str, str | None]]:
        """``(MediaUrl{n}, MediaContentType{n})`` for each file the message carries, in order."""
        extra = self.model_extra or {}
        found = []
        for index in range(min(int(self.num_media), MAX_MEDIA)):
            url = extra.get(f"MediaUrl{index}")
            kind = extra.get(f"MediaContentType{index}")
            if isinstance(url, str) and url:
                found.append((url, kind if isinstance(kind, str) and kind else None))
        return found


class StatusForm(Part):
    """The form Twilio posts to a message's ``StatusCallback`` URL when its status changes."""

    message_sid: Id = Field(alias="MessageSid")
    message_status: Id = Field(alias="MessageStatus")
    account_sid: Id | None = Field(default=None, alias="AccountSid")
    to: Text | None = Field(default=None, alias="To")
    from_: Text | None = Field(default=None, alias="From")
    error_code: Digits | None = Field(default=None, alias="ErrorCode")
    error_message: Text | None = Field(default=None, alias="ErrorMessage")
