"""Checking requests (and the webhooks the emulators generate) against the vendors' own descriptions.

- WhatsApp: Meta's OpenAPI file; request bodies are validated with JSON Schema against its
  ``Message`` and ``MarkMessageRequestPayload`` schemas, after the two repairs SOURCES.md
  documents (the non-standard ``parameterGroups`` and ten ``additionalProperties: false`` on
  ``allOf`` branches that reject valid messages). Webhook bodies are validated against its
  ``WebhookPayload``, with the webhook's references pointed at the incoming message variants, OpenAPI
  discriminators stated as JSON Schema conditions, and the gaps of v23 amended one by one
  (:func:`whatsapp_webhook_spec`). Nothing else is relaxed.
- Telegram: ``api.json`` (the Bot API's methods, fields, types and which are required),
  turned into per-method checks of parameter presence and types, recursing into objects; and the
  same for an ``Update`` sent to a webhook (:func:`telegram_update_errors`).

Everything is loaded once per process.
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
    if schema == "Message":
        # the schema's OpenAPI discriminator: the message's `type` names the one schema it is checked against, as
        # Meta reads it (an unknown or missing type is checked against them all, to say what is wrong)
        mapping = whatsapp_spec()["components"]["schemas"]["Message"]["discriminator"]["mapping"]
        named = mapping.get(body.get("type")) if isinstance(body.get("type"), str) else None
        schema = named.removeprefix(_SCHEMAS) if named else schema
    validator = _whatsapp_validator(schema)
    errors = []
    for error in validator.iter_errors(body):
        # oneOf errors say little; name the best matching branch's complaint
        best = jsonschema.exceptions.best_match([error]) or error
        errors.append(f"{'/'.join(str(p) for p in best.absolute_path) or '(body)'}: {best.message[:300]}")
    return errors


#: As published, the webhook payload's schemas reference the outgoing message schemas; these are the
#: incoming variants the same document describes (SOURCES.md).
WEBHOOK_REDIRECTS = {
    "BaseMessageProperties": "BaseMessageProperties_1", "TextMessage": "TextMessage_2",
    "ReactionMessage": "ReactionMessage_1", "AudioMessage": "AudioMessage_1", "DocumentMessage": "DocumentMessage_1",
    "ImageMessage": "ImageMessage_1", "StickerMessage": "StickerMessage_1", "VideoMessage": "VideoMessage_1",
    "LocationMessage": "LocationMessage_1", "ContactObject": "ContactObject_1", "ErrorObject": "ErrorObject_2",
}
_SCHEMAS = "#/components/schemas/"


def _nodes(node: Any) -> Any:
    """Every object inside a schema (the schema itself first)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            yield current
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def _known_gaps(schemas: dict[str, Any]) -> None:
    """What v23 does not describe, though Meta sends it; each amendment as narrow as the gap.

    - Users known only by a business-scoped id: a message names ``from_user_id`` instead of ``from``,
      a contact ``user_id`` beside or instead of ``wa_id``, a status ``recipient_user_id`` instead of
      ``recipient_id``.
    - A location dropped as a pin has no ``name`` or ``address``.
    - A value may carry only ``errors`` (with the metadata).
    - A list reply has a ``description`` only when the row had one.
    - The ``user_preferences`` webhook (a user stops or resumes marketing messages), documented in Meta's
      webhook reference, is not in v23 at all: it is described here from that reference.
    - A completed WhatsApp Flow (``interactive.type`` ``nfm_reply``, with ``name``, ``body`` and the string
      ``response_json``) is not in v23's interactive replies: it is described here from Meta's Flows reference
      ("Response Message Webhook").
    """
    base = schemas["BaseMessageProperties_1"]
    base["properties"]["from_user_id"] = {"type": "string"}
    base["required"] = [r for r in base["required"] if r != "from"]
    base["anyOf"] = [{"required": ["from"]}, {"required": ["from_user_id"]}]
    schemas["ContactProfile"]["properties"]["user_id"] = {"type": "string"}
    statuses = schemas["Statuses"]
    statuses["properties"]["recipient_user_id"] = {"type": "string"}
    statuses["required"] = [r for r in statuses["required"] if r != "recipient_id"]
    statuses["anyOf"] = [{"required": ["recipient_id"]}, {"required": ["recipient_user_id"]}]
    location = next(b for b in schemas["LocationMessage_1"]["allOf"] if "properties" in b)["properties"]["location"]
    location["required"] = ["latitude", "longitude"]
    schemas["Change"]["properties"]["value"]["oneOf"].append({
        "type": "object",
        "properties": {"messaging_product": {"type": "string"}, "metadata": {"$ref": _SCHEMAS + "Metadata"},
                       "errors": {"type": "array", "items": {"$ref": _SCHEMAS + "ErrorObject_2"}}},
        "required": ["messaging_product", "metadata", "errors"],
        "not": {"anyOf": [{"required": ["messages"]}, {"required": ["statuses"]}, {"required": ["groups"]}]}})
    schemas["InteractiveListReplyContent"]["properties"]["list_reply"]["required"] = ["id", "title"]
    reply = next(b for b in schemas["InteractiveMessageReply"]["allOf"] if "properties" in b)["properties"]
    reply["interactive"]["properties"]["type"]["enum"].append("nfm_reply")
    reply["interactive"].setdefault("allOf", []).append({
        "if": {"properties": {"type": {"const": "nfm_reply"}}, "required": ["type"]},
        "then": {"properties": {"nfm_reply": {
            "type": "object",
            "properties": {"name": {"const": "flow"}, "body": {"type": "string"}, "response_json": {"type": "string"}},
            "required": ["name", "body", "response_json"]}}, "required": ["nfm_reply"]}})
    schemas["Change"]["properties"]["field"]["enum"].append("user_preferences")
    schemas["Change"]["properties"]["value"]["oneOf"].append({
        "type": "object",
        "properties": {
            "messaging_product": {"type": "string"}, "metadata": {"$ref": _SCHEMAS + "Metadata"},
            # the reference's own example names a contact by wa_id alone, without a profile
            "contacts": {"type": "array", "items": {"type": "object", "properties": {
                "wa_id": {"type": "string"}, "user_id": {"type": "string"}}}},
            "user_preferences": {"type": "array", "items": {
                "type": "object",
                "properties": {"wa_id": {"type": "string"}, "user_id": {"type": "string"}, "detail": {"type": "string"},
                               "category": {"type": "string"}, "value": {"enum": ["stop", "resume"]},
                               "timestamp": {"type": "integer"}},
                "required": ["detail", "category", "value", "timestamp"],
                "anyOf": [{"required": ["wa_id"]}, {"required": ["user_id"]}]}}},
        "required": ["messaging_product", "metadata", "user_preferences"]})


def _discriminators_as_conditions(schema: dict[str, Any]) -> None:
    """OpenAPI's ``discriminator`` is not JSON Schema: where it is the only description of the variants (an
    interactive reply's content), state it as conditions a validator applies."""
    for node in _nodes(schema):
        mapping = (node.get("discriminator") or {}).get("mapping")
        if not mapping or "oneOf" in node or "anyOf" in node:
            continue
        name = node["discriminator"]["propertyName"]
        node.setdefault("allOf", []).extend(
            {"if": {"properties": {name: {"const": value}}, "required": [name]}, "then": {"$ref": target}}
            for value, target in mapping.items())


@functools.cache
def whatsapp_webhook_spec() -> dict[str, Any]:
    """Meta's document with its ``WebhookPayload`` repaired: every reference reachable from it redirected to
    the incoming variants (:data:`WEBHOOK_REDIRECTS`), discriminators stated as conditions, and the known
    gaps amended (:func:`_known_gaps`). Nothing else is relaxed."""
    document = copy.deepcopy(whatsapp_spec())
    schemas = document["components"]["schemas"]
    todo, seen = ["WebhookPayload"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in _nodes(schemas[name]):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                target = WEBHOOK_REDIRECTS.get(ref[len(_SCHEMAS):], ref[len(_SCHEMAS):])
                node["$ref"] = _SCHEMAS + target
                todo.append(target)
    for name in seen:
        _discriminators_as_conditions(schemas[name])
    _known_gaps(schemas)
    return document


@functools.cache
def _whatsapp_webhook_validator() -> jsonschema.Draft202012Validator:
    registry = Registry().with_resource("urn:whatsapp-webhook", Resource.from_contents(
        whatsapp_webhook_spec(), default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:whatsapp-webhook{_SCHEMAS}WebhookPayload"},
                                           registry=registry)


def _wrong_kind(error: jsonschema.ValidationError) -> bool:
    """The error of a branch meant for another kind of object (another message ``type``)."""
    return error.validator in ("enum", "const") and list(error.relative_path)[-1:] == ["type"]


def _telling(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors that say why: inside oneOf/anyOf, only those of the branches meant for the instance."""
    if not error.context:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [errs for errs in branches.values() if not any(_wrong_kind(e) for e in errs)] or list(branches.values())
    return [leaf for errs in meant for sub in errs for leaf in _telling(sub)]


def whatsapp_webhook_errors(body: Any) -> list[str]:
    """Why Meta would never send this webhook body (empty: it fits the repaired ``WebhookPayload``)."""
    errors = []
    for error in _whatsapp_webhook_validator().iter_errors(body):
        best = max(_telling(error), key=lambda e: len(e.absolute_path))
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
#: deeper than any real object of the description: what lies below is not checked
_MAX_DEPTH = 24


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_errors(value: Any, type_name: str, path: str, depth: int) -> list[str]:
    """Why ``value`` is not a ``type_name`` of the description (empty: it is)."""
    expected = [f"{path or '(value)'}: expected {type_name}"]
    if depth > _MAX_DEPTH:
        return []
    if type_name.startswith("Array of "):
        if not isinstance(value, list):
            return expected
        inner = type_name[len("Array of "):]
        return [e for i, item in enumerate(value) for e in _type_errors(item, inner, f"{path}[{i}]", depth + 1)]
    if type_name in _SCALARS:
        return [] if _SCALARS[type_name](value) else expected
    described = telegram_api()["types"].get(type_name)
    if described is None:
        return []  # a type the description does not detail
    if not isinstance(value, dict):
        return expected
    if described.get("subtypes"):
        # one of the subtypes (Message or InaccessibleMessage…): the closest one's complaints, if none fits
        return _one_of(value, described["subtypes"], path, depth + 1)
    return _fields_errors(value, described.get("fields", []), path, depth + 1)


def _one_of(value: Any, type_names: list[str], path: str, depth: int) -> list[str]:
    """Why ``value`` is none of ``type_names`` (empty: it is one of them)."""
    tried = [_type_errors(value, name, path, depth) for name in type_names]
    if any(not errors for errors in tried):
        return []
    if all(errors == [f"{path or '(value)'}: expected {name}"] for errors, name in zip(tried, type_names, strict=True)):
        return [f"{path or '(value)'}: expected {' or '.join(type_names)}"]
    return min(tried, key=len)


def _fields_errors(params: dict[str, Any], fields: list[dict[str, Any]], path: str, depth: int) -> list[str]:
    errors: list[str] = []
    known = {f["name"]: f for f in fields}
    for name in params:
        if name not in known:
            errors.append(f"{_at(path, name)}: not a parameter of this method or type")
    for field in fields:
        name = field["name"]
        if name not in params:
            if field.get("required"):
                errors.append(f"{_at(path, name)}: required")
            continue
        errors.extend(_one_of(params[name], field["types"], _at(path, name), depth))
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


def telegram_update_errors(update: Any) -> list[str]:
    """Why Telegram would never send this update to a webhook (empty: it fits ``Update`` in ``api.json``).

    Besides every field's presence and type, recursing into the objects it holds: "at most one of the
    optional parameters can be present in any given update".
    """
    if not isinstance(update, dict):
        return ["an update must be a JSON object"]
    errors = _fields_errors(update, telegram_api()["types"]["Update"]["fields"], "", 0)
    kinds = sorted(k for k in update if k != "update_id")
    if len(kinds) > 1:
        errors.append(f"an update carries at most one of its optional fields, not {', '.join(kinds)}")
    return errors
