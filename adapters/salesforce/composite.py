"""Step 2 of a lead's sync: the one ``POST /composite`` request that writes only what is missing, and the
reading of its answer.

The request upserts the contact on its External ID (``PATCH …/sobjects/Lead/Chat2CRM_Contact_Key__c/<key>``),
or by its id when it adopts a record a person made; upserts the request record on its reference field
(Contact + Case or Opportunity, with the OpportunityContactRole that links an Opportunity); and adds the
Note, the handoff Task and the CampaignMember, each referring to the earlier ones with ``@{ref.id}``.
``allOrNone`` is false on purpose: each subrequest is idempotent on its own, so a part that fails (a
Campaign that does not exist, a membership already there) must not undo the lead; what did fail is
written by the next attempt, whose lookup sees what exists. Nothing here calls Salesforce.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from adapters.base import RecordWrite, Ref, SyncResult
from adapters.people import is_persons_name
from adapters.salesforce import identity
from adapters.salesforce.content import _existing_note, _existing_task, _merge_tags, _note_body, _task_body, _user_owner
from adapters.salesforce.errors import _error_code
from adapters.salesforce.lookup import Found, Shape
from adapters.salesforce.soql import _quote, _select

log = logging.getLogger("chat2crm.salesforce")


@dataclass
class Composite:
    """A lead's composite request, and what its answer is read with.

    Attributes:
        subrequests: the subrequests, in order.
        contact_ref: the contact's id, or ``@{contact.id}`` when the upsert decides it.
        record_ref: the request record's id or reference (the contact's for a Lead).
        note_id: the lead's note already written (then none is sent).
        task_id: the lead's task already written (then none is sent).
        owner_from_record: the task's owner is read back from the record the request creates.
    """

    subrequests: list[dict[str, Any]] = field(default_factory=list)
    contact_ref: str = "@{contact.id}"
    record_ref: str = "@{contact.id}"
    note_id: str | None = None
    task_id: str | None = None
    owner_from_record: bool = False
    #: the identity conflict written on the contact, if any
    conflict: str | None = None

    def add(self, method: str, url: str, reference: str, body: dict[str, Any] | None = None) -> None:
        """Append one subrequest (``reference`` is its ``referenceId``)."""
        sub: dict[str, Any] = {"method": method, "url": url, "referenceId": reference}
        if body is not None:
            sub["body"] = body
        self.subrequests.append(sub)


def build_composite(shape: Shape, found: Found, path: Callable[[str], str], campaign_id: str | None) -> Composite:
    """The subrequests that write what the lookup did not find.

    Args:
        shape: the plan as Salesforce objects.
        found: what the lookup found.
        path: a path under the versioned REST root (the session's).
        campaign_id: the id of the lead's Campaign, when the adapter's cache knows it.
    """
    out = Composite(conflict=found.match.conflict)
    prefix = path("sobjects")
    _add_contact(out, shape, found, prefix)
    _add_record(out, shape, found, prefix)
    # for a Lead the person is the record; otherwise the notes and tasks hang off the request record
    out.note_id = _existing_note(found.existing, shape.note_title)
    if shape.plan.note is not None and out.note_id is None:
        note = shape.plan.note
        if found.match.conflict:  # where the coordinator reads the request, not only on the record
            note = note.model_copy(update={"body": f"<p>Identity check: {html.escape(found.match.conflict)}</p>\n"
                                                   f"{note.body}"})
        out.add("POST", f"{prefix}/Note", "note", _note_body(note, out.record_ref))
    _add_task(out, shape, found, prefix)
    _add_membership(out, shape, found, path, campaign_id)
    return out


def _creation_fields(r: RecordWrite) -> dict[str, Any]:
    """What only a new record gets: its create-only fields, its first status, its owner."""
    out = dict(r.create_only)
    if r.stage and r.stage_property:
        out[r.stage_property] = r.stage  # the first status only; Salesforce owns the rest
    if r.owner_id:
        out["OwnerId"] = r.owner_id
    return out


def _add_contact(out: Composite, shape: Shape, found: Found, prefix: str) -> None:
    """The contact's upsert on its key, or its update by id when it is adopted (for a Lead, with the record's
    fields and the tags)."""
    plan, c, r = shape.plan, shape.contact, shape.record
    body = _contact_fields(c.object, dict(c.properties), dict(c.create_only) if found.person is None else None)
    body = {k: v for k, v in body.items() if k not in found.match.keep} | found.match.extra
    if shape.single and r is not None:
        body.update(r.properties)
        body[r.reference_property] = r.reference
        if found.existing is None:
            body.update(_creation_fields(r))
    if shape.single and plan.tags and plan.tags_property:
        body[plan.tags_property] = _merge_tags((found.person or {}).get(plan.tags_property), plan.tags)
    if found.adopt and found.person is not None:
        body[c.key_property] = c.key_value
        out.add("PATCH", f"{prefix}/{c.object}/{found.person['Id']}", "contact", dict(body))
        out.contact_ref = str(found.person["Id"])
    else:
        out.add("PATCH", f"{prefix}/{c.object}/{c.key_property}/{quote(c.key_value, safe='')}", "contact",
                dict(body))
        out.contact_ref = "@{contact.id}"
    out.record_ref = out.contact_ref


def _contact_fields(sobject: str, properties: dict[str, Any], create_only: dict[str, Any] | None) -> dict[str, Any]:
    """The contact's fields (with its create-only ones when ``create_only`` is given: the record is created).

    A Lead's Company is required, and it is never the patient's own name (a patient asked for their company
    who answers with their name has not named one): such a value is left out, and a Lead created without a
    company gets :data:`~adapters.salesforce.identity.NO_COMPANY`.
    """
    body = {**properties, **(create_only or {})}
    if sobject != "Lead":
        return body
    company = str(body.get("Company") or "").strip()
    if company and is_persons_name(company, str(body.get("FirstName") or ""),
                                            str(body.get("LastName") or "")):
        log.info("lead's company left out: it is the patient's name")
        company = ""
    if company:
        return body
    body.pop("Company", None)
    return body | ({"Company": identity.NO_COMPANY} if create_only is not None else {})


def _add_record(out: Composite, shape: Shape, found: Found, prefix: str) -> None:
    """The request record's upsert on its reference (when it is not the contact object), and the junction
    row that links it to the contact when there is none yet."""
    plan, r, junction, existing = shape.plan, shape.record, shape.junction, found.existing
    if shape.single or r is None:
        return
    body = {**r.properties, **({"ContactId": out.contact_ref} if shape.relationship else {})}
    if plan.tags and plan.tags_property:
        body[plan.tags_property] = _merge_tags((existing or {}).get(plan.tags_property), plan.tags)
    if existing is None:
        body.update(_creation_fields(r))
    out.add("PATCH", f"{prefix}/{r.object}/{r.reference_property}/{quote(r.reference, safe='')}", "record",
            dict(body))
    out.record_ref = "@{record.id}"
    if junction is None:
        return
    linked = {str(j.get(junction[1])) for j in ((found.person or {}).get(f"{junction[0]}s") or {}).get(
        "records") or []}
    if existing is None or str(existing["Id"]) not in linked:
        out.add("POST", f"{prefix}/{junction[0]}", "link", {
            junction[1]: out.record_ref, "ContactId": out.contact_ref, "IsPrimary": True})


def _add_task(out: Composite, shape: Shape, found: Found, prefix: str) -> None:
    """The handoff Task, unless written already, for the record's owner (a user, not a queue)."""
    task, existing = shape.plan.task, found.existing
    out.task_id = _existing_task(existing, task.marker) if task else None
    if task is None or out.task_id is not None:
        return
    owner = task.owner_id or _user_owner(existing)
    if owner is None and existing is None:
        # the record's owner is decided by the org's assignment rules in this very request: read it back
        obj = shape.contact.object if shape.single else (shape.record.object if shape.record else shape.contact.object)
        out.add("GET", prefix + f"/{obj}/" + out.record_ref + "?fields=OwnerId", "owner")
        owner = "@{owner.OwnerId}"
        out.owner_from_record = True
    what = out.record_ref if not shape.single else None
    out.add("POST", f"{prefix}/Task", "task", _task_body(task, out.contact_ref, what, owner))


def _add_membership(out: Composite, shape: Shape, found: Found, path: Callable[[str], str],
                    campaign_id: str | None) -> None:
    """The CampaignMember, unless the person is a member already; the Campaign is found by Name in the same
    request when its id is not cached."""
    name, campaign = shape.campaign_name, shape.campaign
    members = {str(m.get("CampaignId")) for m in ((found.person or {}).get("CampaignMembers") or {}).get(
        "records") or []}
    if not name or (campaign_id is not None and campaign_id in members) or campaign is None:
        return
    if campaign_id is None:
        out.add("GET", path("query/?q=" + quote(_select(["Id"], "Campaign", f"Name = {_quote(name)}", 1))),
                "campaign")
    member = {"CampaignId": campaign_id or "@{campaign.records[0].Id}",
              ("LeadId" if shape.contact.object == "Lead" else "ContactId"): out.contact_ref,
              "Status": campaign.status}
    out.add("POST", f"{path('sobjects')}/CampaignMember", "member", member)


# -- the answer ------------------------------------------------------------------------------
def first_failure(results: dict[str, dict[str, Any]], out: Composite,
                  lead_reference: str) -> tuple[str, dict[str, Any]] | None:
    """The first subresponse that failed for a reason of its own, as ``(referenceId, subresponse)``.

    Not failures: a membership that exists, a membership of a Campaign that does not exist (logged), and
    ``PROCESSING_HALTED``, which follows from an earlier failure. A Task refused because the record went
    to a queue is reported as retryable: the next attempt creates it for the integration user.
    """
    failure: tuple[str, dict[str, Any]] | None = None
    for ref, sub in results.items():
        if sub["httpStatusCode"] < 400:
            continue
        code = _error_code(sub["body"])
        if ref == "member" and code == "DUPLICATE_VALUE":
            continue  # already a member of the campaign
        if ref == "member" and code == "PROCESSING_HALTED" and "campaign" in results and \
                results["campaign"]["httpStatusCode"] < 400:
            log.warning("campaign not found in Salesforce; no campaign membership written",
                        extra={"lead_reference": lead_reference})
            continue
        if code == "PROCESSING_HALTED":
            continue  # follows from an earlier failure, reported below
        if ref == "task" and out.owner_from_record and code in ("FIELD_INTEGRITY_EXCEPTION",
                                                                "INVALID_CROSS_REFERENCE_KEY"):
            # the record went to a queue, which cannot own a Task: the next attempt (it sees the record
            # and its queue owner) creates the Task for the integration user
            failure = failure or (ref, {"httpStatusCode": 503, "body": [{
                "errorCode": "SERVER_UNAVAILABLE", "message": "the record's owner is a queue; task retried"}]})
            continue
        failure = failure or (ref, sub)
    return failure


def found_campaign(results: dict[str, dict[str, Any]]) -> str | None:
    """The id of the Campaign the request looked up by Name, if it did and found one."""
    if "campaign" not in results:
        return None
    found = (results["campaign"]["body"] or {}).get("records") or []
    return str(found[0]["Id"]) if found else None


def sync_result(shape: Shape, out: Composite, results: dict[str, dict[str, Any]], calls: int) -> SyncResult:
    """What the sync wrote, read from the composite answer (``results`` by ``referenceId``)."""
    plan, r = shape.plan, shape.record
    contact_sub = results["contact"]
    contact_id = str((contact_sub["body"] or {}).get("id") or out.contact_ref)
    conflict = {identity.IDENTITY_CONFLICT: out.conflict} if out.conflict else {}
    contact = Ref(object=shape.contact.object, id=contact_id, created=bool((contact_sub["body"] or {}).get("created")),
                  properties=conflict)
    record: Ref | None = None
    if r is not None and shape.single:
        record = Ref(object=r.object, id=contact.id, created=contact.created)
    elif r is not None:
        body = results["record"]["body"] or {}
        record = Ref(object=r.object, id=str(body["id"]), created=bool(body.get("created")))
    note = None
    if plan.note is not None:
        note = Ref(object="Note", id=str(results["note"]["body"]["id"]), created=True) if out.note_id is None else \
            Ref(object="Note", id=out.note_id)
    task = None
    if plan.task is not None:
        task = Ref(object="Task", id=str(results["task"]["body"]["id"]), created=True) if out.task_id is None else \
            Ref(object="Task", id=out.task_id)
    return SyncResult(contact=contact, record=record, note=note, task=task, calls=calls)
