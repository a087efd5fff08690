"""Sessions read the environment once: no proxy means no per-request scan; a proxy keeps requests' own rules."""

from __future__ import annotations

import pytest
import requests

from core.http import session

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                    "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*_PROXY_VARIABLES, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_proxy_the_session_does_not_read_the_environment_per_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made = session()
    assert made.trust_env is False and made.verify is True
    calls: list[str] = []
    monkeypatch.setattr(requests.utils, "get_environ_proxies", lambda *a, **k: calls.append("read") or {})
    merged = made.merge_environment_settings("https://graph.facebook.com/v21.0/1/messages", {}, None, None, None)
    assert calls == [] and merged["proxies"] == {}


def test_a_ca_bundle_named_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/clinic-ca.pem")
    assert session().verify == "/etc/ssl/clinic-ca.pem"


def test_with_a_proxy_requests_resolves_it_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.clinic.example:3128")
    monkeypatch.setenv("NO_PROXY", "crm.internal")
    made = session()
    assert made.trust_env is True
    out = made.merge_environment_settings("https://api.hubapi.com/crm/v3/objects", {}, None, None, None)
    inside = made.merge_environment_settings("https://crm.internal/api", {}, None, None, None)
    assert out["proxies"].get("https") == "http://proxy.clinic.example:3128"
    assert "https" not in inside["proxies"]
