"""Messaging channels, in and out: each one a plug-in (:mod:`connector.channels.plugin`).

- Channels are found through the ``chat2crm.channels`` entry points and enabled by ``CHAT2CRM_CHANNELS``:
  the built-in ones are WhatsApp's Cloud API (:mod:`connector.channels.whatsapp_plugin`), Telegram's Bot API
  (:mod:`connector.channels.telegram_plugin`) and WhatsApp through 360dialog
  (:mod:`connector.channels.dialog360`). docs/extending.md tells how to add one.

- :mod:`connector.channels.whatsapp` and :mod:`connector.channels.telegram` parse webhooks into
  :class:`~core.models.InboundMessage` and send :class:`~core.models.Reply` objects. They read
  bodies through typed models written from the vendors' documentation
  (:mod:`connector.channels.whatsapp_payload`, :mod:`connector.channels.telegram_update`, sharing
  :mod:`connector.channels.parts`): a part that does not fit is dropped alone, logged without its contents.
- :func:`client_for` gives the worker the right outbound client, made once per process. It asks its
  caller only for settings, Redis and a per-process cache (:class:`ClientHost`, which the relay's runtime
  is): the channels sit below the relay and import nothing of it. Every send goes where the patient can be
  reached now (:mod:`connector.channels.identities`: a WhatsApp user's current number; never a Telegram
  chat that blocked the bot).
- Redeliveries are dropped by :func:`connector.inbox.enqueue_inbound`, which remembers message
  and update ids in the same atomic step that queues them.
- :data:`STATUS` keeps each sent message's latest delivery status (:func:`connector.agent.on_status` writes it,
  :func:`delivery_status` reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import redis

from connector.channels.base import ChannelClient, StatusUpdate
from connector.channels.identities import ReachableClient
from connector.channels.plugin import context, sender_for
from core.keys import family
from core.settings import Settings

T = TypeVar("T")

#: the latest delivery status of a message the relay sent, by the channel's message id
STATUS = family("status", "{channel}:{message_id}", ttl="retention.dedup_days", holds_pii=False, owner=__name__)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClientHost(Protocol):
    """What :func:`client_for` needs from its caller (the relay's runtime has both)."""

    @property
    def settings(self) -> Settings:
        """The settings the clients read their credentials and endpoints from."""

    @property
    def redis(self) -> redis.Redis:
        """Where the identity book is (:mod:`connector.channels.identities`)."""

    def cached(self, name: str, factory: Callable[[], T]) -> T:
        """``factory()``, made once per process under ``name``."""


def client_for(runtime: ClientHost, channel: str) -> ReachableClient:
    """The outbound client of ``channel`` (made once per process, in ``runtime``'s cache) from the enabled
    plug-in that carries it (:func:`connector.channels.plugin.sender_for`), sending where the identity book
    says the patient can be reached.

    Raises:
        ValueError: no enabled plug-in carries ``channel``.
    """
    plugin = sender_for(runtime.settings, channel)
    return runtime.cached(f"client:{channel}", lambda: ReachableClient(
        plugin.client(context(plugin, runtime.settings)), runtime.redis))


def delivery_status(client: redis.Redis, channel: str, message_id: str) -> str | None:
    """The latest known delivery status of a message we sent."""
    value = client.get(STATUS.key(channel, message_id))
    return _text(value) if value else None


__all__ = ["ChannelClient", "ClientHost", "StatusUpdate", "client_for", "delivery_status"]
