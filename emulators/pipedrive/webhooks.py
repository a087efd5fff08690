"""Webhooks v2 in the emulated Pipedrive account: the webhooks API (``GET|POST /v1/webhooks``, ``DELETE
/v1/webhooks/{id}``, as Pipedrive's OpenAPI describes them) and the notifications a change sends.

- **The webhooks.** ``POST /v1/webhooks`` takes ``subscription_url``, ``event_action`` (``create``, ``change``,
  ``delete``, ``*``), ``event_object`` (``person``, ``deal``, ``lead``…, ``*``), ``name``, ``version`` (``2.0`` by
  default) and the HTTP Basic credentials to call the URL with; it answers 201 with the webhook. A URL that is
  not http(s) is refused as Pipedrive refuses one (400, ``errors.subscription_url``); at most 40 per user.
- **What is sent.** Every create, change or delete of a person, deal or lead (through the API, or a person's edit
  in the web app: :meth:`PipedriveWebhooks.edit_in_app`, ``POST /_emulator/edit/<kind>/<id>``) is sent to each
  matching webhook as ``{"meta", "data", "previous"}``: ``meta`` with ``action``, ``entity``, ``entity_id``, the
  event's ``id``, ``change_source`` (``api`` for the API, ``app`` for the web app), ``user_id``, ``attempt``…;
  ``data`` the object as it is now (custom fields under ``custom_fields``), ``previous`` only the fields the
  change changed, as they were (``null`` for a create, the object for a delete).
- **Delivery.** From a background thread, with Basic authentication; an answer other than 2xx (or none within
  ``timeout``) is retried after each of ``retry_delays`` (Pipedrive: 3, 30 and 150 seconds), ``attempt``
  counting up. :meth:`PipedriveWebhooks.wait_for_webhooks` waits until nothing is left to send.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, Response, request

from emulators._search import SearchIndex
from emulators._webhook_sender import WebhookSender
from emulators.pipedrive.state import PipedriveState, timestamp

#: the objects whose changes are sent, by the emulator's kinds
ENTITIES = {"persons": "person", "deals": "deal", "leads": "lead"}
#: Pipedrive's retries after a failed delivery (seconds)
RETRY_DELAYS = (3.0, 30.0, 150.0)
#: webhooks one user may have
MAX_WEBHOOKS = 40
_KEY = re.compile(r"[0-9a-f]{40}")
_INTERNAL = ("is_deleted",)


class ObservedIndex(SearchIndex):
    """The search index, also telling the webhooks about every API write (the operations note each write here)."""

    def __init__(self, lag: float, observer: Callable[[str, object, Any, Any], None]) -> None:
        super().__init__(lag)
        self.observer = observer

    def written(self, kind: str, object_id: object, after: Any, *, before: Any = None) -> None:
        self.observer(kind, object_id, after, before)
        super().written(kind, object_id, after, before=before)


class PipedriveWebhooks(PipedriveState):
    """The account's webhooks v2 (see the module)."""

    company_id: int
    webhooks: dict[int, dict[str, Any]]
    #: every delivery attempt: webhook id, event id, attempt, status (or error)
    webhook_attempts: list[dict[str, Any]]

    def _init_webhooks(self, *, retry_delays: tuple[float, ...] = RETRY_DELAYS, timeout: float = 10.0) -> None:
        self.webhooks, self.webhook_attempts = {}, []
        self.webhook_ids = itertools.count(501)
        self.retry_delays, self.webhook_timeout = tuple(retry_delays), timeout
        self._source = threading.local()
        self.webhook_sender = WebhookSender(self._post_webhook, "pipedrive-webhooks")
        self.search_index = ObservedIndex(self.search_index.lag, self._object_written)

    # -- the webhooks API (v1) -------------------------------------------------------------------
    def _op_getWebhooks(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        return self._ok([self._webhook_shown(w) for w in self.webhooks.values()])

    def _op_addWebhook(self, params: dict[str, str], args: dict[str, Any], body: dict[str, Any]) -> Response:
        url = str(body.get("subscription_url") or "")
        if not re.match(r"https?://[^/\s]+", url):
            return self._json({"status": "error", "success": False,
                               "errors": {"subscription_url": ["invalid or non-reachable URL"]}}, 400)
        user = int(body.get("user_id") or self.users[0]["id"])
        if sum(1 for w in self.webhooks.values() if w["user_id"] == user) >= MAX_WEBHOOKS:
            return self._json({"status": "error", "success": False,
                               "errors": {"user_id": [f"the limit of {MAX_WEBHOOKS} webhooks is reached"]}}, 400)
        hook = {"id": next(self.webhook_ids), "company_id": self.company_id, "owner_id": user, "user_id": user,
                "event_action": body["event_action"], "event_object": body["event_object"], "subscription_url": url,
                "version": body.get("version") or "2.0", "is_active": 1, "add_time": timestamp(), "remove_time": None,
                "type": "general", "http_auth_user": body.get("http_auth_user"),
                "http_auth_password": body.get("http_auth_password"), "remove_reason": None,
                "last_delivery_time": None, "last_http_status": None, "admin_id": user, "name": body["name"]}
        self.webhooks[hook["id"]] = hook
        return self._json({"status": "ok", "success": True, "data": self._webhook_shown(hook)}, 201)

    def _op_deleteWebhook(self, params: dict[str, str], args: dict[str, Any], body: Any) -> Response:
        if self.webhooks.pop(int(params["id"]), None) is None:
            return self._json({"status": "error", "success": False, "errors": {"id": ["not found"]}}, 404)
        return self._json({"status": "ok", "success": True})

    @staticmethod
    def _webhook_shown(hook: dict[str, Any]) -> dict[str, Any]:
        """A webhook as the API lists it (its password is never shown back)."""
        return {**hook, "http_auth_password": "******" if hook.get("http_auth_password") else None}

    # -- a person's edit in the web app ----------------------------------------------------------
    def edit_in_app(self, kind: str, object_id: str, values: dict[str, Any], *, user: int = 1,
                    source: str = "app") -> dict[str, Any]:
        """A person edits a person, deal or lead in Pipedrive's web app; the object after it. Custom fields by
        their keys under ``custom_fields`` (a lead keeps them at its top level, as the v1 API shows it).
        ``source`` ``api`` with another ``user`` is the same change made by another integration, with that user's
        token.

        Raises:
            KeyError: no such object.
            ValueError: a value Pipedrive would refuse.
        """
        with self.lock:
            found = self._live(kind, object_id) if kind != "leads" else self.objects["leads"].get(object_id)
            if found is None or kind not in ENTITIES:
                raise KeyError(f"{kind} {object_id} not found")
            custom = dict(values.get("custom_fields") or {})
            if kind == "leads":
                custom.update({k: v for k, v in values.items() if _KEY.fullmatch(k)})
            entity = "deal" if kind == "leads" else ENTITIES[kind]
            if custom and (problem := self._check_custom(entity, custom)):
                raise ValueError(problem)
            plain = {k: v for k, v in values.items() if k != "custom_fields" and not _KEY.fullmatch(k)}
            before = copy.deepcopy(found)
            found.update(plain)
            if kind == "leads":
                found.update(custom)
            else:
                found["custom_fields"] = {**(found.get("custom_fields") or {}), **custom}
            found["update_time"] = timestamp()
            self._source.value = (source, user)
            try:
                self.search_index.written(kind, found["id"], found, before=before)
            finally:
                self._source.value = None
            return copy.deepcopy(found)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait until every notification has been delivered or given up; False on time-out."""
        return self.webhook_sender.wait(timeout)

    # -- sending ---------------------------------------------------------------------------------
    def _object_written(self, kind: str, object_id: object, after: Any, before: Any) -> None:
        """Hold ``lock``. Send a write of a person, deal or lead to the webhooks it matches."""
        entity = ENTITIES.get(kind)
        if entity is None or not self.webhooks:
            return
        deleted = after is None or bool(after.get("is_deleted"))
        action = "create" if before is None else "delete" if deleted else "change"
        data = None if action == "delete" else _v2(after)
        previous = _v2(before) if action == "delete" else None
        if action == "change":
            old, new = _v2(before), _v2(after)
            previous = {k: old.get(k) for k in old.keys() | new.keys()
                        if k not in ("custom_fields", "update_time") and old.get(k) != new.get(k)}
            changed = {k: v for k, v in (old.get("custom_fields") or {}).items()
                       if (new.get("custom_fields") or {}).get(k) != v}
            changed.update({k: None for k in (new.get("custom_fields") or {}) if k not in (old.get("custom_fields")
                                                                                            or {})})
            if changed:
                previous["custom_fields"] = changed
            if not previous:
                return  # nothing changed: Pipedrive sends nothing
        source, user = getattr(self._source, "value", None) or ("api", self.users[0]["id"])
        event = str(uuid.uuid4())
        for hook in self.webhooks.values():
            if hook["event_action"] not in ("*", action) or hook["event_object"] not in ("*", entity):
                continue
            meta = {"action": action, "entity": entity, "company_id": str(self.company_id),
                    "correlation_id": str(uuid.uuid4()), "entity_id": str(object_id), "id": event,
                    "is_bulk_edit": False, "timestamp": timestamp(), "type": "general", "user_id": str(user),
                    "version": "2.0", "webhook_id": str(hook["id"]), "webhook_owner_id": str(hook["owner_id"]),
                    "change_source": source, "host": "clinic.pipedrive.com",
                    "permitted_user_ids": [str(u["id"]) for u in self.users]}
            self.webhook_sender.schedule({"hook": hook["id"], "url": hook["subscription_url"],
                                          "auth": (hook.get("http_auth_user"), hook.get("http_auth_password")),
                                          "body": {"meta": meta, "data": copy.deepcopy(data),
                                                   "previous": copy.deepcopy(previous)}, "attempt": 1})

    def _post_webhook(self, item: dict[str, Any]) -> None:
        """One delivery attempt; a failed one is scheduled again after the next retry delay."""
        body = {**item["body"], "meta": {**item["body"]["meta"], "attempt": item["attempt"]}}
        user, password = item["auth"]
        record: dict[str, Any] = {"webhook": item["hook"], "event": body["meta"]["id"], "attempt": item["attempt"],
                                  "at": timestamp(), "body": body}
        try:
            answer = requests.post(item["url"], json=body, timeout=self.webhook_timeout,
                                   auth=(user, password) if user else None)
            record["status"] = answer.status_code
        except requests.RequestException as exc:
            record["error"] = type(exc).__name__
        ok = 200 <= record.get("status", 0) < 300
        with self.lock:
            self.webhook_attempts.append(record)
            hook = self.webhooks.get(item["hook"])
            if hook is not None:
                hook["last_delivery_time"], hook["last_http_status"] = record["at"], record.get("status")
        if not ok and item["attempt"] <= len(self.retry_delays):
            self.webhook_sender.schedule({**item, "attempt": item["attempt"] + 1},
                                         self.retry_delays[item["attempt"] - 1])

    # -- control endpoints -----------------------------------------------------------------------
    def _add_webhook_routes(self, app: Flask) -> None:
        """``POST /_emulator/edit/<kind>/<id>`` (``{"values", "user"?, "source"?}``), ``GET /_emulator/webhooks/deliveries``,
        ``POST /_emulator/webhooks/wait``."""

        @app.post("/_emulator/edit/<kind>/<object_id>")
        def edit(kind: str, object_id: str) -> Response:
            data = request.get_json(silent=True) or {}
            if not isinstance(data.get("values"), dict):
                return self._json({"error": "give the values to change"}, 400)
            try:
                source = "api" if data.get("source") == "api" else "app"
                return self._json(self.edit_in_app(kind, object_id, data["values"], user=int(data.get("user") or 1),
                                                   source=source))
            except KeyError as exc:
                return self._json({"error": str(exc)}, 404)
            except ValueError as exc:
                return self._json({"error": str(exc)}, 400)

        @app.get("/_emulator/webhooks/deliveries")
        def deliveries() -> Response:
            with self.lock:
                return self._json(list(self.webhook_attempts))

        @app.post("/_emulator/webhooks/wait")
        def wait() -> Response:
            done = self.wait_for_webhooks(float((request.get_json(silent=True) or {}).get("timeout", 5.0)))
            return self._json({"done": done}, 200 if done else 504)


def _v2(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as webhooks v2 carry it: custom fields under ``custom_fields`` (a lead's too)."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if not _KEY.fullmatch(k) and k not in _INTERNAL}
    custom = dict(obj.get("custom_fields") or {})
    custom.update({k: v for k, v in obj.items() if _KEY.fullmatch(k)})
    out["custom_fields"] = custom
    return out
