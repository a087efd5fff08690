"""The Pipedrive operations the emulator answers, and the routing of a request to one of them."""

from __future__ import annotations

import re

#: the operations emulated: (method, path as the documents' servers and paths give it, operationId,
#: x-token-cost). Used to route every request, and on their own when the OpenAPI files are absent.
ROUTES = [
    ("GET", "/v1/leadLabels", "getLeadLabels", 10),
    ("POST", "/v1/leadLabels", "addLeadLabel", 10),
    ("GET", "/v1/leads", "getLeads", 20),
    ("POST", "/v1/leads", "addLead", 10),
    ("GET", "/v1/leads/{id}", "getLead", 2),
    ("PATCH", "/v1/leads/{id}", "updateLead", 10),
    ("DELETE", "/v1/leads/{id}", "deleteLead", 6),
    ("POST", "/v1/files", "addFile", 10),
    ("GET", "/v1/files/{id}", "getFile", 2),
    ("GET", "/v1/files/{id}/download", "downloadFile", 20),
    ("GET", "/v1/deals/{id}/permittedUsers", "getDealUsers", 10),
    ("GET", "/v1/persons/{id}/permittedUsers", "getPersonUsers", 10),
    ("GET", "/v1/notes", "getNotes", 20),
    ("POST", "/v1/notes", "addNote", 10),
    ("GET", "/v1/users", "getUsers", 20),
    ("GET", "/v1/users/me", "getCurrentUser", 2),
    ("GET", "/v1/users/{id}", "getUser", 2),
    ("GET", "/v1/webhooks", "getWebhooks", 10),
    ("POST", "/v1/webhooks", "addWebhook", 10),
    ("DELETE", "/v1/webhooks/{id}", "deleteWebhook", 6),
    ("GET", "/api/v2/activities", "getActivities", 10),
    ("POST", "/api/v2/activities", "addActivity", 5),
    ("GET", "/api/v2/dealFields", "getDealFields", 10),
    ("POST", "/api/v2/dealFields", "addDealField", 5),
    ("POST", "/api/v2/dealFields/{field_code}/options", "addDealFieldOptions", 5),
    ("GET", "/api/v2/deals", "getDeals", 10),
    ("POST", "/api/v2/deals", "addDeal", 5),
    ("GET", "/api/v2/deals/search", "searchDeals", 20),
    ("GET", "/api/v2/deals/{id}", "getDeal", 1),
    ("PATCH", "/api/v2/deals/{id}", "updateDeal", 5),
    ("GET", "/api/v2/leads/search", "searchLeads", 20),
    ("GET", "/api/v2/organizations", "getOrganizations", 10),
    ("POST", "/api/v2/organizations", "addOrganization", 5),
    ("GET", "/api/v2/organizations/search", "searchOrganization", 20),
    ("GET", "/api/v2/personFields", "getPersonFields", 10),
    ("POST", "/api/v2/personFields", "addPersonField", 5),
    ("POST", "/api/v2/personFields/{field_code}/options", "addPersonFieldOptions", 5),
    ("GET", "/api/v2/persons", "getPersons", 10),
    ("POST", "/api/v2/persons", "addPerson", 5),
    ("GET", "/api/v2/persons/search", "searchPersons", 20),
    ("GET", "/api/v2/persons/{id}", "getPerson", 1),
    ("PATCH", "/api/v2/persons/{id}", "updatePerson", 5),
    ("DELETE", "/api/v2/persons/{id}", "deletePerson", 3),
    ("GET", "/api/v2/pipelines", "getPipelines", 5),
    ("POST", "/api/v2/pipelines", "addPipeline", 5),
    ("GET", "/api/v2/stages", "getStages", 5),
    ("POST", "/api/v2/stages", "addStage", 5),
]
_ROUTE_PATTERNS = [(method, re.compile("^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"),
                    operation_id, cost) for method, path, operation_id, cost in ROUTES]


def route(method: str, path: str) -> tuple[str, dict[str, str], int] | None:
    """The emulated operation a request names: (operationId, path parameters, token cost)."""
    for wanted, pattern, operation_id, cost in _ROUTE_PATTERNS:
        if wanted == method.upper() and (match := pattern.match(path)):
            return operation_id, match.groupdict(), cost
    return None
