"""HTTP sessions that read the environment once, when they are made.

``requests`` reads the proxy variables on every request of a session that trusts the environment: it scans
every environment variable twice per call (``getproxies_environment``), about a tenth of a bot turn's CPU
here. Where no proxy is configured, which is the usual deployment, :func:`session` says so once: the session
no longer trusts the environment, and what it would have read from it (a CA bundle named by
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``) is set on it. Where a proxy is configured, the session trusts the
environment as before, so ``NO_PROXY`` keeps applying per host.
"""

from __future__ import annotations

import os
import urllib.request

import requests


def session() -> requests.Session:
    """A new ``requests.Session`` that does not re-read the environment per request unless a proxy is set."""
    made = requests.Session()
    if urllib.request.getproxies():
        return made  # proxies and NO_PROXY are per host: requests resolves them per request
    made.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        made.verify = bundle
    return made
