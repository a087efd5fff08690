"""Hostile visitors of the public click links (``/c/<slug>``) over real HTTP, on real Redis.

Per client address a limit a minute (429 past it, nothing stored), the client address read from
``X-Forwarded-For`` only through trusted proxies, the stored click records bounded in number, and a
``landing`` value that is only ever recorded, and only as a plain http(s) URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import redis
import requests

from connector.attribution.clicks import CLICK, STORED, load_click, store_click
from connector.attribution.links import RATE
from connector.config import load_config
from connector.runtime import Runtime
from core import metrics
from core.keys import family_of
from tests.conftest import make_settings
from tests.paths import SHIPPED_CONFIG

PER_MINUTE = 4


def _serve(redis_url: str, **settings: str) -> Iterator[tuple[str, Runtime]]:
    from connector.app import create_app
    from emulators.server import ServedApp

    config = load_config(SHIPPED_CONFIG)
    config.limits.clicks_per_minute = PER_MINUTE
    client = redis.Redis.from_url(redis_url)
    runtime = Runtime(make_settings(redis_url, **settings), config=config, redis_client=client)
    server = ServedApp(create_app({"TESTING": True}, runtime=runtime)).start()
    try:
        yield server.url, runtime
    finally:
        server.stop()
        client.close()


@pytest.fixture(scope="module")
def behind_a_local_proxy(redis_url: str) -> Iterator[tuple[str, Runtime]]:
    """The relay as shipped: the proxy on this host (127.0.0.1, where the test connects from) is trusted."""
    yield from _serve(redis_url)


@pytest.fixture(scope="module")
def exposed(redis_url: str) -> Iterator[tuple[str, Runtime]]:
    """The relay trusting only a proxy network the test is not in: ``X-Forwarded-For`` is not believed."""
    yield from _serve(redis_url, forwarded_allow_ips="10.0.0.0/8")


def visit(url: str, slug: str = "hair-tr", forwarded: str | None = None, **params: str) -> requests.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return requests.get(f"{url}/c/{slug}", params=params, headers=headers, allow_redirects=False, timeout=5)


def code_of(response: requests.Response) -> str:
    text = unquote(parse_qs(urlparse(response.headers["Location"]).query)["text"][0])
    return text.split("ref: ")[1].rstrip(")")


def clicks_stored(runtime: Runtime) -> int:
    return sum(1 for _ in runtime.redis.scan_iter(CLICK.pattern))


def test_each_client_address_gets_its_limit_a_minute(behind_a_local_proxy: tuple[str, Runtime],
                                                      redis_client: redis.Redis,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    url, runtime = behind_a_local_proxy
    answers = [visit(url, forwarded="203.0.113.7").status_code for _ in range(PER_MINUTE + 2)]
    assert answers == [302] * PER_MINUTE + [429, 429]
    limited = visit(url, forwarded="203.0.113.7")
    assert limited.headers["Retry-After"] == "60" and "try again in a minute" in limited.text
    assert clicks_stored(runtime) == PER_MINUTE  # nothing stored past the limit
    # unknown campaigns count too: scanning slugs costs the same
    assert visit(url, slug="no-such-campaign", forwarded="203.0.113.7").status_code == 429
    # another address has its own budget; what a client wrote left of its proxy's entry changes nothing
    assert visit(url, forwarded="198.51.100.1").status_code == 302
    assert visit(url, forwarded="203.0.113.99, 203.0.113.7").status_code == 429
    assert visit(url, forwarded="203.0.113.7, 198.51.100.1").status_code == 302
    assert metrics.read(runtime.redis, "flood_limited") == {("click",): 5.0}
    # the counters are registered keys with a TTL, named by a digest of the address, never the address
    rates = [key.decode() for key in runtime.redis.scan_iter(RATE.pattern)]
    assert len(rates) == 2 and all(0 < runtime.redis.ttl(key) <= 60 for key in rates)
    assert not [key for key in rates if "203.0.113" in key or "198.51.100" in key]
    assert all(family_of(key.decode()) is not None for key in runtime.redis.scan_iter("c2c:*"))
    assert "203.0.113.7" not in caplog.text
    assert caplog.text.count("click links limited for a client address") == 1  # once per address and window


def test_forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy(exposed: tuple[str, Runtime],
                                                                          redis_client: redis.Redis,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from connector.attribution import links

    links._told.clear()
    url, _ = exposed
    # every "address" the client makes up is the same client: its own peer address
    answers = [visit(url, forwarded=f"198.51.100.{i}").status_code for i in range(PER_MINUTE + 1)]
    assert answers == [302] * PER_MINUTE + [429]
    # the operator is told once that the header was not believed (behind an untrusted router, every visitor
    # would share the router's budget)
    assert caplog.text.count("X-Forwarded-For ignored: the peer is not in FORWARDED_ALLOW_IPS") == 1


@pytest.mark.parametrize("landing", [
    "javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "https://clinic.example/a\r\nX: y",
    "https://clinic.example/\x00", "https://clinic.example/ page", "https://user:pw@evil.example/",
    "https://clinic.example/\"><script>", "//evil.example/", "https://", "https://klinik.example/é",
    "https://clinic.example:99999/", "https://clinic.example/" + "a" * 500,
])
def test_a_landing_that_is_not_a_plain_http_url_is_not_recorded(behind_a_local_proxy: tuple[str, Runtime],
                                                                 redis_client: redis.Redis, landing: str) -> None:
    url, runtime = behind_a_local_proxy
    response = visit(url, landing=landing)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://wa.me/905320000000?text=")  # never the landing
    click = load_click(runtime.redis, code_of(response))
    assert click is not None and click["landing_page"] is None


def test_a_plain_landing_is_recorded_and_never_redirected_to(behind_a_local_proxy: tuple[str, Runtime],
                                                              redis_client: redis.Redis) -> None:
    url, runtime = behind_a_local_proxy
    response = visit(url, landing="https://evil.example/hair?utm_source=ig#top")
    assert response.headers["Location"].startswith("https://wa.me/905320000000?text=")
    click = load_click(runtime.redis, code_of(response))
    assert click is not None and click["landing_page"] == "https://evil.example/hair?utm_source=ig#top"
    # the referrer stands in for a missing landing, under the same rule
    referred = requests.get(f"{url}/c/hair-tr", headers={"Referer": "https://clinic.example/\x7fx"},
                            allow_redirects=False, timeout=5)
    assert load_click(runtime.redis, code_of(referred))["landing_page"] is None  # type: ignore[index]
    telegram = visit(url, slug="aesthetic-ru-tg", landing="https://evil.example/")
    location = telegram.headers["Location"]
    assert urlparse(location).netloc == "t.me" and "evil" not in location


def test_stored_clicks_are_bounded_the_oldest_making_room(redis_client: redis.Redis) -> None:
    codes = [store_click(redis_client, {"campaign": "hair-tr", "n": i}, 30, most=5) for i in range(8)]
    kept = [code for code in codes if load_click(redis_client, code) is not None]
    assert kept == codes[3:]  # the three oldest records were dropped
    assert redis_client.zcard(STORED.key()) == 5
    assert 29 * 86400 < redis_client.ttl(STORED.key()) <= 30 * 86400
    assert sorted(k.decode() for k in redis_client.zrange(STORED.key(), 0, -1)) == sorted(kept)
