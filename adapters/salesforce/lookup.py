"""Step 1 of a lead's sync: the plan as Salesforce objects, the lookup query that finds what already
exists, and what it found.

The query runs on the contact object (Lead, or Contact): it finds the person by the contact key (a
custom External ID field), their other channel identities, then by phone or e-mail (records people made;
who is who among the rows is :func:`adapters.salesforce.identity.match`), and returns in parent-child
subqueries what idempotency needs: the note with this lead's marker, the tasks, the campaign
memberships and, with Contact + Case, the request record with this reference and its own notes and
tasks. With Contact + Opportunity a second query, sent in the same call, finds the Opportunity, linked
to the Contact by an OpportunityContactRole. Nothing here calls Salesforce: the adapter sends the
queries and hands the rows back to :meth:`Found.of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.base import ContactWrite, RecordWrite, SyncPlan
from adapters.salesforce import identity
from adapters.salesforce.content import _note_title
from adapters.salesforce.options import CampaignMember
from adapters.salesforce.soql import _children, _phone_filter, _quote, _select
from core.errors import FatalError, SkippableError

#: the child relationship of the contact object that holds the request records
RECORD_RELATIONSHIPS = {("Contact", "Case"): "Cases"}
#: request records linked to the contact by a junction object, not a lookup on the record: (object, field)
RECORD_JUNCTIONS = {("Contact", "Opportunity"): ("OpportunityContactRole", "OpportunityId")}
#: fields a contact object cannot be created without
REQUIRED_TO_CREATE = {"Lead": ("LastName",), "Contact": ("LastName",)}  # a Lead's Company: see composite


@dataclass(frozen=True)
class Shape:
    """A sync plan as Salesforce objects.

    Attributes:
        plan: the plan.
        single: the contact object is also the request record (a Lead), or there is no record.
        relationship: the contact's child relationship holding the record (``Cases``), when it has one.
        junction: the junction object linking record and contact, and its field naming the record.
        campaign: the campaign membership the options ask for.
        campaign_name: the Name of the Campaign this lead joins (the mapped field's value), if any.
        note_title: the title of the lead's note, if the plan writes one.
    """

    plan: SyncPlan
    single: bool
    relationship: str | None
    junction: tuple[str, str] | None
    campaign: CampaignMember | None
    campaign_name: str | None
    note_title: str | None

    @property
    def contact(self) -> ContactWrite:
        """The contact the plan writes."""
        return self.plan.contact

    @property
    def record(self) -> RecordWrite | None:
        """The request record the plan writes, if any."""
        return self.plan.record

    @classmethod
    def of(cls, plan: SyncPlan, campaign: CampaignMember | None) -> Shape:
        """The shape of ``plan``, with the adapter's campaign membership option.

        Raises:
            FatalError: the plan writes an organization, or a record that cannot hang off the contact object.
        """
        if plan.company is not None:  # an Account is not written: map the organization to Lead.Company
            raise FatalError("the salesforce adapter does not write organizations; map the organization to a field "
                             "(Lead.Company)", field="company")
        c, r = plan.contact, plan.record
        single = r is None or r.object == c.object
        relationship = None if single or r is None else RECORD_RELATIONSHIPS.get((c.object, r.object))
        junction = None if single or r is None else RECORD_JUNCTIONS.get((c.object, r.object))
        if not single and relationship is None and junction is None:
            raise FatalError(f"salesforce: {r.object if r else '?'} records cannot hang off {c.object}; use Lead, "
                             "or Contact with Case or Opportunity", field="record.object")
        campaign_field = campaign.field if campaign is not None else None
        values = {**c.properties, **(r.properties if r else {})}
        campaign_name = str(values[campaign_field]) if campaign_field and values.get(campaign_field) else None
        note_title = _note_title(plan.note.marker) if plan.note else None
        return cls(plan=plan, single=single, relationship=relationship, junction=junction, campaign=campaign,
                   campaign_name=campaign_name, note_title=note_title)


def lookup_queries(shape: Shape) -> list[str]:
    """The lookup: the query on the contact object and, when the record is linked through a junction object,
    the query on the record object (both sent in one call)."""
    plan, c, r = shape.plan, shape.contact, shape.record
    fields, where = _contact_match(c)
    own = _children(shape.note_title, plan.task is not None)
    if shape.single:
        if r is not None:
            fields.append(r.reference_property)
        if plan.tags_property:
            fields.append(plan.tags_property)
    record_query = None
    if not shape.single and r is not None:
        own, record_query = _record_queries(shape, r, own)
    if shape.campaign_name:
        own.append("(SELECT CampaignId FROM CampaignMembers)")
    soql = _select(list(dict.fromkeys(fields + own)), c.object, " OR ".join(where), 20)
    return [soql] if record_query is None else [soql, record_query]


def _contact_match(c: ContactWrite) -> tuple[list[str], list[str]]:
    """The fields the contact query reads and its conditions (OR-ed): the key, the channel identities, then
    phone and e-mail as ``match_by`` allows, and the e-mail the write carries (to see whether another person's
    record has it)."""
    fields = ["Id", c.key_property, "OwnerId", "Phone", "MobilePhone", "Email",
              *[i.property for i in c.identities]]
    where = [f"{c.key_property} = {_quote(c.key_value)}"]
    if "key" in c.match_by:
        where += [f"{i.property} = {_quote(i.value)}" for i in c.identities]
    if "phone" in c.match_by and c.phone:
        where.append(_phone_filter(c.phone))
    emails = {e.casefold(): e for e in ([c.email] if "email" in c.match_by and c.email else []) + (
        [str(c.properties["Email"])] if c.properties.get("Email") else [])}
    where += [f"Email = {_quote(e)}" for e in emails.values()]
    return list(dict.fromkeys(fields)), where


def _record_queries(shape: Shape, r: RecordWrite, own: list[str]) -> tuple[list[str], str | None]:
    """Where the request record is looked up when it is not the contact object: a subquery of the contact
    query (a child relationship), or a second query (a junction object; the contact query then reads the
    junction rows). ``own`` (the note and task subqueries) moves to the record. Returns the contact
    query's subqueries and the second query, if any."""
    plan = shape.plan
    record_fields = ["Id", "OwnerId", r.reference_property] + ([plan.tags_property] if plan.tags_property else [])
    by_reference = f"{r.reference_property} = {_quote(r.reference)}"
    if shape.relationship is not None:  # the record hangs off the contact: one query with nested subqueries
        return ["(" + _select([*dict.fromkeys(record_fields), *own], shape.relationship, by_reference) + ")"], None
    # linked through a junction object: a second query, in the same call
    record_query = _select([*dict.fromkeys(record_fields), *own], r.object, by_reference, 1)
    junction = shape.junction
    return (["(" + _select(["Id", junction[1]], junction[0] + "s") + ")"] if junction else []), record_query


@dataclass(frozen=True)
class Found:
    """What the lookup found.

    Attributes:
        person: the contact object's record that is this person, if any.
        existing: the request record with this reference (the person itself for a Lead), if any.
        adopt: ``person`` does not hold the contact key yet (made by a person, or found by another channel
            identity): it is updated by its id and given the key.
        match: who is who among the rows (:func:`adapters.salesforce.identity.match`): what the write leaves
            out and adds.
    """

    person: dict[str, Any] | None
    existing: dict[str, Any] | None
    adopt: bool
    match: identity.Match = field(default_factory=identity.Match)

    @classmethod
    def of(cls, shape: Shape, rows: list[dict[str, Any]], record_rows: list[dict[str, Any]]) -> Found:
        """Read the lookup's rows: the contact query's, and the record query's (empty when not sent).

        Raises:
            SkippableError: the plan only updates a contact (it cannot create one) and none holds the key.
        """
        plan, c, r = shape.plan, shape.contact, shape.record
        found = identity.match(c, rows)
        person, adopt = found.person, found.adopt
        only_contact = r is None and plan.note is None and plan.task is None and not plan.tags
        if person is None and only_contact and any(not {**c.properties, **c.create_only}.get(f)
                                                    for f in REQUIRED_TO_CREATE.get(c.object, ())):
            # a write that cannot create a record (an opt-out has no name): it only updates, and nothing holds the key
            raise SkippableError(f"salesforce: no {c.object} holds this contact key")
        existing = None
        if shape.single:
            existing = person
        elif shape.relationship is not None and person is not None:
            existing = next(iter((person.get(shape.relationship) or {}).get("records") or []), None)
        elif shape.junction is not None:
            existing = next(iter(record_rows), None)
        return cls(person=person, existing=existing, adopt=adopt, match=found)
