"""The base every part of the HubSpot adapter builds on: the one call path, the create that is marked
pending in the id cache until its id is known, the associations (made on create, read back to find a
create whose answer was lost), and the string form HubSpot wants for property values.

Contacts, records and the schema are separate mixins (:mod:`adapters.hubspot.contacts`,
:mod:`~adapters.hubspot.records`, :mod:`~adapters.hubspot.schema`); they all need these, so they live
in one class below them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adapters.base import AdapterCredentials, AdapterOptions, CRMAdapter, Ref
from adapters.hubspot.options import HubSpotOptions
from adapters.hubspot.session import HubSpotSession
from core.errors import FatalError, RetryableError

if TYPE_CHECKING:
    from redis import Redis

#: (from object, to object) → HUBSPOT_DEFINED association type id
ASSOCIATIONS = {("deals", "contacts"): 3, ("tickets", "contacts"): 16, ("leads", "contacts"): 578,
                ("companies", "contacts"): 280, ("deals", "companies"): 341, ("tickets", "companies"): 339,
                ("notes", "contacts"): 202, ("notes", "deals"): 214, ("notes", "tickets"): 228, ("notes", "leads"): 854,
                ("tasks", "contacts"): 204, ("tasks", "deals"): 216, ("tasks", "tickets"): 230, ("tasks", "leads"): 646}


class HubSpotBase(CRMAdapter):
    """What every part of the HubSpot adapter uses: the session and client, pending creates, associations."""

    options: HubSpotOptions
    session: HubSpotSession

    def __init__(self, credentials: AdapterCredentials, *, options: AdapterOptions | dict[str, Any] | None = None,
                 redis: Redis | None = None) -> None:
        super().__init__(credentials, options=options, redis=redis)
        self.session = HubSpotSession(self.credentials, self.options, redis)  # type: ignore[arg-type]
        self.client = self.session.client

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.session.request(operation, fn, *args, **kwargs)

    # -- pending creates and associations ------------------------------------------------------
    def _create_once(self, kind: str, key: str, operation: str, obj: str, body: Any) -> str:
        """Create one object, its create marked pending in the id cache until its id is known there: a create
        HubSpot refused is unmarked (nothing was written); one with no answer stays pending for the retry."""
        self.cache.mark_pending(kind, key)
        try:
            created = self._call(operation, self.client.crm.objects.basic_api.create, obj, body)
        except (FatalError, RetryableError) as exc:
            if isinstance(exc, FatalError) or exc.details.get("status") == 429:
                self.cache.drop(kind, key)
            raise
        self.cache.set(kind, str(created.id), key)
        return str(created.id)

    def _associated(self, kind: str, holder: Ref, prop: str, wanted: Callable[[str], bool]) -> str | None:
        """The id of the ``kind`` object associated with ``holder`` whose ``prop`` is ``wanted``: the v4
        associations read, then a batch read of those objects by id (both strongly consistent)."""
        found = self._all_associated(kind, holder, prop, wanted, first_only=True)
        return found[0] if found else None

    def _all_associated(self, kind: str, holder: Ref, prop: str, wanted: Callable[[str], bool], *,
                        first_only: bool = False) -> list[str]:
        """Every id (or, with ``first_only``, the first) of the ``kind`` objects associated with ``holder``
        whose ``prop`` is ``wanted``, in HubSpot's order."""
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId

        ids: list[str] = []
        after: str | None = None
        while True:
            page = self._call(f"{kind}_associations", self.client.crm.associations.v4.basic_api.get_page,
                              holder.object, holder.id, kind, limit=500, **({"after": after} if after else {}))
            ids += [str(row.to_object_id) for row in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        matches: list[str] = []
        for start in range(0, len(ids), 100):
            batch = self._call(f"{kind}_read", self.client.crm.objects.batch_api.read, kind,
                               BatchReadInputSimplePublicObjectId(inputs=[{"id": i} for i in ids[start:start + 100]],
                                                                  properties=[prop], properties_with_history=[]))
            matches += [str(row.id) for row in batch.results or [] if wanted(str((row.properties or {}).get(prop) or ""))]
            if matches and first_only:
                break
        return matches

    def _associate_default(self, holder: Ref, to: Ref) -> None:
        """Associate two records by HubSpot's default (unlabelled) type: the v4 PUT, which changes nothing when
        they are associated already."""
        self._call(f"{holder.object}_{to.object}_association", self.client.crm.associations.v4.basic_api.create_default,
                   holder.object, holder.id, to.object, to.id)

    def _assoc(self, from_type: str, to: Ref) -> dict[str, Any]:
        type_id = ASSOCIATIONS.get((from_type, to.object))
        if type_id is None:
            raise FatalError(f"hubspot: no association from {from_type} to {to.object}", field="record.object")
        return {"to": {"id": to.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def text(value: Any) -> str:
    """HubSpot property values are strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
