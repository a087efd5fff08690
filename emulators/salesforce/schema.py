"""The standard sObjects the relay touches, with their fields as ``describe`` reports them (type,
length, required on create, picklist values, external ID), their child relationships and what a
deletion takes with it. Part of the contract the Salesforce emulator enforces
(:mod:`emulators.salesforce.contract`); pure data, no I/O. (The chat2crm package's own object is in
:mod:`emulators.salesforce.package`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SField:
    """One field of an sObject, as ``describe`` reports it."""

    name: str
    type: str = "string"
    length: int = 255
    label: str = ""
    required: bool = False  # createable, not nillable, not defaulted on create
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    picklist: list[str] = field(default_factory=list)
    #: a picklist value's label where it is not the value itself (a standard value set's, set through the Metadata API)
    labels: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    restricted: bool = False
    reference_to: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label or self.name, "type": self.type, "length": self.length,
            "custom": self.custom, "externalId": self.external_id, "unique": self.unique,
            "caseSensitive": self.case_sensitive, "idLookup": self.external_id or self.name == "Id",
            "nillable": not self.required and self.name != "Id", "createable": self.createable,
            "updateable": self.updateable, "defaultedOnCreate": self.default is not None,
            "restrictedPicklist": self.restricted, "referenceTo": list(self.reference_to),
            "picklistValues": [{"active": True, "defaultValue": v == self.default, "label": self.labels.get(v, v),
                                "validFor": None,
                                "value": v} for v in self.picklist],
        }


#: standard fields whose label is not their API name in words
_LABELS = {"Origin": "Case Origin", "ActivityDate": "Due Date", "StageName": "Stage", "WhoId": "Name ID",
           "WhatId": "Related To ID", "ParentId": "Parent ID", "IsPrivate": "Private"}


def field_label(name: str) -> str:
    """The label Salesforce shows for a field (``FirstName`` → ``First Name``, ``OwnerId`` → ``Owner ID``,
    ``Chat2CRM_Opted_Out__c`` → ``Chat2CRM Opted Out``)."""
    if name in _LABELS:
        return _LABELS[name]
    if name.endswith("__c"):
        return name.removesuffix("__c").replace("_", " ").strip()
    words = re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name)
    return " ".join("ID" if w == "Id" else w for w in words) or name


def _f(name: str, kind: str = "string", length: int = 255, **kw: Any) -> SField:
    return SField(name=name, type=kind, length=length, **{"label": field_label(name), **kw})


_SYSTEM = [_f("Id", "id", 18, createable=False, updateable=False),
           _f("CreatedDate", "datetime", 0, createable=False, updateable=False),
           _f("LastModifiedDate", "datetime", 0, createable=False, updateable=False),
           _f("IsDeleted", "boolean", 0, createable=False, updateable=False)]
LEAD_STATUS = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"]
CASE_STATUS = ["New", "Working", "Escalated", "Closed"]
OPPORTUNITY_STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                      "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
#: object → (key prefix, fields)
_OBJECTS: dict[str, tuple[str, list[SField]]] = {
    "Lead": ("00Q", [
        _f("FirstName", length=40), _f("LastName", length=80, required=True), _f("Company", required=True),
        _f("Email", "email", 80), _f("Phone", "phone", 40), _f("MobilePhone", "phone", 40), _f("Title", length=128),
        _f("Country", length=80), _f("City", length=40), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=LEAD_STATUS, default=LEAD_STATUS[0]),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("OwnerId", "reference", 18, reference_to=["Group", "User"], default="005"),
        _f("IsConverted", "boolean", 0, createable=False, updateable=False)]),
    "Contact": ("003", [
        _f("FirstName", length=40), _f("LastName", length=80, required=True), _f("Email", "email", 80),
        _f("Phone", "phone", 40), _f("MobilePhone", "phone", 40), _f("MailingCountry", length=80),
        _f("MailingCity", length=40), _f("Description", "textarea", 32000), _f("Title", length=128),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Account": ("001", [_f("Name", required=True), _f("Phone", "phone", 40), _f("BillingCountry", length=80),
                        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Case": ("500", [
        _f("Subject"), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=CASE_STATUS, default="New"),
        _f("Origin", "picklist", 255, picklist=["Phone", "Email", "Web"]),
        _f("Priority", "picklist", 255, picklist=["High", "Medium", "Low"], default="Medium"),
        _f("Type", "picklist", 255, picklist=["Question", "Problem", "Feature Request"]),
        _f("ContactId", "reference", 18, reference_to=["Contact"]),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("SuppliedName", length=80), _f("SuppliedEmail", "email", 80), _f("SuppliedPhone", length=40),
        _f("OwnerId", "reference", 18, reference_to=["Group", "User"], default="005")]),
    "Opportunity": ("006", [
        _f("Name", length=120, required=True), _f("StageName", "picklist", 255, picklist=OPPORTUNITY_STAGES,
                                                    required=True),
        _f("CloseDate", "date", 0, required=True), _f("Amount", "currency", 0), _f("Description", "textarea", 32000),
        _f("LeadSource", "picklist", 255, picklist=LEAD_SOURCES),
        _f("AccountId", "reference", 18, reference_to=["Account"]),
        _f("CampaignId", "reference", 18, reference_to=["Campaign"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "OpportunityContactRole": ("00K", [
        _f("OpportunityId", "reference", 18, required=True, updateable=False, reference_to=["Opportunity"]),
        _f("ContactId", "reference", 18, reference_to=["Contact"]), _f("IsPrimary", "boolean", 0),
        _f("Role", "picklist", 255, picklist=["Business User", "Decision Maker", "Economic Buyer",
                                              "Economic Decision Maker", "Evaluator", "Executive Sponsor",
                                              "Influencer", "Technical Buyer", "Other"])]),
    "Task": ("00T", [
        _f("Subject", "combobox"), _f("Description", "textarea", 32000),
        _f("Status", "picklist", 255, picklist=["Not Started", "In Progress", "Completed", "Waiting on someone else",
                                                "Deferred"], default="Not Started"),
        _f("Priority", "picklist", 255, picklist=["High", "Normal", "Low"], default="Normal"),
        _f("ActivityDate", "date", 0),
        _f("WhoId", "reference", 18, reference_to=["Contact", "Lead"]),
        _f("WhatId", "reference", 18, reference_to=["Account", "Case", "Opportunity", "Campaign"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Note": ("002", [
        _f("ParentId", "reference", 18, required=True, updateable=False,
           reference_to=["Account", "Case", "Contact", "Lead", "Opportunity"]),
        _f("Title", length=80, required=True), _f("Body", "textarea", 32000), _f("IsPrivate", "boolean", 0),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "Campaign": ("701", [_f("Name", length=80, required=True), _f("IsActive", "boolean", 0),
                         _f("Status", "picklist", 255, picklist=["Planned", "In Progress", "Completed", "Aborted"]),
                         _f("Type", "picklist", 255, picklist=["Advertisement", "Email", "Social Media", "Other"])]),
    "CampaignMember": ("00v", [
        _f("CampaignId", "reference", 18, required=True, updateable=False, reference_to=["Campaign"]),
        _f("LeadId", "reference", 18, updateable=False, reference_to=["Lead"]),
        _f("ContactId", "reference", 18, updateable=False, reference_to=["Contact"]),
        _f("Status", "picklist", 255, picklist=["Sent", "Responded"], default="Sent")]),
    "User": ("005", [_f("Name", length=121, createable=False), _f("Username", length=80, createable=False),
                     _f("Email", "email", 128, createable=False), _f("IsActive", "boolean", 0, createable=False)]),
    # Salesforce Files: a version holds the bytes (VersionData, base64 in JSON), its document is made with the
    # first version, and a link shares the document with a record
    "ContentVersion": ("068", [
        _f("Title"), _f("PathOnClient", length=500, required=True, updateable=False),
        _f("VersionData", "base64", 0, required=True, updateable=False), _f("Description", "textarea", 1000),
        _f("ContentDocumentId", "reference", 18, updateable=False, reference_to=["ContentDocument"]),
        _f("FirstPublishLocationId", "reference", 18, updateable=False),
        _f("FileExtension", length=40, createable=False, updateable=False),
        _f("FileType", length=20, createable=False, updateable=False),
        _f("ContentSize", "int", 0, createable=False, updateable=False),
        _f("IsLatest", "boolean", 0, createable=False, updateable=False),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "ContentDocument": ("069", [
        _f("Title"), _f("FileExtension", length=40, createable=False, updateable=False),
        _f("FileType", length=20, createable=False, updateable=False),
        _f("ContentSize", "int", 0, createable=False, updateable=False),
        _f("LatestPublishedVersionId", "reference", 18, createable=False, updateable=False,
           reference_to=["ContentVersion"]),
        _f("OwnerId", "reference", 18, reference_to=["User"], default="005")]),
    "ContentDocumentLink": ("06A", [
        _f("ContentDocumentId", "reference", 18, required=True, updateable=False, reference_to=["ContentDocument"]),
        _f("LinkedEntityId", "reference", 18, required=True, updateable=False),
        _f("ShareType", "picklist", 40, picklist=["V", "C", "I"], default="V", restricted=True),
        _f("Visibility", "picklist", 40, picklist=["AllUsers", "InternalUsers", "SharedUsers"], default="AllUsers",
           restricted=True)]),
    "PermissionSet": ("0PS", [_f("Name", length=80, required=True), _f("Label", length=80, required=True)]),
    "PermissionSetAssignment": ("0Pa", [
        _f("AssigneeId", "reference", 18, required=True, updateable=False, reference_to=["User"]),
        _f("PermissionSetId", "reference", 18, required=True, updateable=False, reference_to=["PermissionSet"])]),
}
#: parent object → child relationship name → (child object, the child's lookup field)
CHILD_RELATIONSHIPS: dict[str, dict[str, tuple[str, str]]] = {
    "Lead": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhoId"), "CampaignMembers": ("CampaignMember", "LeadId")},
    "Contact": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhoId"),
                "CampaignMembers": ("CampaignMember", "ContactId"), "Cases": ("Case", "ContactId"),
                "OpportunityContactRoles": ("OpportunityContactRole", "ContactId")},
    "Account": {"Notes": ("Note", "ParentId"), "Contacts": ("Contact", "AccountId"), "Cases": ("Case", "AccountId")},
    "Case": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhatId")},
    "Opportunity": {"Notes": ("Note", "ParentId"), "Tasks": ("Task", "WhatId"),
                    "OpportunityContactRoles": ("OpportunityContactRole", "OpportunityId")},
    "Campaign": {"CampaignMembers": ("CampaignMember", "CampaignId")},
    "ContentDocument": {"ContentVersions": ("ContentVersion", "ContentDocumentId"),
                        "ContentDocumentLinks": ("ContentDocumentLink", "ContentDocumentId")},
}
#: what a deletion takes with it (Salesforce deletes a record's notes, activities and memberships)
CASCADE = {"Lead": ("Notes", "Tasks", "CampaignMembers"),
           "Contact": ("Notes", "Tasks", "CampaignMembers", "OpportunityContactRoles"),
           "Case": ("Notes", "Tasks"), "Opportunity": ("Notes", "Tasks", "OpportunityContactRoles"),
           "Campaign": ("CampaignMembers",), "ContentDocument": ("ContentVersions", "ContentDocumentLinks")}


def standard_objects() -> dict[str, tuple[str, dict[str, SField]]]:
    """A fresh copy of the standard sObjects: name → (key prefix, fields by name)."""
    out: dict[str, tuple[str, dict[str, SField]]] = {}
    for name, (prefix, fields) in _OBJECTS.items():
        out[name] = (prefix, {f.name: SField(**{**f.__dict__, "picklist": list(f.picklist), "labels": dict(f.labels),
                                               "reference_to": list(f.reference_to)})
                              for f in [*_SYSTEM, *fields]})
    return out


def relationship_name(field_name: str) -> str | None:
    """The name a lookup field is followed by in SOQL (``ContentDocumentId`` → ``ContentDocument``,
    ``Lead__c`` → ``Lead__r``); None for a field that is not a lookup's."""
    if field_name.endswith("__c"):
        return field_name[:-3] + "__r"
    return field_name[:-2] if field_name.endswith("Id") and len(field_name) > 2 else None
