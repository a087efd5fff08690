"""Checking requests to the LINE emulator (and the webhooks it sends) against LINE's own OpenAPI files.

``vendor_specs/line/messaging-api.yml`` describes the request bodies (``ReplyMessageRequest``,
``PushMessageRequest``, ``MarkMessagesAsReadByTokenRequest``); ``vendor_specs/line/webhook.yml`` the
webhook body (``CallbackRequest``). Both are OpenAPI 3.0 and describe their variants (message types,
actions, events, sources) with ``discriminator`` mappings, which JSON Schema does not read; here each
mapping becomes conditions ("when ``type`` is ``text``, the body is a ``TextMessage``"), and each variant's
``allOf`` reference to its parent points at the parent without the mapping (else the check would recurse).
Nothing is relaxed.

What the files leave to the reference's words (text up to 5,000 characters, labels up to 20, https URLs
for images) is checked by the emulator itself (:func:`documented_limits`).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from emulators.specs import spec_path

MESSAGING_SPEC = "line/messaging-api.yml"
WEBHOOK_SPEC = "line/webhook.yml"
_REF = "#/components/schemas/"
MAX_TEXT, MAX_LABEL, MAX_URL = 5000, 20, 2000


def _load(relative: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path(relative).open(encoding="utf-8") as handle:
        # integer response keys (200:) → strings, as JSON would have them; dates in examples → strings
        return json.loads(json.dumps(yaml.load(handle, Loader=loader), default=str))  # noqa: S506 - a safe loader


def _replace_refs(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("$ref") == old:
            node["$ref"] = new
        for value in node.values():
            _replace_refs(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _replace_refs(value, old, new)


def _discriminators_as_conditions(schemas: dict[str, Any]) -> None:
    """Each ``discriminator.mapping`` of a schema stated as JSON Schema conditions (see the module's doc)."""
    for name in [n for n, s in schemas.items() if isinstance(s, dict) and (s.get("discriminator") or {}).get("mapping")]:
        schema = schemas[name]
        discriminator = schema.pop("discriminator")
        schemas[f"{name}__base"] = copy.deepcopy(schema)
        prop = discriminator["propertyName"]
        for value, target in discriminator["mapping"].items():
            _replace_refs(schemas[target.rsplit("/", 1)[1]], _REF + name, f"{_REF}{name}__base")
            schema.setdefault("allOf", []).append(
                {"if": {"properties": {prop: {"const": value}}, "required": [prop]}, "then": {"$ref": target}})


@functools.cache
def _validator(relative: str, schema_name: str) -> jsonschema.Draft202012Validator:
    document = _load(relative)
    _discriminators_as_conditions(document["components"]["schemas"])
    registry = Registry().with_resource("urn:line", Resource.from_contents(document, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:line{_REF}{schema_name}"}, registry=registry)


def _errors(relative: str, schema_name: str, body: Any) -> list[tuple[str, str]]:
    """(property path, message) for each way ``body`` does not fit ``schema_name``."""
    found = []
    for error in _validator(relative, schema_name).iter_errors(body):
        best = jsonschema.exceptions.best_match([error]) or error
        found.append((_property(best.absolute_path), best.message[:120]))
    return list(dict.fromkeys(found))  # a variant checked through two conditions complains twice


def _property(path: Any) -> str:
    """A JSON path as LINE names properties in its errors: ``messages[0].quickReply.items[1].action.label``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def request_errors(schema_name: str, body: Any) -> list[tuple[str, str]]:
    """Why LINE would refuse ``body`` as a ``schema_name`` of the Messaging API (empty: it would not)."""
    if not isinstance(body, dict):
        return [("", "The request body must be a JSON object")]
    return _errors(MESSAGING_SPEC, schema_name, body) + documented_limits(body)


def documented_limits(body: dict[str, Any]) -> list[tuple[str, str]]:
    """What the reference says in words about messages, beyond the OpenAPI file."""
    found: list[tuple[str, str]] = []
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        where = f"messages[{i}]"
        text = message.get("text")
        if message.get("type") == "text" and isinstance(text, str) and not 0 < len(text) <= MAX_TEXT:
            found.append((f"{where}.text", f"Length must be between 1 and {MAX_TEXT}"))
        for key in ("originalContentUrl", "previewImageUrl"):
            url = message.get(key)
            if isinstance(url, str) and not (url.startswith("https://") and len(url) <= MAX_URL):
                found.append((f"{where}.{key}", "Must be an HTTPS URL of at most 2000 characters"))
        items = (message.get("quickReply") or {}).get("items") if isinstance(message.get("quickReply"), dict) else None
        for j, item in enumerate(items if isinstance(items, list) else []):
            action = item.get("action") if isinstance(item, dict) else None
            label = action.get("label") if isinstance(action, dict) else None
            if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL:
                found.append((f"{where}.quickReply.items[{j}].action.label",
                              f"Length must be between 1 and {MAX_LABEL}"))
    return found


def webhook_errors(body: Any) -> list[str]:
    """Why LINE would never send this webhook body (empty: it fits ``CallbackRequest``)."""
    return [f"{path or '(body)'}: {message}" for path, message in _errors(WEBHOOK_SPEC, "CallbackRequest", body)]
