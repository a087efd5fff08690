"""What the adapter writes into a Note, a Task and the tags field, and how it recognises them later.

A Note's title and a Task's description carry the lead's marker, so the lookup query of the next attempt
(or of a replay) finds them and nothing is written twice.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.base import NoteWrite, TaskWrite

PRIORITIES = {"high": "High", "medium": "Normal", "low": "Low"}
_TAGS = re.compile(r"<[^>]+>")
_BLOCKS = re.compile(r"</(p|li|div|h\d)>|<br\s*/?>", re.I)


def _existing_note(holder: dict[str, Any] | None, title: str | None) -> str | None:
    """The id of the note with this title among the record's ``Notes`` subquery rows."""
    for row in ((holder or {}).get("Notes") or {}).get("records") or []:
        if row.get("Title") == title:
            return str(row["Id"])
    return None


def _existing_task(holder: dict[str, Any] | None, marker: str) -> str | None:
    """The id of the task carrying this marker among the record's ``Tasks`` subquery rows."""
    for row in ((holder or {}).get("Tasks") or {}).get("records") or []:
        if marker in str(row.get("Description") or ""):
            return str(row["Id"])
    return None


def _user_owner(record: dict[str, Any] | None) -> str | None:
    """The record's owner when it is a user (a Task cannot belong to a queue)."""
    owner = str((record or {}).get("OwnerId") or "")
    return owner if owner.startswith("005") else None


def _merge_tags(current: Any, tags: list[str]) -> str:
    """The tags field's value: the tags it holds, then the new ones (a multi-select picklist's ``;`` list)."""
    existing = [t for t in str(current or "").split(";") if t]
    merged = ";".join(dict.fromkeys(existing + list(tags)))
    return merged[:255]


def _note_title(marker: str) -> str:
    """The title of the lead's note: it carries the marker the next attempt looks for."""
    return f"Conversation summary [{marker}]"[:80]


def _plain(html: str) -> str:
    """Classic Notes hold plain text."""
    from html import unescape

    text = _BLOCKS.sub("\n", html).replace("<li>", "- ")
    lines = [line.strip() for line in unescape(_TAGS.sub("", text)).splitlines()]
    return "\n".join(line for line in lines if line)[:32000]


def _note_body(note: NoteWrite, parent: str) -> dict[str, Any]:
    """The Note's fields, attached to ``parent`` (an id or a ``@{ref.id}`` of the same request)."""
    return {"ParentId": parent, "Title": _note_title(note.marker), "Body": _plain(note.body)}


def _task_body(task: TaskWrite, who: str, what: str | None, owner: str | None) -> dict[str, Any]:
    """The Task's fields: about ``who`` (the contact), on ``what`` (the request record), for ``owner``."""
    text = task.body.replace(task.marker, "").rstrip()  # the marker ends the Description, however long the text
    description = f"{text[:32000 - len(task.marker) - 2]}\n\n{task.marker}"
    body: dict[str, Any] = {"Subject": task.subject[:255], "Description": description,
                            "Status": "Not Started", "Priority": PRIORITIES[task.priority], "WhoId": who}
    if task.due_at is not None:
        body["ActivityDate"] = task.due_at.date().isoformat()
    if what:
        body["WhatId"] = what
    if owner:
        body["OwnerId"] = owner
    return body
