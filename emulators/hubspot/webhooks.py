"""What the emulated HubSpot sends to the app: webhook subscriptions and their events, a custom channel's
events, and their delivery.

**Subscriptions** (the app's webhooks settings, as ``/webhooks/v3/{appId}/settings`` and
``/webhooks/v3/{appId}/subscriptions`` manage them with the developer API key, or ``subscribe()`` /
``POST /_emulator/webhooks/settings``): events go to the target URL in a JSON array, each with ``eventId``,
``subscriptionId``, ``portalId``, ``appId``, ``occurredAt``, ``subscriptionType``, ``attemptNumber``,
``objectId`` and what its kind carries (``propertyName``, ``propertyValue``, ``changeSource``,
``changeFlag``, ``messageId``…), signed with v3 and v1 (:mod:`emulators.hubspot.signature`).

**Delivery** (:class:`WebhookSender`): from a background thread, so the call that caused the event answers
at once; an answer other than 2xx, or none within the time-out, is retried after a backoff that doubles,
a few times, as HubSpot retries (each retry signed anew, a subscription event's ``attemptNumber`` counting
up). ``redeliver_next()`` makes the next deliveries arrive twice, as HubSpot's at-least-once delivery can;
``wait_for_deliveries()`` waits until nothing is left to send.

**A person's edit** of a deal, ticket or contact (``edit_object()`` or ``POST /_emulator/objects/<objectType>/<id>``,
``{"properties": {…}, "userId"?}``): the record changes as the CRM's UI changes it, and each subscribed
``<object>.propertyChange`` whose value changed is sent with ``changeSource`` ``CRM_UI`` and ``sourceId``
``userId:<user>``, as HubSpot reports an edit made in its UI.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask, g, has_app_context, jsonify, request

from emulators.hubspot.files import HubSpotFiles
from emulators.hubspot.models import RequestShapeError, check_model
from emulators.hubspot.oauth import Route
from emulators.hubspot.signature import signed_headers
from emulators.hubspot.state import timestamp

_MODELS = "hubspot.webhooks.models"
#: how long the delivery thread waits for work before it ends (the next webhook starts another)
IDLE_SECONDS = 10.0


@dataclass
class Delivery:
    """One event (or batch) on its way to a URL, and every attempt made."""

    id: int
    kind: str
    url: str
    #: the body of each attempt is built from the attempt's number (a subscription event counts it)
    build: Callable[[int], Any] = field(repr=False)
    legacy: str = "v1"
    copy: int = 1
    attempts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "pending"
    redeliver: bool = False

    def as_json(self) -> dict[str, Any]:
        """What the control endpoint shows of it."""
        return {"id": self.id, "kind": self.kind, "url": self.url, "copy": self.copy, "state": self.state,
                "body": self.build(0), "attempts": list(self.attempts)}


class WebhookSender:
    """Delivers webhooks from one background thread, with HubSpot-like retries.

    Args:
        secret: signs every request (the app's client secret).
        attempts: tries per delivery before it is given up.
        retry_delay: seconds before the first retry; each further retry waits twice as long.
        timeout: seconds an attempt waits for an answer.
    """

    def __init__(self, secret: str, *, attempts: int, retry_delay: float, timeout: float) -> None:
        self.secret, self.attempts, self.retry_delay, self.timeout = secret, attempts, retry_delay, timeout
        self.deliveries: list[Delivery] = []
        self._due: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def send(self, delivery: Delivery) -> Delivery:
        """Queue a delivery (sent as soon as the worker gets to it)."""
        with self._cond:
            self.deliveries.append(delivery)
            self._push(delivery, 0.0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="hubspot-webhooks", daemon=True)
                self._thread.start()
        return delivery

    def wait(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent; False if that took longer than ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._due and not self._busy, timeout)

    def _push(self, delivery: Delivery, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), delivery))
        self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    if self._due:
                        self._cond.wait(self._due[0][0] - time.monotonic())
                    elif not self._cond.wait(IDLE_SECONDS) and not self._due:
                        self._thread = None  # idle: the next send starts a worker again
                        return
                _, _, delivery = heapq.heappop(self._due)
                self._busy += 1
            try:
                ok = self._attempt(delivery)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._after(delivery, ok)
                    self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> bool:
        number = len(delivery.attempts)
        body = json.dumps(delivery.build(number), separators=(",", ":")).encode()
        headers = signed_headers(self.secret, delivery.url, body, int(time.time() * 1000), legacy=delivery.legacy)
        record: dict[str, Any] = {"at": timestamp()}
        try:
            answer = requests.post(delivery.url, data=body, headers=headers, timeout=self.timeout)
            record["status"] = answer.status_code
        except requests.RequestException as exc:
            record["error"] = type(exc).__name__
        delivery.attempts.append(record)
        return 200 <= record.get("status", 0) < 300

    def _after(self, delivery: Delivery, ok: bool) -> None:
        """Hold ``_cond``. Retry, give up, or (a redelivery fault) queue the same event again."""
        if not ok and len(delivery.attempts) < self.attempts:
            self._push(delivery, self.retry_delay * 2 ** (len(delivery.attempts) - 1))
            return
        delivery.state = "delivered" if ok else "failed"
        if delivery.redeliver:
            again = Delivery(delivery.id, delivery.kind, delivery.url, delivery.build, delivery.legacy, copy=2)
            self.deliveries.append(again)
            self._push(again, 0.0)


class HubSpotWebhooks(HubSpotFiles):
    """The app's webhook subscriptions, and sending events."""

    webhook_target_url: str | None
    #: the app's subscriptions: id, eventType, propertyName, active, createdAt, updatedAt
    webhook_subscriptions: list[dict[str, Any]]
    webhook_sender: WebhookSender
    event_ids: itertools.count[int]
    delivery_ids: itertools.count[int]
    subscription_ids: itertools.count[int]
    #: how many of the next deliveries arrive twice
    redeliveries: int
    app: Flask

    def _init_webhooks(self, *, target_url: str | None, attempts: int, retry_delay: float, timeout: float) -> None:
        self.webhook_target_url, self.webhook_subscriptions = target_url, []
        self.webhook_sender = WebhookSender(self.client_secret, attempts=attempts, retry_delay=retry_delay,
                                            timeout=timeout)
        self.event_ids, self.delivery_ids = itertools.count(5_000_001), itertools.count(1)
        self.subscription_ids = itertools.count(3_100_001)
        self.redeliveries = 0

    # -- for tests and the demo ------------------------------------------------------------------
    def subscribe(self, target_url: str | None, *subscriptions: tuple[str, str | None]) -> None:
        """Set the app's target URL and add subscriptions (``(eventType, propertyName or None)``)."""
        with self.lock:
            if target_url is not None:
                self.webhook_target_url = target_url
            for event_type, property_name in subscriptions:
                self._add_subscription(event_type, property_name)

    def redeliver_next(self, count: int = 1) -> None:
        """The next ``count`` deliveries arrive twice (the same event, after the first copy)."""
        with self.lock:
            self.redeliveries += count

    def wait_for_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until every queued webhook has been delivered or given up; False on time-out."""
        return self.webhook_sender.wait(timeout)

    def deliveries(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every delivery so far (``kind``: ``channel`` or ``subscription``), oldest first."""
        return [d.as_json() for d in list(self.webhook_sender.deliveries) if kind in (None, d.kind)]

    def edit_object(self, object_type: str, object_id: str, properties: dict[str, str],
                    user_id: int | None = None) -> dict[str, Any]:
        """A person edits a record in HubSpot's UI; the record as the API shows it. Sends
        ``<object>.propertyChange`` (``changeSource`` ``CRM_UI``) for each subscribed property that changed.

        Raises:
            KeyError: no such record.
            ValueError: a property HubSpot would refuse.
        """
        user = user_id or self.installer_user_id()
        with (nullcontext() if has_app_context() else self.app.app_context()), self.lock:
            found = self._find(object_type, object_id, None)
            if found is None:
                raise KeyError(f"{object_type} {object_id} not found")
            refused = self._validate_properties(object_type, properties, exclude=found["id"])
            if refused is not None:
                raise ValueError(refused[0].get_json()["message"])
            changed = {k: v for k, v in properties.items() if found["properties"].get(k) != v}
            if changed:
                before = {**found, "properties": dict(found["properties"])}
                found["properties"].update(changed)
                found["updatedAt"] = timestamp()
                self.search_index.written(object_type, found["id"], found, before=before)
            shown = self._public(found)
        singular = object_type.removesuffix("s")
        self._emit([{"subscriptionType": f"{singular}.propertyChange", "objectId": int(object_id), "propertyName": k,
                     "propertyValue": v, "changeSource": "CRM_UI", "sourceId": f"userId:{user}"}
                    for k, v in changed.items()])
        return shown

    def _control_edit_object(self, object_type: str, object_id: str) -> Any:
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("properties"), dict):
            return jsonify({"error": "give the properties to change"}), 400
        try:
            return jsonify(self.edit_object(object_type, object_id, {str(k): str(v) for k, v in
                                                                    body["properties"].items()},
                                            body.get("userId"))), 200
        except KeyError as exc:
            return jsonify({"error": str(exc)}), 404
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400

    # -- sending ---------------------------------------------------------------------------------
    def _deliver(self, kind: str, url: str, build: Callable[[int], Any], legacy: str) -> Delivery:
        with self.lock:
            redeliver = self.redeliveries > 0
            self.redeliveries -= 1 if redeliver else 0
        delivery = Delivery(next(self.delivery_ids), kind, url, build, legacy, redeliver=redeliver)
        return self.webhook_sender.send(delivery)

    def _emit(self, events: list[dict[str, Any]]) -> Delivery | None:
        """Send subscription events (``subscriptionType``, ``objectId`` and their own fields) to the target
        URL, those the app subscribes to, in one batch; None when none is subscribed to."""
        now_ms = int(self.clock() * 1000)
        batch = []
        with self.lock:
            for event in events:
                subscription = next((s for s in self.webhook_subscriptions if s["active"]
                                     and s["eventType"] == event["subscriptionType"]
                                     and s.get("propertyName") in (None, event.get("propertyName"))), None)
                if subscription is not None:
                    batch.append({"eventId": next(self.event_ids), "subscriptionId": int(subscription["id"]),
                                  "portalId": self.portal_id, "appId": self.app_id, "occurredAt": now_ms, **event})
            url = self.webhook_target_url
        if not batch or not url:
            return None
        return self._deliver("subscription", url, lambda n: [{**e, "attemptNumber": n} for e in batch], "v1")

    def _send_to_channel(self, url: str, body: dict[str, Any]) -> Delivery:
        """Send a custom channel event to the channel's ``webhookUrl``."""
        return self._deliver("channel", url, lambda n: body, "v2")

    # -- the webhooks API (developer API key) ----------------------------------------------------
    def _extra_routes(self) -> list[Route]:
        return [*super()._extra_routes(),
                (("GET", "PUT", "DELETE"), "/webhooks/v3/<int:app_id>/settings", self._serve_settings),
                (("GET", "POST"), "/webhooks/v3/<int:app_id>/subscriptions", self._serve_subscriptions),
                (("PATCH",), "/webhooks/v3/<int:app_id>/subscriptions/<subscription_id>", self._serve_subscription),
                (("POST",), "/_emulator/webhooks/settings", self._control_settings),
                (("GET",), "/_emulator/webhooks/deliveries", self._control_deliveries),
                (("POST",), "/_emulator/webhooks/redeliver", self._control_redeliver),
                (("POST",), "/_emulator/webhooks/wait", self._control_wait),
                (("POST",), "/_emulator/objects/<object_type>/<object_id>", self._control_edit_object)]

    def _serve_settings(self, app_id: int) -> Any:
        """The app's webhook target URL."""
        if (early := self._before("developer")) or (early := self._own_app(app_id)):
            return early
        if request.method == "PUT":
            if early := self._shape("SettingsChangeRequest", _MODELS):
                return early
            self.webhook_target_url = request.get_json()["targetUrl"]
        elif request.method == "DELETE":
            self.webhook_target_url = None
            return "", 204
        if self.webhook_target_url is None:
            return self._error(404, f"No webhook settings for app {app_id}", "OBJECT_NOT_FOUND")
        return jsonify({"targetUrl": self.webhook_target_url, "throttling": {"maxConcurrentRequests": 10},
                        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": timestamp()}), 200

    def _serve_subscriptions(self, app_id: int) -> Any:
        """The app's subscriptions, or a new one."""
        if (early := self._before("developer")) or (early := self._own_app(app_id)):
            return early
        if request.method == "GET":
            with self.lock:
                return jsonify({"results": list(self.webhook_subscriptions)}), 200
        if early := self._shape("SubscriptionCreateRequest", _MODELS):
            return early
        body = request.get_json()
        if body["eventType"].endswith(".propertyChange") and not body.get("propertyName"):
            return self._error(400, "propertyName is required for propertyChange subscriptions", "VALIDATION_ERROR")
        with self.lock:
            created = self._add_subscription(body["eventType"], body.get("propertyName"), body.get("active", True))
        return jsonify(created), 201

    def _serve_subscription(self, app_id: int, subscription_id: str) -> Any:
        """Turn one subscription on or off (``SubscriptionPatchRequest``: ``active``)."""
        if (early := self._before("developer")) or (early := self._own_app(app_id)):
            return early
        if early := self._shape("SubscriptionPatchRequest", _MODELS):
            return early
        with self.lock:
            found = next((s for s in self.webhook_subscriptions if s["id"] == subscription_id), None)
            if found is None:
                return self._error(404, f"No subscription {subscription_id} for app {app_id}", "OBJECT_NOT_FOUND")
            found["active"], found["updatedAt"] = bool(request.get_json()["active"]), timestamp()
            return jsonify(found), 200

    def _own_app(self, app_id: int) -> Any:
        if app_id != g.hubspot_app_id:
            return self._error(403, f"The developer API key does not own app {app_id}", "FORBIDDEN")
        return None

    def _add_subscription(self, event_type: str, property_name: str | None, active: bool = True) -> dict[str, Any]:
        """Hold ``lock``. Add (or re-activate) a subscription."""
        try:
            check_model("SubscriptionCreateRequest", {"eventType": event_type, "active": active}, module=_MODELS)
        except RequestShapeError as exc:
            raise ValueError(str(exc)) from None
        for existing in self.webhook_subscriptions:
            if (existing["eventType"], existing.get("propertyName")) == (event_type, property_name):
                existing["active"] = active
                return existing
        now = timestamp()
        subscription = {"id": str(next(self.subscription_ids)), "eventType": event_type, "active": active,
                        "createdAt": now, "updatedAt": now} | ({"propertyName": property_name} if property_name else {})
        self.webhook_subscriptions.append(subscription)
        return subscription

    def _control_settings(self) -> Any:
        """``{"targetUrl", "subscriptions": [{"eventType", "propertyName"?}]}``"""
        body = request.get_json(silent=True) or {}
        try:
            self.subscribe(body.get("targetUrl"), *[(s["eventType"], s.get("propertyName"))
                                                   for s in body.get("subscriptions", [])])
        except (KeyError, ValueError, TypeError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"targetUrl": self.webhook_target_url, "subscriptions": self.webhook_subscriptions}), 200

    def _control_deliveries(self) -> Any:
        return jsonify(self.deliveries(request.args.get("kind"))), 200

    def _control_redeliver(self) -> Any:
        self.redeliver_next(int((request.get_json(silent=True) or {}).get("count", 1)))
        return jsonify({"redeliveries": self.redeliveries}), 200

    def _control_wait(self) -> Any:
        done = self.wait_for_deliveries(float((request.get_json(silent=True) or {}).get("timeout", 5.0)))
        return jsonify({"done": done}), 200 if done else 504
