"""Finding and writing persons in Pipedrive, by the contact matching rule (:mod:`adapters.pipedrive.identity`).

Pipedrive's search lags behind writes, so it never decides whether the relay's own write happened:
the id cache knows what the relay made, and a create whose answer was lost is looked for on a list
endpoint (current) before writing again. Search serves what only it can: persons people made by hand,
persons the relay made so long ago that their ids left the cache, and the other persons that hold a phone
number or an e-mail (Pipedrive allows duplicates, so the relay looks before writing one).

Which person is the patient's: the one with the contact key; else the one with another of their channel
identities (the mapping's identity fields); else one a person made (no key) found by phone, or by e-mail when
``match_by`` allows and it has no other number (adopted: the key is set on it, its phones, e-mails and name
kept); else a new one. An e-mail another person holds is never written: it is kept in
:data:`~adapters.pipedrive.identity.CONFLICTING_EMAIL` and flagged for a coordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from adapters.base import ContactWrite, Ref
from adapters.pipedrive import identity
from adapters.pipedrive.common import STANDARD, PipedriveBase
from adapters.pipedrive.keys import digest as _digest
from core.errors import FatalError

log = logging.getLogger("chat2crm.pipedrive")

#: how far before a pending mark a list of recent writes looks (the CRM's clock is not ours)
_CLOCK_SKEW = timedelta(seconds=120)
#: what the id cache keeps beside a person's id when its e-mail could not be written: the conflict's kind
_DIFFERS = "differs"


class PipedrivePersons(PipedriveBase):
    """Persons: by contact key, channel identity, phone or e-mail (people's persons adopted), else created."""

    # -- reading -------------------------------------------------------------------------------
    def _search(self, operation: str, path: str, term: str, field: str, *, exact: bool = True,
                **extra: Any) -> list[dict[str, Any]]:
        """A search (it lags behind writes: never the proof that the relay's own write did not happen)."""
        page = self._call(operation, "GET", path, params={"term": term, "fields": field,
                                                          "exact_match": "true" if exact else "false",
                                                          "limit": 10 if exact else 50, **extra})
        return [i["item"] for i in (page.get("data") or {}).get("items") or []]

    def _person_by_key(self, key_property: str, key_value: str) -> dict[str, Any] | None:
        self._field("person", key_property)  # a mapping naming no such field fails here, by name
        for item in self._search("person_search", "/api/v2/persons/search", key_value, "custom_fields"):
            if key_value in (item.get("custom_fields") or []):
                return item
        return None

    def _persons(self, ids: list[str]) -> list[dict[str, Any]]:
        """These persons as they are now (a list by ids: current, unlike search), oldest first."""
        if not ids:
            return []
        page = self._call("person_list", "GET", "/api/v2/persons", params={"ids": ",".join(ids), "limit": 500})
        return sorted(page.get("data") or [], key=lambda p: int(p["id"]))

    def _by_phone(self, phone: str) -> list[str]:
        """Ids of the persons whose number is ``phone`` as people type it (``+90 532 111 22 33``, ``0532 111 22
        33``, ``905321112233``): one search on the number's national digits, each hit checked (a national number
        shared with another country's is not the patient's)."""
        term = identity.national_number(phone) or identity.digits(phone)
        if len(term) < 2:
            return []
        hits = self._search("person_search", "/api/v2/persons/search", term, "phone", exact=False)
        return [str(h["id"]) for h in hits if identity.has_number(h, phone)]

    def _by_email(self, email: str) -> list[str]:
        """Ids of the persons that carry ``email`` (an exact search; Pipedrive compares without case)."""
        hits = self._search("person_search", "/api/v2/persons/search", email, "email")
        return [str(h["id"]) for h in hits if identity.has_email(h, email)]

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
        if person_id is None and found is None:
            hits = (self._by_phone(phone) if phone else []) or (self._by_email(email) if email else [])
            person_id = hits[0] if hits else None
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
                value: Any = next(iter(identity.phones_of(person)), None)
            elif name in ("email", "emails"):
                value = next(iter(identity.emails_of(person)), None)
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
        """The person id the id cache keeps for a contact key, and the digest of what was last written."""
        cached = self.cache.get("contact", key_value)
        if not cached:
            return None, None
        person_id, _, rest = cached.partition("|")
        return person_id, rest.partition("|")[0]

    def _cached_conflict(self, key_value: str) -> str | None:
        """The identity conflict the last write of this contact key found (None: none)."""
        marker = (self.cache.get("contact", key_value) or "").split("|")
        if len(marker) < 3 or not marker[2]:
            return None
        return identity.EMAIL_DIFFERS if marker[2] == _DIFFERS else identity.email_taken(marker[2])

    # -- writing -------------------------------------------------------------------------------
    def _contact(self, write: ContactWrite) -> Ref:
        """Person by key (the id cache; a create whose answer was lost: the persons updated since; else an
        exact search of the key field), then by another channel identity, phone or e-mail (adopted), else
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
                return self._write_own(write, str(found["id"]), body, digest)
            return self._match(write, body, digest, key_spec["key"])

    def _known_person(self, write: ContactWrite, body: dict[str, Any], digest: str) -> Ref | None:
        """The person the id cache knows for the key (written again when what is written changed), or None."""
        person_id, last = self._cached_contact(write.key_value)
        if person_id is None:
            return None
        if last == digest:
            conflict = self._cached_conflict(write.key_value)
            return Ref(object=write.object, id=person_id,
                       properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})
        try:
            return self._write_own(write, person_id, body, digest)
        except FatalError as exc:
            if exc.details.get("status") != 404:
                raise
            self.cache.drop("contact", write.key_value)  # deleted in Pipedrive: find or create again
            return None

    def _write_own(self, write: ContactWrite, person_id: str, body: dict[str, Any], digest: str) -> Ref:
        """Write the lead's fields on the patient's own person (it carries their key, or another of their channel
        identities): read first, so the numbers and e-mails people added stay and an e-mail another person
        holds is kept aside."""
        person = self._call("person_get", "GET", f"/api/v2/persons/{person_id}")["data"]
        email = _email_of(body)
        holder = None
        if email and not identity.has_email(person, email):
            holder = next((i for i in self._by_email(email) if i != person_id), None)
        merged, conflict = self._merged(person, body, adopt=False, holder=holder)
        return self._patched(write, person, merged, digest, conflict=conflict, holder=holder)

    def _match(self, write: ContactWrite, body: dict[str, Any], digest: str, key_field: str) -> Ref:
        """No person carries the key: another channel identity, then a person people made (by phone, or by e-mail
        as ``match_by`` allows), else a new person; an e-mail another person holds is not written."""
        for match in write.identities:
            spec = self._fields("person").get(match.property)
            if spec is None:
                continue  # the mapping's field check reports it; matching goes on without it
            hits = [str(i["id"]) for i in self._search("person_search", "/api/v2/persons/search", match.value,
                                                        "custom_fields") if match.value in (i.get("custom_fields") or [])]
            mine = [p for p in self._persons(hits) if (p.get("custom_fields") or {}).get(spec["key"]) == match.value]
            if mine:
                log.info("person found by another channel identity", extra={"person_id": mine[0]["id"]})
                return self._write_own(write, str(mine[0]["id"]), body, digest)
        by_phone = self._by_phone(write.phone) if write.phone and "phone" in write.match_by else []
        by_email = self._by_email(write.email) if write.email else []
        persons = {str(p["id"]): p for p in self._persons(list(dict.fromkeys(by_phone + by_email)))}

        def keyless(person_id: str) -> bool:
            person = persons.get(person_id)
            return person is not None and (person.get("custom_fields") or {}).get(key_field) in (None, "")

        chosen = next((i for i in by_phone if keyless(i)), None)
        if chosen is None and "email" in write.match_by:
            chosen = next((i for i in by_email if keyless(i) and identity.phone_compatible(persons[i], write.phone)),
                          None)
        holder = next((i for i in by_email if i in persons and i != chosen), None)
        if chosen is not None:
            merged, conflict = self._merged(persons[chosen], body, adopt=True, holder=holder)
            log.info("adopted a person a clinic worker made", extra={"person_id": chosen})
            return self._patched(write, persons[chosen], merged, digest, conflict=conflict, holder=holder)
        return self._create(write, body, digest, holder)

    def _merged(self, person: dict[str, Any], body: dict[str, Any], *, adopt: bool,
                holder: str | None) -> tuple[dict[str, Any], str | None]:
        """``body`` as written on ``person``: its phone numbers kept (ours added when new), its e-mails kept (ours
        added, or, on an adopted person with another one, kept aside), an e-mail ``holder`` has never written;
        an adopted person's name and organization kept. Returns the body and the conflict sentence, if any."""
        merged = {k: v for k, v in body.items() if k not in ("phones", "emails")}
        merged["custom_fields"] = dict(body["custom_fields"])
        have_phones = [x for x in person.get("phones") or [] if x.get("value")]
        ours = [x for x in body.get("phones") or [] if not any(identity.same_number(h["value"], x["value"])
                                                               for h in have_phones)]
        if ours:
            merged["phones"] = [{**x, "primary": bool(x.get("primary"))} for x in have_phones] + \
                [{**x, "primary": not have_phones} for x in ours]
        conflict, email = None, _email_of(body)
        if email and not identity.has_email(person, email):
            have_emails = [x for x in person.get("emails") or [] if x.get("value")]
            if holder is not None:
                conflict = identity.email_taken(holder)
            elif adopt and have_emails:
                conflict = identity.EMAIL_DIFFERS  # never replace what a person typed
            else:  # the patient's own person: the e-mail they gave now comes first, the earlier ones stay
                merged["emails"] = [{**body["emails"][0], "primary": True}] + \
                    [{**x, "primary": False} for x in have_emails]
        if adopt:
            merged.pop("name", None)  # the name a person typed stays
            if person.get("org_id"):
                merged.pop("org_id", None)
        if conflict:
            merged["custom_fields"].update(self._optional_fields(
                {identity.CONFLICTING_EMAIL: email, identity.IDENTITY_CONFLICT: conflict}))
        return merged, conflict

    def _patched(self, write: ContactWrite, person: dict[str, Any], merged: dict[str, Any], digest: str, *,
                 conflict: str | None, holder: str | None) -> Ref:
        """PATCH ``merged`` on ``person`` and keep its id for the key. A person that carries another contact key
        (found by another channel identity) keeps it: that key is that channel's way to the same patient."""
        key_field = self._field("person", write.key_property)["key"]
        theirs = (person.get("custom_fields") or {}).get(key_field)
        if theirs not in (None, "", write.key_value):
            merged["custom_fields"].pop(key_field, None)
        self._call("person_update", "PATCH", f"/api/v2/persons/{person['id']}", body=merged)
        if conflict:
            log.warning("e-mail not written on the person: identity conflict",
                        extra={"person_id": person["id"], "other_person_id": holder})
        self.cache.set("contact", _cached(str(person["id"]), digest, conflict, holder), write.key_value)
        return Ref(object=write.object, id=str(person["id"]),
                   properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})

    def _create(self, write: ContactWrite, body: dict[str, Any], digest: str, holder: str | None) -> Ref:
        """A new person for the patient; without an e-mail ``holder`` has (kept aside and flagged)."""
        create_standard, create_custom = self._split("person", write.create_only)
        created_body = {**body, **create_standard, "custom_fields": {**body["custom_fields"], **create_custom}}
        conflict = None
        if holder is not None and created_body.pop("emails", None):
            conflict = identity.email_taken(holder)
            created_body["custom_fields"].update(self._optional_fields(
                {identity.CONFLICTING_EMAIL: _email_of(body), identity.IDENTITY_CONFLICT: conflict}))
            log.warning("e-mail belongs to another person: not written", extra={"other_person_id": holder})
        if "name" not in created_body:
            created_body["name"] = write.phone or write.key_value.split(":", 1)[-1]  # Pipedrive requires a name
        person_id = self._create_once("contact", (write.key_value,), "person_create", "/api/v2/persons",
                                      created_body, kept=lambda new: _cached(new, digest, conflict, holder))
        return Ref(object=write.object, id=person_id, created=True,
                   properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})

    # -- fields `crm setup` may not have made yet ------------------------------------------------
    def _optional_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (visible name → value) by the person fields' keys, leaving out the fields the account does not
        have (not set up since the relay began writing them): the write goes through without them."""
        fields = self._fields("person")
        if any(name not in fields for name in values):
            fields = self._fields("person", refresh=True)
        missing = [name for name in values if name not in fields]
        if missing:
            log.warning("a person field chat2crm writes is missing: run `chat2crm crm setup`",
                        extra={"fields": missing})
        return {fields[name]["key"]: self._value(fields[name], value) for name, value in values.items()
                if name in fields and value not in (None, "")}


def _email_of(body: dict[str, Any]) -> str | None:
    """The e-mail a person body writes (the mapping's ``email``), if any."""
    emails = body.get("emails") or []
    return str(emails[0]["value"]) if emails else None


def _cached(person_id: str, digest: str, conflict: str | None, holder: str | None) -> str:
    """What the id cache keeps for a contact key: the person, the digest of what was written, and the conflict."""
    marker = "" if conflict is None else (holder if holder is not None else _DIFFERS)
    return f"{person_id}|{digest}|{marker}"
