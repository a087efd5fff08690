"""The emulated org's records and the rules a save runs through: references to existing records,
unique fields, the standard duplicate rules, assignment rules, cascading deletes.

:class:`OrgState` is the bottom layer of :class:`~emulators.salesforce.SalesforceEmulator`: it
declares the state every layer reads (set up by the emulator's constructor) and holds what
creating, updating and deleting a record does, whichever request does it (a REST call or a
composite subrequest). It also records the requests Salesforce would reject (``violations``) and
shapes every answer with the org's ``Sforce-Limit-Info`` header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, request

from emulators._faults import FaultInjection
from emulators.salesforce.common import (
    API_USER_ID,
    ASSIGNMENT_RULE_ID,
    SalesforceCredentials,
    fail,
    same_value,
    sf_id,
    timestamp,
)
from emulators.salesforce.contract import SalesforceProblem
from emulators.salesforce.schema import CASCADE, CHILD_RELATIONSHIPS, SField


class OrgState(FaultInjection):
    """The org's state and what a save does to it (the layers above answer the HTTP requests)."""

    credentials: SalesforceCredentials
    duplicate_rule: str | None
    #: what the duplicate rule matches on: the standard matching rules' equation, or the e-mail alone
    duplicate_match: str
    #: the request being served said ``Sforce-Duplicate-Rule-Header: allowSave=true``
    _allow_save: bool
    daily_limit: int
    #: API requests used today
    used: int
    can_customize: bool
    session_seconds: float | None
    counter: Iterator[int]
    #: sObject → field name → field
    schema: dict[str, dict[str, SField]]
    #: sObject → key prefix of its ids
    prefixes: dict[str, str]
    #: sObject → id → record
    objects: dict[str, dict[str, dict[str, Any]]]
    #: FullName → CustomField id
    custom_fields: dict[str, str]
    #: access token → issued at
    tokens: dict[str, float]
    token_grants: list[str]
    _refuse_next_grant: bool
    _duplicates_pending: int
    #: AssignmentRule id → the owner it assigns
    assignment_rules: dict[str, str]
    #: ContentVersion id → the file's bytes (:mod:`emulators.salesforce.files`)
    blobs: dict[str, bytes]

    def _stamp(self, sobject: str, record_id: str, values: dict[str, Any]) -> dict[str, Any]:
        now = timestamp()
        record = {"Id": record_id, "CreatedDate": now, "LastModifiedDate": now, "IsDeleted": False}
        for name, spec in self.schema[sobject].items():
            if spec.default is not None and name not in values:
                record[name] = API_USER_ID if spec.default == "005" else spec.default
        if sobject == "Lead":
            record["IsConverted"] = False
        record.update(values)
        return record

    def _object_of(self, record_id: str) -> str | None:
        for name, prefix in self.prefixes.items():
            if record_id.startswith(prefix) and record_id in self.objects[name]:
                return name
        return None

    def _check_references(self, sobject: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            spec = self.schema[sobject].get(name)
            if spec is None or spec.type != "reference" or not value:
                continue
            target = self._object_of(str(value)) or ("Group" if str(value).startswith("00G") else None)
            if target is None or (spec.reference_to and target not in spec.reference_to):
                raise fail(400, f"{spec.name}: id value of incorrect type: {value}",
                           "FIELD_INTEGRITY_EXCEPTION" if target else "INVALID_CROSS_REFERENCE_KEY", [name])

    def _check_unique(self, sobject: str, values: dict[str, Any], exclude: str | None = None) -> None:
        for name, value in values.items():
            spec = self.schema[sobject].get(name)
            if spec is None or not spec.unique or value in (None, ""):
                continue
            for record in self.objects[sobject].values():
                if record["Id"] != exclude and same_value(record.get(name), value, spec.case_sensitive):
                    raise fail(400, f"duplicate value found: {name} duplicates value on record with id: "
                                    f"{record['Id']}", "DUPLICATE_VALUE", [])
        if sobject == "CampaignMember":
            who = values.get("LeadId") or values.get("ContactId")
            for record in self.objects[sobject].values():
                if record["Id"] != exclude and record.get("CampaignId") == values.get("CampaignId") and who in (
                        record.get("LeadId"), record.get("ContactId")):
                    raise fail(400, "Already a campaign member.", "DUPLICATE_VALUE", [])

    def _duplicate_rule(self, sobject: str, values: dict[str, Any], exclude: str | None = None) -> None:
        """The org's standard duplicate rules for Leads and Contacts (or a ``duplicates`` fault).

        With ``duplicate_match="standard"`` a record matches another as the standard Lead and Contact
        matching rules' equation says, exactly rather than fuzzily: the same first and last name and the same
        e-mail, phone or (Leads) company. With ``"email"`` (a custom rule an org adds) the same e-mail alone is
        a match. With ``duplicate_rule="alert"`` (Salesforce's default: "Allow, alert") an API save of a match
        is refused unless the request says ``Sforce-Duplicate-Rule-Header: allowSave=true``; with ``"block"``
        it is always refused.
        """
        if sobject not in ("Lead", "Contact", "Account"):
            return
        matches: list[dict[str, Any]] = []
        forced = self._duplicates_pending > 0
        if forced:
            self._duplicates_pending -= 1
            matches = list(self.objects[sobject].values())[:1]
        elif self.duplicate_rule and sobject in ("Lead", "Contact") and not (
                self.duplicate_rule == "alert" and self._allow_save):
            for other in self.objects[sobject].values():
                if other["Id"] == exclude:
                    continue
                merged = {**(self.objects[sobject].get(exclude or "", {})), **values}

                def same(name: str, other: dict[str, Any] = other, merged: dict[str, Any] = merged) -> bool:
                    return bool(merged.get(name)) and same_value(other.get(name), merged[name], False)

                if self.duplicate_match == "email":
                    hit = same("Email")
                else:
                    third = ("Email", "Phone", "Company") if sobject == "Lead" else ("Email", "Phone")
                    hit = same("FirstName") and same("LastName") and any(same(f) for f in third)
                if hit:
                    matches.append(other)
            if not matches:
                return
        if not forced and not matches:
            return
        rule = f"Standard_{sobject}_Duplicate_Rule" if self.duplicate_match == "standard" else \
            f"Chat2CRM_{sobject}_Email_Duplicate_Rule"
        records = [{"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 100.0,
                    "record": {"attributes": {"type": sobject, "url": f"/services/data/v62.0/sobjects/{sobject}/"
                                                                      f"{m['Id']}"}, "Id": m["Id"]}} for m in matches]
        raise fail(400, "Use one of these records?", "DUPLICATES_DETECTED", [], duplicateResult={
            "allowSave": self.duplicate_rule == "alert", "duplicateRule": rule,
            "duplicateRuleEntityType": sobject,
            "errorMessage": "You're creating a duplicate record. We recommend you use an existing record instead.",
            "matchResults": [{"entityType": sobject, "errors": [], "matchEngine": "FuzzyMatchEngine",
                              "matchRecords": records, "rule": rule.replace("Duplicate", "Match") + "_v1_0",
                              "size": len(records), "success": True}]})

    def _create(self, sobject: str, values: dict[str, Any], auto_assign: str | None) -> dict[str, Any]:
        self._duplicate_rule(sobject, values)
        self._check_references(sobject, values)
        self._check_unique(sobject, values)
        if sobject == "CampaignMember" and not (values.get("LeadId") or values.get("ContactId")):
            raise fail(400, "Required fields are missing: [LeadId or ContactId]", "REQUIRED_FIELD_MISSING",
                       ["LeadId", "ContactId"])
        record_id = sf_id(self.prefixes[sobject], next(self.counter))
        record = self._stamp(sobject, record_id, values)
        self._assign(sobject, record, auto_assign)
        self._saving(sobject, record)
        self.objects[sobject][record_id] = record
        self._saved(sobject, record, "CREATE", values)
        return record

    def _saving(self, sobject: str, record: dict[str, Any]) -> None:
        """What a new record's save does before it is stored (the layers above add theirs; may raise
        :class:`~emulators.salesforce.common.Failed`)."""

    def _saved(self, sobject: str, record: dict[str, Any], change: str, values: dict[str, Any]) -> None:
        """What follows a save (``change``: CREATE, UPDATE or DELETE; ``values``: the fields a create set, or
        those an update changed): the layers above add theirs (files made with a version, change events)."""

    def _assign(self, sobject: str, record: dict[str, Any], auto_assign: str | None) -> None:
        """Assignment rules run on create and on update of a Lead or Case unless the header says FALSE."""
        if sobject in ("Lead", "Case") and auto_assign and auto_assign.upper() != "FALSE":
            rule = ASSIGNMENT_RULE_ID if auto_assign.upper() == "TRUE" else auto_assign
            if rule in self.assignment_rules:
                record["OwnerId"] = self.assignment_rules[rule]

    def _update(self, sobject: str, record: dict[str, Any], values: dict[str, Any], auto_assign: str | None) -> None:
        self._check_references(sobject, values)
        self._check_unique(sobject, values, exclude=record["Id"])
        self._duplicate_rule(sobject, values, exclude=record["Id"])
        if sobject == "Lead" and record.get("IsConverted"):
            raise fail(400, "cannot reference converted lead", "CANNOT_UPDATE_CONVERTED_LEAD", [])
        changed = {k: v for k, v in values.items() if record.get(k) != v}
        record.update(values)
        record["LastModifiedDate"] = timestamp()
        self._assign(sobject, record, auto_assign)
        self._saved(sobject, record, "UPDATE", changed)

    def _delete(self, sobject: str, record_id: str) -> None:
        record = self.objects[sobject].pop(record_id)
        self._saved(sobject, record, "DELETE", {})
        for relationship in CASCADE.get(sobject, ()):
            child, lookup = CHILD_RELATIONSHIPS[sobject][relationship]
            for child_id in [c["Id"] for c in self.objects[child].values() if c.get(lookup) == record["Id"]]:
                self._delete(child, child_id)

    def _violation(self, problem: SalesforceProblem | str) -> None:
        text = problem.message if isinstance(problem, SalesforceProblem) else problem
        with self.lock:
            self.violations.append({"method": request.method, "path": request.path, "problem": text})

    def _limit_headers(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.used}/{self.daily_limit}"}

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        if isinstance(body, bytes):  # a blob field's content (a file's VersionData)
            response = Response(body, mimetype="application/octet-stream")
        else:
            response = jsonify(body) if body is not None else Response(status=status)
        response.status_code = status
        response.headers.update(self._limit_headers())
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response


    def _public(self, sobject: str, record: dict[str, Any], wanted: list[str], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": sobject,
                                              "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}}
        for name in wanted:
            out[name] = record.get(name)
        return out

