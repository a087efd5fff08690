"""Checking requests against the vendors' own descriptions (loaded once per process).

- WhatsApp: Meta's OpenAPI file; request bodies are validated with JSON Schema against its
  ``Message`` and ``MarkMessageRequestPayload`` schemas, after the two repairs SOURCES.md
  documents (the non-standard ``parameterGroups`` and ten ``additionalProperties: false`` on
  ``allOf`` branches that reject valid messages). Nothing else is relaxed.
- Telegram: ``api.json`` (the Bot API's methods, fields, types and which are required),
  turned into per-method checks of parameter presence and types, recursing into objects.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from emulators.specs import spec_path

WHATSAPP_SPEC = "whatsapp/business-messaging-api_v23.0.yaml"
TELEGRAM_SPEC = "telegram/api.json"


@functools.cache
def whatsapp_spec() -> dict[str, Any]:
    """Meta's WhatsApp OpenAPI document with the documented repairs applied."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path(WHATSAPP_SPEC).open(encoding="utf-8") as handle:
        # integer response keys (200:) → strings, as JSON would have them
        document = json.loads(json.dumps(yaml.load(handle, Loader=loader)))  # noqa: S506 - a safe loader (C or pure)
    document["components"].pop("parameterGroups", None)

    def repair(node: Any) -> None:
        if isinstance(node, dict):
            for branch in node.get("allOf", []):
                if isinstance(branch, dict):
                    branch.pop("additionalProperties", None)
            for value in node.values():
                repair(value)
        elif isinstance(node, list):
            for value in node:
                repair(value)

    repair(document)
    return document


@functools.cache
def _whatsapp_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    registry = Registry().with_resource("urn:whatsapp", Resource.from_contents(whatsapp_spec(),
                                                                               default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:whatsapp#/components/schemas/{schema_name}"},
                                           registry=registry)


def whatsapp_message_errors(body: Any) -> list[str]:
    """Why Meta would reject this body sent to ``/{version}/{phone-number-id}/messages`` (empty: it would not)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    schema = "MarkMessageRequestPayload" if "status" in body else "Message"
    validator = _whatsapp_validator(schema)
    errors = []
    for error in validator.iter_errors(body):
        # oneOf errors say little; name the best matching branch's complaint
        best = jsonschema.exceptions.best_match([error]) or error
        errors.append(f"{'/'.join(str(p) for p in best.absolute_path) or '(body)'}: {best.message[:300]}")
    return errors


@functools.cache
def telegram_api() -> dict[str, Any]:
    """The Bot API description (methods and types)."""
    with spec_path(TELEGRAM_SPEC).open(encoding="utf-8") as handle:
        api: dict[str, Any] = json.load(handle)
        return api


_SCALARS = {
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "True": lambda v: v is True,
    "InputFile": lambda v: isinstance(v, str),
}


def _type_ok(value: Any, type_name: str, path: str, errors: list[str], depth: int = 0) -> bool:
    if type_name.startswith("Array of "):
        if not isinstance(value, list):
            return False
        inner = type_name[len("Array of "):]
        return all(_type_ok(item, inner, f"{path}[{i}]", errors, depth + 1) for i, item in enumerate(value))
    if type_name in _SCALARS:
        return bool(_SCALARS[type_name](value))
    described = telegram_api()["types"].get(type_name)
    if described is None:
        return True  # a type the description does not detail
    if described.get("subtypes"):
        return isinstance(value, dict) and any(
            _type_ok(value, sub, path, [], depth + 1) for sub in described["subtypes"])
    if not isinstance(value, dict):
        return False
    errors.extend(_fields_errors(value, described.get("fields", []), path, depth + 1))
    return True


def _fields_errors(params: dict[str, Any], fields: list[dict[str, Any]], path: str, depth: int) -> list[str]:
    errors: list[str] = []
    known = {f["name"]: f for f in fields}
    for name in params:
        if name not in known:
            errors.append(f"{path}{name}: not a parameter of this method or type")
    for field in fields:
        name = field["name"]
        if name not in params:
            if field.get("required"):
                errors.append(f"{path}{name}: required")
            continue
        nested: list[str] = []
        if not any(_type_ok(params[name], t, f"{path}{name}.", nested, depth) for t in field["types"]):
            errors.append(f"{path}{name}: expected {' or '.join(field['types'])}")
        errors.extend(nested)
    return errors


def telegram_call_errors(method: str, params: Any) -> list[str] | None:
    """Why Telegram would reject this call; None when the method does not exist."""
    described = telegram_api()["methods"].get(method)
    if described is None:
        return None
    if not isinstance(params, dict):
        return ["parameters must be a JSON object"]
    errors = _fields_errors(params, described.get("fields", []), "", 0)
    if method == "sendMessage" and isinstance(params.get("text"), str) and not 1 <= len(params["text"]) <= 4096:
        errors.append("text: must be 1-4096 characters")
    for row in (params.get("reply_markup") or {}).get("inline_keyboard", []) if isinstance(
            params.get("reply_markup"), dict) else []:
        for button in row if isinstance(row, list) else []:
            data = button.get("callback_data") if isinstance(button, dict) else None
            if isinstance(data, str) and not 1 <= len(data.encode()) <= 64:
                errors.append("reply_markup.inline_keyboard: callback_data must be 1-64 bytes")
    return errors
