"""Whether the chat2crm package is in place in the org, as ``chat2crm crm setup`` and ``doctor`` say it.

The package (``crm/salesforce``) cannot be deployed through the REST API: an admin deploys it with the
Salesforce CLI (:data:`~adapters.salesforce.messages.DEPLOY`). What the relay checks through the REST API,
in one composite call: the message object and every field the relay writes or reads (describe), the
package's permission sets, and which of them the integration user holds.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from adapters.salesforce.messages import AGENT_SET, DEPLOY, FIELDS, INTEGRATION_SET, OBJECT
from adapters.salesforce.session import SalesforceSession
from adapters.salesforce.soql import _quote, _select


def package_lines(session: SalesforceSession, user_id: str | None) -> list[str]:
    """One line per part of the package: ``ok …``, or ``MISSING …`` with what to do.

    Raises:
        RetryableError, AuthError, FatalError: the call failed.
    """
    subs: list[dict[str, Any]] = [
        {"method": "GET", "referenceId": "message", "url": session.path(f"sobjects/{OBJECT}/describe")},
        {"method": "GET", "referenceId": "sets", "url": session.path("query/?q=" + quote(_select(
            ["Id", "Name"], "PermissionSet", f"Name = {_quote(AGENT_SET)} OR Name = {_quote(INTEGRATION_SET)}")))}]
    if user_id:
        subs.append({"method": "GET", "referenceId": "held", "url": session.path("query/?q=" + quote(_select(
            ["PermissionSetId"], "PermissionSetAssignment", f"AssigneeId = {_quote(user_id)}")))})
    response = session.request("package", "POST", "composite", json={"allOrNone": False, "compositeRequest": subs})
    results = {r["referenceId"]: r for r in response["compositeResponse"]}
    described = results["message"]
    if described["httpStatusCode"] == 404:
        return [f"inbox: MISSING the chat2crm package is not deployed (no {OBJECT}); deploy it from the repository: "
                f"`{DEPLOY}`, then assign the permission set {INTEGRATION_SET} to the integration user and "
                f"{AGENT_SET} to the agents"]
    if described["httpStatusCode"] >= 300:
        raise session.subresponse(described["httpStatusCode"], described["body"], "package")
    have = {f["name"] for f in described["body"].get("fields") or []}
    missing = [f for f in FIELDS if f not in have]
    lines = [f"inbox: MISSING fields of {OBJECT}: {', '.join(missing)} (deploy the package again: `{DEPLOY}`; "
             "or the integration user lacks their field-level security)" if missing
             else f"inbox: ok {OBJECT} and its {len(FIELDS)} fields"]
    sets = {row["Name"]: row["Id"] for row in (results["sets"]["body"] or {}).get("records") or []} \
        if results["sets"]["httpStatusCode"] < 300 else {}
    for name in (AGENT_SET, INTEGRATION_SET):
        if name not in sets:
            lines.append(f"inbox: MISSING the permission set {name} (deploy the package: `{DEPLOY}`)")
    if user_id and INTEGRATION_SET in sets and results.get("held", {}).get("httpStatusCode", 500) < 300:
        held = {row["PermissionSetId"] for row in (results["held"]["body"] or {}).get("records") or []}
        lines.append(f"inbox: ok the integration user holds {INTEGRATION_SET}" if sets[INTEGRATION_SET] in held
                     else f"inbox: MISSING the integration user does not hold the permission set {INTEGRATION_SET}: "
                          "assign it in Setup → Users → the integration user → Permission Set Assignments "
                          f"(or `sf org assign permset --name {INTEGRATION_SET} --on-behalf-of <username>`)")
    return lines
