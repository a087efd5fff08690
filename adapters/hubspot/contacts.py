"""Finding and writing HubSpot contacts, by the rule of :mod:`adapters.hubspot.identity`.

The contact is upserted on the unique contact-key property (a batch read by it finds one written a
moment ago). Right after the key come the patient's other channel identities (a WhatsApp BSUID, a Telegram
username, in the properties the mapping writes them to): a contact that carries one is the patient's when it has
no key, or the key of the number they left (the key then moves to it). A contact people made by hand is adopted
(the key set on it) when it is the patient's: found by phone (a search, which lags behind writes), or by e-mail
(HubSpot's 409 on a taken e-mail names it) when no key and no other phone number says it is someone else.
Adopting never replaces a phone number or an e-mail a person typed. An e-mail that belongs to another person is
not written: the patient's contact is written without it, flagged for a coordinator
(:data:`~adapters.hubspot.identity.IDENTITY_CONFLICT`).

An opt-out (a write carrying :class:`~core.plan.OptOutMark`) marks the key's contact and every contact people
made with the patient's phone number or e-mail, in one batch update, and creates a contact only when there is
none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from adapters.base import ContactWrite, Ref
from adapters.hubspot import identity
from adapters.hubspot.common import HubSpotBase
from adapters.hubspot.common import text as _text
from adapters.hubspot.session import ConflictError
from core.errors import FatalError
from core.plan import opt_out_companions

log = logging.getLogger("chat2crm.hubspot")

#: the properties read to tell who a contact is
_WHO = ["email", "phone", "mobilephone"]
#: what the relay adds for a coordinator: a write still goes through without them before `crm setup` made them
_FLAGS = (identity.IDENTITY_CONFLICT, identity.CONFLICTING_EMAIL)


class HubSpotContacts(HubSpotBase):
    """Contacts: by the unique contact key, people's contacts adopted when they are the patient's; opt-outs."""

    # -- reading -------------------------------------------------------------------------------
    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """By the contact key: a batch read by the unique property (strongly consistent: a contact written a
        moment ago is found; the key, which names a phone number, travels in the body, not in a URL that
        HTTP debug logs print). By phone or e-mail (contacts people made): a search, phone numbers as typed."""
        obj = object or "contacts"
        wanted = properties or ["firstname", "lastname", "email", "phone"]
        if key:
            found = self._by_key(obj, key, wanted)
            if found is not None:
                return found
        people = self._people(obj, phone=phone, email=email, wanted=wanted)
        return people[0] if people else None

    def _by_key(self, obj: str, key: tuple[str, str], wanted: list[str]) -> Ref | None:
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId

        read = self._call("contact_read", self.client.crm.objects.batch_api.read, obj,
                          BatchReadInputSimplePublicObjectId(inputs=[{"id": key[1]}], id_property=key[0],
                                                             properties=wanted, properties_with_history=[]))
        if not read.results:
            return None
        return Ref(object=obj, id=str(read.results[0].id), properties=dict(read.results[0].properties or {}))

    def _by_id(self, obj: str, contact_id: str, wanted: list[str]) -> Ref | None:
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId

        read = self._call("contact_read", self.client.crm.objects.batch_api.read, obj,
                          BatchReadInputSimplePublicObjectId(inputs=[{"id": contact_id}], properties=wanted,
                                                             properties_with_history=[]))
        if not read.results:
            return None
        return Ref(object=obj, id=str(read.results[0].id), properties=dict(read.results[0].properties or {}))

    def _people(self, obj: str, *, phone: str | None, email: str | None, wanted: list[str]) -> list[Ref]:
        """Contacts whose phone or mobile phone is ``phone`` (as typed) or whose e-mail is ``email``: one search,
        each hit checked (search matches national digits alone), oldest first."""
        from hubspot.crm.objects import PublicObjectSearchRequest

        groups = identity.phone_filter_groups(phone) if phone else []
        if email:
            groups.append({"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]})
        if not groups:
            return []
        asked = list(dict.fromkeys([*wanted, *_WHO]))
        result = self._call("search", self.client.crm.objects.search_api.do_search, obj,
                            PublicObjectSearchRequest(filter_groups=groups, properties=asked, limit=20, after="0",
                                                      sorts=["hs_object_id"]))
        found = []
        for hit in result.results or []:
            props = dict(hit.properties or {})
            if (phone and identity.has_number(props, phone)) or (
                    email and str(props.get("email") or "").casefold() == email.casefold()):
                found.append(Ref(object=obj, id=str(hit.id), properties=props))
        return found

    # -- writing contacts ----------------------------------------------------------------------
    def _contact(self, write: ContactWrite) -> Ref:
        """Upsert on the unique contact key; a contact a person made is adopted when it is the patient's
        (found by phone, or named by HubSpot's 409 on the e-mail); an e-mail another person has is left out."""
        if write.opt_out is not None:
            return self._opt_out(write)
        properties = self._properties(write)
        if write.identities and not self.cache.get("contact", write.key_value):
            theirs = self._by_identity(write, properties)
            if theirs is not None:
                return theirs
        if "phone" in write.match_by and write.phone and not self.cache.get("contact", write.key_value):
            # a person-made contact has no key yet; the search may lag behind writes, which costs at worst a
            # contact the relay makes beside one typed in seconds ago, never a duplicate of its own
            found = self._people(write.object, phone=write.phone, email=None, wanted=[write.key_property])
            person_made = next((p for p in found if not p.properties.get(write.key_property)), None)
            # the patient's own contact, if they have one, is theirs (read by key: search may not show it yet)
            if person_made is not None and not self._known(write):
                return self._adopt(write, person_made, properties)
        try:
            row = self._upsert(write, properties)
        except ConflictError as exc:
            other = self._email_holder(write, exc, properties.get("email"))
            if other is None:
                raise
            return self._email_taken(write, properties, other)
        return self._upserted(write, row)

    def _by_identity(self, write: ContactWrite, properties: dict[str, str]) -> Ref | None:
        """The patient's contact found by one of their other channel identities (:attr:`ContactWrite.identities`:
        a WhatsApp BSUID, a Telegram username), ranked right after the key: one search for the key or any of
        them. A contact with the key is the patient's (None: the upsert on the key writes it). A contact with the
        identity and no key, or the key of the patient's former WhatsApp number (same BSUID, new number), is
        theirs: the lead's fields are written on it and the key moves to it, so the key finds it from now on.
        None when nobody carries them."""
        from hubspot.crm.objects import PublicObjectSearchRequest

        pairs = [(i.property, i.value) for i in write.identities]
        groups = identity.identity_filter_groups((write.key_property, write.key_value), pairs)
        asked = list(dict.fromkeys([write.key_property, *(name for name, _ in pairs), *_WHO]))
        result = self._call("search", self.client.crm.objects.search_api.do_search, write.object,
                            PublicObjectSearchRequest(filter_groups=groups, properties=asked, limit=10, after="0",
                                                      sorts=["hs_object_id"]))
        hits = [Ref(object=write.object, id=str(h.id), properties=dict(h.properties or {}))
                for h in result.results or []]
        if any(h.properties.get(write.key_property) == write.key_value for h in hits):
            return None
        theirs = next((h for h in hits if any(str(h.properties.get(name) or "").casefold() == value.casefold()
                                              for name, value in pairs)
                       and identity.identity_is_theirs(h.properties.get(write.key_property), write.key_value)), None)
        # search lags behind writes: the patient's own contact, just written, is read by key before another moves
        if theirs is None or self._known(write):
            return None
        former = str(theirs.properties.get(write.key_property) or "")
        if not former:  # a contact a person made: adopted, their phone numbers and e-mail kept
            return self._adopt(write, theirs, properties)
        merged = {**properties, write.key_property: write.key_value}
        conflict = self._update(write, theirs.id, merged)
        self.cache.drop("contact", former)
        self.cache.set("contact", theirs.id, write.key_value)
        log.info("contact found by the patient's channel identity: its key moved to the new number",
                 extra={"contact_id": theirs.id})
        return Ref(object=write.object, id=theirs.id, created=False,
                   properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})

    def _properties(self, write: ContactWrite) -> dict[str, str]:
        """The write's properties as HubSpot text; a ``company`` that is only the patient's own name is left out."""
        properties = {k: _text(v) for k, v in write.properties.items()}
        company = properties.get("company")
        if company and identity.is_persons_name(company, properties.get("firstname"), properties.get("lastname")):
            del properties["company"]
            log.info("contact's company left out: it is the patient's name")
        return properties

    def _upsert(self, write: ContactWrite, properties: dict[str, str]) -> Any:
        """The batch upsert of one contact on the key; its one result row."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert

        def upsert(props: dict[str, str]) -> Any:
            item = {"id": write.key_value, "idProperty": write.key_property, "properties": props}
            return self._call("contact_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                              BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item])).results[0]

        return self._leaving_out_missing(upsert, properties, _FLAGS)

    def _upserted(self, write: ContactWrite, row: Any, *, conflict: str | None = None) -> Ref:
        """The contact an upsert wrote: its first-touch fields when it was created, its id cached."""
        from hubspot.crm.objects import SimplePublicObjectInput

        created = bool(getattr(row, "new", False))
        if created and write.create_only:
            self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, str(row.id),
                       SimplePublicObjectInput(properties={k: _text(v) for k, v in write.create_only.items()}))
        self.cache.set("contact", str(row.id), write.key_value)
        return Ref(object=write.object, id=str(row.id), created=created,
                   properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})

    def _adopt(self, write: ContactWrite, person_made: Ref, properties: dict[str, str]) -> Ref:
        """Make a contact a person created the patient's: the key set on it and the lead's fields written,
        but a phone number or e-mail already on it kept (a different e-mail is kept aside and flagged)."""
        theirs = person_made.properties
        merged = {**properties, write.key_property: write.key_value}
        for name in identity.SEARCHABLE:
            if theirs.get(name):
                merged.pop(name, None)  # never replace a number a person typed
        conflict = None
        ours, their_email = merged.get("email") or "", str(theirs.get("email") or "")
        if ours and their_email:
            del merged["email"]
            if ours.casefold() != their_email.casefold():
                conflict = identity.EMAIL_DIFFERS
                merged |= {identity.CONFLICTING_EMAIL: ours, identity.IDENTITY_CONFLICT: conflict}
        conflict = self._update(write, person_made.id, merged) or conflict
        self.cache.set("contact", person_made.id, write.key_value)
        log.info("adopted a contact a person created", extra={"contact_id": person_made.id})
        return Ref(object=write.object, id=person_made.id, created=False,
                   properties={identity.IDENTITY_CONFLICT: conflict} if conflict else {})

    def _update(self, write: ContactWrite, contact_id: str, properties: dict[str, str]) -> str | None:
        """Update one contact; an e-mail HubSpot says another contact has is left out and flagged. Returns the
        conflict written, if any."""
        from hubspot.crm.objects import SimplePublicObjectInput

        def update(props: dict[str, str]) -> None:
            self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, contact_id,
                       SimplePublicObjectInput(properties=props))

        try:
            self._leaving_out_missing(update, properties, _FLAGS)
        except ConflictError as exc:
            other = self._email_holder(write, exc, properties.get("email"))
            if other is None or other.id == contact_id:
                raise
            conflict = identity.email_taken(other.id)
            self._leaving_out_missing(update, _flagged(properties, conflict), _FLAGS)
            log.warning("e-mail belongs to another contact: not written", extra={"contact_id": other.id})
            return conflict
        return None

    def _email_holder(self, write: ContactWrite, refused: ConflictError, email: str | None) -> Ref | None:
        """The contact HubSpot's 409 names, read back (a strongly consistent read), when it is the e-mail
        ``email`` that it holds; None when the conflict is about something else."""
        if not refused.existing_id or not email:
            return None
        other = self._by_id(write.object, refused.existing_id, [write.key_property, *_WHO])
        if other is None or str(other.properties.get("email") or "").casefold() != email.casefold():
            return None
        return other

    def _email_taken(self, write: ContactWrite, properties: dict[str, str], other: Ref) -> Ref:
        """HubSpot refused the e-mail: contact ``other`` has it. That contact is adopted if it can be the
        patient (made by a person, no key, no other phone number, and the patient has no contact yet);
        otherwise the patient's contact is written without the e-mail, flagged."""
        if ("email" in write.match_by and not other.properties.get(write.key_property)
                and identity.phone_compatible(other.properties, write.phone) and not self._known(write)):
            return self._adopt(write, other, properties)
        conflict = identity.email_taken(other.id)
        row = self._upsert(write, _flagged(properties, conflict))
        log.warning("e-mail belongs to another contact: not written", extra={"contact_id": other.id})
        return self._upserted(write, row, conflict=conflict)

    def _known(self, write: ContactWrite) -> bool:
        """Whether the patient already has a contact (their key is on one)."""
        return bool(self.cache.get("contact", write.key_value)) or self._by_key(
            write.object, (write.key_property, write.key_value), [write.key_property]) is not None

    # -- opt-outs ------------------------------------------------------------------------------
    def _opt_out(self, write: ContactWrite) -> Ref:
        """Mark every contact of the patient as opted out: the key's, and those people made with their phone
        number or e-mail (a contact with another key is another channel's identity, left alone). With none,
        the contact is created, marked, so the clinic keeps the number's STOP."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInput

        mark = write.opt_out
        assert mark is not None
        companions = opt_out_companions(mark.property)
        marks = {**{k: _text(v) for k, v in write.properties.items()}, mark.property: mark.value,
                 companions[0]: _hubspot_time(mark.at), companions[1]: mark.channel}
        own = self._by_key(write.object, (write.key_property, write.key_value), [write.key_property])
        people = self._people(write.object, phone=write.phone, email=write.email, wanted=[write.key_property])
        targets = list(dict.fromkeys(([own.id] if own else []) + [
            p.id for p in people if not p.properties.get(write.key_property)]))
        if not targets:
            row = self._leaving_out_missing(
                lambda props: self._upsert(write, props), {**marks, **({"phone": write.phone} if write.phone else {})},
                companions)
            self.cache.set("contact", str(row.id), write.key_value)
            log.info("opt-out recorded on a new contact")
            return Ref(object=write.object, id=str(row.id), created=True)

        def update(props: dict[str, str]) -> None:
            self._call("contact_batch_update", self.client.crm.objects.batch_api.update, write.object,
                       BatchInputSimplePublicObjectBatchInput(inputs=[{"id": t, "properties": props} for t in targets]))

        self._leaving_out_missing(update, marks, companions)
        log.info("opt-out recorded", extra={"contacts": len(targets), "by_key": own is not None})
        return Ref(object=write.object, id=targets[0], created=False)

    # -- what `crm setup` may not have made yet -------------------------------------------------
    @staticmethod
    def _leaving_out_missing(write: Callable[[dict[str, str]], Any], properties: dict[str, str],
                             optional: Iterable[str]) -> Any:
        """``write(properties)``; when HubSpot says one of the ``optional`` properties does not exist (an
        account `chat2crm crm setup` has not been run on since they were added), again without them."""
        try:
            return write(properties)
        except ConflictError:
            raise
        except FatalError as exc:
            names = set(optional)
            if exc.field not in names:
                raise
            log.warning("a property chat2crm writes is missing: run `chat2crm crm setup`",
                        extra={"property": exc.field})
            return write({k: v for k, v in properties.items() if k not in names})


def _flagged(properties: dict[str, str], conflict: str) -> dict[str, str]:
    """``properties`` without the e-mail, which is kept aside with the conflict's sentence."""
    email = properties.get("email") or ""
    kept = {k: v for k, v in properties.items() if k != "email"}
    return {**kept, identity.CONFLICTING_EMAIL: email, identity.IDENTITY_CONFLICT: conflict}


def _hubspot_time(moment: datetime) -> str:
    """A time as HubSpot's datetime properties take it (UTC, milliseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
