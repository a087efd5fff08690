"""The request bodies of HubSpot's custom channels and conversations APIs, as JSON Schema.

``hubspot-api-client`` has no models for these APIs, and HubSpot's OpenAPI files carry no licence for
reuse (``emulators/vendor_specs/SOURCES.md``), so the shapes are written here from HubSpot's API
reference (the custom channels v3 and 2026-03 references describe the same bodies): every object is
closed (an unknown key is refused, as HubSpot's deserializer refuses it), required fields and enum values
are those of the reference. A channel's ``capabilities`` are checked against the keys and values of the
custom channels guide.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}
DELIVERY_IDENTIFIER_TYPES = ["CHANNEL_SPECIFIC_OPAQUE_ID", "HS_EMAIL_ADDRESS", "HS_PHONE_NUMBER", "HS_SHORT_CODE"]
FILE_USAGE_TYPES = ["AUDIO", "IMAGE", "OTHER", "STICKER", "VOICE_RECORDING"]


def _obj(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _attachment(kind: str, properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return _obj({"type": {"const": kind}, **properties}, "type", *required)


_DELIVERY_IDENTIFIER = _obj({"type": {"enum": DELIVERY_IDENTIFIER_TYPES}, "value": _STR}, "type", "value")
_PARTICIPANT = _obj({"deliveryIdentifier": _DELIVERY_IDENTIFIER, "name": _STR, "senderActorId": _STR},
                    "deliveryIdentifier")
_QUICK_REPLY = _obj({"label": _STR, "value": _STR, "valueType": {"enum": ["TEXT", "URL"]}}, "value", "valueType")
_ATTACHMENTS: dict[str, dict[str, Any]] = {
    "FILE": _attachment("FILE", {"fileId": _STR, "fileUsageType": {"enum": FILE_USAGE_TYPES}}, "fileId"),
    "LOCATION": _attachment("LOCATION", {"latitude": {"type": "number"}, "longitude": {"type": "number"},
                                         "address": _STR, "name": _STR, "url": _STR}, "latitude", "longitude"),
    "CONTACT": _attachment("CONTACT", {"contactProfile": {"type": "object"}}, "contactProfile"),
    "UNSUPPORTED_CONTENT": _attachment("UNSUPPORTED_CONTENT", {}),
    "MESSAGE_HEADER": _attachment("MESSAGE_HEADER", {"fileId": _INT, "text": _STR}),
    "QUICK_REPLIES": _attachment("QUICK_REPLIES", {"quickReplies": {"type": "array", "items": _QUICK_REPLY}},
                                 "quickReplies"),
    "SOCIAL_MEDIA_METADATA": _attachment("SOCIAL_MEDIA_METADATA", {"socialMetadata": {"type": "object"}},
                                         "socialMetadata"),
}
_ATTACHMENT = {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(_ATTACHMENTS)}},
               "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": schema}
                         for kind, schema in _ATTACHMENTS.items()]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ChannelCreate": _obj({"name": _STR, "capabilities": {"type": "object"}, "webhookUrl": _STR,
                           "channelAccountConnectionRedirectUrl": _STR, "channelDescription": _STR,
                           "channelLogoUrl": _STR}, "capabilities", "name"),
    # a PATCH sends only what changes
    "ChannelPatch": _obj({"name": _STR, "capabilities": {"type": "object"}, "webhookUrl": _STR,
                          "channelAccountConnectionRedirectUrl": _STR, "channelDescription": _STR,
                          "channelLogoUrl": _STR}),
    "ChannelAccountEgg": _obj({"name": _STR, "inboxId": _STR, "authorized": _BOOL,
                               "deliveryIdentifier": _DELIVERY_IDENTIFIER}, "authorized", "inboxId", "name"),
    "ChannelAccountUpdate": _obj({"name": _STR, "authorized": _BOOL}),
    "MessageEgg": _obj({
        "text": _STR, "richText": _STR, "channelAccountId": _STR, "messageDirection": {"enum": ["INCOMING",
                                                                                              "OUTGOING"]},
        "senders": {"type": "array", "items": _PARTICIPANT}, "recipients": {"type": "array", "items": _PARTICIPANT},
        "timestamp": {"type": "string", "format": "date-time"}, "attachments": {"type": "array", "items": _ATTACHMENT},
        "associateWithContactId": _INT, "inReplyToId": _STR, "integrationIdempotencyId": _STR,
        "integrationThreadId": _STR,
        "preResolvedContacts": _obj({"contacts": {"type": "array", "items": _obj(
            {"contactVid": _INT, "contactPropertiesLeadingToMatch": {"type": "array", "items": _STR}},
            "contactPropertiesLeadingToMatch", "contactVid")}}, "contacts"),
    }, "attachments", "channelAccountId", "messageDirection", "recipients", "senders", "text", "timestamp"),
    "MessageUpdate": _obj({"statusType": {"enum": ["FAILED", "READ", "SENT"]}, "errorMessage": _STR}, "statusType"),
    "ThreadUpdate": _obj({"status": {"enum": ["CLOSED", "OPEN"]}, "archived": _BOOL}),
}

#: a channel's capabilities: key → the schema of its value (the custom channels guide's table)
CAPABILITIES: dict[str, dict[str, Any]] = {
    "deliveryIdentifierTypes": {"type": "array", "minItems": 1, "items": {"enum": DELIVERY_IDENTIFIER_TYPES}},
    "richText": {"type": "array", "items": {"enum": ["HYPERLINK", "TEXT_ALIGNMENT", "BLOCKQUOTE", "BOLD", "ITALIC",
                                                     "UNDERLINE", "STRIKETHROUGH", "LISTS"]}},
    "threadingModel": {"enum": ["INTEGRATION_THREAD_ID", "DELIVERY_IDENTIFIER"]},
    "allowInlineImages": _BOOL, "allowOutgoingMessages": _BOOL, "allowConversationStart": _BOOL,
    "allowMultipleRecipients": _BOOL,
    "outgoingAttachmentTypes": {"type": "array", "items": {"enum": ["FILE", "QUICK_REPLIES"]}},
    "allowedFileAttachmentMimeTypes": {"type": "array", "items": _STR},
    "maxFileAttachmentCount": {"type": "integer", "minimum": 0},
    "maxFileAttachmentSizeBytes": {"type": "integer", "minimum": 0},
    "maxTotalFileAttachmentSizeBytes": {"type": "integer", "minimum": 0},
}
REQUIRED_CAPABILITIES = ("deliveryIdentifierTypes",)


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(SCHEMAS[name], format_checker=jsonschema.FormatChecker())


def shape_errors(name: str, body: Any) -> list[str]:
    """Why HubSpot would refuse ``body`` as a ``name`` (:data:`SCHEMAS`); empty when it would not."""
    if not isinstance(body, dict):
        return ["body: expected a JSON object"]
    errors = []
    for error in sorted(_validator(name).iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "body"
        errors.append(f"{where}: {error.message[:200]}")
    return errors


def capability_problems(capabilities: dict[str, Any], *, creating: bool) -> tuple[list[str], list[str]]:
    """``(unknown keys, "key": value pairs with values not allowed)`` of a channel's capabilities."""
    unknown = sorted(k for k in capabilities if k not in CAPABILITIES)
    invalid = [f'"{k}": "{v}"' for k, v in capabilities.items() if k in CAPABILITIES
               and not jsonschema.Draft202012Validator(CAPABILITIES[k]).is_valid(v)]
    if creating:
        invalid += [f'"{k}": "null"' for k in REQUIRED_CAPABILITIES if k not in capabilities]
    return unknown, invalid
