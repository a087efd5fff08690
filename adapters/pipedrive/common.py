"""The base every part of the Pipedrive adapter builds on: the one call path (which names a refused
custom field by its visible name), the custom fields' keys, the per-name lock, and the create that is
marked pending in the id cache until its id is known.

Persons, records, labels and the schema are separate mixins (:mod:`adapters.pipedrive.persons`,
:mod:`~adapters.pipedrive.records`, :mod:`~adapters.pipedrive.labels`, :mod:`~adapters.pipedrive.schema`);
they all need these, so they live in one class below them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from adapters.base import AdapterCredentials, AdapterOptions, CRMAdapter
from adapters.pipedrive.keys import LOCKS
from adapters.pipedrive.options import PipedriveOptions
from adapters.pipedrive.session import PipedriveSession
from core.errors import FatalError, RetryableError

if TYPE_CHECKING:
    from redis import Redis

#: fields every account has, written under their own names (not custom fields)
STANDARD = {
    "person": {"name", "phone", "phones", "email", "emails", "owner_id", "org_id", "job_title", "birthday",
               "visible_to", "label_ids", "marketing_status"},
    "lead": {"title", "owner_id", "value", "expected_close_date", "visible_to", "was_seen", "channel",
             "channel_id", "origin_id"},
    "deal": {"title", "owner_id", "value", "currency", "expected_close_date", "probability", "visible_to",
             "status"},
}
_INTEGER_FIELDS = {"owner_id", "org_id", "visible_to", "channel"}


class PipedriveBase(CRMAdapter):
    """What every part of the Pipedrive adapter uses: the session, field keys, locks and pending creates."""

    options: PipedriveOptions
    session: PipedriveSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = PipedriveSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.base = self.session.base

    def _call(self, operation: str, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: Any = None) -> dict[str, Any]:
        """One API call through the session; a refusal naming a custom field's key names the field instead
        (and the keys are read again next time: the field may have been deleted)."""
        try:
            return self.session.request(operation, method, path, params=params, body=body)
        except FatalError as exc:
            key = exc.details.get("field_key")
            if key and exc.setting is None:
                exc.field = self._name_of(key) or key
                self._forget_fields()
            raise

    # -- fields: visible names → Pipedrive's keys ----------------------------------------------
    def _fields(self, entity: Literal["person", "deal"], *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Visible name → ``{key, type, custom, options: {label: id}}`` (also by key), cached a day."""
        if not refresh:
            cached = self.cache.get("fields", entity)
            if cached:
                loaded: dict[str, dict[str, Any]] = json.loads(cached)
                return loaded
        found: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self._call(f"{entity}_fields", "GET", f"/api/v2/{entity}Fields", params=params)
            for item in page.get("data") or []:
                spec = {"key": item["field_code"], "name": item["field_name"], "type": item["field_type"],
                        "custom": bool(item.get("is_custom_field")),
                        "options": {str(o["label"]): o["id"] for o in item.get("options") or []}}
                found.setdefault(item["field_name"], spec)
                found.setdefault(item["field_code"], spec)
            cursor = (page.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
        self.cache.set("fields", json.dumps(found), entity)
        return found

    def _forget_fields(self) -> None:
        for entity in ("person", "deal"):
            self.cache.drop("fields", entity)

    def _name_of(self, key: str) -> str | None:
        for entity in ("person", "deal"):
            cached = self.cache.get("fields", entity)
            if cached and key in (specs := json.loads(cached)):
                return str(specs[key]["name"])
        return None

    def _field(self, entity: Literal["person", "deal"], name: str) -> dict[str, Any]:
        """The custom field called ``name``; the keys are read again once when it is not known.

        Raises:
            FatalError: no such field in the account (names the field and the mapping file).
        """
        spec = self._fields(entity).get(name)
        if spec is None:
            spec = self._fields(entity, refresh=True).get(name)
        if spec is None:
            where = "deal fields (leads share them)" if entity == "deal" else "person fields"
            raise FatalError(f"pipedrive: {self.options.mapping_file} names the field {name!r}, which is not one of the "
                             f"account's {where}; run `chat2crm crm setup` or create it in Pipedrive", field=name)
        return spec

    def _value(self, spec: dict[str, Any], value: Any) -> Any:
        """A mapped value in the shape the field takes (option ids for enum and set fields)."""
        kind = spec["type"]
        if kind in ("enum", "set"):
            labels = [v for v in (value if isinstance(value, list) else str(value).split(";")) if v != ""]
            by_label = {k.lower(): v for k, v in spec["options"].items()}
            ids = []
            for label in labels:
                if str(label).lower() not in by_label:
                    raise FatalError(f"pipedrive: {label!r} is not an option of the field {spec['name']!r}",
                                     field=spec["name"])
                ids.append(by_label[str(label).lower()])
            return ids if kind == "set" else (ids[0] if ids else None)
        if kind in ("double", "monetary"):
            return float(value)
        if kind == "date":
            return str(value)[:10]
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)
        return text if kind != "varchar" or len(text) <= 255 else text[:254] + "…"

    def _split(self, entity: Literal["person", "lead", "deal"], properties: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Mapped properties → (standard fields, custom fields by key)."""
        standard: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        fields_of: Literal["person", "deal"] = "person" if entity == "person" else "deal"
        named = [n for n in properties if n not in STANDARD[entity]]
        fields = self._fields(fields_of) if named else {}
        if any(n not in fields for n in named):
            fields = self._fields(fields_of, refresh=True)  # made since the keys were cached?
        missing = [n for n in named if n not in fields]
        if missing:
            where = "person fields" if entity == "person" else "deal fields (leads share them)"
            raise FatalError(f"pipedrive: {self.options.mapping_file} names fields that are not among the account's {where}: "
                             f"{', '.join(map(repr, missing))}; run `chat2crm crm setup` or create them in Pipedrive",
                             field=missing[0])
        for name, value in properties.items():
            if name not in STANDARD[entity]:
                spec = fields[name]
                custom[spec["key"]] = self._value(spec, value)
            elif name in ("phone", "phones"):
                standard["phones"] = [{"value": str(value), "primary": True, "label": "mobile"}]
            elif name in ("email", "emails"):
                standard["emails"] = [{"value": str(value), "primary": True, "label": "work"}]
            elif name == "visible_to" and entity == "lead":
                standard[name] = str(value)  # v1 leads take it as a string
            elif name in _INTEGER_FIELDS:
                standard[name] = int(value)
            else:
                standard[name] = value
        return standard, custom

    # -- locks and pending creates -------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        """One worker at a time creates labels or options: Pipedrive would accept two of one name.

        Raises:
            RetryableError: another worker held the lock too long.
        """
        if self.redis is None:
            yield
            return
        lock = self.redis.lock(LOCKS.key(name), timeout=30, blocking_timeout=10)
        if not lock.acquire():
            raise RetryableError(f"pipedrive: another worker is creating {name}", retry_after=5)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # expired meanwhile: nothing to release
                lock.release()

    def _create_once(self, kind: str, values: tuple[str, ...], operation: str, path: str, body: dict[str, Any], *,
                     kept: Callable[[str], str] = str) -> str:
        """POST one object, marked pending in the id cache until its id (``kept(id)``) is there: a create
        Pipedrive refused is unmarked (nothing was written); one with no answer stays pending for the retry."""
        self.cache.mark_pending(kind, *values)
        try:
            created = self._call(operation, "POST", path, body=body)
        except (FatalError, RetryableError) as exc:
            if isinstance(exc, FatalError) or exc.details.get("status") == 429:
                self.cache.drop(kind, *values)
            raise
        new_id = str(created["data"]["id"])
        self.cache.set(kind, kept(new_id), *values)
        return new_id
