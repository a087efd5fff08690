"""Finding and writing persons and organizations in Pipedrive.

Pipedrive's search lags behind writes, so it never decides whether the relay's own write happened:
the id cache knows what the relay made, and a create whose answer was lost is looked for on a list
endpoint (current) before writing again. Search serves what only it can: persons and organizations
people made by hand, and persons the relay made so long ago that their ids left the cache.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from adapters.base import CompanyWrite, ContactWrite, Ref
from adapters.pipedrive.common import STANDARD, PipedriveBase
from adapters.pipedrive.keys import digest as _digest
from core.errors import FatalError

log = logging.getLogger("chat2crm.pipedrive")

#: how far before a pending mark a list of recent writes looks (the CRM's clock is not ours)
_CLOCK_SKEW = timedelta(seconds=120)


class PipedrivePersons(PipedriveBase):
    """Persons (by contact key, then phone or e-mail, else created) and organizations (by name)."""

    # -- persons -------------------------------------------------------------------------------
    def _search(self, operation: str, path: str, term: str, field: str, **extra: Any) -> list[dict[str, Any]]:
        """An exact search (it lags behind writes: never the proof that the relay's own write did not happen)."""
        page = self._call(operation, "GET", path, params={"term": term, "fields": field, "exact_match": "true",
                                                          "limit": 10, **extra})
        return [i["item"] for i in (page.get("data") or {}).get("items") or []]

    def _person_by_key(self, key_property: str, key_value: str) -> dict[str, Any] | None:
        self._field("person", key_property)  # a mapping naming no such field fails here, by name
        for item in self._search("person_search", "/api/v2/persons/search", key_value, "custom_fields"):
            if key_value in (item.get("custom_fields") or []):
                return item
        return None

    def _recent(self, kind: Literal["persons", "organizations"], since: float,
                wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The ``kind`` object updated since ``since`` (a pending mark) that is ``wanted``: a list, which is
        current, unlike search."""
        moment = (datetime.fromtimestamp(since, UTC) - _CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
        params: dict[str, Any] = {"updated_since": moment, "sort_by": "update_time", "sort_direction": "desc",
                                  "limit": 500}
        for _ in range(20):  # 10,000 changed in minutes would be a different account
            page = self._call(f"{kind[:-1]}_list", "GET", f"/api/v2/{kind}", params=params)
            for item in page.get("data") or []:
                if wanted(item):
                    return item
            cursor = (page.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
            params["cursor"] = cursor
        return None

    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """Find a person by the contact key (the id cache, then a search), then phone, then e-mail;
        ``properties`` (by the names the mapping uses) are read back, option ids as labels."""
        found: dict[str, Any] | None = None
        person_id = self._cached_contact(key[1])[0] if key else None
        if key and person_id is None:
            found = self._person_by_key(key[0], key[1])
        if person_id is None and found is None and phone:
            hits = self._search("person_search", "/api/v2/persons/search", phone, "phone")
            found = hits[0] if hits else None
        if person_id is None and found is None and email:
            hits = self._search("person_search", "/api/v2/persons/search", email, "email")
            found = hits[0] if hits else None
        if person_id is None and found is None:
            return None
        person_id = person_id or str(found["id"])  # type: ignore[index]
        if not properties:
            return Ref(object=object or "person", id=person_id)
        try:
            person = self._call("person_get", "GET", f"/api/v2/persons/{person_id}")["data"]
        except FatalError as exc:
            if exc.details.get("status") != 404:
                raise
            if key:
                self.cache.drop("contact", key[1])  # deleted in Pipedrive since it was cached
            return None
        return Ref(object=object or "person", id=person_id, properties=self._read_back(person, properties))

    def _read_back(self, person: dict[str, Any], names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        custom = person.get("custom_fields") or {}
        for name in names:
            if name in ("phone", "phones"):
                value: Any = next((p["value"] for p in person.get("phones") or [] if p.get("value")), None)
            elif name in ("email", "emails"):
                value = next((e["value"] for e in person.get("emails") or [] if e.get("value")), None)
            elif name in STANDARD["person"]:
                value = person.get(name)
            else:
                spec = self._fields("person").get(name)
                value = custom.get(spec["key"]) if spec else None
                if spec and spec["options"] and value is not None:
                    labels = {v: k for k, v in spec["options"].items()}
                    value = ";".join(labels.get(v, str(v)) for v in value) if isinstance(value, list) \
                        else labels.get(value, value)
            if value not in (None, "", []):
                out[name] = value
        return out

    def _cached_contact(self, key_value: str) -> tuple[str | None, str | None]:
        cached = self.cache.get("contact", key_value)
        if not cached:
            return None, None
        person_id, _, digest = cached.partition("|")
        return person_id, digest

    def _contact(self, write: ContactWrite) -> Ref:
        """Person by key (the id cache; a create whose answer was lost: the persons updated since; else an
        exact search of the key field), then by phone / e-mail (adopted: the key is set on it), else
        created. Not written again when nothing changed. One worker at a time finds or makes a person."""
        standard, custom = self._split("person", write.properties)
        key_spec = self._field("person", write.key_property)
        custom[key_spec["key"]] = write.key_value
        body = {**standard, "custom_fields": custom}
        digest = _digest(body)
        known = self._known_person(write, body, digest)
        if known is not None:
            return known
        with self._exclusive("person:" + _digest(write.key_value)):
            known = self._known_person(write, body, digest)  # another worker may have made it meanwhile
            if known is not None:
                return known
            pending = self.cache.pending("contact", write.key_value)
            found = None
            if pending is not None:
                found = self._recent("persons", pending, lambda p: (p.get("custom_fields") or {}).get(
                    key_spec["key"]) == write.key_value)
            # The key is always looked up: it is what keeps a patient with no e-mail from being duplicated when the
            # id cache has lost (or never had) the person: one the relay made long ago, or before Redis was lost.
            found = found or self._person_by_key(write.key_property, write.key_value)
            if found is not None:
                self._call("person_update", "PATCH", f"/api/v2/persons/{found['id']}", body=body)
                self.cache.set("contact", f"{found['id']}|{digest}", write.key_value)
                return Ref(object=write.object, id=str(found["id"]))
            for how, value in (("phone", write.phone), ("email", write.email)):
                if how not in write.match_by or not value:
                    continue
                for item in self._search("person_search", "/api/v2/persons/search", value, how):
                    adopted = self._adopt(write, item, body, key_spec["key"])
                    if adopted is not None:
                        return adopted
            create_standard, create_custom = self._split("person", write.create_only)
            created_body = {**standard, **create_standard, "custom_fields": {**custom, **create_custom}}
            if "name" not in created_body:
                created_body["name"] = write.phone or write.key_value.split(":", 1)[-1]  # Pipedrive requires a name
            person_id = self._create_once("contact", (write.key_value,), "person_create", "/api/v2/persons",
                                          created_body, kept=lambda new: f"{new}|{digest}")
            return Ref(object=write.object, id=person_id, created=True)

    def _known_person(self, write: ContactWrite, body: dict[str, Any], digest: str) -> Ref | None:
        """The person the id cache knows for the key (updated when what is written changed), or None."""
        person_id, last = self._cached_contact(write.key_value)
        if person_id is None:
            return None
        if last == digest:
            return Ref(object=write.object, id=person_id)
        try:
            self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body=body)
        except FatalError as exc:
            if exc.details.get("status") != 404:
                raise
            self.cache.drop("contact", write.key_value)  # deleted in Pipedrive: find or create again
            return None
        self.cache.set("contact", f"{person_id}|{digest}", write.key_value)
        return Ref(object=write.object, id=person_id)

    def _adopt(self, write: ContactWrite, item: dict[str, Any], body: dict[str, Any], key_field: str) -> Ref | None:
        """Take over a person a clinic worker made (found by phone or e-mail): set our key on it,
        keep their phones and e-mails. A person holding another contact key is left alone."""
        person = self._call("person_get", "GET", f"/api/v2/persons/{item['id']}")["data"]
        if (person.get("custom_fields") or {}).get(key_field) not in (None, ""):
            return None
        merged = dict(body)
        for kind in ("phones", "emails"):
            have = [x for x in person.get(kind) or [] if x.get("value")]
            values = {_digits(x["value"]) if kind == "phones" else x["value"].lower() for x in have}
            extra = [x for x in body.get(kind, []) if (_digits(x["value"]) if kind == "phones"
                                                       else x["value"].lower()) not in values]
            if have or extra:
                merged[kind] = [{**x, "primary": bool(x.get("primary"))} for x in have] + \
                    [{**x, "primary": not have} for x in extra]
        merged.pop("name", None)  # the name a person typed stays
        self._call("person_update", "PATCH", f"/api/v2/persons/{person['id']}", body=merged)
        self.cache.set("contact", f"{person['id']}|adopted", write.key_value)
        log.info("adopted a person a clinic worker made", extra={"person_id": person["id"]})
        return Ref(object=write.object, id=str(person["id"]))

    # -- organizations -------------------------------------------------------------------------
    def _company(self, write: CompanyWrite) -> Ref:
        """The organization by name: the id cache; a create whose answer was lost: the organizations updated
        since; one a person made: an exact name search; else created (one worker at a time)."""
        name = write.name.strip().lower()
        cached = self.cache.get("organization", name)
        if cached:
            return Ref(object=write.object, id=cached)
        with self._exclusive("organization:" + _digest(name)):
            cached = self.cache.get("organization", name)
            if cached:
                return Ref(object=write.object, id=cached)
            pending = self.cache.pending("organization", name)
            found = self._recent("organizations", pending, lambda o: str(o.get("name") or "").strip().lower() == name) \
                if pending is not None else None
            if found is None:
                found = next(iter(self._search("organization_search", "/api/v2/organizations/search", write.name,
                                               "name")), None)
            if found is not None:
                self.cache.set("organization", str(found["id"]), name)
                return Ref(object=write.object, id=str(found["id"]))
            org_id = self._create_once("organization", (name,), "organization_create", "/api/v2/organizations",
                                       {"name": write.name})
            return Ref(object=write.object, id=org_id, created=True)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)
