"""The emulated HubSpot account as one object: :class:`HubSpotEmulator` sets up the account's state,
serves the API's routes (:mod:`emulators.hubspot.routes`, and the inbox's from
:mod:`emulators.hubspot.agents` down) as a Flask app with the control endpoints the tests and the demo
read, and shows the account as an agent sees it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request

from emulators._text import plain_text
from emulators.hubspot.agents import HubSpotAgents
from emulators.hubspot.oauth import APP_SCOPES
from emulators.hubspot.pipelines import default_pipelines
from emulators.hubspot.routes import HubSpotRoutes
from emulators.hubspot.state import OBJECT_TYPES, Property, standard_properties

_VIEW_CONTACT = ("phone", "email", "country", "chat2crm_contact_key", "chat2crm_whatsapp_user_id",
                 "chat2crm_telegram_username", "chat2crm_language", "chat2crm_channel",
                 "chat2crm_last_campaign", "chat2crm_opted_out", "chat2crm_opted_out_at", "chat2crm_opted_out_channel",
                 "chat2crm_identity_conflict", "chat2crm_conflicting_email")


class HubSpotEmulator(HubSpotAgents, HubSpotRoutes):
    """State and behaviour of the emulated HubSpot account.

    Args:
        access_token: the private app token the relay must send.
        rate_limit: ``(requests, seconds)``: answer 429 past it (HubSpot's ten-second rolling limit).
        latency: seconds added to every call.
        timeout_seconds: how long a ``timeout`` fault holds the call (then it is carried out, as HubSpot
            carries out a request whose client gave up).
        search_lag: seconds before a write shows in search (HubSpot: a few seconds).
        portal_id: the account's id (``hub_id``, ``portalId``).
        app_id, client_id, client_secret, developer_api_key: the public app installed by OAuth (the client
            secret signs every webhook).
        redirect_uris: the app's redirect URLs (None: any http(s) URL is accepted).
        app_scopes: the scopes an install must ask for (:data:`~emulators.hubspot.oauth.APP_SCOPES`).
        oauth_token_seconds: an access token's lifetime (HubSpot: 1800).
        webhook_target_url: where the app's webhook subscriptions are sent (settable later).
        webhook_attempts, webhook_retry_delay, webhook_timeout: tries per webhook, the first retry's delay
            (doubling after), and how long an attempt waits for an answer.
        clock: the time (epoch seconds) tokens, codes and signed URLs expire by.
    """

    def __init__(self, access_token: str = "pat-demo", *, rate_limit: tuple[int, float] | None = None,
                 latency: float = 0.0, timeout_seconds: float = 20.0, search_lag: float = 0.0,
                 portal_id: int = 48_151_623, app_id: int = 4_242_001,
                 client_id: str = "c2c0ffee-0000-4000-8000-000000000001",
                 client_secret: str = "demo-client-secret-0000-4000-8000-000000000002",
                 developer_api_key: str = "demo-developer-key-0000-4000-8000-000000000003",
                 redirect_uris: tuple[str, ...] | None = None, app_scopes: tuple[str, ...] = APP_SCOPES,
                 oauth_token_seconds: float = 1800.0, webhook_target_url: str | None = None,
                 webhook_attempts: int = 5, webhook_retry_delay: float = 1.0, webhook_timeout: float = 5.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.access_token = access_token
        self._init_faults(latency=latency, timeout_seconds=timeout_seconds, rate_limit=rate_limit,
                          search_lag=search_lag)
        self.ids = itertools.count(50_001)
        self.properties = standard_properties()
        self.groups: dict[str, set[str]] = {t: {"contactinformation", "dealinformation"} for t in OBJECT_TYPES}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
        self.pipelines: dict[str, list[dict[str, Any]]] = default_pipelines()
        self.owners = [{"id": "75001", "email": "coordinator@clinic.example", "firstName": "Deniz",
                        "lastName": "Koordinatör", "userId": 9001, "archived": False}]
        self._stages_changed("deals")
        self._init_oauth(portal_id=portal_id, app_id=app_id, client_id=client_id, client_secret=client_secret,
                         developer_api_key=developer_api_key, redirect_uris=redirect_uris, app_scopes=app_scopes,
                         oauth_token_seconds=oauth_token_seconds, clock=clock)
        self._init_files()
        self._init_webhooks(target_url=webhook_target_url, attempts=webhook_attempts,
                            retry_delay=webhook_retry_delay, timeout=webhook_timeout)
        self._init_threads()
        self._init_channels()
        self.app = self._make_app()

    # -- helpers for tests and the demo --------------------------------------------------------
    def add_property(self, object_type: str, name: str, *, unique: bool = False, kind: str = "string",
                     options: list[str] | None = None) -> None:
        """Define a custom property, as an admin (or ``crm setup``) would."""
        field_type = {"enumeration": "checkbox", "bool": "booleancheckbox"}.get(kind, "text")
        self.properties[object_type][name] = Property(name, name, "enumeration" if kind == "bool" else kind,
                                                      field_type, "chat2crm", unique,
                                                      ["true", "false"] if kind == "bool" else list(options or []))

    def add_record(self, object_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        """An object as a person made it in HubSpot long ago (searchable at once); properties are checked as the
        API checks them (a taken e-mail is refused).

        Raises:
            ValueError: HubSpot would refuse these properties.
        """
        with self.lock, self.app.app_context():  # an error answer is built as a response
            created = self._create(object_type, dict(properties), [])
        if isinstance(created, tuple):
            raise ValueError(created[0].get_json()["message"])
        return dict(created)

    def records(self, object_type: str) -> list[dict[str, Any]]:
        """Every live object of a type, with properties and associations."""
        with self.lock:
            return [dict(o) for o in self.objects[object_type].values() if not o["archived"]]

    def count(self, object_type: str) -> int:
        return len(self.records(object_type))

    def associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        with self.lock:
            return list(self.objects[object_type][object_id]["associations"].get(to_type, []))

    def agent_view(self) -> dict[str, Any]:
        """The account as an agent sees it (CRM-neutral shape, shown by the demo page): each card's fields by
        their API names, with ``labels`` (API name → the label HubSpot shows, from the property definitions),
        and a record's stage by its label in its pipeline."""

        def fields(props: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
            return {n: props[n] for n in names if props.get(n) not in (None, "")}

        def labels(object_type: str, shown: dict[str, Any]) -> dict[str, str]:
            known = self.properties[object_type]
            return {n: known[n].label for n in shown if n in known and known[n].label != n}

        def card(object_type: str, item: dict[str, Any]) -> dict[str, Any]:
            return {**item, "labels": labels(object_type, item["fields"])}

        with self.lock:
            stages = {s["id"]: s["label"] for p in self.pipelines.get("deals", []) for s in p["stages"]}
        contacts = [card("contacts", {"id": c["id"], "object": "contact", "title": " ".join(
            v for v in (c["properties"].get("firstname"), c["properties"].get("lastname")) if v),
            "fields": fields(c["properties"], _VIEW_CONTACT)}) for c in self.records("contacts")]
        records = [card("deals", {
            "id": d["id"], "object": "deal", "title": d["properties"].get("dealname") or "",
            "stage": stages.get(d["properties"].get("dealstage") or "", d["properties"].get("dealstage")),
            "tags": [t for t in (d["properties"].get("chat2crm_tags") or "").split(";") if t],
            "fields": {k: v for k, v in d["properties"].items() if k.startswith("chat2crm_")
                       and k != "chat2crm_tags" and v not in (None, "")}}) for d in self.records("deals")]
        notes = [{"id": n["id"], "body": plain_text(n["properties"].get("hs_note_body") or "")}
                 for n in self.records("notes")]
        tasks = [card("tasks", {"id": t["id"], "title": t["properties"].get("hs_task_subject") or "",
                                "fields": fields(t["properties"], ("hs_task_priority", "hs_task_status",
                                                                   "hubspot_owner_id"))})
                 for t in self.records("tasks")]
        return {"crm": "hubspot", "contacts": contacts, "records": records, "notes": notes, "tasks": tasks,
                "extras": []}

    def _make_app(self) -> Flask:
        app = Flask("hubspot-emulator")

        @app.after_request
        def record_status(response: Response) -> Response:
            if not request.path.startswith("/_emulator"):
                self._record_status(response.status_code)
                remaining = (self.rate_limit[0] - len(self.window)) if self.rate_limit else 189
                for key, value in self._rate_headers(remaining).items():
                    response.headers.setdefault(key, value)
            return response

        for methods, rule, handler in self._routes() + self._extra_routes():
            app.add_url_rule(rule, view_func=handler, methods=list(methods))

        @app.get("/_emulator/objects/<object_type>")
        def list_objects(object_type: str) -> Any:
            return jsonify(self.records(object_type) if object_type in self.objects else []), 200

        @app.get("/_emulator/view")
        def view() -> Any:
            return jsonify(self.agent_view()), 200

        @app.get("/_emulator/calls")
        def list_calls() -> Any:
            with self.lock:
                return jsonify(list(self.calls)[-200:]), 200

        return app


def create_app(access_token: str = "pat-demo", **kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator; the emulator is ``app.config['EMULATOR']``."""
    emulator = HubSpotEmulator(access_token, **kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
