"""The Messenger Platform's contract, written from Meta's documentation (it publishes no machine-readable one).

Meta publishes no OpenAPI or JSON description of the Send API or of the messaging webhooks under a licence that
allows keeping it here, so this module states what its reference pages say, in words turned into checks:

- Send API (``POST /{version}/me/messages``, ``/{page-id}/messages``, Instagram's ``/{ig-id}/messages``):
  ``recipient`` with one of ``id``/``user_ref``/``post_id``/``comment_id``; exactly one of ``message`` and
  ``sender_action`` (``typing_on``, ``typing_off``, ``mark_seen``); a message carries ``text`` or
  ``attachment`` (not both) and ``messaging_type`` (``RESPONSE``, ``UPDATE``, ``MESSAGE_TAG``), with ``tag``
  when, and only when, it is ``MESSAGE_TAG``; text up to 2000 characters (Instagram: 1000 bytes of UTF-8);
  at most 13 quick replies (``text`` ones with a title of at most 20 characters and a payload of at most 1000;
  ``user_phone_number``, ``user_email``); a button template with text up to 640 characters and 1 to 3
  buttons (``postback`` with title and payload, ``web_url`` with title and url); attachments ``image``,
  ``video``, ``audio``, ``file`` by an http(s) ``url``. Instagram takes no ``UPDATE`` messages and of the tags
  only ``HUMAN_AGENT``.
- Webhooks: ``object`` ``page`` or ``instagram``, ``entry[]`` with ``id``, ``time`` and ``messaging[]``, each
  event with ``sender``, ``recipient``, ``timestamp`` (milliseconds) and exactly one of ``message``,
  ``postback``, ``referral``, ``read``, ``delivery``, ``reaction``.

Each check returns the problems found (empty: the request is what Meta takes), as the other emulators' checks do.
"""

from __future__ import annotations

from typing import Any

MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
TAGS = ("CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT", "CUSTOMER_FEEDBACK")
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")
ATTACHMENT_TYPES = ("image", "video", "audio", "file", "template")
EVENT_KINDS = ("message", "postback", "referral", "read", "delivery", "reaction")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def send_errors(body: Any, platform: str) -> list[str]:
    """What Meta would refuse in a Send API body from a ``platform`` (``messenger`` or ``instagram``) account."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems: list[str] = []
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not any(_text(recipient.get(k)) for k in
                                                      ("id", "user_ref", "post_id", "comment_id")):
        problems.append("recipient: one of id, user_ref, post_id, comment_id is required")
    has_message, has_action = "message" in body, "sender_action" in body
    if has_message == has_action:
        problems.append("exactly one of message and sender_action is required")
    if has_action:
        if body["sender_action"] not in SENDER_ACTIONS:
            problems.append(f"sender_action must be one of {', '.join(SENDER_ACTIONS)}")
        return problems
    problems.extend(_type_errors(body, platform))
    message = body.get("message")
    if not isinstance(message, dict):
        return [*problems, "message must be an object"]
    has_text, has_attachment = "text" in message, "attachment" in message
    if has_text == has_attachment:
        problems.append("message: exactly one of text and attachment is required")
    if has_text:
        problems.extend(_text_errors(message.get("text"), platform))
    if has_attachment:
        problems.extend(_attachment_errors(message.get("attachment")))
    if "quick_replies" in message:
        problems.extend(_quick_reply_errors(message["quick_replies"]))
    return problems


def _type_errors(body: dict[str, Any], platform: str) -> list[str]:
    kind, tag = body.get("messaging_type"), body.get("tag")
    if kind not in MESSAGING_TYPES:
        return [f"messaging_type must be one of {', '.join(MESSAGING_TYPES)}"]
    if kind == "MESSAGE_TAG" and tag not in TAGS:
        return ["tag: a valid message tag is required with messaging_type MESSAGE_TAG"]
    if kind != "MESSAGE_TAG" and tag is not None:
        return ["tag is only allowed with messaging_type MESSAGE_TAG"]
    if platform == "instagram" and (kind == "UPDATE" or (tag is not None and tag != "HUMAN_AGENT")):
        return ["Instagram takes RESPONSE messages, and MESSAGE_TAG only with the HUMAN_AGENT tag"]
    return []


def _text_errors(text: Any, platform: str) -> list[str]:
    if not _text(text):
        return ["message.text must be a non-empty string"]
    if platform == "instagram" and len(text.encode()) > 1000:
        return ["message.text is over 1000 bytes (Instagram)"]
    if len(text) > 2000:
        return ["message.text is over 2000 characters"]
    return []


def _attachment_errors(attachment: Any) -> list[str]:
    if not isinstance(attachment, dict) or attachment.get("type") not in ATTACHMENT_TYPES:
        return [f"message.attachment.type must be one of {', '.join(ATTACHMENT_TYPES)}"]
    payload = attachment.get("payload")
    if not isinstance(payload, dict):
        return ["message.attachment.payload must be an object"]
    if attachment["type"] != "template":
        if not _url(payload.get("url")) and not _text(payload.get("attachment_id")):
            return ["message.attachment.payload: an http(s) url or an attachment_id is required"]
        return []
    if payload.get("template_type") != "button":
        return [] if _text(payload.get("template_type")) else ["payload.template_type is required"]
    problems = []
    if not _text(payload.get("text")) or len(payload["text"]) > 640:
        problems.append("button template: text is required, at most 640 characters")
    buttons = payload.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return [*problems, "button template: 1 to 3 buttons"]
    return problems + _button_errors(buttons)


def _button_errors(buttons: list[Any]) -> list[str]:
    problems = []
    for i, button in enumerate(buttons):
        if not isinstance(button, dict) or not _text(button.get("title")) or len(button["title"]) > 20:
            problems.append(f"buttons[{i}].title is required, at most 20 characters")
        elif button.get("type") == "postback":
            if not _text(button.get("payload")) or len(button["payload"]) > 1000:
                problems.append(f"buttons[{i}].payload is required, at most 1000 characters")
        elif button.get("type") == "web_url":
            if not _url(button.get("url")):
                problems.append(f"buttons[{i}].url must be an http(s) URL")
        else:
            problems.append(f"buttons[{i}].type must be postback or web_url")
    return problems


def _quick_reply_errors(quick: Any) -> list[str]:
    if not isinstance(quick, list) or not 1 <= len(quick) <= 13:
        return ["message.quick_replies: 1 to 13 quick replies"]
    problems = []
    for i, item in enumerate(quick):
        kind = item.get("content_type") if isinstance(item, dict) else None
        if kind in ("user_phone_number", "user_email"):
            continue
        if kind != "text":
            problems.append(f"quick_replies[{i}].content_type must be text, user_phone_number or user_email")
        elif not _text(item.get("title")) or len(item["title"]) > 20:
            problems.append(f"quick_replies[{i}].title is required, at most 20 characters")
        elif not _text(item.get("payload")) or len(item["payload"]) > 1000:
            problems.append(f"quick_replies[{i}].payload is required, at most 1000 characters")
    return problems


def webhook_errors(body: Any) -> list[str]:
    """What in a webhook body Meta would never send."""
    if not isinstance(body, dict) or body.get("object") not in ("page", "instagram"):
        return ["object must be page or instagram"]
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        return ["entry must be a non-empty list"]
    problems = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _text(entry.get("id")) or not isinstance(entry.get("time"), int):
            problems.append(f"entry[{i}]: id (string) and time (integer) are required")
            continue
        for j, event in enumerate(entry.get("messaging") or []):
            where = f"entry[{i}].messaging[{j}]"
            if not isinstance(event, dict) or not isinstance(event.get("sender"), dict) \
                    or not isinstance(event.get("recipient"), dict):
                problems.append(f"{where}: sender and recipient are required")
                continue
            kinds = [kind for kind in EVENT_KINDS if kind in event]
            if len(kinds) != 1:
                problems.append(f"{where}: exactly one of {', '.join(EVENT_KINDS)}")
            if kinds[:1] != ["delivery"] and not isinstance(event.get("timestamp"), int):
                problems.append(f"{where}: timestamp (milliseconds) is required")
            if "message" in event and not _text((event["message"] or {}).get("mid")):
                problems.append(f"{where}: message.mid is required")
    return problems
