"""The emulated Pipedrive company account's state, and what its operations share: Pipedrive's response
envelopes and error shape, custom fields (generated keys, option ids, value checks), the search
term rules and the v2 list endpoints' filters, sorting and cursor paging.

:class:`PipedriveState` is the bottom layer of :class:`~emulators.pipedrive.PipedriveEmulator`: it
declares the state (set up by the emulator's constructor); the operations are in
:mod:`emulators.pipedrive.people` and :mod:`emulators.pipedrive.sales`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any

from flask import Response

from emulators._faults import FaultInjection

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
KINDS = ("persons", "organizations", "leads", "deals", "notes", "activities", "leadLabels", "files")
LABEL_COLORS = ("blue", "brown", "dark-gray", "gray", "green", "orange", "pink", "purple", "red", "yellow")
#: standard fields as Pipedrive's field endpoints list them: (code, name, type)
PERSON_FIELDS = [("name", "Name", "varchar"), ("first_name", "First name", "varchar"),
                 ("last_name", "Last name", "varchar"), ("phone", "Phone", "phone"), ("email", "Email", "varchar"),
                 ("owner_id", "Owner", "user"), ("org_id", "Organization", "org"), ("label_ids", "Labels", "set"),
                 ("job_title", "Job title", "varchar"), ("add_time", "Person created", "date")]
DEAL_FIELDS = [("title", "Title", "varchar"), ("value", "Value", "monetary"), ("owner_id", "Owner", "user"),
               ("person_id", "Contact person", "people"), ("org_id", "Organization", "org"),
               ("pipeline_id", "Pipeline", "double"), ("stage_id", "Stage", "stage"), ("status", "Status", "status"),
               ("expected_close_date", "Expected close date", "date"), ("label_ids", "Label", "set")]


def timestamp() -> str:
    """Now, as Pipedrive's v2 API writes a time (``2026-01-01T09:30:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(text: str) -> datetime:
    """An RFC 3339 time (``2026-11-23T09:30:00Z``, or Pipedrive's ``2026-11-23 09:30:00``), in UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


class PipedriveState(FaultInjection):
    """The account's state, and what the operations of the emulated API share."""

    api_token: str
    search_rate_limit: tuple[int, float] | None
    daily_tokens: int | None
    tokens_used: int
    check_requests: bool
    ids: itertools.count[int]
    search_window: deque[float]
    users: list[dict[str, Any]]
    #: kind (``persons``, ``leads``…) → id → object
    objects: dict[str, dict[str, dict[str, Any]]]
    #: entity (``person``, ``deal``) → field definitions
    fields: dict[str, list[dict[str, Any]]]
    pipelines: list[dict[str, Any]]
    stages: list[dict[str, Any]]

    # -- fields, and helpers for tests and the demo ---------------------------------------------
    def _field(self, code: str, name: str, kind: str, *, custom: bool = True,
               options: list[str] | None = None) -> dict[str, Any]:
        return {"id": next(self.ids), "field_code": code, "field_name": name, "field_type": kind,
                "options": [{"id": next(self.ids), "label": o} for o in options or []] if kind in ("enum", "set")
                else None, "subfields": None, "is_custom_field": custom, "is_optional_response_field": False}

    def add_field(self, entity: str, name: str, kind: str = "varchar", options: list[str] | None = None) -> str:
        """Create a custom field as an admin would; returns its generated 40-character key."""
        with self.lock:
            code = hashlib.sha1(f"{entity}:{name}:{next(self.ids)}".encode()).hexdigest()  # noqa: S324 - a key, not security
            self.fields[entity].append(self._field(code, name, kind, options=options))
            return code

    def field_key(self, entity: str, name: str) -> str | None:
        """The key of the field called ``name`` (None when there is none)."""
        with self.lock:
            return next((f["field_code"] for f in self.fields[entity] if f["field_name"] == name), None)

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Every live object of a kind (``persons``, ``leads``, ``deals``, ``notes``, ``activities``…)."""
        kind = {"person": "persons", "lead": "leads", "deal": "deals", "note": "notes", "activity": "activities",
                "organization": "organizations", "labels": "leadLabels"}.get(object_name, object_name)
        with self.lock:
            return [json.loads(json.dumps(o)) for o in self.objects[kind].values()
                    if not o.get("is_deleted") and not o.get("is_archived")]

    def count(self, object_name: str) -> int:
        """How many live objects of a kind the account holds."""
        return len(self.records(object_name))

    def label_names(self, ids: list[str] | None) -> list[str]:
        """Lead label ids → names."""
        with self.lock:
            return [self.objects["leadLabels"][i]["name"] for i in ids or [] if i in self.objects["leadLabels"]]

    def _names(self, entity: str) -> dict[str, dict[str, Any]]:
        return {f["field_code"]: f for f in self.fields[entity]}

    def _readable(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """Custom field values by visible name, option ids as labels (for the agent view)."""
        fields = self._names(entity)
        out: dict[str, Any] = {}
        for code, value in values.items():
            spec = fields.get(code)
            if spec is None or value in (None, "", []):
                continue
            if spec["options"]:
                labels = {o["id"]: o["label"] for o in spec["options"]}
                value = [labels.get(v, v) for v in value] if isinstance(value, list) else labels.get(value, value)
            out[spec["field_name"]] = value
        return out

    # -- answers -------------------------------------------------------------------------------
    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)

    def _ok(self, data: Any, status: int = 200, additional: Any = None) -> Response:
        return self._json({"success": True, "data": data, "additional_data": additional}, status)

    def _error(self, status: int, message: str, info: str = ERROR_INFO, **extra: Any) -> Response:
        return self._json({"success": False, "error": message, "error_info": info, "data": None,
                           "additional_data": None, **extra}, status)

    # -- values --------------------------------------------------------------------------------
    def _check_custom(self, entity: str, values: dict[str, Any]) -> str | None:
        """Why Pipedrive would refuse these custom field values (None: it would not)."""
        fields = self._names(entity)
        for code, value in values.items():
            spec = fields.get(code)
            if spec is None or not spec["is_custom_field"]:
                return f"Custom field with key '{code}' does not exist"
            if value is None:
                continue
            if spec["field_type"] in ("enum", "set"):
                allowed = {o["id"] for o in spec["options"] or []}
                chosen = value if isinstance(value, list) else [value]
                if spec["field_type"] == "enum" and isinstance(value, list):
                    return f"Field '{spec['field_name']}' takes one option id"
                if not all(isinstance(v, int) and v in allowed for v in chosen):
                    return f"Invalid option id for field '{spec['field_name']}'"
            elif spec["field_type"] in ("varchar", "text", "phone", "varchar_auto", "date"):
                if not isinstance(value, str):
                    return f"Field '{spec['field_name']}' takes a string"
                if spec["field_type"] == "varchar" and len(value) > 255:
                    return f"Field '{spec['field_name']}' is longer than 255 characters"
        return None

    def _user_ok(self, owner_id: Any) -> bool:
        return owner_id is None or any(u["id"] == owner_id for u in self.users)

    def _person_out(self, person: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(person))

    def _live(self, kind: str, key: Any) -> dict[str, Any] | None:
        obj = self.objects[kind].get(str(key))
        return obj if obj is not None and not obj.get("is_deleted") else None

    # -- search and lists ----------------------------------------------------------------------
    @staticmethod
    def _term_ok(args: dict[str, Any]) -> str | None:
        term = str(args.get("term") or "")
        exact = str(args.get("exact_match", "")).lower() in ("true", "1")
        if len(term) < (1 if exact else 2):
            return "Search term must be at least 2 characters long (1 with exact_match)"
        return None

    @staticmethod
    def _matches(term: str, values: list[str], exact: bool, phone: bool = False) -> bool:
        if phone:
            wanted = _digits(term)
            return bool(wanted) and any((_digits(v) == wanted) if exact else (wanted in _digits(v)) for v in values)
        lowered = term.lower()
        return any((v.lower() == lowered) if exact else (lowered in v.lower()) for v in values)

    def _searchable_custom(self, entity: str, values: dict[str, Any]) -> list[str]:
        fields = self._names(entity)
        kinds = ("address", "varchar", "text", "varchar_auto", "double", "monetary", "phone")
        return [str(v) for k, v in values.items() if k in fields and fields[k]["field_type"] in kinds and v]

    def _listed(self, kind: str, args: dict[str, Any], filters: tuple[str, ...], out: Any = None) -> Response:
        """A v2 list: filtered by ``filters``, ``ids`` and ``updated_since``/``updated_until`` (RFC 3339),
        sorted by ``sort_by``/``sort_direction``, paged by ``limit`` and an opaque ``cursor``."""
        rows = [o for o in self.objects[kind].values() if not o.get("is_deleted")]
        if args.get("ids"):
            wanted = {i.strip() for i in str(args["ids"]).split(",")}
            rows = [o for o in rows if str(o["id"]) in wanted]
        for name in filters:
            if args.get(name) is not None:
                rows = [o for o in rows if str(o.get(name)) == str(args[name])]
        for name, keep in (("updated_since", lambda t, b: t >= b), ("updated_until", lambda t, b: t < b)):
            if args.get(name):
                try:
                    bound = _moment(str(args[name]))
                except ValueError:
                    return self._error(400, f"{name} must be an RFC 3339 time", error_info="Validation failed.")
                rows = [o for o in rows if keep(_moment(str(o["update_time"])), bound)]
        order = args.get("sort_by") or "id"
        rows.sort(key=lambda o: (o[order] if order == "id" else _moment(str(o[order]))),
                  reverse=args.get("sort_direction") == "desc")
        start = int(args.get("cursor") or 0)
        limit = min(int(args.get("limit") or 100), 500)
        page = rows[start:start + limit]
        more = str(start + limit) if start + limit < len(rows) else None
        return self._ok([out(o) if out else o for o in page], additional={"next_cursor": more})
