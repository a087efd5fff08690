"""The process's shared parts: settings, configuration, Redis, queues, and what they load.

One :class:`Runtime` per process (web or worker). The Flask app keeps it in
``app.extensions["chat2crm"]``; rq jobs get it from :func:`current_runtime`. Configuration files
(flows, mapping, campaigns) are loaded once, validated, and cached here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.retry import Retry
from rq import Queue

from connector import queues as rq_queues
from connector.config import AppConfig, load_config
from connector.logs import register_secret
from core.errors import ConfigurationError, Problem
from core.keys import PREFIX, rkey
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from adapters.base import CRMAdapter
    from adapters.inbox import CRMInbox
    from connector.attribution.campaigns import CampaignRegistry
    from connector.bot.flows import Flow
    from connector.mapping import Mapping

T = TypeVar("T")

__all__ = ["PREFIX", "QUEUE_CRM", "QUEUE_INBOUND", "QUEUE_OUTBOUND", "Runtime", "current_runtime", "rkey",
           "set_current_runtime"]

QUEUE_INBOUND = rq_queues.INBOUND
QUEUE_OUTBOUND = rq_queues.OUTBOUND
QUEUE_CRM = rq_queues.CRM


class Runtime:
    """Settings, configuration and connections of one process.

    Args:
        settings: the environment's settings (read from the environment when omitted).
        config: the main configuration (read from ``settings.chat2crm_config`` when omitted).
        redis_client: a Redis connection (made from ``settings.redis_url`` when omitted).
        redis_timeout: seconds to wait on one Redis answer, or to connect, before that connection is given up
            (None: no limit). The web server sets :data:`WEB_REDIS_TIMEOUT_SECONDS`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: AppConfig | None = None,
        redis_client: redis.Redis | None = None,
        redis_timeout: float | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._config = config
        self._redis = redis_client
        self._redis_timeout = redis_timeout
        self._injected_redis = redis_client is not None
        self._lock = threading.RLock()  # loaders nest (campaigns need flows)
        self._cache: dict[str, Any] = {}
        for secret in (
            self.settings.whatsapp_app_secret, self.settings.whatsapp_access_token,
            self.settings.whatsapp_verify_token, self.settings.telegram_bot_token,
            self.settings.telegram_secret_token, self.settings.hubspot_access_token,
            self.settings.salesforce_client_secret, self.settings.salesforce_password,
            self.settings.salesforce_security_token, self.settings.pipedrive_api_token,
            self.settings.pipedrive_oauth_token, self.settings.transcript_secret, self.settings.admin_token,
            self.settings.hubspot_client_secret, self.settings.hubspot_developer_api_key,
            self.settings.token_encryption_key, self.settings.meta_app_secret, self.settings.meta_verify_token,
            self.settings.meta_page_access_token,
        ):
            if secret is not None:
                register_secret(secret.get_secret_value())
        if self.settings.telegram_bot_token is not None:
            register_secret(self.settings.telegram_bot_token.get_secret_value())

    # -- configuration -------------------------------------------------------------------------
    @property
    def config(self) -> AppConfig:
        """The main configuration (loaded on first use). Raises ConfigurationError."""
        if self._config is None:
            self._config = load_config(self.settings.chat2crm_config)
        return self._config

    def cached(self, name: str, factory: Callable[[], T]) -> T:
        """Load something once per process (flows, mapping, campaigns, adapter)."""
        with self._lock:
            if name not in self._cache:
                self._cache[name] = factory()
            return self._cache[name]

    def reset_cache(self) -> None:
        """Forget loaded configuration (tests that edit files use this)."""
        with self._lock:
            self._cache.clear()

    @property
    def flows(self) -> dict[str, Flow]:
        """The bot flows by name."""
        from connector.bot.flows import load_flows

        return self.cached("flows", lambda: load_flows(self.config.flows_path))

    @property
    def mapping(self) -> Mapping:
        """The CRM mapping."""
        from connector.mapping import load_mapping

        return self.cached("mapping", lambda: load_mapping(self.config.mapping_path, crm=self.config.crm,
                                                               language=self.config.crm_language))

    @property
    def campaigns(self) -> CampaignRegistry:
        """The campaign registry (empty when the main file names none)."""
        from connector.attribution.campaigns import CampaignRegistry, load_campaigns

        def load() -> CampaignRegistry:
            path = self.config.campaigns_path
            if path is None:
                return CampaignRegistry(campaigns=[])
            return load_campaigns(path, flows=set(self.flows))

        return self.cached("campaigns", load)

    @property
    def adapter(self) -> CRMAdapter:
        """The CRM adapter selected in the main file."""
        from adapters import load_adapter
        from adapters.base import Deployment

        def make() -> CRMAdapter:
            cls = load_adapter(self.config.crm)
            # the adapter is given its own credentials out of the settings, and nothing else of them
            made = cls.from_settings(self.settings, options=self.mapping.crm_options(), redis=self.redis)
            made.deployment = Deployment(public_base_url=self.settings.public_base_url,
                                         encryption_key=self.settings.token_encryption_key,
                                         link_secret=self.settings.transcript_secret or self.settings.admin_token)
            return made

        return self.cached("adapter", make)

    @property
    def inbox(self) -> CRMInbox | None:
        """The CRM's inbox for the conversation after the bot (the adapter's, made once), or None when
        ``inbox.enabled`` is off or the adapter has none: then the bot keeps the conversation."""
        if not self.config.inbox.enabled:
            return None
        return self.cached("inbox", self.adapter.inbox)

    def check(self) -> list[Problem]:
        """Load and validate every configuration file, resolve every cross-reference and render every template
        against sample leads (:mod:`connector.checks`); return every problem, once (empty when all is well).

        Done once per process, as the files are loaded once (:meth:`reset_cache` forgets it too)."""
        from connector.checks import check_configuration

        return list(self.cached("check", lambda: check_configuration(self)))

    # -- Redis and queues ----------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        """The Redis connection. Raises ConfigurationError when no REDIS_URL is set."""
        if self._redis is None:
            if not self.settings.redis_url:
                raise ConfigurationError(Problem(
                    "REDIS_URL is not set", file="environment", path="REDIS_URL",
                    hint="point it at your Redis, e.g. redis://localhost:6379/0; the demo starts its own",
                ))
            self._redis = connect_redis(self.settings.redis_url, timeout=self._redis_timeout)
        return self._redis

    @functools.cached_property
    def redis_probe(self) -> Redis:
        """A client that answers at once, for health checks: no retries, a 2 s connect time-out."""
        if self._injected_redis or not self.settings.redis_url:
            return self.redis  # a client given by the caller, or the ConfigurationError
        client = connect_redis(self.settings.redis_url, retries=0)
        client.connection_pool.connection_kwargs["socket_connect_timeout"] = 2
        return client

    @functools.cache  # noqa: B019 - one Runtime per process; queues are cheap handles
    def queue(self, name: str) -> Queue:
        """The rq queue ``name`` (``inbound``, ``outbound`` or ``crm``), prefixed by ``QUEUE_NAME``."""
        timeout = self.config.delivery.job_timeout_seconds if self._config else 120
        return rq_queues.make_queue(self.redis, f"{self.settings.queue_name}-{name}", default_timeout=timeout)

    def queues(self) -> list[Queue]:
        """Every queue a worker listens on, the conversation queue first."""
        return [self.queue(QUEUE_INBOUND), self.queue(QUEUE_OUTBOUND), self.queue(QUEUE_CRM)]


#: how a command is retried while Redis restarts or loads its data (it answers ``LOADING`` meanwhile):
#: waits of 0.05, 0.1, ... 1 s, then 1 s each, about 20 s in all, before the error reaches the caller
REDIS_RETRIES = 25


def connect_redis(url: str, retries: int = REDIS_RETRIES, *, timeout: float | None = None) -> redis.Redis:
    """A client for ``url`` that rides out a Redis restart: connection errors and ``LOADING`` answers are
    retried with backoff for about 20 s, so a job or a webhook in flight waits instead of failing (a webhook
    answered 500 is redelivered; a failed job would need the sweeper).

    Without ``timeout``, time-outs are retried too. With it, a connection that stays silent that long (or a
    connect that does not complete) fails at once with ``redis.TimeoutError`` and is dropped: the next call
    takes a fresh connection."""
    errors: tuple[type[Exception], ...] = (redis.ConnectionError, BusyLoadingError)
    if timeout is None:
        errors += (redis.TimeoutError,)
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries, supported_errors=errors)
    return redis.Redis.from_url(url, retry=retry, socket_timeout=timeout, socket_connect_timeout=timeout)


#: seconds the web server waits on one Redis answer: its webhooks' appends share one call at a time per
#: process (:mod:`connector.keeper`), so a connection gone silent (a network cut that sent no reset) would
#: otherwise hold every later webhook of the process for good; now they are answered 503 (and redelivered)
#: for these seconds at most, and the next append opens a fresh connection
WEB_REDIS_TIMEOUT_SECONDS = 5.0


_current: Runtime | None = None


def set_current_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one jobs in this process use (the worker and tests call this)."""
    global _current  # noqa: PLW0603 - one per process, by design
    _current = runtime


def current_runtime() -> Runtime:
    """The process's runtime; made from the environment on first use in a worker."""
    global _current  # noqa: PLW0603
    if _current is None:
        _current = Runtime()
    return _current
