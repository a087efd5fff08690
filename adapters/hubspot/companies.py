"""The patient's company in HubSpot, associated with their contact (and, by :mod:`~adapters.hubspot.records`,
with the request's record).

A company is upserted on its key property when the mapping names one, otherwise created once (a create whose
answer was lost is looked for among the contact's companies) and known by name in the id cache. It is
associated with the contact with HubSpot's default association type: in the create itself, or by the v4
default association (a PUT: associating twice changes nothing), so a returning patient, or a second person of
the same company, is associated too. A company name that is only the patient's own name is not a company
(the bot asks "your company and e-mail?" and some patients answer with their name): nothing is written.
"""

from __future__ import annotations

import logging

from adapters.base import CompanyWrite, Ref
from adapters.hubspot import identity
from adapters.hubspot.common import HubSpotBase
from adapters.hubspot.common import text as _text

log = logging.getLogger("chat2crm.hubspot")


class HubSpotCompanies(HubSpotBase):
    """Companies, associated with the contact (and the record) by HubSpot's default association type."""

    def _company(self, write: CompanyWrite, contact: Ref, *, person: tuple[str | None, ...] = ()) -> Ref | None:
        """The company, associated with ``contact``; None when its name is only the patient's name ``person``
        (their first and last names)."""
        from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectInputForCreate

        if identity.is_persons_name(write.name, *person):
            log.info("company not written: its name is the patient's name")
            return None
        name = write.name.strip().lower()
        cached = self.cache.get("company", name)
        if cached:
            company = Ref(object=write.object, id=cached)
            self._associate_default(contact, company)
            return company
        properties = {"name": write.name, **{k: _text(v) for k, v in write.properties.items()}}
        if write.key_property:
            item = {"id": properties.get(write.key_property) or write.name, "idProperty": write.key_property,
                    "properties": {k: v for k, v in properties.items() if k != write.key_property}}
            result = self._call("company_upsert", self.client.crm.objects.batch_api.upsert, write.object,
                                BatchInputSimplePublicObjectBatchInputUpsert(inputs=[item]))
            row = result.results[0]
            self.cache.set("company", str(row.id), name)
            company = Ref(object=write.object, id=str(row.id), created=bool(getattr(row, "new", False)))
            self._associate_default(contact, company)
            return company
        if self.cache.pending("company", name) is not None:
            found = self._associated(write.object, contact, "name", lambda value: value.strip().lower() == name)
            if found:
                self.cache.set("company", found, name)
                return Ref(object=write.object, id=found)
        created = self._create_once("company", name, "company_create", write.object, SimplePublicObjectInputForCreate(
            properties=properties, associations=[self._assoc(write.object, contact)]))
        return Ref(object=write.object, id=created, created=True)
