"""Channels as plug-ins: what a messaging channel owns, and how the relay finds the installed ones.

A channel is a :class:`ChannelPlugin` registered under the entry-point group ``chat2crm.channels``
(``[project.entry-points."chat2crm.channels"] whatsapp = "connector.channels.whatsapp_plugin:WhatsAppPlugin"``).
The relay never names a channel: the web app serves ``POST /webhooks/<name>`` (and the extra routes a
plug-in declares) for every enabled plug-in, checks the request with the plug-in's verifier and keeps
the raw body (:mod:`connector.webhooks`); a job process decodes it, asks the plug-in to parse it into a
:class:`~connector.channels.base.ParsedWebhook`, and queues what it holds (:mod:`connector.received`);
the worker sends through the plug-in's :class:`~connector.channels.base.ChannelClient`
(:func:`connector.channels.client_for`).

A plug-in owns:

- its **name** (the route, the setting prefix, the entry point) and the **channel** its messages carry
  (the network the patient is on: a WhatsApp provider's messages are ``whatsapp`` messages, so every
  WhatsApp rule of the relay applies to them);
- its **settings**: a pydantic model read from the environment (:class:`ChannelSettings`), validated by
  ``chat2crm check`` only when the channel is enabled (``CHAT2CRM_CHANNELS``);
- its **webhook**: the verifier (signature or secret check) and, if the vendor has one, a handshake route;
  the body format (JSON, read strictly, or a form);
- its **parser** (typed models of the vendor's payloads) and its **client**;
- its **capabilities** (buttons, list rows, templates, read receipts: what degrades to numbered text);
- its **error table**: vendor error code → retry, give up, patient unreachable, re-authenticate,
  outside the messaging window, each with a reason a person can read (:class:`ErrorTable`).

Plug-ins import only ``core`` and ``connector.channels`` (the layer rule): they know nothing of the relay.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.channels.base import ChannelClient, ParsedWebhook, render_numbered
from core.errors import AuthError, ConfigurationError, FatalError, Problem, RetryableError, SkippableError
from core.models import Reply
from core.settings import ENV_FILE
from core.settings import Settings as CoreSettings

log = logging.getLogger("chat2crm.channels")

#: the entry-point group channel plug-ins are registered under
GROUP = "chat2crm.channels"


class ChannelSettings(BaseSettings):
    """Base of a plug-in's settings: read from the environment (and ``.env``), names upper-cased.

    A plug-in's fields carry its prefix (``dialog360_api_key`` is ``DIALOG360_API_KEY``), so one ``.env``
    holds every channel's settings without clashes; secrets are :class:`~pydantic.SecretStr`.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_file=ENV_FILE,
                                      env_file_encoding="utf-8")


@dataclass(frozen=True)
class Capabilities:
    """What the channel can show; anything it cannot degrades (see :func:`options_style`)."""

    #: reply buttons in one message (0: none)
    buttons: int = 0
    #: longest button title
    button_title: int = 20
    #: rows of a list message (0: no lists)
    list_rows: int = 0
    #: longest row title
    row_title: int = 24
    #: pre-approved templates, the only thing sent outside a messaging window
    templates: bool = False
    #: read receipts the patient sees
    read_receipts: bool = False
    #: files an agent attaches are sent as media
    media: bool = True
    #: longest text of one message
    max_text: int = 4096


def options_style(reply: Reply, caps: Capabilities) -> Literal["text", "buttons", "list", "numbered"]:
    """How ``reply``'s options go out on a channel with ``caps``: buttons when they fit, else a list when it
    fits, else numbered text the patient answers with a number (every channel can show that)."""
    if not reply.options:
        return "text"
    titles = [option.title for option in reply.options]
    if caps.buttons and len(titles) <= caps.buttons and all(len(t) <= caps.button_title for t in titles):
        return "buttons"
    if caps.list_rows and len(titles) <= caps.list_rows and all(len(t) <= caps.row_title for t in titles):
        return "list"
    return "numbered"


def numbered(reply: Reply) -> str:
    """``reply`` as numbered text (the fallback of options a channel cannot show)."""
    return render_numbered(reply.text, [option.title for option in reply.options])


class Outcome(StrEnum):
    """What a vendor error means for the message."""

    RETRY = "retry"              # throttled or the vendor's trouble: try again later
    GIVE_UP = "give_up"          # this message will never be taken: set aside with the reason
    UNREACHABLE = "unreachable"  # the patient cannot be reached on this channel (blocked, not a user...)
    AUTH = "auth"                # the credentials are refused: a person must fix a setting
    WINDOW = "window"            # outside the messaging window: only a template may go out


class UnreachableError(FatalError):
    """The patient cannot be reached on this channel (blocked the business, left, not on the network)."""


@dataclass(frozen=True)
class ErrorRule:
    """One row of a channel's error table."""

    outcome: Outcome
    #: what a person reads in ``chat2crm failed list`` and the logs (no patient data)
    reason: str


@dataclass(frozen=True)
class ErrorTable:
    """Vendor error code → :class:`ErrorRule`; codes not listed fall back on the HTTP status."""

    api: str
    #: the setting named when credentials are refused
    token_setting: str
    rules: Mapping[str, ErrorRule] = field(default_factory=dict)

    def rule(self, code: object, status: int) -> ErrorRule:
        """The rule of ``code`` (any type: compared as text), else the one the HTTP ``status`` implies."""
        found = self.rules.get(str(code)) if code is not None else None
        if found is not None:
            return found
        if status == 429:
            return ErrorRule(Outcome.RETRY, "throttled")
        if status >= 500:
            return ErrorRule(Outcome.RETRY, f"the vendor's server failed ({status})")
        if status == 401:
            return ErrorRule(Outcome.AUTH, "the credentials were refused")
        return ErrorRule(Outcome.GIVE_UP, f"the request was refused ({status})")

    def error(self, code: object, status: int, message: str = "", *, retry_after: float | None = None) -> Exception:
        """The error-tree exception for a vendor error: what the job layer acts on."""
        rule = self.rule(code, status)
        details = {"status": status, "code": code, "outcome": rule.outcome.value}
        text = f"{self.api}: {rule.reason} ({code}{': ' + message if message else ''})"
        if rule.outcome is Outcome.RETRY:
            return RetryableError(text, retry_after=retry_after, details=details)
        if rule.outcome is Outcome.AUTH:
            return AuthError(f"{text}; check {self.token_setting}", setting=self.token_setting, details=details)
        if rule.outcome is Outcome.UNREACHABLE:
            return UnreachableError(text, details=details)
        if rule.outcome is Outcome.WINDOW:
            return SkippableError(text, details=details)
        return FatalError(text, details=details)


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook request as a plug-in sees it: no web framework, only what verifying and parsing need."""

    method: str
    #: the path served (``/webhooks/whatsapp``)
    path: str
    #: header names lower-cased
    headers: Mapping[str, str]
    #: the query's parameters
    args: Mapping[str, str]
    #: the exact bytes received (signatures are computed over them)
    raw: bytes
    #: the URL the vendor called, as the public sees it (``PUBLIC_BASE_URL`` + path + query): some vendors sign it
    url: str

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ChannelContext:
    """What a plug-in is given to verify, parse and send: its settings and the deployment's choices."""

    #: the plug-in's own settings (its :attr:`ChannelPlugin.Settings`)
    settings: ChannelSettings
    #: the process's settings (the built-in channels keep theirs there)
    core: CoreSettings
    #: the channel's section of ``channels:`` in chat2crm.yaml, where it has one ({} otherwise)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: ignore messages whose sender is a bot (``channels.ignore_bots``)
    ignore_bots: bool = True


#: a route a plug-in adds: (method, path, handler); the handler answers (body, status, content type)
Handler = Callable[[WebhookRequest, ChannelContext], tuple[str, int, str]]


@dataclass(frozen=True)
class Route:
    """An extra route of a plug-in (a subscription handshake, a second webhook path)."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler


class ChannelPlugin(ABC):
    """A messaging channel. Subclass, fill the class attributes, implement :meth:`parse` and :meth:`client`,
    and register the class under the ``chat2crm.channels`` entry points (docs/extending.md)."""

    #: the plug-in's name: ``/webhooks/<name>``, ``CHAT2CRM_CHANNELS``, the entry point
    name: ClassVar[str]
    #: the messaging network its messages carry (``InboundMessage.channel``); the name when unset
    channel: ClassVar[str] = ""
    #: its settings, read from the environment
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    #: how its webhook bodies are encoded: JSON (read strictly: no NaN or Infinity, bounded nesting) or a form
    body_format: ClassVar[Literal["json", "form"]] = "json"
    #: the header that proves a webhook came from the vendor, and the setting that holds its secret
    proof_header: ClassVar[str] = ""
    secret_setting: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    errors: ClassVar[ErrorTable]

    @property
    def network(self) -> str:
        """The channel its messages carry."""
        return self.channel or self.name

    def read_settings(self, core: CoreSettings) -> ChannelSettings:
        """The plug-in's settings (from the environment by default; the built-ins read the process's).

        Raises:
            ConfigurationError: one problem per bad variable, naming it.
        """
        try:
            return self.Settings()
        except ValidationError as exc:
            raise ConfigurationError([Problem(err["msg"], file="environment",
                                              path=".".join(str(p) for p in err["loc"]).upper())
                                      for err in exc.errors()]) from None

    def problems(self, ctx: ChannelContext) -> list[Problem]:
        """What stops the channel working, for ``chat2crm check`` (beyond its settings' own validation)."""
        return []

    @abstractmethod
    def verifier(self, ctx: ChannelContext) -> Callable[[WebhookRequest], None] | None:
        """The check of a webhook's proof (raises :class:`~core.errors.WebhookRejectedError`: 401 when it is
        missing, 403 when wrong), or None when the secret is not set (webhooks are then refused, except with
        ``CHAT2CRM_INSECURE_DEMO``)."""

    def envelope(self, body: Any) -> Any:
        """``body`` when it is the vendor's webhook at all (raise ``WebhookRejectedError(400)`` otherwise)."""
        return body

    @abstractmethod
    def parse(self, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """The messages, statuses and opt-outs of a decoded body; a part that does not fit is dropped alone."""

    def parse_request(self, request: WebhookRequest, body: Any, ctx: ChannelContext) -> ParsedWebhook:
        """What the relay calls for a webhook: :meth:`parse` of the decoded ``body``. A plug-in whose vendor
        carries something in the URL it calls (Twilio's status callback: the relay's tracking in the query)
        overrides it to read ``request`` too. Called in a job process, from the body the webhook kept:
        ``request`` holds the query's parameters and the raw body only (no headers, no URL)."""
        return self.parse(body, ctx)

    @abstractmethod
    def client(self, ctx: ChannelContext) -> ChannelClient:
        """The outbound client (made once per process by :func:`connector.channels.client_for`)."""

    def routes(self) -> list[Route]:
        """Extra routes beside ``POST /webhooks/<name>`` (a ``GET`` handshake...)."""
        return []


def available() -> list[str]:
    """The names of every channel plug-in installed (ours and other packages')."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@cache
def load(name: str) -> ChannelPlugin:
    """The plug-in registered as ``name`` (one instance per process).

    Raises:
        ConfigurationError: the name is unknown, cannot be imported, or is not a complete plug-in.
    """
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise ConfigurationError(Problem(f"unknown channel {name!r}", path="CHAT2CRM_CHANNELS",
                                         hint="installed channels: " + ", ".join(available())))
    try:
        cls = matches[0].load()
    except ImportError as exc:
        raise ConfigurationError(Problem(f"the {name} channel cannot be loaded: {exc}", path="CHAT2CRM_CHANNELS",
                                         hint=f"install the package that provides {exc.name or 'it'}")) from exc
    if not (isinstance(cls, type) and issubclass(cls, ChannelPlugin)):
        raise ConfigurationError(Problem(f"entry point {matches[0].value!r} is not a ChannelPlugin",
                                         path="CHAT2CRM_CHANNELS"))
    plugin = cls()
    if plugin.name != name or not isinstance(getattr(cls, "errors", None), ErrorTable):
        raise ConfigurationError(Problem(f"the {name} channel must be named {name!r} and declare its errors table",
                                         path="CHAT2CRM_CHANNELS"))
    return plugin


def enabled_names(core: CoreSettings) -> list[str]:
    """The channels this deployment serves (``CHAT2CRM_CHANNELS``), in order, each once."""
    names = [part.strip() for part in core.chat2crm_channels.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def enabled(core: CoreSettings) -> list[ChannelPlugin]:
    """The enabled plug-ins, loaded.

    Raises:
        ConfigurationError: a name is unknown or its plug-in cannot be loaded.
    """
    return [load(name) for name in enabled_names(core)]


def sender_for(core: CoreSettings, channel: str) -> ChannelPlugin:
    """The enabled plug-in that sends ``channel``'s messages (the first listed, when several carry it).

    Raises:
        ValueError: no enabled plug-in carries ``channel``.
    """
    for plugin in enabled(core):
        if plugin.network == channel:
            return plugin
    raise ValueError(f"unknown channel {channel!r}")


def context(plugin: ChannelPlugin, core: CoreSettings, options: Mapping[str, Any] | None = None, *,
            ignore_bots: bool = True) -> ChannelContext:
    """The plug-in's context: its settings read, the deployment's choices given."""
    return ChannelContext(settings=plugin.read_settings(core), core=core, options=dict(options or {}),
                          ignore_bots=ignore_bots)


__all__ = ["GROUP", "Capabilities", "ChannelContext", "ChannelPlugin", "ChannelSettings", "ErrorRule",
           "ErrorTable", "Outcome", "Route", "UnreachableError", "WebhookRequest", "available", "context",
           "enabled", "enabled_names", "load", "numbered", "options_style", "sender_for"]
