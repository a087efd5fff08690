"""The Salesforce adapter class: the SDK's contract (sync, find, erase, describe, set up) over one
:class:`~adapters.salesforce.session.SalesforceSession`.

A lead's sync costs 2 API calls, whatever happens (new lead, returning patient, replay, handoff): the
lookup query of :mod:`adapters.salesforce.lookup`, then the composite request of
:mod:`adapters.salesforce.composite`. Both are built without I/O; this class sends them. A request
whose URL would name patient data (the contact key holds the phone number) is sent as the subrequest
of a composite request: URLs end up in HTTP debug logs, bodies do not.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from adapters.base import (
    AdapterCredentials,
    AdapterOptions,
    CredentialReport,
    CRMAdapter,
    CRMSchema,
    ErasureReport,
    Ref,
    SyncPlan,
    SyncResult,
)
from adapters.salesforce.composite import build_composite, first_failure, found_campaign, sync_result
from adapters.salesforce.identity import CONFLICTING_EMAIL, IDENTITY_CONFLICT
from adapters.salesforce.lookup import Found, Shape, lookup_queries
from adapters.salesforce.messages import OBJECT
from adapters.salesforce.options import AuthMode, SalesforceCredentials, SalesforceOptions
from adapters.salesforce.schema import describe_objects, setup_lines, with_own_fields
from adapters.salesforce.session import SalesforceSession
from adapters.salesforce.soql import _phone_filter, _pick, _quote, _select
from core.errors import AuthError, FatalError, RetryableError, SyncError
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

    from adapters.inbox import CRMInbox

log = logging.getLogger("chat2crm.salesforce")

DAY = 86400
CAMPAIGNS = family("salesforce", "campaign:{name}", ttl=7 * DAY, holds_pii=False, owner=__name__)
HOLDERS = family("salesforce", "holders:{field}", ttl=DAY, holds_pii=False, owner=__name__)
#: whether the org has the chat2crm package's object (``inbox: auto``), looked up once an hour
PACKAGE = family("salesforce", "package:{object}", ttl=3600, holds_pii=False, owner=__name__)
#: how many records one collections delete may name
DELETE_BATCH = 200


class SalesforceAdapter(CRMAdapter):
    """Writes leads into Salesforce: a Lead (or a Contact and a Case or an Opportunity), a Note, a Task on
    handoff, a CampaignMember."""

    name = "salesforce"
    requires = ("simple_salesforce",)
    Options = SalesforceOptions
    Credentials = SalesforceCredentials
    cache_families = MappingProxyType({"campaign": CAMPAIGNS, "holders": HOLDERS, "package": PACKAGE})

    options: SalesforceOptions
    session: SalesforceSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = SalesforceSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.version = self.session.version
        self.assign_header = self.options.assign_header()

    def auth_mode(self) -> AuthMode:
        """Which OAuth 2.0 flow the credentials make.

        Raises:
            AuthError: they make no complete flow (naming what is missing).
        """
        return self.session.auth_mode()

    def _call(self, operation: str, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> Any:
        return self.session.request(operation, method, path, json=json, params=params, headers=headers)

    def _map(self, status: int, content: Any, operation: str) -> SyncError:
        """A composite subresponse's ``[{"message", "errorCode", "fields"}]`` → the error tree."""
        return self.session.subresponse(status, content, operation)

    def _version_path(self, rest: str) -> str:
        return self.session.path(rest)

    # -- diagnosis -----------------------------------------------------------------------------
    def check_credentials(self) -> CredentialReport:
        try:
            login = self.session.login(fresh=True)
            limits = self._call("limits", "GET", "limits/") or {}
        except (AuthError, RetryableError, FatalError) as exc:
            return CredentialReport(ok=False, problems=[exc.message])
        daily = limits.get("DailyApiRequests") or {}
        problems = []
        if daily.get("Max"):
            used = int(daily["Max"]) - int(daily.get("Remaining", 0))
            if used / int(daily["Max"]) >= self.options.api_usage_share:
                problems.append(f"the org has used {used} of {daily['Max']} daily API requests")
        return CredentialReport(ok=not problems, account=login.instance_url, scopes=self.session.http.scopes,
                                problems=problems)

    def describe(self, objects: list[str]) -> CRMSchema:
        """One composite call describes every object (fields, External IDs, status/stage picklists)."""
        return describe_objects(self.session, objects)

    def setup(self, required: CRMSchema, *, apply: bool) -> list[str]:
        """Say exactly which fields an admin must create, or create them through the Tooling API, and add the
        clinic's status values through the Metadata API (see :func:`~adapters.salesforce.schema.setup_lines`);
        then, unless the inbox is off, how the chat2crm package
        is deployed and whether it is in place (:func:`~adapters.salesforce.deploy.package_lines`)."""
        required = with_own_fields(required)
        lines = setup_lines(self.session, required, self.describe(list(required.objects)), apply=apply)
        if self.options.inbox == "none":
            return lines
        from adapters.salesforce.deploy import package_lines
        from adapters.salesforce.messages import DEPLOY

        self.cache.drop("package", OBJECT)  # deployed since the last look: seen at once
        self.session.login(fresh=True)  # the identity URL names the integration user
        lines.append(f"inbox: the chat2crm package is deployed with the Salesforce CLI: `{DEPLOY}`")
        return lines + package_lines(self.session, self.session.identity()[1])

    # -- the conversation after the bot ----------------------------------------------------------
    def inbox(self) -> CRMInbox | None:
        """The chat2crm package's chat messages as the inbox (``options.inbox``), or None."""
        if self.options.inbox == "none" or (self.options.inbox == "auto" and not self._package_deployed()):
            return None
        from adapters.salesforce.inbox import SalesforceInbox

        return SalesforceInbox(self.session, credentials=self.credentials,  # type: ignore[arg-type]
                               options=self.options, deployment=self.deployment)

    def _package_deployed(self) -> bool:
        """Whether the org has the package's message object (one describe, remembered for an hour)."""
        cached = self.cache.get("package", OBJECT)
        if cached is not None:
            return cached == "yes"
        try:
            present = OBJECT in describe_objects(self.session, [OBJECT]).objects
        except (AuthError, RetryableError, FatalError) as exc:
            # not known: take the package as there; a publish says what is missing if it is not
            log.warning("salesforce: whether the chat2crm package is deployed is not known", extra={
                "reason": exc.message})
            return True
        self.cache.set("package", "yes" if present else "no", OBJECT)
        return present

    # -- reading -------------------------------------------------------------------------------
    def _one(self, operation: str, method: str, path: str, *, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        """One request sent as a composite of one subrequest: a query or an upsert URL holds patient data
        (a phone in the contact key, an e-mail in a WHERE), and request lines end up in HTTP debug logs;
        a subrequest's URL travels in the body. Still one API call.
        """
        sub: dict[str, Any] = {"method": method, "url": self._version_path(path), "referenceId": "one"}
        if body is not None:
            sub["body"] = body
        response = self._call(operation, "POST", "composite", json={"allOrNone": True, "compositeRequest": [sub]},
                              headers=headers)
        result = response["compositeResponse"][0]
        if int(result["httpStatusCode"]) >= 300:
            raise self._map(int(result["httpStatusCode"]), result["body"], operation)
        return result["body"]

    def _soql_many(self, operation: str, texts: list[str]) -> list[list[dict[str, Any]]]:
        """Several queries in one composite call."""
        subs = [{"method": "GET", "url": self._version_path("query/?q=" + quote(text)), "referenceId": f"q{i}"}
                for i, text in enumerate(texts)]
        response = self._call(operation, "POST", "composite", json={"allOrNone": False, "compositeRequest": subs})
        out = []
        for result in response["compositeResponse"]:
            if int(result["httpStatusCode"]) >= 300:
                raise self._map(int(result["httpStatusCode"]), result["body"], operation)
            out.append(list((result["body"] or {}).get("records") or []))
        return out

    def _soql(self, operation: str, text: str) -> list[dict[str, Any]]:
        result = self._one(operation, "GET", "query/?q=" + quote(text)) or {}
        return list(result.get("records") or [])

    def find_contact(self, *, key: tuple[str, str] | None = None, phone: str | None = None, email: str | None = None,
                     object: str | None = None, properties: list[str] | None = None) -> Ref | None:
        sobject = object or "Lead"
        where = []
        if key:
            where.append(f"{key[0]} = {_quote(key[1])}")
        if phone:
            where.append(_phone_filter(phone))
        if email:
            where.append(f"Email = {_quote(email)}")
        if not where:
            return None
        fields = list(dict.fromkeys(["Id", *([key[0]] if key else []), *(["Phone", "MobilePhone"] if phone else []),
                                     *(["Email"] if email else []), *(properties or ["FirstName", "LastName",
                                                                                     "Email", "Phone"])]))
        rows = self._soql("find", _select(fields, sobject, " OR ".join(where), 10))
        best = _pick(rows, key, phone, email)
        if best is None:
            return None
        values = {k: v for k, v in best.items() if k != "attributes"}
        return Ref(object=sobject, id=str(best["Id"]), properties=values)

    # -- privacy -------------------------------------------------------------------------------
    def erase_contact(self, *, key: tuple[str, str], mode: Literal["delete", "anonymise"]) -> ErasureReport:
        """Find the person wherever the key field lives (Lead, Contact) and delete them with their Cases (one
        collections call; Salesforce deletes their notes, tasks and memberships with them), or blank their
        identifying fields. 2 calls (3 when which objects hold the key field is not cached)."""
        holders = self._key_holders(key[0])
        if not holders:
            return ErasureReport(mode=mode, found=False)
        found = self._erasure_targets(key, holders)
        if not found:
            return ErasureReport(mode=mode, found=False)
        if mode == "delete":
            self._delete(found)
        else:
            self._anonymise(found, key[0])
        return ErasureReport(mode=mode, erased=[f"{o}/{i}" for o, i in found])

    def _erasure_targets(self, key: tuple[str, str], holders: list[str]) -> list[tuple[str, str]]:
        """Every record of the person holding ``key``, as ``(object, id)``: their Cases and Opportunities first,
        then the Lead or Contact itself. One composite call, a query per object holding the key field."""
        subrequests = []
        for sobject in holders:
            children = ["(SELECT Id FROM Cases)", "(SELECT OpportunityId FROM OpportunityContactRoles)"] \
                if sobject == "Contact" else []
            subrequests.append({"method": "GET", "referenceId": sobject.lower(), "url": self._version_path(
                "query/?q=" + quote(_select(["Id", *children], sobject, f"{key[0]} = {_quote(key[1])}")))})
        response = self._call("erase_find", "POST", "composite", json={"allOrNone": False,
                                                                       "compositeRequest": subrequests})
        found: list[tuple[str, str]] = []
        for sub in response["compositeResponse"]:
            if sub["httpStatusCode"] >= 400:
                raise self._map(sub["httpStatusCode"], sub["body"], "erase_find")
            for row in sub["body"].get("records") or []:
                for item in (row.get("Cases") or {}).get("records") or []:
                    found.append(("Case", str(item["Id"])))
                for item in (row.get("OpportunityContactRoles") or {}).get("records") or []:
                    if ("Opportunity", str(item["OpportunityId"])) not in found:
                        found.append(("Opportunity", str(item["OpportunityId"])))
                found.append((str(row["attributes"]["type"]), str(row["Id"])))
        return found

    def _delete(self, found: list[tuple[str, str]]) -> None:
        """Delete the records, all or none per collections call."""
        for start in range(0, len(found), DELETE_BATCH):
            ids = ",".join(i for _, i in found[start:start + DELETE_BATCH])
            results = self._call("erase", "DELETE", "composite/sobjects",
                                 params={"ids": ids, "allOrNone": "true"}) or []
            failed = [r for r in results if not r.get("success")]
            if failed:
                raise self._map(400, failed[0].get("errors") or [], "erase")

    def _anonymise(self, found: list[tuple[str, str]], key_field: str) -> None:
        """Blank the identifying fields of the Leads and Contacts among the records (the key is replaced too, so
        the next message of that person makes a new record); the Cases and Opportunities are kept."""
        for sobject, record_id in found:
            if sobject in ("Lead", "Contact"):
                blank = {"FirstName": None, "LastName": "Erased", "Email": None, "Phone": None,
                         "MobilePhone": None, key_field: f"erased:{record_id}"}
                if sobject == "Lead":
                    blank["Company"] = "Erased"
                self._call("anonymise", "PATCH", f"sobjects/{sobject}/{record_id}", json=blank,
                           headers={"Sforce-Auto-Assign": "FALSE"})

    def _key_holders(self, key_field: str) -> list[str]:
        """Which of Lead and Contact have the contact key field (cached for a day)."""
        cached = self.cache.get("holders", key_field)
        if cached is not None:
            return [o for o in cached.split(",") if o and o != "-"]
        schema = self.describe(["Lead", "Contact"])
        holders = [name for name, info in schema.objects.items() if key_field in info.fields]
        self.cache.set("holders", ",".join(holders) or "-", key_field)
        return holders

    # -- the sync: 2 calls -----------------------------------------------------------------------
    def sync(self, plan: SyncPlan) -> SyncResult:
        """One query for what exists, one composite request for what is missing. An opt-out marks every record
        of the patient (:mod:`adapters.salesforce.optout`)."""
        start = self.calls
        if plan.contact.opt_out is not None:
            from adapters.salesforce.optout import record_opt_out

            return SyncResult(contact=record_opt_out(self, plan.contact), calls=self.calls - start)
        shape = Shape.of(plan, self.options.campaign_member)

        # 1. what exists
        queries = lookup_queries(shape)
        record_rows: list[dict[str, Any]] = []
        if len(queries) == 1:
            rows = self._soql("lookup", queries[0])
        else:
            rows, record_rows = self._soql_many("lookup", queries)
        found = Found.of(shape, rows, record_rows)

        # 2. what is missing, in one composite request
        campaign_id = self.cache.get("campaign", shape.campaign_name) if shape.campaign_name else None
        write, results = self._write(shape, found, campaign_id)
        failure = first_failure(results, write, plan.lead_reference)
        if failure is not None and failure[0] == "contact" and found.match.extra and \
                _names(failure[1]["body"], (IDENTITY_CONFLICT, CONFLICTING_EMAIL)):
            # an org `crm setup` has not run on since the conflict's fields were added: written without them
            log.warning("a field chat2crm writes is missing: run `chat2crm crm setup`",
                        extra={"field": IDENTITY_CONFLICT})
            found = replace(found, match=replace(found.match, extra={}))
            write, results = self._write(shape, found, campaign_id)
            failure = first_failure(results, write, plan.lead_reference)
        if failure is not None:
            raise self._map(int(failure[1]["httpStatusCode"]), failure[1]["body"], f"composite:{failure[0]}")
        if found.match.conflict:
            log.warning("e-mail kept aside: it belongs to another record or differs from this one",
                        extra={"lead_reference": plan.lead_reference})
        campaign = found_campaign(results)
        if campaign is not None and shape.campaign_name:
            self.cache.set("campaign", campaign, shape.campaign_name)
        return sync_result(shape, write, results, calls=self.calls - start)

    def _write(self, shape: Shape, found: Found, campaign_id: str | None) -> tuple[Any, dict[str, dict[str, Any]]]:
        """Send the composite request that writes what ``found`` lacks; its answers by ``referenceId``."""
        write = build_composite(shape, found, self._version_path, campaign_id)
        # Assignment rules run when a Lead or Case is created, and again on every update sent with the
        # header on: an update must not take the lead away from the agent already working it. (For a
        # Lead the record found is the person.)
        header = self.assign_header if found.existing is None else "FALSE"
        response = self._call("composite", "POST", "composite",
                              json={"allOrNone": False, "compositeRequest": write.subrequests},
                              headers={"Sforce-Auto-Assign": header})
        return write, {sub["referenceId"]: sub for sub in response["compositeResponse"]}


def _names(body: Any, fields: tuple[str, ...]) -> bool:
    """Whether an error answer names one of ``fields`` (a field the org does not have)."""
    errors = body if isinstance(body, list) else [body]
    return any(isinstance(e, dict) and (set(e.get("fields") or []) & set(fields) or any(
        f in str(e.get("message") or "") for f in fields)) for e in errors)
