"""``GET /c/<campaign>``: remember the click, then send the visitor to the campaign's chat.

The click (a short reference code, the UTM parameters, ``fbclid``/``gclid``, the landing page and the time) is
stored in Redis for ``retention.click_days``; the visitor is redirected (302) to the chat of the campaign's
channel, or of the one ``?channel=`` names when the deployment serves it
(:mod:`connector.attribution.targets`: ``https://wa.me/<number>?text=<prefilled text carrying the code>``,
``https://t.me/<bot>?start=<code>``, ``m.me``/``ig.me`` with ``ref=<code>``, LINE's ``oaMessage`` link).
``GET /c/<campaign>/channels`` lists the chats offered, for the website script. No JavaScript is needed. Parameters
that are not well-formed are dropped, never reflected. ``GET /c.js`` serves the small script a clinic adds to
its website (see docs/campaigns.md).

The link is public, so it is guarded: each client address may follow ``limits.clicks_per_minute`` links a
minute (a fixed window in Redis; more get 429), the records kept are bounded (``limits.stored_clicks``,
:mod:`connector.attribution.clicks`), and the visitor only ever goes to a chat the deployment serves, built
from its own settings: ``channel`` only picks among them, ``landing`` (or the referrer) is only recorded, and
only when it is a plain http(s) URL. The client address is the peer's, or, when the peer is a trusted reverse
proxy (``FORWARDED_ALLOW_IPS``), the one the proxies recorded in ``X-Forwarded-For``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template_string,
    request,
    send_from_directory,
)
from werkzeug.wrappers import Response as BaseResponse

from connector.attribution.clicks import PREFILL, store_click
from connector.attribution.targets import LABELS, Destination, chat_link, offered
from core import metrics
from core.keys import family
from core.models import utcnow

if TYPE_CHECKING:
    from connector.runtime import Runtime

log = logging.getLogger("chat2crm.links")
blueprint = Blueprint("links", __name__)

#: seconds a client address's window of click-link visits lasts, from its first visit
WINDOW = 60
#: click-link visits of one client address in its window (named by a digest of the address)
RATE = family("click-rate", "{client}", ttl=WINDOW, holds_pii=False, owner=__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "utm_lang")
_SAFE = re.compile(r"^[\w .:/+\-|,()@%]{1,100}$", re.UNICODE)
_CLICK_ID = re.compile(r"^[A-Za-z0-9_\-.]{1,255}$")
_LANG = re.compile(r"^[a-z]{2}$")

_NOT_FOUND = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Link not found</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex"></head>
<body style="font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">
<h1>This link is not active</h1><p>The campaign link you followed does not exist or has ended.
Please contact {{ clinic }} directly.</p></body></html>"""


def clean_parameters(args: dict[str, str]) -> dict[str, str]:
    """The well-formed UTM and click-id parameters; everything else is dropped."""
    kept: dict[str, str] = {}
    for key in UTM_KEYS:
        value = (args.get(key) or "").strip()
        if value and _SAFE.match(value) and (key != "utm_lang" or _LANG.match(value)):
            kept[key] = value
    for key in ("fbclid", "gclid"):
        value = (args.get(key) or "").strip()
        if value and _CLICK_ID.match(value):
            kept[key] = value
    return kept


_TOO_MANY = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Please wait</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex"></head>
<body style="font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">
<h1>Please try again in a minute</h1><p>Too many links were opened from this connection.</p></body></html>"""

#: a landing page address: printable ASCII without spaces, quotes or angle brackets, at most 500 characters
_URL_CHARS = re.compile(r"[!#$%&()*+,\-./0-9:;=?@A-Z\[\]_a-z~]{1,500}")


def landing_page(value: str | None) -> str | None:
    """``value`` when it is a plain absolute http(s) URL with a host and no credentials, else None.

    Control characters, spaces, quotes and anything outside printable ASCII are refused (a browser sends
    a landing page percent-encoded), so the value can be shown in a CRM as it is.
    """
    if not value or not _URL_CHARS.fullmatch(value):  # fullmatch: no trailing newline either
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # a port that is not a number is refused here
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or port == 0:
        return None
    return value


@functools.lru_cache(maxsize=8)
def _networks(setting: str) -> tuple[bool, tuple[IPNetwork, ...]]:
    """``FORWARDED_ALLOW_IPS`` read (once per value): (whether any peer is trusted, the trusted networks)."""
    items = [part.strip() for part in setting.split(",")]
    networks: list[IPNetwork] = []
    for item in items:
        if item and item != "*":
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                log.warning("FORWARDED_ALLOW_IPS holds an entry that is not an address", extra={"entry": item[:64]})
    return "*" in items, tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: str | None, allow: str) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (``allow``, as gunicorn reads
    ``FORWARDED_ALLOW_IPS``).

    From a trusted peer, ``X-Forwarded-For`` is read from its right end (each proxy appends the address it
    saw): trusted proxies are skipped, and the first address that is not one is the client's. With ``*`` the
    peer is trusted but no hop is: the last address recorded (the one the peer saw) is the client's. Whatever
    a client writes into the header itself, left of that, is never read.
    """
    anyone, networks = _networks(allow)
    peer = peer or ""

    def trusted(value: str) -> bool:
        address = _address(value)
        return address is not None and any(address in network for network in networks)

    if not forwarded_for or not (anyone or trusted(peer)):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        if _address(hop) is None:
            return peer  # not written by a proxy we trust: nothing left of it can be believed
        if not trusted(hop):
            return hop
    return hops[0]


_told: set[str] = set()


def _untrusted_proxy() -> None:
    """Say once per process that ``X-Forwarded-For`` came from a peer that is not a trusted proxy: behind a
    platform's router every visitor would then count as the router's one address."""
    if "untrusted" not in _told:
        _told.add("untrusted")
        log.warning("X-Forwarded-For ignored: the peer is not in FORWARDED_ALLOW_IPS (click links are limited "
                    "per peer address); set it to the reverse proxy's addresses or network")


def _visits(store: redis.Redis, client: str) -> int:
    """Count one visit of ``client``: its visits in the minute from its first.

    The window opens with the first visit (the key is made with its TTL, then only counted up), so a burst
    is never split in two by the turn of a clock minute.
    """
    key = RATE.key(hashlib.sha256(client.encode()).hexdigest()[:16])
    pipe = store.pipeline(transaction=True)
    pipe.set(key, 0, nx=True, ex=WINDOW)
    pipe.incr(key)
    _, count = pipe.execute()
    return int(count)


@blueprint.get("/c/<slug>")
def click(slug: str) -> BaseResponse | tuple[str, int, dict[str, str]] | tuple[str, int]:
    """Store the click and redirect to the channel (429 past the client address's limit)."""
    runtime = current_app.extensions["chat2crm"]
    config = runtime.config
    forwarded = request.headers.get("X-Forwarded-For")
    client = client_address(request.remote_addr, forwarded, runtime.settings.forwarded_allow_ips)
    if forwarded and client == request.remote_addr:
        _untrusted_proxy()
    visits, limit = _visits(runtime.redis, client), config.limits.clicks_per_minute
    if visits > limit:
        metrics.incr(runtime.redis, "flood_limited", scope="click")
        if visits == limit + 1:  # once per address and window: a flood of clicks is no flood of log lines
            log.warning("click links limited for a client address", extra={"limit": limit})
        return _TOO_MANY, 429, {"Retry-After": "60", "Cache-Control": "no-store"}
    campaign = runtime.campaigns.get(slug)
    if campaign is None:
        return render_template_string(_NOT_FOUND, clinic=config.clinic_name), 404
    params = clean_parameters(request.args.to_dict())
    utm = {f"utm_{k}": v for k, v in campaign.utm.items()}
    utm.update({k: v for k, v in params.items() if k.startswith("utm_")})
    language = utm.get("utm_lang") or campaign.language
    data = {"campaign": campaign.slug, "utm": utm, "fbclid": params.get("fbclid"), "gclid": params.get("gclid"),
            "landing_page": landing_page(request.args.get("landing") or request.referrer),
            "clicked_at": utcnow().isoformat(), "language": language}
    destination = _destination(runtime, campaign.channel, request.args.get("channel"))
    if destination is None:
        return render_template_string(_NOT_FOUND, clinic=config.clinic_name), 404
    data["channel"] = destination.channel
    code = store_click(runtime.redis, data, config.retention.click_days, most=config.limits.stored_clicks)
    template = campaign.prefill or PREFILL.get(language) or PREFILL["en"]
    response = redirect(chat_link(destination, code, template.format(code=code)), code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _destination(runtime: Runtime, channel: str, asked: str | None) -> Destination | None:
    """The chat a click opens: the one the visitor asked for (``?channel=``) when it is offered, else the
    campaign's, else the first offered; None when the deployment offers none."""
    found = {d.channel: d for d in offered(runtime.settings, runtime.config)}
    for wanted in (asked, channel):
        if wanted in found:
            return found[wanted]
    if found:
        log.warning("a campaign's channel is not offered: its link opens another", extra={"channel": channel})
        return next(iter(found.values()))
    return None


@blueprint.get("/c/<slug>/channels")
def channels(slug: str) -> BaseResponse | tuple[str, int]:
    """The chats a campaign's link can open, as JSON, for the website script: ``{"campaign", "channels": [{"channel",
    "label", "href"}]}`` (``href`` is the relay's click link for that chat; nothing is stored)."""
    runtime = current_app.extensions["chat2crm"]
    campaign = runtime.campaigns.get(slug)
    if campaign is None:
        return render_template_string(_NOT_FOUND, clinic=runtime.config.clinic_name), 404
    found = offered(runtime.settings, runtime.config)
    found.sort(key=lambda d: d.channel != campaign.channel)  # the campaign's own chat first
    response = jsonify({"campaign": campaign.slug, "channels": [
        {"channel": d.channel, "label": LABELS[d.channel], "href": f"/c/{campaign.slug}?channel={d.channel}"}
        for d in found]})
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public, read by the clinic's website; no credentials
    return response


@blueprint.get("/c.js")
def site_script() -> Response:
    """The script that rewrites a website's WhatsApp buttons to carry the visitor's UTM parameters."""
    response = send_from_directory(Path(__file__).resolve().parent.parent / "static", "chat2crm-links.js",
                                   mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
