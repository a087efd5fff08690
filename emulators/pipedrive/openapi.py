"""Requests checked against Pipedrive's own OpenAPI descriptions (v1 and v2).

Pipedrive publishes two OpenAPI 3.0 documents: ``openapi-v1.yaml`` (server ``/v1``; leads, notes,
lead labels, users…) and ``openapi-v2.yaml`` (server ``/api/v2``; persons, organizations, deals,
activities, fields, pipelines, search). Both are large (1.8 MB and 1 MB), so each is read once
per process, with the C YAML loader when PyYAML has it, and turned into a per-operation index
(method, path template, parameters, body schema, token cost). Building the index costs about a
second once; checking a request afterwards costs microseconds, which keeps the test suite fast
(``openapi-core`` builds a full spec object and validator per request and is several times
slower on files this size).

Each operation also carries the OAuth scopes its ``security`` names (an app's token needs one of them)
and its token cost (``x-token-cost``).

A request is checked for: the path and method existing, path and query parameters (present
when required, known, of the declared type and enum), and the JSON body (JSON Schema validation
of the operation's request-body schema).

Repairs made to the published documents before checking, and why (nothing else is relaxed):

1. ``nullable: true`` (an OpenAPI 3.0 keyword JSON Schema does not know) becomes ``null`` added
   to the schema's ``type`` (and to its ``enum``), so ``"value": null`` on a lead, which the
   documents declare nullable, is accepted as the API accepts it. 578 places in v1, 382 in v2.
2. Query parameters documented as "A comma-separated string array" (``fields`` of the search
   endpoints) are declared as a single ``enum`` string; the API takes several values separated by
   commas, so each comma-separated item is checked against the enum instead of the whole string.
3. Query and path parameters arrive as text: they are converted to the declared type (integer,
   number, boolean: ``true``/``false``/``1``/``0``) before validation, as Pipedrive's server does.

Stricter than Pipedrive on one point, on purpose: a query parameter the operation does not
declare is reported (Pipedrive ignores it silently, which would hide a bug in the relay).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

from emulators.specs import spec_path

SPECS = {"v1": "pipedrive/openapi-v1.yaml", "v2": "pipedrive/openapi-v2.yaml"}
#: the path prefix of each version, as the documents' ``servers`` say
PREFIXES = {"v1": "/v1", "v2": "/api/v2"}
_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One operation of a Pipedrive API description."""

    version: str
    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    #: (location, name) → (required, schema, comma-separated)
    parameters: dict[tuple[str, str], tuple[bool, dict[str, Any], bool]] = field(default_factory=dict)
    body_schema: dict[str, Any] | None = None
    body_required: bool = False
    #: the tokens the call costs from the company's daily budget (``x-token-cost``)
    token_cost: int = 1
    #: the OAuth scopes of which an app's token needs one (``security``'s ``oauth2``)
    scopes: tuple[str, ...] = ()


def _repair_nullable(node: Any) -> Any:
    """Repair 1: OpenAPI 3.0 ``nullable`` → JSON Schema ``null`` type (see the module docstring)."""
    if isinstance(node, list):
        return [_repair_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _repair_nullable(v) for k, v in node.items() if k not in ("example", "examples", "description")}
    if out.pop("nullable", False):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "type" not in out and ("allOf" in out or "oneOf" in out or "anyOf" in out):
            out = {"anyOf": [{"type": "null"}, {k: v for k, v in out.items()}]}
    return out


@functools.cache
def document(version: str) -> dict[str, Any]:
    """Pipedrive's OpenAPI document of ``version`` (``v1`` or ``v2``), read once per process."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path(SPECS[version]).open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader (C or pure)
    return loaded


@functools.cache
def operations(version: str) -> tuple[Operation, ...]:
    """Every operation of one version, literal paths before templated ones (``/persons/search``
    must win over ``/persons/{id}``)."""
    found: list[Operation] = []
    for template, item in document(version)["paths"].items():
        shared = item.get("parameters", [])
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params: dict[tuple[str, str], tuple[bool, dict[str, Any], bool]] = {}
            for param in [*shared, *op.get("parameters", [])]:
                comma = "comma-separated" in str(param.get("description", ""))
                params[(param["in"], param["name"])] = (bool(param.get("required")),
                                                        _repair_nullable(param.get("schema", {})), comma)
            body = op.get("requestBody") or {}
            schema = (body.get("content") or {}).get("application/json", {}).get("schema")
            found.append(Operation(version=version, method=method.upper(), template=template,
                                   operation_id=str(op.get("operationId", f"{method} {template}")),
                                   pattern=re.compile(regex),
                                   parameters=params,
                                   body_schema=_repair_nullable(schema) if schema is not None else None,
                                   body_required=bool(body.get("required")),
                                   token_cost=int(op.get("x-token-cost", 1)),
                                   scopes=tuple(scope for need in op.get("security") or [] if isinstance(need, dict)
                                                for scope in need.get("oauth2") or [])))
    found.sort(key=lambda o: (o.template.count("{"), o.template))
    return tuple(found)


def find_operation(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """The operation a request names, with its path parameters; None when no document has it."""
    for version, prefix in PREFIXES.items():
        if not path.startswith(prefix + "/"):
            continue
        rest = path[len(prefix):]
        for op in operations(version):
            if op.method != method.upper():
                continue
            match = op.pattern.match(rest)
            if match:
                names = re.findall(r"\{([^}]+)\}", op.template)
                return op, dict(zip(names, match.groups(), strict=True))
    return None


def _convert(value: str, schema: dict[str, Any]) -> Any:
    """Repair 3: a parameter's text as the declared type (ValueError when it is not one)."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds:
        return int(value)
    if "number" in kinds:
        return float(value)
    if "boolean" in kinds:
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(value)
    if "string" not in kinds and "enum" in schema and all(isinstance(v, int | float) for v in schema["enum"] if v is not None):
        return float(value) if "." in value else int(value)
    return value


#: one validator per schema; the schemas live as long as the cached operations, so ids are stable
_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft4Validator]] = {}


def _schema_errors(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft4Validator(schema))
    errors = []
    for error in entry[1].iter_errors(value):
        best = jsonschema.exceptions.best_match([error]) or error
        path = "/".join(str(p) for p in best.absolute_path)
        errors.append(f"{where}{'/' + path if path else ''}: {best.message[:240]}")
    return errors


def request_errors(op: Operation, path_params: dict[str, str], query: dict[str, list[str]],
                   body: Any, has_body: bool) -> list[str]:
    """Why Pipedrive would reject this request to ``op`` (empty: it would not)."""
    errors: list[str] = []
    for (location, name), (required, schema, comma) in op.parameters.items():
        if location not in ("path", "query"):
            continue
        values = _parameter_values(location, name, path_params, query)
        if not values:
            if required:
                errors.append(f"{location} parameter {name}: required")
            continue
        errors.extend(_parameter_errors(f"{location} parameter {name}", values, schema, comma))
    declared = {name for (location, name) in op.parameters if location == "query"}
    errors.extend(f"query parameter {name}: not a parameter of {op.operation_id}" for name in query
                  if name not in declared)
    errors.extend(_body_errors(op, body, has_body))
    return errors


def _parameter_values(location: str, name: str, path_params: dict[str, str], query: dict[str, list[str]]) -> list[str]:
    """The values a request gives one path or query parameter (empty: none)."""
    if location == "path":
        raw = path_params.get(name)
        return [raw] if raw is not None else []
    return query.get(name, [])


def _parameter_errors(where: str, values: list[str], schema: dict[str, Any], comma: bool) -> list[str]:
    """Why Pipedrive would refuse these values of one parameter, each converted to the declared type first."""
    errors: list[str] = []
    for raw in values:
        parts = raw.split(",") if comma else [raw]  # repair 2
        for part in parts:
            try:
                value = _convert(part, schema)
            except ValueError:
                errors.append(f"{where}: {part!r} is not a {schema.get('type')}")
                continue
            errors.extend(_schema_errors(schema, value, where))
    return errors


def _body_errors(op: Operation, body: Any, has_body: bool) -> list[str]:
    """Why Pipedrive would refuse the request's body, or the lack of one."""
    if op.body_schema is not None:
        if not has_body:
            return ["body: required"] if op.body_required else []
        return _schema_errors(op.body_schema, body, "body")
    if has_body and op.method in ("GET", "DELETE"):
        return [f"body: {op.operation_id} takes no body"]
    return []
