"""The Pipedrive adapter class: its declarations (options, credentials, key families), the two
operations that use every part (the sync of a plan and the erasure of a contact), and the hooks of the
conversation after the bot (the inbox and the app's OAuth install: :mod:`adapters.pipedrive.app`).

The parts it is made of are mixins over :class:`~adapters.pipedrive.common.PipedriveBase`: the schema
(:mod:`adapters.pipedrive.schema`), persons (:mod:`~adapters.pipedrive.persons`, by the matching rule of
:mod:`~adapters.pipedrive.identity`), organizations (:mod:`~adapters.pipedrive.organizations`), opt-outs
(:mod:`~adapters.pipedrive.optouts`), leads, deals, notes and activities (:mod:`~adapters.pipedrive.records`).
"""

from __future__ import annotations

import html
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from adapters.base import AdapterCredentials, AdapterOptions, CRMSchema, ErasureReport, Ref, SyncPlan, SyncResult
from adapters.pipedrive.app import PipedriveApp
from adapters.pipedrive.identity import IDENTITY_CONFLICT
from adapters.pipedrive.keys import (
    ACTIVITIES,
    CONTACTS,
    FIELDS,
    LABELS,
    NOTES,
    ORGANIZATIONS,
    PIPELINES,
    PROGRESS,
    RECORDS,
)
from adapters.pipedrive.options import PipedriveCredentials, PipedriveOptions
from adapters.pipedrive.optouts import PipedriveOptOuts
from adapters.pipedrive.records import PipedriveRecords
from adapters.pipedrive.schema import PipedriveSchema
from core.errors import FatalError

if TYPE_CHECKING:
    from redis import Redis

    from adapters.inbox import CRMInbox, OAuthInstall


class PipedriveAdapter(PipedriveSchema, PipedriveOptOuts, PipedriveRecords):
    """Writes leads into Pipedrive (persons, leads or deals, notes, activities, labels)."""

    name = "pipedrive"
    requires = ("requests",)
    Options = PipedriveOptions
    Credentials = PipedriveCredentials
    cache_families = MappingProxyType({"contact": CONTACTS, "organization": ORGANIZATIONS, "record": RECORDS,
                                       "note": NOTES, "activity": ACTIVITIES, "fields": FIELDS, "labels": LABELS,
                                       "pipelines": PIPELINES})
    progress_family = PROGRESS

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        #: the app installed by OAuth, the panel and the inbox (:mod:`adapters.pipedrive.app`)
        self.app = PipedriveApp(self)
        if self.app.configured:
            # the installed company's token and API domain, asked for at each call (after the runtime has
            # told the adapter its encryption key)
            self.session.use_app(self.app)

    # -- the conversation after the bot ----------------------------------------------------------
    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """The mapping's fields and labels (:meth:`PipedriveSchema.setup`), then what the inbox's panel needs."""
        return super().setup(required, apply=apply) + self.app.setup()

    def inbox(self) -> CRMInbox | None:
        return self.app.inbox()

    def installer(self) -> OAuthInstall | None:
        return self.app.oauth

    # -- erasure -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Delete the person with that key, or blank its name, phones, e-mails and key."""
        person_id = self._cached_contact(key[1])[0]
        if person_id is None:
            found = self._person_by_key(key[0], key[1])
            person_id = str(found["id"]) if found else None
        self.cache.drop("contact", key[1])
        if person_id is None:
            return ErasureReport(mode=mode, found=False)
        try:
            if mode == "delete":
                self._call("person_delete", "DELETE", f"/api/v2/persons/{person_id}")
            else:
                key_field = self._field("person", key[0])["key"]
                self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body={
                    "name": "Erased", "phones": [], "emails": [], "custom_fields": {key_field: f"erased:{person_id}"}})
        except FatalError as exc:
            if exc.details.get("status") == 404:
                return ErasureReport(mode=mode, found=False)
            raise
        return ErasureReport(mode=mode, erased=[f"persons/{person_id}"])

    # -- the write -----------------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """Organization, person, lead or deal (with labels or tags), note, activity on handoff.

        A retry resumes where the last attempt stopped (the progress log): steps already written are not
        written again.
        """
        start = self.calls
        progress = self.progress(plan.lead_reference)
        done = progress.steps()
        # the organization first: the person is written linked to it (a company that is only the patient's
        # own name is none)
        company = self._organization_for(plan.company, plan.contact.properties.get("name"))
        if "contact" in done:
            contact = Ref(object=plan.contact.object, id=done["contact"])
        else:
            write = plan.contact
            if company is not None:
                write = write.model_copy(update={"properties": {**write.properties, "org_id": company.id}})
            contact = self._contact(write)
            progress.record("contact", contact.id)
        record = None
        if plan.record is not None and "record" in done:
            record = Ref(object=plan.record.object, id=done["record"])
        elif plan.record is not None:
            record = self._record(plan.record, contact=contact, company=company, tags=list(plan.tags),
                                  tags_property=plan.tags_property)
            progress.record("record", record.id)
        conflict = contact.properties.get(IDENTITY_CONFLICT)
        if plan.note and conflict:  # where the coordinator reads the request, not only on the person
            plan = plan.model_copy(update={"note": plan.note.model_copy(update={
                "body": f"<p><strong>Identity check:</strong> {html.escape(conflict)}</p>\n{plan.note.body}"})})
        note = self._note(plan.note, contact=contact, record=record) if plan.note else None
        task = self._activity(plan.task, contact=contact, record=record) if plan.task else None
        progress.finish()
        return SyncResult(contact=contact, company=company, record=record, note=note, task=task,
                          calls=self.calls - start)
