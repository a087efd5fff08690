"""Finding and writing HubSpot contacts and companies.

The contact is upserted on the unique contact-key property (a batch read by it finds one written a
moment ago); search, which lags behind writes, only finds contacts people made by hand (by phone),
which are adopted. A company is upserted on its key property, or created once and, when a create's
answer was lost, looked for among the contact's companies.
"""

from __future__ import annotations

import logging

from adapters.base import CompanyWrite, ContactWrite, Ref
from adapters.hubspot.common import HubSpotBase
from adapters.hubspot.common import text as _text
from adapters.hubspot.session import ConflictError

log = logging.getLogger("chat2crm.hubspot")


class HubSpotContacts(HubSpotBase):
    """Contacts (by the unique contact key; people's contacts adopted) and companies."""

    # -- reading -------------------------------------------------------------------------------
    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None,
                     email: str | None = None, object: str | None = None,
                     properties: list[str] | None = None) -> Ref | None:
        """By the contact key: a batch read by the unique property (strongly consistent: a contact written a
        moment ago is found; the key, which names a phone number, travels in the body, not in a URL that
        HTTP debug logs print). By phone or e-mail (contacts people made): a search."""
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, PublicObjectSearchRequest

        obj = object or "contacts"
        wanted = properties or ["firstname", "lastname", "email", "phone"]
        if key:
            read = self._call("contact_read", self.client.crm.objects.batch_api.read, obj,
                              BatchReadInputSimplePublicObjectId(inputs=[{"id": key[1]}], id_property=key[0],
                                                                 properties=wanted, properties_with_history=[]))
            if read.results:
                found = read.results[0]
                return Ref(object=obj, id=str(found.id), properties=dict(found.properties or {}))
        groups = [{"filters": [{"propertyName": name, "operator": "EQ", "value": value}]}
                  for name, value in (("phone", phone), ("email", email)) if value]
        if not groups:
            return None
        result = self._call("search", self.client.crm.objects.search_api.do_search, obj,
                            PublicObjectSearchRequest(filter_groups=groups, properties=wanted, limit=1, after="0",
                                                      sorts=["hs_object_id"]))
        if not result.results:
            return None
        hit = result.results[0]
        return Ref(object=obj, id=str(hit.id), properties=dict(hit.properties or {}))

    # -- writing contacts ----------------------------------------------------------------------
    def _contact(self, write: ContactWrite) -> Ref:
        """Upsert on the unique contact key; a contact a person made (found by phone, or HubSpot's 409 on its
        e-mail) is adopted: the key is set on it."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInput

        properties = {k: _text(v) for k, v in write.properties.items()}
        if "phone" in write.match_by and write.phone and not self.cache.get("contact", write.key_value):
            # a person-made contact has no key yet; the search may lag behind writes, which costs at worst a
            # contact the relay makes beside one typed in seconds ago, never a duplicate of its own
            person_made = self.find_contact(phone=write.phone, object=write.object, properties=[write.key_property])
            if person_made is not None and person_made.properties.get(write.key_property) in (None, ""):
                return self._adopt(write, person_made.id, properties)
        item = {"id": write.key_value, "idProperty": write.key_property, "properties": properties}
        try:
            result = self._call("contact_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item]))
        except ConflictError as exc:
            # e-mail is unique in HubSpot: a contact a person created has it; adopt that contact
            if "email" in write.match_by and exc.existing_id:
                return self._adopt(write, exc.existing_id, properties)
            raise
        row = result.results[0]
        created = bool(getattr(row, "new", False))
        if created and write.create_only:
            self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, str(row.id),
                       SimplePublicObjectInput(properties={k: _text(v) for k, v in write.create_only.items()}))
        self.cache.set("contact", str(row.id), write.key_value)
        return Ref(object=write.object, id=str(row.id), created=created)

    def _adopt(self, write: ContactWrite, contact_id: str, properties: dict[str, str]) -> Ref:
        from hubspot.crm.objects import SimplePublicObjectInput

        merged = {**properties, write.key_property: write.key_value}
        merged.pop("email", None)  # it is already theirs
        self._call("contact_update", self.client.crm.objects.basic_api.update, write.object, contact_id,
                   SimplePublicObjectInput(properties=merged))
        self.cache.set("contact", contact_id, write.key_value)
        log.info("adopted a contact a person created", extra={"contact_id": contact_id})
        return Ref(object=write.object, id=contact_id, created=False)

    # -- companies -----------------------------------------------------------------------------
    def _company(self, write: CompanyWrite, contact: Ref) -> Ref:
        """Upserted on ``key_property`` when the mapping names one; otherwise created once, associated with
        the contact (a create whose answer was lost is looked for among the contact's companies)."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInputForCreate

        name = write.name.strip().lower()
        cached = self.cache.get("company", name)
        if cached:
            return Ref(object=write.object, id=cached)
        properties = {"name": write.name, **{k: _text(v) for k, v in write.properties.items()}}
        if write.key_property:
            item = {"id": properties.get(write.key_property) or write.name, "idProperty": write.key_property,
                    "properties": {k: v for k, v in properties.items() if k != write.key_property}}
            result = self._call("company_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item]))
            row = result.results[0]
            self.cache.set("company", str(row.id), name)
            return Ref(object=write.object, id=str(row.id), created=bool(getattr(row, "new", False)))
        if self.cache.pending("company", name) is not None:
            found = self._associated(write.object, contact, "name", lambda value: value.strip().lower() == name)
            if found:
                self.cache.set("company", found, name)
                return Ref(object=write.object, id=found)
        created = self._create_once("company", name, "company_create", write.object, SimplePublicObjectInputForCreate(
            properties=properties, associations=[self._assoc(write.object, contact)]))
        return Ref(object=write.object, id=created, created=True)
