"""Requests are checked against Pipedrive's own OpenAPI files, with the documented repairs only."""

from __future__ import annotations

import re
import time

import pytest

from emulators.pipedrive import ROUTES, route
from emulators.pipedrive import openapi as pipedrive_spec


def _check(method: str, path: str, query: dict[str, list[str]] | None = None, body: object = None,
           has_body: bool = False) -> list[str]:
    found = pipedrive_spec.find_operation(method, path)
    assert found is not None, path
    op, params = found
    return pipedrive_spec.request_errors(op, params, query or {}, body, has_body)


def test_the_documents_load_once_and_fast() -> None:
    start = time.perf_counter()
    first = pipedrive_spec.operations("v1"), pipedrive_spec.operations("v2")
    took = time.perf_counter() - start
    assert (pipedrive_spec.operations("v1"), pipedrive_spec.operations("v2")) == first  # cached
    assert took < 10, f"building the operation index took {took:.1f}s"
    assert len(first[0]) > 200 and len(first[1]) > 150


@pytest.mark.parametrize(("method", "path", "operation_id", "cost"), ROUTES)
def test_every_emulated_route_is_the_documented_operation(method: str, path: str, operation_id: str, cost: int) -> None:
    concrete = re.sub(r"\{[^}]+\}", "123", path)
    found = pipedrive_spec.find_operation(method, concrete)
    assert found is not None
    assert (found[0].operation_id, found[0].token_cost) == (operation_id, cost)
    assert route(method, concrete) is not None


def test_literal_paths_win_over_templates() -> None:
    found = pipedrive_spec.find_operation("GET", "/api/v2/persons/search")
    assert found is not None and found[0].operation_id == "searchPersons"
    found = pipedrive_spec.find_operation("GET", "/api/v2/persons/42")
    assert found is not None and found[0].operation_id == "getPerson" and found[1] == {"id": "42"}
    assert pipedrive_spec.find_operation("GET", "/api/v2/leads") is None  # leads are v1 only
    assert pipedrive_spec.find_operation("POST", "/v1/persons") is None  # persons are v2 only


def test_query_parameters_are_typed_and_known() -> None:
    assert _check("GET", "/api/v2/persons/search", {"term": ["ab"], "exact_match": ["true"], "limit": ["10"]}) == []
    problems = _check("GET", "/api/v2/persons/search", {"exact_match": ["maybe"], "limit": ["ten"], "sort": ["x"]})
    assert any("term: required" in p for p in problems)
    assert any("exact_match" in p for p in problems) and any("limit" in p for p in problems)
    assert any("sort: not a parameter" in p for p in problems)
    assert _check("GET", "/api/v2/persons/abc") != []  # the id is an integer


def test_repair_comma_separated_fields() -> None:
    assert _check("GET", "/api/v2/persons/search", {"term": ["ab"], "fields": ["custom_fields,phone"]}) == []
    assert _check("GET", "/api/v2/persons/search", {"term": ["ab"], "fields": ["phone,nope"]}) != []


def test_repair_nullable() -> None:
    assert _check("POST", "/v1/leads", body={"title": "x", "person_id": 1, "value": None}, has_body=True) == []
    assert _check("POST", "/v1/leads", body={"title": "x", "value": {"amount": 1}}, has_body=True) != []  # currency


def test_bodies_are_checked() -> None:
    assert _check("POST", "/v1/leads", body={"person_id": 1}, has_body=True) != []  # title is required
    assert _check("POST", "/api/v2/persons", body={"name": "x", "owner_id": "1"}, has_body=True) != []
    assert _check("POST", "/api/v2/persons", body={"name": "x", "phones": [
        {"value": "+905321112233", "primary": True, "label": "mobile"}], "custom_fields": {"a" * 40: "b"}},
        has_body=True) == []
    assert _check("POST", "/v1/leadLabels", body={"name": "x", "color": "teal"}, has_body=True) != []
    assert _check("POST", "/api/v2/personFields", has_body=False) == ["body: required"]
