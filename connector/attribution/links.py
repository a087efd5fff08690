"""``GET /c/<campaign>``: remember the click, then send the visitor to WhatsApp or Telegram.

The click (a short reference code, the UTM parameters, ``fbclid``/``gclid``, the landing page and
the time) is stored in Redis for ``retention.click_days``; the visitor is redirected (302) to
``https://wa.me/<number>?text=<prefilled text carrying the code>`` or ``https://t.me/<bot>?start=<code>``.
No JavaScript is needed. Parameters that are not well-formed are dropped, never reflected.
``GET /c.js`` serves the small script a clinic adds to its website (see docs/campaigns.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, current_app, redirect, render_template_string, request, send_from_directory
from werkzeug.wrappers import Response as BaseResponse

from connector.attribution.clicks import PREFILL, store_click
from core.models import utcnow

blueprint = Blueprint("links", __name__)

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


def _landing(value: str | None) -> str | None:
    if value and value.startswith(("https://", "http://")) and len(value) <= 500 and " " not in value:
        return value
    return None


@blueprint.get("/c/<slug>")
def click(slug: str) -> BaseResponse | tuple[str, int]:
    """Store the click and redirect to the channel."""
    runtime = current_app.extensions["chat2crm"]
    config = runtime.config
    campaign = runtime.campaigns.get(slug)
    if campaign is None:
        return render_template_string(_NOT_FOUND, clinic=config.clinic_name), 404
    params = clean_parameters(request.args.to_dict())
    utm = {f"utm_{k}": v for k, v in campaign.utm.items()}
    utm.update({k: v for k, v in params.items() if k.startswith("utm_")})
    language = utm.get("utm_lang") or campaign.language
    data = {"campaign": campaign.slug, "utm": utm, "fbclid": params.get("fbclid"), "gclid": params.get("gclid"),
            "landing_page": _landing(request.args.get("landing") or request.referrer),
            "clicked_at": utcnow().isoformat(), "language": language}
    code = store_click(runtime.redis, data, config.retention.click_days)
    if campaign.channel == "telegram":
        target = f"https://t.me/{config.channels.telegram.bot_username}?start={code}"
    else:
        template = campaign.prefill or PREFILL.get(language) or PREFILL["en"]
        text = template.format(code=code)
        target = f"https://wa.me/{config.channels.whatsapp.phone_number}?text={quote(text)}"
    response = redirect(target, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/c.js")
def site_script() -> Response:
    """The script that rewrites a website's WhatsApp buttons to carry the visitor's UTM parameters."""
    response = send_from_directory(Path(__file__).resolve().parent.parent / "static", "chat2crm-links.js",
                                   mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
