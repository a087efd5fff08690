"""The HubSpot adapter class: its declarations (options, credentials, key families) and the two
operations that use every part: the sync of a plan and the erasure of a contact.

The parts it is made of are mixins over :class:`~adapters.hubspot.common.HubSpotBase`: the schema
(:mod:`adapters.hubspot.schema`, with the clinic's pipeline: :mod:`~adapters.hubspot.pipelines`), contacts and
opt-outs (:mod:`~adapters.hubspot.contacts`, by the matching
rule of :mod:`~adapters.hubspot.identity`), companies (:mod:`~adapters.hubspot.companies`), records, notes
and tasks (:mod:`~adapters.hubspot.records`).
"""

from __future__ import annotations

import html
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from adapters.base import CRMSchema, ErasureReport, Ref, SyncPlan, SyncResult
from adapters.hubspot.app import HubSpotApp
from adapters.hubspot.companies import HubSpotCompanies
from adapters.hubspot.contacts import HubSpotContacts
from adapters.hubspot.identity import IDENTITY_CONFLICT
from adapters.hubspot.keys import COMPANIES, CONTACTS, NOTE_COPIES, NOTES, PROGRESS, RECORDS, TASK_COPIES, TASKS
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.records import HubSpotRecords
from adapters.hubspot.schema import HubSpotSchema

if TYPE_CHECKING:
    from adapters.inbox import CRMInbox, OAuthInstall


#: the client's APIs the adapter calls (what :meth:`HubSpotAdapter.preload_modules` imports)
_CLIENT_APIS = ("crm.objects.basic_api", "crm.objects.batch_api", "crm.objects.search_api", "crm.owners.owners_api",
                "crm.pipelines.pipelines_api", "crm.pipelines.pipeline_stages_api", "crm.properties.core_api",
                "crm.properties.groups_api", "crm.associations.v4.basic_api")


class HubSpotAdapter(HubSpotSchema, HubSpotContacts, HubSpotCompanies, HubSpotRecords):
    """Writes leads into HubSpot (contacts, deals/tickets/leads, notes, tasks)."""

    name = "hubspot"
    requires = ("hubspot",)
    Options = HubSpotOptions
    Credentials = HubSpotCredentials
    cache_families = MappingProxyType({"contact": CONTACTS, "company": COMPANIES, "record": RECORDS, "notes": NOTES,
                                       "tasks": TASKS, "notes-copies": NOTE_COPIES, "tasks-copies": TASK_COPIES})
    progress_family = PROGRESS

    @classmethod
    def preload_modules(cls) -> None:
        """The client's API packages the adapter calls (the official client imports each, with its hundreds
        of model modules, about 9 MB in all, on first use): imported through a client with no token and no
        connection, which is then dropped."""
        from hubspot import HubSpot

        client = HubSpot()
        for path in _CLIENT_APIS:
            target: object = client
            for name in path.split("."):
                target = getattr(target, name)

    # -- the write -----------------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Contact, company, record (with associations and tags), note (associated with both), task on handoff;
        or, for an opt-out, only the patient's contacts marked.

        A retry resumes where the last attempt stopped (the progress log): steps already written are not
        written again, since under a CRM failing often redoing every step compounds the failures.
        """
        start = self.calls
        if plan.contact.opt_out is not None:  # an opt-out: the patient's contacts marked, nothing else
            return SyncResult(contact=self._contact(plan.contact), calls=self.calls - start)
        progress = self.progress(plan.lead_reference)
        done = progress.steps()
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"], created=False)
        else:
            contact = self._contact(plan.contact)
            progress.record("contact", contact.id)
        person = (plan.contact.properties.get("firstname"), plan.contact.properties.get("lastname"))
        company = self._company(plan.company, contact, person=person) if plan.company else None
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"], created=False)
        elif plan.record is not None:
            record = self._record(plan.record, contact=contact, tags=plan.tags, tags_property=plan.tags_property,
                                  company=company)
            progress.record("record", record.id)
        elif plan.tags and plan.tags_property:
            self._contact_tags(plan.tags, contact, plan.tags_property)
        conflict = contact.properties.get(IDENTITY_CONFLICT)
        if plan.note and conflict:  # where the coordinator reads the request, not only on the contact
            plan = plan.model_copy(update={"note": plan.note.model_copy(update={
                "body": f"<p><strong>Identity check:</strong> {html.escape(conflict)}</p>\n{plan.note.body}"})})
        note = self._note(plan.note, contact=contact, record=record) if plan.note else None
        task = self._task(plan.task, contact=contact, record=record) if plan.task else None
        progress.finish()
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)

    # -- the conversation after the bot (:mod:`adapters.hubspot.app`) ----------------------------
    @property
    def app(self) -> HubSpotApp:
        """The inbox's parts: the installation, the OAuth, the REST session (built on first use)."""
        if getattr(self, "_app", None) is None:
            self._app = HubSpotApp(self)
        return self._app

    def inbox(self) -> CRMInbox | None:
        return self.app.inbox()

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """The mapping's properties (:meth:`HubSpotSchema.setup`), then the inbox: the custom channel and its
        account, or the timeline's reply property."""
        return super().setup(required, apply=apply) + self.app.setup(apply=apply)

    def installer(self) -> OAuthInstall | None:
        return self.app.oauth

    # -- privacy -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        from hubspot.crm.objects import SimplePublicObjectInput

        found = self.find_contact(key=key, properties=["firstname"])
        self.cache.drop("contact", key[1])
        if found is None:
            return ErasureReport(mode=mode, found=False)
        if mode == "delete":
            self._call("contact_delete", self.client.crm.objects.basic_api.archive, "contacts", found.id)
        else:
            blank = {"firstname": "Erased", "lastname": "", "email": "", "phone": "", key[0]: f"erased:{found.id}"}
            self._call("contact_update", self.client.crm.objects.basic_api.update, "contacts", found.id,
                       SimplePublicObjectInput(properties=blank))
        return ErasureReport(mode=mode, erased=[f"contacts/{found.id}"])
