"""Organizations in Pipedrive: the patient's company, found by name or made once, and never the patient's own name.

A patient asked for their company who answers with their own name (``Ayşe Yılmaz``) has not named one
(:func:`adapters.pipedrive.identity.is_persons_name`): no organization is written for it. The organization
found or made is linked to the person (its ``org_id``) and to the lead (``organization_id``) or deal
(``org_id``) by the parts that write those.
"""

from __future__ import annotations

import logging

from adapters.base import CompanyWrite, Ref
from adapters.pipedrive import identity
from adapters.pipedrive.keys import digest as _digest
from adapters.pipedrive.persons import PipedrivePersons

log = logging.getLogger("chat2crm.pipedrive")


class PipedriveOrganizations(PipedrivePersons):
    """Organizations by name (the id cache, a list after a lost create, an exact search, else created)."""

    def _organization_for(self, write: CompanyWrite | None, person_name: object) -> Ref | None:
        """The lead's organization, or None when there is none or its name is only the patient's own."""
        if write is None or not write.name.strip():
            return None
        if identity.is_persons_name(write.name, str(person_name) if person_name else None):
            log.info("organization left out: it is the patient's name")
            return None
        return self._company(write)

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
                found = next((o for o in self._search("organization_search", "/api/v2/organizations/search",
                                                      write.name.strip(), "name")
                              if str(o.get("name") or "").strip().lower() == name), None)
            if found is not None:
                self.cache.set("organization", str(found["id"]), name)
                return Ref(object=write.object, id=str(found["id"]))
            org_id = self._create_once("organization", (name,), "organization_create", "/api/v2/organizations",
                                       {"name": write.name.strip()})
            return Ref(object=write.object, id=org_id, created=True)
