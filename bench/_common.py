"""Helpers shared by the benchmarks: a private Redis, settings, percentiles."""

from __future__ import annotations

import statistics
from typing import Any

SECRETS = {
    "whatsapp_app_secret": "bench-app-secret", "whatsapp_verify_token": "bench-verify",
    "whatsapp_access_token": "EAAbench", "whatsapp_phone_number_id": "106540352242922",
    "telegram_bot_token": "7000000001:AAbench", "telegram_secret_token": "bench-tg",
    "hubspot_access_token": "pat-bench", "transcript_secret": "bench-transcript", "admin_token": "bench-admin",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def describe(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.2f} ms, p95 {percentile(values, 95) * 1000:.2f} ms, "
            f"p99 {percentile(values, 99) * 1000:.2f} ms")


def settings_for(redis_url: str, **overrides: Any) -> Any:
    from core.settings import Settings

    return Settings(**{**SECRETS, "redis_url": redis_url, **overrides})


class CrmStack:
    """A private Redis, a HubSpot emulator with the mapping's properties, and worker processes."""

    def __init__(self, *, latency: float = 0.0, rate_limit: tuple[int, float] | None = None, workers: int = 1) -> None:
        import os
        import subprocess
        import sys

        import redis

        from adapters.hubspot import HubSpotAdapter
        from connector.mapping import load_mapping, required_schema
        from connector.redis_server import EmbeddedRedis
        from connector.resources import shipped
        from connector.runtime import Runtime
        from emulators.hubspot import HubSpotEmulator
        from emulators.server import ServedApp

        self.redis_server = EmbeddedRedis().start()
        self.emulator = HubSpotEmulator(SECRETS["hubspot_access_token"])
        self.served = ServedApp(self.emulator.app).start()
        settings = settings_for(self.redis_server.url, hubspot_api_base=self.served.url)
        mapping = load_mapping(shipped("mappings", "hubspot.yaml"), crm="hubspot")
        HubSpotAdapter(settings, options=mapping.crm_options()).setup(required_schema(mapping), apply=True)
        self.emulator.latency, self.emulator.rate_limit = latency, rate_limit
        self.emulator.calls.clear()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.runtime = Runtime(settings, redis_client=self.redis)
        env = {**os.environ, **{k.upper(): v for k, v in SECRETS.items()}, "REDIS_URL": self.redis_server.url,
               "HUBSPOT_API_BASE": self.served.url, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
        self.workers = [subprocess.Popen([sys.executable, "-m", "connector.cli", "worker"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for _ in range(workers)]

    def enqueue_lead(self, lead: Any) -> None:
        """Hand a lead to the CRM side exactly as the conversation job does."""
        from connector import leads

        pipe = self.redis.pipeline(transaction=True)
        pipe.multi()
        leads.stage(self.runtime, pipe, lead)
        pipe.execute()

    def stop(self) -> None:
        import signal

        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=60)
        self.served.stop()
        self.redis_server.stop()
