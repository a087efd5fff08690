"""Opt-outs in Pipedrive: a patient's STOP recorded on every person the clinic could message.

A contact write carrying :class:`~core.plan.OptOutMark` marks the person with the relay's contact key and
every person people made with the patient's phone number (as people type it) or e-mail, whatever
``match_by`` says: the mapping's flag, when (``<flag>_at``, UTC, ISO 8601: Pipedrive has no date-and-time
field type) and the channel (``<flag>_channel``). A person that carries another contact key is that
channel's identity of someone, and is left alone. A new person is made only when there is none at all, so
the clinic keeps the number's STOP.
"""

from __future__ import annotations

import logging
from datetime import UTC

from adapters.base import ContactWrite, Ref
from adapters.pipedrive.keys import digest as _digest
from adapters.pipedrive.organizations import PipedriveOrganizations
from core.plan import opt_out_companions

log = logging.getLogger("chat2crm.pipedrive")


class PipedriveOptOuts(PipedriveOrganizations):
    """The person write that records an opt-out instead of a lead's contact."""

    def _contact(self, write: ContactWrite) -> Ref:
        if write.opt_out is not None:
            return self._opt_out(write)
        return super()._contact(write)

    def _opt_out(self, write: ContactWrite) -> Ref:
        """Mark the key's person and the persons people made with the patient's number or e-mail; with none, make
        one (the key, the number, the marks). One PATCH per person: Pipedrive has no batch update of persons."""
        mark = write.opt_out
        assert mark is not None
        at_field, channel_field = opt_out_companions(mark.property)
        _, flag = self._split("person", {**write.properties, mark.property: mark.value})
        marks = {**flag, **self._optional_fields({at_field: mark.at.astimezone(UTC).isoformat(),
                                                  channel_field: mark.channel})}
        key_field = self._field("person", write.key_property)["key"]
        with self._exclusive("person:" + _digest(write.key_value)):
            own = self._cached_contact(write.key_value)[0]
            if own is None:
                found = self._person_by_key(write.key_property, write.key_value)
                own = str(found["id"]) if found else None
            others = list(dict.fromkeys((self._by_phone(write.phone) if write.phone else [])
                                        + (self._by_email(write.email) if write.email else [])))
            targets = [str(p["id"]) for p in self._persons(list(dict.fromkeys(([own] if own else []) + others)))
                       if str(p["id"]) == own
                       or (p.get("custom_fields") or {}).get(key_field) in (None, "", write.key_value)]
            if not targets:
                body = {"name": write.phone or write.key_value.split(":", 1)[-1],
                        "custom_fields": {**marks, key_field: write.key_value}}
                if write.phone:
                    body["phones"] = [{"value": write.phone, "primary": True, "label": "mobile"}]
                person_id = self._create_once("contact", (write.key_value,), "person_create", "/api/v2/persons", body,
                                              kept=lambda new: f"{new}|opted-out|")
                log.info("opt-out recorded on a new person", extra={"person_id": person_id})
                return Ref(object=write.object, id=person_id, created=True)
            for person_id in targets:
                self._call("person_update", "PATCH", f"/api/v2/persons/{person_id}", body={"custom_fields": marks})
            log.info("opt-out recorded", extra={"persons": len(targets), "by_key": own in targets})
            return Ref(object=write.object, id=own if own in targets else targets[0])
