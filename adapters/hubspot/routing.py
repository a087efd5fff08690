"""Assigning a HubSpot thread the relay opened to the contact's owner, where HubSpot's inbox did not.

Agents work the threads assigned to them. HubSpot's inbox assigns a new thread to the contact's owner itself
when its admin set up that routing rule; a help desk, an inbox without the rule, or a contact who had no owner
yet when the thread opened leaves the thread unassigned. So after the relay's first publish into a thread
(:meth:`ThreadRouter.opened`), when the ``route_to_owner`` option is on:

1. ``GET /conversations/v3/conversations/threads/{threadId}``: assigned already (the inbox routed it): done;
2. ``GET /crm/v3/objects/contacts/{contactId}?properties=hubspot_owner_id``: no owner: done for now;
3. ``GET /crm/v3/owners/{ownerId}``: the owner's HubSpot user (``userId``; a deactivated user has none);
4. ``PUT /conversations/conversations/2026-09-beta/threads/{threadId}/assignee`` with
   ``{"actorId": "A-{userId}"}``.

What was found is kept per thread (:data:`~adapters.hubspot.keys.ROUTED_THREADS`), so the thread's later
messages cost no call. A thread with no owner, or whose assignment was refused (the owner's user deactivated,
the owner removed), is looked at again an hour later, on its next message: a coordinator may have set or
changed the owner since. A failure for now (429, 5xx, a time-out) is not kept: the next message tries again.
Nothing here fails the publish.

Steps 3 and 4 need the app's optional scopes ``crm.objects.owners.read`` and ``conversations.write``. An
install without them (the portal's tier or the installer's permissions did not grant them) skips the routing
without a call, with one warning per process naming the missing scope; where the stored tokens do not say what
was granted, the first call HubSpot refuses for want of a scope tells, and the process stops trying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from adapters.hubspot.keys import ROUTED_THREADS
from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.tokens import TokenStore
from core.errors import AuthError, Chat2CrmError, FatalError, SyncError

log = logging.getLogger("chat2crm.hubspot.routing")

#: assigning a thread (HubSpot: every conversations endpoint but the reads needs it)
ASSIGN_SCOPE = "conversations.write"
#: reading an owner's user
OWNERS_SCOPE = "crm.objects.owners.read"
#: what routing needs beyond the app's required scopes (asked for as optional scopes)
SCOPES = (OWNERS_SCOPE, ASSIGN_SCOPE)
ASSIGNEE_PATH = "/conversations/conversations/2026-09-beta/threads/{thread}/assignee"
#: how long a thread with no owner (or a refused assignment) waits before it is looked at again (seconds)
RECHECK_SECONDS = 3600.0
#: the category of HubSpot's 403 for a token without the call's scope
MISSING_SCOPES = "MISSING_SCOPES"

Outcome = Literal["known", "inbox", "assigned", "no-owner", "refused", "no-scope", "failed", "off"]


class _MissingScope(Exception):
    """HubSpot refused a call for want of ``scope``."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


class _Refused(Exception):
    """The thread cannot be assigned to its contact's owner (``reason``: a word for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ThreadRouter:
    """Assigns the threads the relay opens to their contact's owner, once per thread.

    Args:
        rest: the app's REST session (its OAuth token).
        store: the installation (the token's granted scopes; the Redis the per-thread marks live in).
        hint: where the admin installs the app again (named in the missing scope's warning).
    """

    def __init__(self, rest: HubSpotRest, store: TokenStore, *, hint: Callable[[], str]) -> None:
        self.rest = rest
        self.store = store
        self.hint = hint
        #: how long a ``no-owner`` or ``refused`` mark lasts (seconds; tests shorten it)
        self.recheck_seconds = RECHECK_SECONDS
        #: the scopes already warned about by this process
        self._warned: set[str] = set()
        #: the scopes HubSpot refused a call for, when the install's grant is not known (stored tokens name none)
        self._refused_scopes: set[str] = set()

    def opened(self, thread: str, contact_id: str | None) -> Outcome:
        """Route ``thread`` (HubSpot's thread id) after a publish into it, unless it was routed already.

        ``contact_id`` is the contact the message was associated with (used when the thread names none).
        Raises nothing for what HubSpot answers (every refusal or failure is logged and answered as an outcome);
        only an unreachable Redis raises, as it fails the rest of the publish's job.
        """
        redis = self.store.redis
        if redis is None or not thread.isdigit():
            return "off"  # no place to remember the thread (every message would cost calls), or not a thread id
        key = ROUTED_THREADS.key(thread)
        if redis.exists(key):
            return "known"
        missing = self._missing_scopes()
        if missing:
            self._warn_scope(missing[0])
            return "no-scope"
        reason = ""
        try:
            outcome = self._route(thread, contact_id)
        except _MissingScope as exc:
            self._refused_scopes.add(exc.scope)  # not tried again by this process (unless the grant becomes known)
            self._warn_scope(exc.scope)
            return "no-scope"
        except _Refused as exc:
            outcome, reason = "refused", exc.reason
        except AuthError as exc:
            # the app's own access (an expired install): nothing is known of the thread; the publish says the rest
            log.warning("hubspot thread not routed: the app's access was refused",
                        extra={"hubspot_thread": int(thread), "status": exc.details.get("status")})
            return "failed"
        except FatalError as exc:
            outcome, reason = "refused", f"{exc.details.get('status')} {exc.details.get('code') or ''}".strip()
        except SyncError as exc:
            log.warning("hubspot thread not routed yet: HubSpot did not answer; the next message tries again",
                        extra={"hubspot_thread": int(thread), "status": exc.details.get("status")})
            return "failed"
        if outcome in ("no-owner", "refused"):
            redis.set(key, outcome, px=max(1, int(self.recheck_seconds * 1000)))
        else:
            redis.set(key, outcome, ex=int(ROUTED_THREADS.ttl))  # type: ignore[arg-type]
        if outcome == "refused":
            log.warning("hubspot thread not assigned to the contact's owner", extra={"hubspot_thread": int(thread),
                                                                                      "reason": reason})
        else:
            log.info("hubspot thread routed", extra={"hubspot_thread": int(thread), "outcome": outcome})
        return outcome

    # -- the calls -------------------------------------------------------------------------------
    def _route(self, thread: str, contact_id: str | None) -> Outcome:
        """Steps 1 to 4 of the module's list.

        Raises:
            _MissingScope: a call was refused for want of a scope.
            _Refused: the owner cannot be assigned.
            SyncError: any other failure of a call.
        """
        found = self._send("conversations.read", "thread_read", "GET",
                           f"/conversations/v3/conversations/threads/{thread}")
        if found.get("assignedTo"):
            return "inbox"
        contact = str(found.get("associatedContactId") or contact_id or "")
        if not contact.isdigit():
            return "no-owner"
        record = self._send("crm.objects.contacts.read", "contact_owner_read", "GET",
                            f"/crm/v3/objects/contacts/{contact}", params={"properties": "hubspot_owner_id"})
        owner = str((record.get("properties") or {}).get("hubspot_owner_id") or "")
        if not owner:
            return "no-owner"
        if not owner.isdigit():
            raise _Refused("owner id not numeric")
        try:
            user = self._send(OWNERS_SCOPE, "owner_read", "GET", f"/crm/v3/owners/{owner}").get("userId")
        except FatalError as exc:
            if exc.details.get("status") == 404:
                raise _Refused("owner not found (removed or deactivated)") from None
            raise
        if not user:
            raise _Refused("owner's user deactivated")
        self._send(ASSIGN_SCOPE, "thread_assign", "PUT", ASSIGNEE_PATH.format(thread=thread),
                   json_body={"actorId": f"A-{user}"})
        return "assigned"

    def _send(self, scope: str, operation: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call; a refusal for want of ``scope`` is :class:`_MissingScope`."""
        try:
            answer = self.rest.send(operation, method, path, **kwargs)
        except AuthError as exc:
            if exc.details.get("code") == MISSING_SCOPES:
                raise _MissingScope(scope) from None
            raise
        return answer if isinstance(answer, dict) else {}

    # -- scopes ----------------------------------------------------------------------------------
    def _missing_scopes(self) -> list[str]:
        """The routing's scopes the install was not granted: as the stored tokens name them, else those HubSpot
        refused a call for in this process (none yet: the calls tell)."""
        try:
            tokens = self.store.load()
        except Chat2CrmError:
            tokens = None  # the publish has just used the tokens; if they went bad since, the calls say so
        if tokens is None or not tokens.scopes:
            return sorted(self._refused_scopes)
        return [s for s in SCOPES if s not in tokens.scopes]

    def _warn_scope(self, scope: str) -> None:
        if scope in self._warned:
            return
        self._warned.add(scope)
        log.warning(f"hubspot: threads are not assigned to their contact's owner: the app was not granted the optional "
                    f"scope {scope}; once the portal allows it, {self.hint()}", extra={"scope": scope})
