"""The emulated Conversions API of Meta's Graph API: ``POST /{version}/{dataset_id}/events``.

Meta publishes no machine-readable description of this endpoint either; the contract is written from Meta's
documentation in words: "Conversions API" (``data``, ``test_event_code``; the answer ``events_received``,
``messages``, ``fbtrace_id``), "Server Event Parameters" (``event_name``, ``event_time`` in unix seconds not in the
future and at most 7 days old, ``action_source`` and its values, ``event_id``), "Customer Information Parameters"
(``em``, ``ph`` and the other contact information as SHA-256 lower-case hex, never in clear; ``lead_id``),
"Conversions API for Business Messaging" (``action_source`` ``business_messaging`` with ``messaging_channel``;
for WhatsApp ``user_data.ctwa_clid`` and ``whatsapp_business_account_id``; its event names) and the "Conversion
Leads" payload (``system_generated`` CRM events carry ``lead_id``, ``custom_data.event_source`` ``crm``).

A payload Meta would refuse is answered with Graph's error body (code 100, the ``error_subcode`` and the
``error_user_title``/``error_user_msg`` saying what is wrong) and kept in :attr:`ConversionsAPI.refused`; an
accepted one is kept in :attr:`ConversionsAPI.received`, which ``GET /_emulator/conversions`` lists (the demo's
panel and the tests read it). Faults (:meth:`ConversionsAPI.fail_next`): a transient 2, a 500, a throttling 4.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

#: ``action_source`` values Meta documents
ACTION_SOURCES = frozenset({"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
                            "business_messaging", "other"})
#: the event names Meta's Conversions API for Business Messaging takes
MESSAGING_EVENTS = frozenset({"LeadSubmitted", "Purchase", "InitiateCheckout", "AddToCart",
                              "ViewContent"})
MESSAGING_CHANNELS = frozenset({"whatsapp", "messenger", "instagram"})
#: customer information parameters Meta takes only hashed
HASHED = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")
MAX_AGE_SECONDS = 7 * 86400
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LEAD_ID = re.compile(r"^\d{15,17}$")


@dataclass
class ConversionsAPI:
    """State and checks of the emulated Conversions API.

    Args:
        token: the access token an event post must carry (bearer header or ``access_token``).
        clock: the time events are judged against (tests move it).
    """

    token: str
    clock: Callable[[], float] = time.time
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def fail_next(self, count: int = 1, kind: str = "2") -> None:
        """Make the next ``count`` event posts fail with ``kind``: ``2`` (transient), ``4`` (throttled), ``500``.

        Raises:
            ValueError: another kind.
        """
        if kind not in ("2", "4", "500"):
            raise ValueError(f"kind must be 2, 4 or 500, got {kind!r}")
        with self.lock:
            self.faults += [kind] * count

    def reset(self) -> None:
        """Forget every event received or refused, and the faults."""
        with self.lock:
            self.received.clear()
            self.refused.clear()
            self.faults.clear()

    # -- checks --------------------------------------------------------------------------------
    def problem(self, event: Any, now: float) -> tuple[int, str, str] | None:
        """Why Meta would refuse ``event``: ``(subcode, title, message)``; None when it is acceptable."""
        if not isinstance(event, dict):
            return 2804008, "Invalid Event", "each event of data must be an object"
        for required in ("event_name", "event_time", "action_source", "user_data"):
            if event.get(required) in (None, "", {}):
                return 2804050, "Missing Parameter", f"The parameter {required} is required"
        if event["action_source"] not in ACTION_SOURCES:
            return 2804019, "Invalid Action Source", f"action_source {event['action_source']!r} is not a valid value"
        at = event["event_time"]
        if not isinstance(at, int) or isinstance(at, bool):
            return 2804007, "Invalid Timestamp", "event_time must be a unix timestamp in seconds"
        if at > now + 60:
            return 2804004, "Event Timestamp In Future", "event_time is in the future"
        if now - at > MAX_AGE_SECONDS:
            return 2804003, "Event Timestamp Too Old", "event_time is more than 7 days ago"
        user = event["user_data"]
        if not isinstance(user, dict):
            return 2804008, "Invalid Parameter", "user_data must be an object"
        return self._user_problem(event, user) or self._custom_problem(event)

    @staticmethod
    def _user_problem(event: dict[str, Any], user: dict[str, Any]) -> tuple[int, str, str] | None:
        for name in HASHED:
            values = user.get(name)
            for value in values if isinstance(values, list) else ([values] if values is not None else []):
                if not (isinstance(value, str) and _SHA256.match(value)):
                    return 2804012, "Unhashed Contact Information", (
                        f"user_data.{name} must be SHA-256 hashed (64 lower-case hex characters)")
        if event["action_source"] == "business_messaging":
            found = ConversionsAPI._messaging_problem(event, user)
            if found:
                return found
        if "lead_id" in user and not _LEAD_ID.match(str(user["lead_id"])):
            return 2804020, "Invalid Lead ID", "user_data.lead_id must be the 15 to 17 digit id of a Meta lead"
        if event["action_source"] == "system_generated" and not any(user.get(k) for k in ("lead_id", *HASHED)):
            return 2804050, "Missing Customer Information", "a CRM event needs lead_id or hashed contact information"
        return None

    @staticmethod
    def _custom_problem(event: dict[str, Any]) -> tuple[int, str, str] | None:
        custom = event.get("custom_data") or {}
        if event["event_name"] == "Purchase" and (custom.get("value") is None or not custom.get("currency")):
            return 2804030, "Missing Value", "a Purchase event needs custom_data.value and custom_data.currency"
        if custom.get("currency") is not None and not re.match(r"^[A-Za-z]{3}$", str(custom["currency"])):
            return 2804031, "Invalid Currency", "custom_data.currency must be an ISO 4217 code"
        if custom.get("value") is not None and not isinstance(custom["value"], int | float):
            return 2804032, "Invalid Value", "custom_data.value must be a number"
        return None

    @staticmethod
    def _messaging_problem(event: dict[str, Any], user: dict[str, Any]) -> tuple[int, str, str] | None:
        channel = event.get("messaging_channel")
        if channel not in MESSAGING_CHANNELS:
            return 2804065, "Invalid Messaging Channel", "business_messaging events need messaging_channel " \
                                                          "whatsapp, messenger or instagram"
        if event["event_name"] not in MESSAGING_EVENTS:
            return 2804066, "Messaging Event Invalid Event Type", (
                f"{event['event_name']!r} is not an event name business messaging takes")
        if channel == "whatsapp" and not (user.get("ctwa_clid") and user.get("whatsapp_business_account_id")):
            return 2804067, "Missing Messaging Identifiers", (
                "WhatsApp events need user_data.ctwa_clid and user_data.whatsapp_business_account_id")
        return None

    # -- the API -------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: int, message: str, **extra: Any) -> tuple[Response, int]:
        body = {"error": {"message": message, "type": extra.pop("type", "OAuthException"), "code": code,
                          "fbtrace_id": secrets.token_urlsafe(12), **extra}}
        return jsonify(body), status

    def post(self, version: str, dataset_id: str) -> tuple[Response, int]:
        """``POST /{version}/{dataset_id}/events``."""
        header = request.headers.get("Authorization", "")
        body = request.get_json(silent=True) or {}
        given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else \
            str(body.get("access_token") or request.args.get("access_token") or "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == "500":
            return self._error(500, 1, "An unknown error occurred", is_transient=True)
        if fault == "2":
            return self._error(503, 2, "An unexpected error has occurred. Please retry your request later.",
                               is_transient=True)
        if fault == "4":
            return self._error(400, 4, "(#4) Application request limit reached", is_transient=True)
        data = body.get("data")
        if not isinstance(data, list) or not data or len(data) > 1000:
            return self._error(400, 100, "Invalid parameter", error_user_title="Invalid Data",
                               error_user_msg="data must be a list of 1 to 1000 events", error_subcode=2804001)
        now = self.clock()
        for index, event in enumerate(data):
            found = self.problem(event, now)
            if found is not None:
                subcode, title, said = found
                with self.lock:
                    self.refused.append({"dataset_id": dataset_id, "event": event, "reason": said})
                return self._error(400, 100, "Invalid parameter", error_subcode=subcode, error_user_title=title,
                                   error_user_msg=f"data[{index}]: {said}", is_transient=False)
        with self.lock:
            for event in data:
                self.received.append({"dataset_id": dataset_id, "version": version, "received_at": now,
                                      "test_event_code": body.get("test_event_code"), **event})
        return jsonify({"events_received": len(data), "messages": [], "fbtrace_id": secrets.token_urlsafe(12)}), 200

    def register(self, app: Flask) -> None:
        """Add the endpoint and its control routes to the Graph emulator's ``app``."""
        app.add_url_rule("/<version>/<dataset_id>/events", "conversions_events", self.post, methods=["POST"])

        def listed() -> tuple[Response, int]:
            with self.lock:
                return jsonify({"events": list(self.received), "refused": list(self.refused)}), 200

        def fault() -> tuple[Response, int]:
            data = request.get_json(silent=True) or {}
            try:
                self.fail_next(int(data.get("count", 1)), str(data.get("kind", "2")))
            except ValueError as exc:
                return jsonify({"error": str(exc)}), 400
            return jsonify({"ok": True}), 200

        app.add_url_rule("/_emulator/conversions", "conversions_list", listed, methods=["GET"])
        app.add_url_rule("/_emulator/conversions/faults", "conversions_faults", fault, methods=["POST"])
