"""A patient's opt-out in Salesforce: every Lead or Contact the clinic could message them through is marked.

The write (a :class:`~core.plan.ContactWrite` carrying an :class:`~core.plan.OptOutMark`) marks the record with
the relay's contact key and every record people made with the patient's phone number (as people type it:
``+90 532 111 22 33``, ``0532 1112233``…) or e-mail, whatever ``match_by`` says; a record holding another key
is another channel's identity and is left alone. Each gets the mapping's opt-out flag, when
(``<Flag>_At__c``) and the channel (``<Flag>_Channel__c``), named by
:func:`~adapters.salesforce.identity.opt_out_fields`. Nothing new is written when someone exists; a patient with
no record at all gets one (the key and the phone number), so the clinic keeps the STOP.

Two calls: one query, one composite request (a query and an upsert on the key for someone unknown). Both
name the phone and the e-mail in their bodies, never in a URL.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from adapters.base import ContactWrite, Ref
from adapters.salesforce import identity
from adapters.salesforce.soql import _phone_filter, _quote, _select
from core.errors import FatalError

if TYPE_CHECKING:
    from adapters.salesforce.adapter import SalesforceAdapter

log = logging.getLogger("chat2crm.salesforce")

#: subrequests one composite request may hold
COMPOSITE_LIMIT = 25


def targets(write: ContactWrite, rows: list[dict[str, Any]]) -> list[str]:
    """The ids of the records to mark among the query's rows: the key's, then those people made (no key) with
    the patient's phone number or e-mail."""
    key, value = write.key_property, write.key_value.casefold()
    own = [str(r["Id"]) for r in rows if str(r.get(key) or "").casefold() == value]
    made = [str(r["Id"]) for r in rows if not r.get(key) and (
        identity.has_number(r, write.phone) or identity.same_email(r, write.email))]
    return list(dict.fromkeys(own + made))


def marks(write: ContactWrite, *, companions: bool = True) -> dict[str, Any]:
    """The fields an opt-out writes: the write's own, the flag and (unless ``companions`` is False) when and
    on which channel."""
    mark = write.opt_out
    assert mark is not None
    out: dict[str, Any] = {**write.properties, mark.property: mark.value}
    if companions:
        at_field, channel_field = identity.opt_out_fields(mark.property)
        out |= {at_field: mark.at.isoformat(), channel_field: mark.channel}
    return out


def record_opt_out(adapter: SalesforceAdapter, write: ContactWrite) -> Ref:
    """Mark every record of the patient as opted out (see the module); the first one marked, or the one made."""
    where = [f"{write.key_property} = {_quote(write.key_value)}"]
    if write.phone:
        where.append(_phone_filter(write.phone))
    if write.email:
        where.append(f"Email = {_quote(write.email)}")
    fields = ["Id", write.key_property, "Phone", "MobilePhone", "Email"]
    rows = adapter._soql("opt_out_find", _select(fields, write.object, " OR ".join(where), 200))
    found = targets(write, rows)
    if not found:
        return _opt_out_new(adapter, write)
    try:
        _mark(adapter, write, found, marks(write))
    except FatalError as exc:
        if not _missing_companion(exc, write):
            raise
        log.warning("a field chat2crm writes is missing: run `chat2crm crm setup`", extra={"field": exc.field})
        _mark(adapter, write, found, marks(write, companions=False))
    by_key = any(str(r.get(write.key_property) or "").casefold() == write.key_value.casefold() for r in rows)
    log.info("opt-out recorded", extra={"records": len(found), "by_key": by_key})
    return Ref(object=write.object, id=found[0], created=False)


def _mark(adapter: SalesforceAdapter, write: ContactWrite, found: list[str], body: dict[str, Any]) -> None:
    """Update the records by id, in composite requests of at most 25 (one, almost always)."""
    prefix = adapter._version_path(f"sobjects/{write.object}")
    for start in range(0, len(found), COMPOSITE_LIMIT):
        subs = [{"method": "PATCH", "url": f"{prefix}/{record_id}", "referenceId": f"m{i}", "body": dict(body)}
                for i, record_id in enumerate(found[start:start + COMPOSITE_LIMIT])]
        response = adapter._call("opt_out", "POST", "composite", json={"allOrNone": False, "compositeRequest": subs},
                                 headers={"Sforce-Auto-Assign": "FALSE"})
        for sub in response["compositeResponse"]:
            if int(sub["httpStatusCode"]) >= 300:
                raise adapter._map(int(sub["httpStatusCode"]), sub["body"], "opt_out")


def _opt_out_new(adapter: SalesforceAdapter, write: ContactWrite) -> Ref:
    """No record of the patient: one made on the key with their number, marked (a Lead also needs a name and a
    company, which the patient never gave: the placeholders)."""
    body = {**marks(write), "LastName": identity.NO_COMPANY}
    if write.phone:
        body["Phone"] = write.phone
    if write.object == "Lead":
        body["Company"] = identity.NO_COMPANY
    path = f"sobjects/{write.object}/{write.key_property}/{quote(write.key_value, safe='')}"
    try:
        result = adapter._one("opt_out_create", "PATCH", path, body=body, headers={"Sforce-Auto-Assign": "FALSE"})
    except FatalError as exc:
        if not _missing_companion(exc, write):
            raise
        log.warning("a field chat2crm writes is missing: run `chat2crm crm setup`", extra={"field": exc.field})
        companions = identity.opt_out_fields(write.opt_out.property) if write.opt_out else ()
        result = adapter._one("opt_out_create", "PATCH", path, body={
            k: v for k, v in body.items() if k not in companions}, headers={"Sforce-Auto-Assign": "FALSE"})
    log.info("opt-out recorded on a new record")
    return Ref(object=write.object, id=str((result or {}).get("id")), created=bool((result or {}).get("created")))


def _missing_companion(exc: FatalError, write: ContactWrite) -> bool:
    """Whether Salesforce refused one of the opt-out's companions as a field it does not have."""
    if write.opt_out is None:
        return False
    names = identity.opt_out_fields(write.opt_out.property)
    return exc.field in names or any(re.search(rf"\b{re.escape(n)}\b", exc.message) for n in names)
