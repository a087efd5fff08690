"""Pipedrive's web app as the host of the app's custom panel: a record's detail view with the panel's iframe,
and the host's half of the App Extensions SDK's postMessage protocol.

``GET /_emulator/ui/<resource>/<id>?user=<userId>`` renders a deal's, a person's or an organization's detail
view (the only views with custom panels; a lead has none) for that user, with the app's panel in its left
sidebar: an iframe of ``panel_url`` with the query Pipedrive adds (``resource``, ``view=details``,
``userId``, ``companyId``, ``selectedIds``, ``isShared``, ``id`` the extension's identifier, ``theme``, and
``token``: a JWT signed HS256 with the panel's JWT secret, claims ``userId``, ``companyId``, ``iat`` and
``exp`` five minutes later).

The page's script (``host.js``) answers what the SDK sends to ``window.parent``: ``{payload, id}`` with a
``MessagePort`` for the answer (``{data}`` or ``{error}``). Commands: ``initialize`` (first, with the right
identifier; a size applies), ``resize`` (a panel's height only, 100 to 750 px), ``show_snackbar``,
``show_confirmation`` (the user's click answers ``{confirmed}``), ``get_signed_token`` (a fresh JWT, from
``GET /_emulator/ui/token``), ``get_metadata``, ``redirect_to``, ``set_notification``; the modal and floating
window commands are refused in a panel. Listeners (``visibility``, ``user_settings_change``) keep their port
and get ``visibility`` at once. A user with no access to the record still sees the panel (Pipedrive loads it):
refusing them is the app's job.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jwt
from flask import Response, request

from emulators.pipedrive.state import PipedriveState

#: the detail views that have custom panels → the objects they show
PANEL_VIEWS = {"deal": "deals", "person": "persons", "organization": "organizations"}
#: how long a panel's token is valid (Pipedrive: 5 minutes)
TOKEN_SECONDS = 300


class PanelHost(PipedriveState):
    """The detail view hosting the app's custom panel (see the module)."""

    company_id: int
    #: the JWT secret of the app's custom panel (None: the app's client secret, as Pipedrive falls back to)
    jwt_secret: str | None
    client_secret: str
    #: the custom panel's iframe URL, as registered in the Developer Hub (None: the app has no panel)
    panel_url: str | None

    def panel_token(self, user: int, *, now: float | None = None, seconds: int = TOKEN_SECONDS) -> str:
        """A panel token for ``user``, as Pipedrive signs it."""
        issued = int(now if now is not None else time.time())
        claims = {"userId": user, "companyId": self.company_id, "iat": issued, "exp": issued + seconds}
        return jwt.encode(claims, self.jwt_secret or self.client_secret, algorithm="HS256")

    def panel_src(self, resource: str, record: str, user: int, identifier: str) -> str:
        """The panel iframe's URL, with the query Pipedrive adds."""
        query = {"resource": resource, "view": "details", "userId": user, "companyId": self.company_id,
                 "selectedIds": record, "isShared": "false", "id": identifier, "theme": "light",
                 "token": self.panel_token(user)}
        base = self.panel_url or ""
        return base + ("&" if "?" in base else "?") + urlencode(query)

    def _serve_ui(self, resource: str, record: str) -> Response:
        """A record's detail view with the panel in its sidebar."""
        kind = PANEL_VIEWS.get(resource)
        if kind is None:
            return _page("Not found", "Custom panels are shown in the deal, person and organization detail views.",
                         404)
        found = self._live(kind, record)
        if found is None:
            return _page("Not found", f"This {resource} does not exist or was deleted.", 404)
        try:
            user = int(request.args.get("user", "1"))
        except ValueError:
            return _page("Not found", "No such user.", 404)
        if not any(u["id"] == user for u in self.users):
            return _page("Not found", "No such user.", 404)
        if self.panel_url is None:
            return _page("No panel", "The app has no custom panel.", 404)
        title = found.get("name") or found.get("title") or f"{resource} {record}"
        identifier = str(uuid.uuid4())
        src = self.panel_src(resource, record, user, identifier)
        config = {"identifier": identifier, "user": user, "origin": _origin(self.panel_url)}
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(str(title))} - Pipedrive</title>
<style>
 body {{ font-family: sans-serif; margin: 0; background: #f5f5f5; }}
 header {{ background: #1b1c1e; color: #fff; padding: 10px 16px; }}
 main {{ display: flex; gap: 16px; padding: 16px; }}
 aside {{ width: 360px; }}
 .panel {{ background: #fff; border: 1px solid #ddd; border-radius: 4px; }}
 .panel h2 {{ font-size: 14px; margin: 0; padding: 8px 12px; border-bottom: 1px solid #eee; }}
 iframe {{ width: 100%; border: 0; display: block; }}
 #snackbars div {{ background: #333; color: #fff; padding: 8px 12px; margin: 4px; border-radius: 4px; }}
 #confirmation {{ display: none; position: fixed; top: 30%; left: 30%; background: #fff; padding: 16px;
                  border: 1px solid #999; }}
</style></head>
<body data-resource="{html.escape(resource)}" data-record="{html.escape(record)}">
<header>Pipedrive · {html.escape(resource)} · <span id="title">{html.escape(str(title))}</span></header>
<main><aside><section class="panel"><h2>chat2crm</h2>
<iframe id="panel" title="chat2crm panel" src="{html.escape(src)}" height="300"></iframe></section></aside>
<section id="details"><h1>{html.escape(str(title))}</h1></section></main>
<div id="snackbars" aria-live="polite"></div>
<div id="confirmation" role="dialog"><h3 id="confirm-title"></h3><p id="confirm-text"></p>
<button id="confirm-ok">OK</button> <button id="confirm-cancel">Cancel</button></div>
<script>window.PIPEDRIVE_HOST = {json.dumps(config)};</script>
<script src="/_emulator/ui/host.js"></script>
</body></html>"""
        return Response(body, mimetype="text/html")

    def _serve_ui_token(self) -> Response:
        """A fresh panel token for the page's ``get_signed_token`` (the user the page was opened for)."""
        try:
            user = int(request.args.get("user", ""))
        except ValueError:
            return self._json({"error": "no such user"}, 404)
        if not any(u["id"] == user for u in self.users):
            return self._json({"error": "no such user"}, 404)
        return self._json({"token": self.panel_token(user)})

    @staticmethod
    def _serve_host_js() -> Response:
        script = resources.files("emulators.pipedrive").joinpath("host.js").read_text(encoding="utf-8")
        return Response(script, mimetype="text/javascript")


def _origin(url: str | None) -> str:
    """The origin of a URL (``http://127.0.0.1:8000``)."""
    from urllib.parse import urlparse

    parsed = urlparse(url or "")
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.netloc else "*"


def _page(title: str, text: str, status: int) -> Response:
    body: Any = (f"<!doctype html><title>{html.escape(title)} - Pipedrive</title><h1>{html.escape(title)}</h1>"
                 f"<p>{html.escape(text)}</p>")
    return Response(body, status=status, mimetype="text/html")
