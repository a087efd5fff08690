"""Request bodies checked the way HubSpot reads them: each body is built into the request model of
``hubspot-api-client`` (generated from HubSpot's own API description), so unknown keys, missing
required fields, wrong types and values outside an enum are rejected as HubSpot would."""

from __future__ import annotations

import importlib
from typing import Any

#: the module of the CRM object models (property and GDPR models live in their own modules)
MODELS = "hubspot.crm.objects.models"
#: fields HubSpot's published API description requires that the generated client leaves optional
REQUIRED_BY_HUBSPOT = {
    "SimplePublicObjectInputForCreate": ("associations", "properties"),
    "PublicObjectSearchRequest": ("after", "filterGroups", "limit", "properties", "sorts"),
    "BatchReadInputSimplePublicObjectId": ("inputs", "properties", "propertiesWithHistory"),
}


class RequestShapeError(ValueError):
    """The body would not deserialize into the client's request model."""


def check_model(class_name: str, data: Any, path: str = "", module: str = MODELS) -> None:
    """Check ``data`` against a ``hubspot-api-client`` model (keys, required fields, types, enums).

    Raises:
        RequestShapeError: with the path of the first problem.
    """
    models = importlib.import_module(module)
    cls = getattr(models, class_name)
    if not isinstance(data, dict):
        raise RequestShapeError(f"{path or 'body'}: expected an object")
    json_to_attr = {v: k for k, v in cls.attribute_map.items()}
    missing = [k for k in REQUIRED_BY_HUBSPOT.get(class_name, ()) if k not in data]
    if missing:
        raise RequestShapeError(f"{path or 'body'}: {class_name} requires {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in json_to_attr:
            raise RequestShapeError(f"{path}{key}: unknown field of {class_name}")
        attr = json_to_attr[key]
        kwargs[attr] = _check_type(cls.openapi_types[attr], value, f"{path}{key}", module)
    try:
        cls(**kwargs)  # the generated constructor checks required fields and enums
    except (ValueError, TypeError) as exc:
        raise RequestShapeError(f"{path or 'body'}: {exc}") from None


def _check_type(kind: str, value: Any, path: str, module: str) -> Any:
    if value is None:
        return None
    if kind.startswith("list["):
        if not isinstance(value, list):
            raise RequestShapeError(f"{path}: expected a list")
        return [_check_type(kind[5:-1], v, f"{path}[{i}]", module) for i, v in enumerate(value)]
    if kind.startswith(("dict(", "dict[")):
        inner = kind[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            raise RequestShapeError(f"{path}: expected an object")
        return {k: _check_type(inner, v, f"{path}.{k}", module) for k, v in value.items()}
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "object": object}
    if kind in scalar:
        if not isinstance(value, scalar[kind]) or (kind == "int" and isinstance(value, bool)):  # type: ignore[arg-type]
            raise RequestShapeError(f"{path}: expected {kind}, got {type(value).__name__}")
        return value
    check_model(kind, value, f"{path}.", module)
    return value
