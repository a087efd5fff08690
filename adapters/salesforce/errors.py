"""Salesforce's answers as the relay's error tree: the error table every call goes through, and the error
code of a composite subresponse.

simple-salesforce raises one exception class per status; the table turns status and error code into a
retryable, auth or fatal error. :class:`~adapters.salesforce.session.SalesforceSession` refines the
refusals the table alone cannot word (a refused login, a duplicate rule, a missing field).
"""

from __future__ import annotations

from typing import Any

from adapters.session import ErrorTable, rule

#: transient conditions Salesforce reports as 4xx
TRANSIENT = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
#: Salesforce's answers → the error tree. simple-salesforce raises one exception class per status
#: (SalesforceMoreThanOneRecord 300, SalesforceMalformedRequest 400, SalesforceExpiredSession 401,
#: SalesforceRefusedRequest 403, SalesforceResourceNotFound 404, SalesforceGeneralError otherwise);
#: the error code in its content refines it.
ERRORS = ErrorTable("salesforce", [
    rule("retryable", codes={"REQUEST_LIMIT_EXCEEDED"}, what="API request limit exceeded"),
    rule("retryable", codes=TRANSIENT, what="server busy"),
    rule("retryable", (500, 599), what="server error"),
    rule("auth", 401, what="the session was refused"),
    rule("auth", 403, what="the integration user may not do this"),
    rule("fatal", 300, what="several records hold the same External ID; make the field Unique"),
    rule("fatal", codes={"DUPLICATES_DETECTED"}, what="a duplicate rule blocked the save"),
])


def _error_code(content: Any) -> str:
    """The error code of an answer's body: ``[{"errorCode": …}]`` (REST) or ``{"errorCode": …}``."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode") or content[0].get("statusCode") or "")
    if isinstance(content, dict):
        return str(content.get("errorCode") or "")
    return ""
