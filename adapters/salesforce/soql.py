"""SOQL as the adapter writes it: query text, string literals, the spellings of a phone number, and the
choice of the record that is this person among those a query returned.

SOQL reads the database itself (it is strongly consistent, unlike SOSL search, which the relay does not
use), so every "did this write already happen?" decision can rest on a query built here. Field and
object names come from the mapping; every value goes through :func:`_quote`.
"""

from __future__ import annotations

import re
from typing import Any


def _select(fields: list[str], sobject: str, where: str = "", limit: int | None = None) -> str:
    """A SOQL query. Field and object names come from the mapping; values in ``where`` went through
    :func:`_quote`, so a patient's text cannot change the query."""
    text = f"SELECT {', '.join(fields)} FROM {sobject}"  # noqa: S608 - SOQL, values quoted by _quote
    if where:
        text += f" WHERE {where}"
    if limit is not None:
        text += f" LIMIT {limit}"
    return text


def _quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pick(rows: list[dict[str, Any]], key: tuple[str, str] | None, phone: str | None,
          email: str | None) -> dict[str, Any] | None:
    """The record that is this person: the one holding the key, else one a person made (no key yet)
    with the same phone, else with the same e-mail. A record holding another key is someone else."""
    if key:
        for row in rows:
            if str(row.get(key[0]) or "").lower() == key[1].lower():
                return row
    unkeyed = [row for row in rows if not key or not row.get(key[0])]
    if phone:
        variants = set(_phone_variants(phone))
        for row in unkeyed:
            if {str(row.get("Phone") or ""), str(row.get("MobilePhone") or "")} & variants:
                return row
    if email:
        for row in unkeyed:
            if str(row.get("Email") or "").lower() == email.lower():
                return row
    return None


def _phone_variants(phone: str) -> list[str]:
    """How a person may have typed this number (SOQL compares Phone as stored): E.164, digits only, with ``00``,
    the international and national formats, and the national digits with and without the trunk ``0``
    (``+90 532 111 22 33``, ``0532 111 22 33``, ``05321112233``, ``5321112233``). A record found by one of them
    is checked with :func:`adapters.salesforce.identity.same_number` (national digits alone can be another
    country's number)."""
    import phonenumbers

    digits = re.sub(r"\D", "", phone)
    out = [phone, f"+{digits}", digits, f"00{digits}"]
    try:
        number = phonenumbers.parse(f"+{digits}", None)
        national = str(number.national_number)
        out += [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL), f"0{national}", national]
    except phonenumbers.NumberParseException:
        pass
    return list(dict.fromkeys(out))


def _phone_filter(phone: str) -> str:
    """Phone or MobilePhone equal to one of the number's usual spellings (SOQL compares text as stored)."""
    values = [_quote(v) for v in _phone_variants(phone)]
    return "(" + " OR ".join(f"{field} = {value}" for field in ("Phone", "MobilePhone") for value in values) + ")"


def _children(note_title: str | None, task: bool) -> list[str]:
    """The subqueries that find a record's note with this title and its tasks (to see what is written)."""
    out = []
    if note_title:
        out.append("(" + _select(["Id", "Title"], "Notes", f"Title = {_quote(note_title)}") + ")")
    if task:
        out.append("(SELECT Id, Description FROM Tasks)")
    return out
