"""Where a campaign link sends a visitor: one chat link per channel the deployment serves, each carrying the
click code the way that channel gives it back to the relay.

| channel | link | how the code comes back |
| --- | --- | --- |
| ``whatsapp`` (Cloud API, 360dialog, Twilio) | ``https://wa.me/<number>?text=<prefilled text>`` | in the first message's text |
| ``telegram`` | ``https://t.me/<bot>?start=<code>`` | the ``/start`` payload |
| ``messenger`` | ``https://m.me/<page>?ref=<code>`` | the referral's ``ref`` (Get Started, or ``messaging_referrals``) |
| ``instagram`` | ``https://ig.me/m/<username>?ref=<code>`` | the ``ref`` (an icebreaker's postback, ``messaging_referral``) |
| ``line`` | ``https://line.me/R/oaMessage/<basic id>/?/start%20<code>`` | the typed ``/start <code>`` text |

The parsers turn a ``ref`` and a ``/start <code>`` text into the message's ``start_payload``, and the
attribution reads it as it reads Telegram's: first and last touch and the language cascade work the same on
every channel. A channel is offered only when it is enabled (``CHAT2CRM_CHANNELS``) and the one setting its
link needs is there: the WhatsApp number and the Telegram bot in chat2crm.yaml, the Messenger Page, the
Instagram username and the LINE basic id in the plug-ins' settings (``META_MESSAGING_PAGE_USERNAME``,
``META_MESSAGING_INSTAGRAM_USERNAME``, ``LINE_BASIC_ID``; read from the plug-in's settings when it declares
them, else from the environment). :func:`link_problems` tells ``chat2crm check`` which one is missing for a
campaign that names the channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import quote

from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.channels import plugin as plugins
from core.errors import ConfigurationError, Problem
from core.settings import ENV_FILE
from core.settings import Settings as CoreSettings

if TYPE_CHECKING:
    from connector.attribution.campaigns import CampaignRegistry
    from connector.config import AppConfig

LinkChannel = Literal["whatsapp", "telegram", "messenger", "instagram", "line"]
#: every channel a campaign link can open, in the order the website script offers them
LINK_CHANNELS: tuple[str, ...] = get_args(LinkChannel)
#: what a person reads on a button to each channel
LABELS = {"whatsapp": "WhatsApp", "telegram": "Telegram", "messenger": "Messenger", "instagram": "Instagram",
          "line": "LINE"}
#: the built-in plug-ins and the channel their link opens (a WhatsApp provider's chats are WhatsApp's)
PLUGIN_LINKS = {"whatsapp": "whatsapp", "dialog360": "whatsapp", "twilio": "whatsapp", "telegram": "telegram",
                "messenger": "messenger", "instagram": "instagram", "line": "line"}

#: what each link's address may look like (it is put in a URL: nothing else is accepted)
_SHAPES = {
    "whatsapp": re.compile(r"\d{6,15}"),
    "telegram": re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}"),
    "messenger": re.compile(r"[A-Za-z0-9.]{1,50}"),  # a Page's username, or its numeric id
    "instagram": re.compile(r"[A-Za-z0-9._]{1,30}"),
    "line": re.compile(r"@?[A-Za-z0-9._-]{1,30}"),
}


class LinkSettings(BaseSettings):
    """The link settings of the plug-ins that do not (yet) declare them, read from the environment and ``.env``."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_file=ENV_FILE,
                                      env_file_encoding="utf-8")

    meta_messaging_page_username: str | None = None
    meta_messaging_instagram_username: str | None = None
    line_basic_id: str | None = None


@dataclass(frozen=True)
class Destination:
    """One channel a link can open: the plug-in serving it, the address in its link, the setting it comes from."""

    channel: str
    plugin: str
    #: the number, bot, Page, username or basic id (None: the setting is missing or malformed)
    address: str | None
    #: where a person sets the address
    setting: str
    #: why the address cannot be used (None when it can)
    problem: str | None = None


def _digits(value: str | None) -> str:
    return re.sub(r"\D", "", value or "")


def _own(settings: Any, name: str) -> str | None:
    """A setting the plug-in's own settings declare (None when they do not)."""
    value = getattr(settings, name, None)
    return value if isinstance(value, str) and value.strip() else None


def _addresses(config: AppConfig, links: LinkSettings) -> dict[str, Callable[[Any], tuple[str | None, str]]]:
    """For each plug-in, how its link address is read from its settings: (address, the setting named)."""
    whatsapp = config.channels.whatsapp.phone_number

    def twilio(own: Any) -> tuple[str | None, str]:
        sender = _own(own, "twilio_from") or ""
        if whatsapp or not sender.startswith("whatsapp:"):
            return whatsapp or None, "channels.whatsapp.phone_number"
        return _digits(sender), "TWILIO_FROM"

    return {
        "whatsapp": lambda own: (whatsapp or None, "channels.whatsapp.phone_number"),
        "dialog360": lambda own: (whatsapp or None, "channels.whatsapp.phone_number"),
        "twilio": twilio,
        "telegram": lambda own: (config.channels.telegram.bot_username or None, "channels.telegram.bot_username"),
        "messenger": lambda own: (_own(own, "page_username") or links.meta_messaging_page_username
                                  or _own(own, "page_id"), "META_MESSAGING_PAGE_USERNAME"),
        "instagram": lambda own: (_own(own, "instagram_username") or links.meta_messaging_instagram_username,
                                  "META_MESSAGING_INSTAGRAM_USERNAME"),
        "line": lambda own: (_own(own, "line_basic_id") or links.line_basic_id, "LINE_BASIC_ID"),
    }


def destinations(core: CoreSettings, config: AppConfig) -> dict[str, Destination]:
    """The channels this deployment's links can open, by channel: the first enabled plug-in serving each.

    A channel whose setting is missing or malformed is listed with its ``problem`` (it is not offered).
    """
    links = LinkSettings()
    readers = _addresses(config, links)
    found: dict[str, Destination] = {}
    for name in plugins.enabled_names(core):
        channel = PLUGIN_LINKS.get(name)
        if channel is None or channel in found or name not in readers:
            continue  # another package's channel: the relay does not know its links
        if (channel == "whatsapp" and not config.channels.whatsapp.enabled) or (
                channel == "telegram" and not config.channels.telegram.enabled):
            continue
        try:
            own = plugins.load(name).read_settings(core)
        except ConfigurationError:
            own = None  # its settings are invalid: `chat2crm check` names them; its own address may still be known
        address, setting = readers[name](own)
        address = address.strip() if address else None
        problem = None
        if not address:
            problem = f"is not set: {LABELS[channel]} links cannot be made"
        elif not _SHAPES[channel].fullmatch(address):
            problem, address = f"is not a {LABELS[channel]} link address", None
        found[channel] = Destination(channel, name, address, setting, problem)
    return found


def offered(core: CoreSettings, config: AppConfig) -> list[Destination]:
    """The channels a visitor may be sent to, in the website's order."""
    found = destinations(core, config)
    return [found[c] for c in LINK_CHANNELS if c in found and found[c].address]


def chat_link(destination: Destination, code: str, text: str) -> str:
    """The link that opens ``destination``'s chat carrying ``code`` (``text``: WhatsApp's prefilled text)."""
    address = destination.address or ""
    if destination.channel == "telegram":
        return f"https://t.me/{address}?start={code}"
    if destination.channel == "messenger":
        return f"https://m.me/{quote(address, safe='')}?ref={code}"
    if destination.channel == "instagram":
        return f"https://ig.me/m/{quote(address, safe='')}?ref={code}"
    if destination.channel == "line":
        # LINE has no start parameter: the chat opens with "/start <code>" typed, which the parser reads back
        return f"https://line.me/R/oaMessage/{quote(address, safe='')}/?{quote('/start ' + code, safe='/')}"
    return f"https://wa.me/{address}?text={quote(text)}"


def link_problems(core: CoreSettings, config: AppConfig, registry: CampaignRegistry, path: Path) -> list[Problem]:
    """For ``chat2crm check``: each campaign whose channel its links cannot open, naming the missing setting."""
    found = destinations(core, config)
    problems: list[Problem] = []
    for index, campaign in enumerate(registry.campaigns):
        where = f"campaigns.{index}.channel"
        destination = found.get(campaign.channel)
        if destination is None:
            problems.append(Problem(
                f"campaign {campaign.slug!r} opens {LABELS[campaign.channel]}, which this deployment does not serve",
                file=str(path), path=where,
                hint="enable a plug-in for it in CHAT2CRM_CHANNELS; until then its link opens "
                     + (", ".join(LABELS[d.channel] for d in offered(core, config)) or "nothing")))
        elif destination.problem is not None:
            problems.append(Problem(f"{destination.problem} (campaign {campaign.slug!r})",
                                    file="environment" if destination.setting.isupper() else "chat2crm.yaml",
                                    path=destination.setting, hint=f"needed by {destination.plugin}'s links"))
    return problems
