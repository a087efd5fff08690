"""A person who writes to a Facebook Page (Messenger) or an Instagram professional account, as Meta reports it.

:class:`MetaPatient` builds each messaging event exactly as Meta's webhook reference shows it (``message`` with
text, a quick reply's payload, attachments or a location, ``reply_to``; ``postback`` with its ``referral`` for
the Get Started button of a thread opened from an m.me link or an ad; ``referral`` for a person who comes back
through one; ``reaction``; ``read`` and ``delivery``), and has the emulator sign and post it. Every message the
person sends opens the messaging window again (:meth:`MetaMessagingEmulator.wrote`).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulators.meta_messaging import MetaMessagingEmulator


def mid() -> str:
    """A message id in Meta's shape (``m_`` and URL-safe characters)."""
    return "m_" + secrets.token_urlsafe(30)


def now_ms() -> int:
    """Now, in milliseconds since the epoch (the events' ``timestamp``)."""
    return int(time.time() * 1000)


class MetaPatient:
    """One person, by their Page-scoped (``platform="messenger"``) or Instagram-scoped id.

    Every method posts one signed webhook to the relay and returns the relay's HTTP status.
    """

    def __init__(self, emulator: MetaMessagingEmulator, user_id: str, platform: str = "messenger") -> None:
        if platform not in ("messenger", "instagram"):
            raise ValueError("platform must be messenger or instagram")
        self.emulator = emulator
        self.user_id = user_id
        self.platform = platform
        emulator.users[user_id] = platform

    @property
    def account(self) -> str:
        """The Page or Instagram account the person writes to."""
        return self.emulator.page_id if self.platform == "messenger" else self.emulator.instagram_id

    def event(self, **content: Any) -> dict[str, Any]:
        """One ``messaging`` event from this person to the account."""
        return {"sender": {"id": self.user_id}, "recipient": {"id": self.account}, "timestamp": now_ms(), **content}

    def post(self, *events: dict[str, Any], wrote: bool = True) -> int:
        """Post ``events`` in one webhook; ``wrote``: they count as the person writing (the window opens)."""
        if wrote:
            self.emulator.wrote(self.user_id)
        return self.emulator.post_webhook(self.emulator.envelope(self.platform, list(events)))[0]

    # -- messages ------------------------------------------------------------------------------
    def send_text(self, text: str, *, reply_to: str | None = None, ad: dict[str, Any] | None = None) -> int:
        """A text message; ``ad``: the referral of the ad it was sent from (Click-to-Messenger)."""
        message: dict[str, Any] = {"mid": mid(), "text": text}
        if reply_to:
            message["reply_to"] = {"mid": reply_to}
        if ad:
            message["referral"] = self.ad_referral(**ad)
        return self.post(self.event(message=message))

    def tap_quick_reply(self, payload: str, title: str) -> int:
        """A quick reply tapped: its title as the text, its payload beside it."""
        return self.post(self.event(message={"mid": mid(), "text": title, "quick_reply": {"payload": payload}}))

    def send_file(self, kind: str, url: str, *, sticker_id: int | None = None) -> int:
        """An attachment (``image``, ``video``, ``audio``, ``file``) at ``url``."""
        payload: dict[str, Any] = {"url": url}
        if sticker_id is not None:
            payload["sticker_id"] = sticker_id
        return self.post(self.event(message={"mid": mid(), "attachments": [{"type": kind, "payload": payload}]}))

    def share_location(self, lat: float, long: float, title: str = "Pinned Location") -> int:
        """A shared location (Messenger's ``location`` attachment)."""
        return self.post(self.event(message={"mid": mid(), "attachments": [{"type": "location", "payload": {
            "coordinates": {"lat": lat, "long": long}, "title": title}}]}))

    def send_echo(self, text: str) -> int:
        """The Page's own message, echoed back (``is_echo``): from the account to the person."""
        event = {"sender": {"id": self.account}, "recipient": {"id": self.user_id}, "timestamp": now_ms(),
                 "message": {"mid": mid(), "text": text, "is_echo": True, "app_id": 1517776481860111}}
        return self.post(event, wrote=False)

    # -- postbacks and referrals ---------------------------------------------------------------
    def press_postback(self, payload: str, title: str) -> int:
        """A postback button (or a persistent menu item) tapped."""
        return self.post(self.event(postback={"mid": mid(), "title": title, "payload": payload}))

    def get_started(self, *, ref: str | None = None, ad: dict[str, Any] | None = None) -> int:
        """A new thread: the Get Started button, after an m.me link with ``ref`` or an ad (``ad``)."""
        postback: dict[str, Any] = {"mid": mid(), "title": "Get Started", "payload": "GET_STARTED"}
        if ad is not None:
            postback["referral"] = self.ad_referral(**ad)
        elif ref is not None:
            postback["referral"] = {"ref": ref, "source": "SHORTLINK", "type": "OPEN_THREAD"}
        return self.post(self.event(postback=postback))

    def follow_link(self, ref: str) -> int:
        """A person with a thread already opens an m.me link with ``ref`` (``messaging_referrals``)."""
        return self.post(self.event(referral={"ref": ref, "source": "SHORTLINK", "type": "OPEN_THREAD"}))

    def click_ad(self, ad_id: str, title: str = "Ad", **more: Any) -> int:
        """A person with a thread already comes back through a Click-to-Messenger ad."""
        return self.post(self.event(referral=self.ad_referral(ad_id=ad_id, title=title, **more)))

    @staticmethod
    def ad_referral(ad_id: str, title: str = "Ad", ref: str | None = None, photo_url: str | None = None,
                    video_url: str | None = None) -> dict[str, Any]:
        """An ad's ``referral`` object."""
        context: dict[str, Any] = {"ad_title": title, "post_id": f"{ad_id}_post"}
        if photo_url:
            context["photo_url"] = photo_url
        if video_url:
            context["video_url"] = video_url
        referral: dict[str, Any] = {"ad_id": ad_id, "source": "ADS", "type": "OPEN_THREAD",
                                    "ads_context_data": context}
        if ref:
            referral["ref"] = ref
        return referral

    # -- reactions, reads ----------------------------------------------------------------------
    def react(self, message_id: str, emoji: str = "❤", *, action: str = "react") -> int:
        """A reaction to one of the account's messages (``unreact`` takes it back)."""
        reaction = {"mid": message_id, "action": action, "reaction": "love", "emoji": emoji}
        return self.post(self.event(reaction=reaction), wrote=False)

    def read_all(self) -> int:
        """The person reads everything sent to them: Messenger's watermark, Instagram's last message id."""
        sent = self.emulator.messages_to(self.user_id)
        if self.platform == "messenger":
            return self.post(self.event(read={"watermark": now_ms()}), wrote=False)
        if not sent:
            return 0
        return self.post(self.event(read={"mid": sent[-1].id}), wrote=False)
