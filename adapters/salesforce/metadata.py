"""The clinic's status values in the org: Lead Status, Case Status and Opportunity Stage are standard value sets,
which only the Metadata API changes. ``crm setup`` reads the set (``readMetadata``), appends the values of the
mapping's status scheme the org lacks, in the scheme's order and labelled in the clinic's language, and saves the
set (``updateMetadata``), through simple-salesforce's Metadata API client (zeep, with the WSDL it bundles).

Every value the org already has is sent back as read: an org's own statuses are never removed or changed. The
flags follow the scheme: no Lead value is "converted" (a Lead is converted by a person, in Salesforce); a Case's
Done is closed; an Opportunity's Done is closed and won, its On hold closed and not won.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, get_args

import requests

from core.errors import AuthError, FatalError, RetryableError, SyncError
from core.models import LeadStatus

if TYPE_CHECKING:
    from adapters.salesforce.session import SalesforceSession

#: the status / stage field of each record object → its standard value set
VALUE_SETS = {("Lead", "Status"): "LeadStatus", ("Case", "Status"): "CaseStatus",
              ("Opportunity", "StageName"): "OpportunityStage"}
#: the status scheme, in its order: a mapping's values come in this order (``required_schema``)
SCHEME: tuple[str, ...] = get_args(LeadStatus)
#: where each set is kept in Setup (said when the API cannot change it)
_SETUP = {"LeadStatus": "Lead → Fields & Relationships → Lead Status", "CaseStatus": "Case → Fields & "
          "Relationships → Status", "OpportunityStage": "Opportunity → Fields & Relationships → Stage"}
#: an Opportunity stage's probability and forecast category, by its place in the scheme
_STAGES = {"new": (10, "Pipeline"), "reviewing": (20, "Pipeline"), "planned": (60, "BestCase"),
           "done": (100, "Closed"), "on_hold": (0, "Omitted")}


def roles(values: list[str]) -> dict[str, str]:
    """Each value's place in the scheme. A mapping that names all five statuses gives them in the scheme's order;
    otherwise only the first (``new``) is known, and every other value is an open one."""
    if len(values) == len(SCHEME):
        out: dict[str, str] = {}
        for value, role in zip(values, SCHEME, strict=True):
            out.setdefault(value, role)  # one value mapped twice keeps its first place
        return out
    return {value: ("new" if i == 0 else "reviewing") for i, value in enumerate(values)}


def standard_value(value_set: str, value: str, role: str) -> dict[str, Any]:
    """The ``StandardValue`` of a new status: its API name and label are the clinic's label; never the default."""
    entry: dict[str, Any] = {"fullName": value, "label": value, "default": False}
    if value_set == "LeadStatus":
        entry["converted"] = False
    elif value_set == "CaseStatus":
        entry["closed"] = role == "done"
    elif value_set == "OpportunityStage":
        probability, forecast = _STAGES[role]
        entry.update(closed=role in ("done", "on_hold"), won=role == "done", probability=probability,
                     forecastCategory=forecast)
    return entry


def flags_text(value_set: str, missing: list[str], places: dict[str, str]) -> str:
    """The flags of the values to add, in words (``none converted``, ``'Tamamlandı' closed``…)."""
    if value_set == "LeadStatus":
        return "none converted"
    closed = [v for v in missing if places.get(v) in (("done",) if value_set == "CaseStatus" else ("done", "on_hold"))]
    if not closed:
        return "all open"
    words = {"done": "closed, won", "on_hold": "closed, not won"} if value_set == "OpportunityStage" else {}
    return "; ".join(f"{v!r} {words.get(places[v], 'closed')}" for v in closed) + "; the others open"


def status_lines(session: SalesforceSession, obj: str, field: str, values: list[str], have: list[str], *,
                 apply: bool) -> list[str]:
    """The set-up lines of a status scheme's values (in the scheme's order): ``ok`` for each the org has; the
    others added through the Metadata API (``apply``), or said (``would add``); a refusal is one ``TO DO`` line
    naming the fault and the manual steps.

    Args:
        session: the adapter's session (its login: the access token is the Metadata API's session id).
        obj, field: the record object and its status / stage field.
        values: the scheme's values, in the clinic's language, in the scheme's order.
        have: the field's picklist values, as ``describe`` reported them.
        apply: add the missing values (else only say what would be added).
    """
    lines = [f"ok {obj}.{field} value {value!r}" for value in dict.fromkeys(values) if value in have]
    missing = [value for value in dict.fromkeys(values) if value not in have]
    if not missing:
        return lines
    value_set = VALUE_SETS.get((obj, field))
    listed = ", ".join(repr(v) for v in missing)
    if value_set is None:
        return [*lines, f"TO DO add the {obj}.{field} values {listed} in Setup"]
    places = roles(values)
    what = f"{obj}.{field} values {listed} (standard value set {value_set}, after the org's own values; " \
           f"{flags_text(value_set, missing, places)})"
    if not apply:
        return [*lines, f"would add the {what}"]
    try:
        added = add_values(session, value_set, [standard_value(value_set, v, places[v]) for v in missing])
    except SyncError as exc:
        return [*lines, f"TO DO add the {obj}.{field} values {listed}: {exc.message[:200]}; or in Setup → Object "
                        f"Manager → {_SETUP[value_set]} → Values → New, in this order"]
    if not added:
        return [*lines, f"ok {obj}.{field} values {listed}: the standard value set {value_set} has them already"]
    return [*lines, f"added the {what}"]


def add_values(session: SalesforceSession, value_set: str, new: list[dict[str, Any]]) -> list[str]:
    """Append ``new`` values to the standard value set (those it does not hold yet); the fullNames added.

    Two Metadata API calls: ``readMetadata``, then ``updateMetadata`` with every value read, untouched, and the
    new ones after them (none when the set already has them all).

    Raises:
        AuthError: the session or the integration user's permissions were refused (a SOAP fault).
        FatalError: the Metadata API refused the read or the update.
        RetryableError: the call failed on the way.
    """
    api = _MetadataClient(session)
    current = api.call("metadata_read", lambda mdapi: mdapi.StandardValueSet.read([value_set]))
    if current is None or getattr(current, "fullName", None) != value_set:
        raise FatalError(f"salesforce: the Metadata API has no standard value set {value_set}")
    existing = list(current.standardValue or [])
    held = {str(v.fullName) for v in existing} | {str(v.label) for v in existing if v.label}
    fresh = [entry for entry in new if entry["fullName"] not in held]
    if not fresh:
        return []

    def update(mdapi: Any) -> None:
        made = [mdapi.StandardValue(**entry) for entry in fresh]
        current.standardValue = existing + made
        mdapi.StandardValueSet.update([current])

    api.call("metadata_update", update)
    return [str(entry["fullName"]) for entry in fresh]


class _MetadataClient:
    """simple-salesforce's Metadata API client on the session's login, its calls counted and their refusals
    worded through the error tree; an expired session is refreshed once, as for REST calls."""

    def __init__(self, session: SalesforceSession) -> None:
        self.session = session

    def _mdapi(self, *, fresh: bool = False) -> Any:
        from zeep.transports import Transport

        login = self.session.login(fresh=True) if fresh else (self.session.current or self.session.login())
        mdapi = login.client.mdapi
        # zeep sends through its own requests session, with no time-out: the session's (its time-outs, its
        # Sforce-Limit-Info reading, the CA bundle the environment names) is used instead
        mdapi._client.transport = Transport(session=self.session.http, operation_timeout=self.session.timeouts.read)
        return mdapi

    def call(self, operation: str, send: Callable[[Any], Any]) -> Any:
        """``send(mdapi)`` as one counted call; an expired session is refreshed and the call sent once more."""
        for attempt in (1, 2):
            mdapi = self._mdapi(fresh=attempt == 2)
            try:
                return self.session.call(operation, functools.partial(_worded, operation, send, mdapi))
            except AuthError as exc:
                if attempt == 2 or exc.details.get("code") != "INVALID_SESSION_ID":
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the second attempt returns or raises


def _worded(operation: str, send: Callable[[Any], Any], mdapi: Any) -> Any:
    """``send(mdapi)``, a SOAP fault or a refused save raised as the error tree's error."""
    from zeep.exceptions import Fault, TransportError

    try:
        return send(mdapi)
    except Fault as exc:
        code = str(exc.code or "").rpartition(":")[2]
        message = f"salesforce: the Metadata API refused {operation}: {str(exc.message or code)[:200]}"
        if code in ("INVALID_SESSION_ID", "INSUFFICIENT_ACCESS", "API_DISABLED_FOR_ORG"):
            raise AuthError(message, setting="SALESFORCE_USERNAME", details={"code": code}) from None
        if code in ("REQUEST_LIMIT_EXCEEDED", "UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE"):
            raise RetryableError(message, details={"code": code}) from None
        raise FatalError(message, details={"code": code}) from None
    except TransportError as exc:
        raise RetryableError(f"salesforce: the Metadata API answered {exc.status_code}",
                             details={"status": exc.status_code}) from None
    except requests.RequestException:
        raise  # the session words time-outs and connection failures
    except Exception as exc:
        # simple-salesforce raises a bare Exception naming each refused component: "(statusCode, message)"
        if type(exc) is not Exception:
            raise
        text = " ".join(str(exc).split()).strip(" ,")
        raise FatalError(f"salesforce: the Metadata API refused {operation}: {text[:200]}") from None
