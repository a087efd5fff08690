"""Where a Cloud-API-shaped WhatsApp client sends: Meta's Graph API, or a provider in front of it.

The WhatsApp client (:class:`connector.channels.whatsapp.WhatsAppClient`) builds the same message bodies
whoever carries them; only the addresses and the authentication differ. Meta's Graph API takes a bearer
token and a path per business number (``{base}/{version}/{phone_number_id}/messages``); a provider such as
360dialog takes its own key header, one key per number, and paths without the number
(``{base}/messages``, ``{base}/{media_id}``), and serves the patients' files from its own host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from core.settings import Settings


@dataclass(frozen=True)
class CloudEndpoint:
    """The addresses and credentials of one Cloud-API-shaped API."""

    #: the API's name, in errors and metrics
    api: str
    #: the setting that holds the credential (named when it is refused)
    token_setting: str
    #: the root of ``/messages`` and ``/{media_id}`` (with the Graph API's version for Meta)
    base: str
    #: headers every call carries (the credential)
    headers: dict[str, str] = field(default_factory=dict)
    #: messages are posted per business number (``{base}/{phone_number_id}/messages``), else to ``{base}/messages``
    per_number: bool = True
    #: the host of the media URLs the media answer gives that the provider serves itself (its base replaces
    #: that URL's scheme and host); None: the URL is downloaded as given
    proxied_media_host: str | None = None

    @classmethod
    def meta(cls, settings: Settings) -> CloudEndpoint:
        """Meta's Graph API, from the ``WHATSAPP_*`` settings."""
        token = settings.whatsapp_access_token.get_secret_value() if settings.whatsapp_access_token else ""
        return cls(api="whatsapp", token_setting="WHATSAPP_ACCESS_TOKEN",  # noqa: S106
                   base=f"{settings.whatsapp_api_base.rstrip('/')}/{settings.whatsapp_api_version}",
                   headers={"Authorization": f"Bearer {token}"})

    def messages_url(self, number: str) -> str:
        """Where a message from business number ``number`` (a phone number id) is posted."""
        return f"{self.base}/{number}/messages" if self.per_number else f"{self.base}/messages"

    def download_url(self, url: str) -> str:
        """Where a patient's file is downloaded from, given the URL the media answer named."""
        if self.proxied_media_host is None:
            return url
        parts, base = urlsplit(url), urlsplit(self.base)
        if parts.hostname != self.proxied_media_host:
            return url
        return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))
