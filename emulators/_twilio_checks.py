"""Checking a form posted to Twilio's ``Messages.json`` against Twilio's own API description.

``vendor_specs/twilio/twilio_api_v2010.json`` (Twilio's OpenAPI file, ``twilio/twilio-oai``) describes the
request as ``CreateMessageRequest``: form parameters, each a string, number, integer, boolean, enum or
array, some with a pattern or a length, and ``To`` required. A form is a flat list of ``name=value``
pairs, so each value is read as its declared type would be written in a form (``true``/``false``, digits),
and an array is the parameter repeated. The rules the description states only in words (a sender, some
content, the body's length…) are the emulator's, with Twilio's error codes (:mod:`emulators.twilio`).

Loaded once per process.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import urlsplit

from emulators.specs import spec_path

TWILIO_SPEC = "twilio/twilio_api_v2010.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"


@functools.cache
def twilio_spec() -> dict[str, Any]:
    """Twilio's API v2010 description, as published."""
    with spec_path(TWILIO_SPEC).open(encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = twilio_spec()["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


@functools.cache
def create_message_schema() -> dict[str, Any]:
    """``CreateMessageRequest``: the form schema of ``POST …/Messages.json``."""
    operation = twilio_spec()["paths"][MESSAGES_PATH]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    return schema


def path_errors(account_sid: str) -> list[str]:
    """Why the ``AccountSid`` in the path does not fit its declared pattern (empty: it does)."""
    operation = twilio_spec()["paths"][MESSAGES_PATH]["post"]
    for parameter in operation["parameters"]:
        if parameter["name"] == "AccountSid":
            return [f"AccountSid: {p}" for p in _value_errors(account_sid, parameter["schema"])]
    return []


def _value_errors(value: str, schema: dict[str, Any]) -> list[str]:
    schema = _resolve(schema)
    kind = schema.get("type")
    found: list[str] = []
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        found.append("an integer expected")
    elif kind == "number":
        try:
            float(value)
        except ValueError:
            found.append("a number expected")
    elif kind == "boolean" and value not in ("true", "false", "True", "False"):
        found.append("true or false expected")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"one of {schema['enum']} expected")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"does not match {schema['pattern']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(f"shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"longer than {schema['maxLength']}")
    ignore = (schema.get("x-twilio") or {}).get("ignoreFormat")
    if schema.get("format") == "uri" and not ignore:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            found.append("an absolute http(s) URL expected")
    return found


def create_message_errors(form: list[tuple[str, str]]) -> list[str]:
    """Why Twilio's description does not admit this form (empty: it does). Unknown parameters are named too."""
    schema = create_message_schema()
    properties: dict[str, Any] = schema["properties"]
    names = [name for name, _ in form]
    found = [f"{name}: required" for name in schema.get("required", []) if name not in names]
    for name, value in form:
        declared = properties.get(name)
        if declared is None:
            found.append(f"{name}: not a parameter of CreateMessageRequest")
            continue
        if declared.get("type") != "array" and names.count(name) > 1:
            found.append(f"{name}: given more than once")
        item = declared.get("items", {}) if declared.get("type") == "array" else declared
        found.extend(f"{name}: {problem}" for problem in _value_errors(value, item))
    return found
