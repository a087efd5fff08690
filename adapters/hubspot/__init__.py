"""The HubSpot adapter, on the official ``hubspot-api-client``.

Calls for a new lead with a note: 3 (the contact batch-upserted on the unique contact-key property;
the deal created with its association to the contact; the note created with associations to
both). A returning patient costs the same 3. A replayed job: the deal's id comes from the id cache
(or HubSpot's 409 on the unique reference), so it is updated, and the note is not written twice (its
id is in the cache).

Every "did this write already happen?" decision is a strongly consistent read. HubSpot's CRM search
is eventually consistent (a record appears in search seconds after it is written), so it decides
nothing of the kind: the contact and the deal are written on unique properties (an upsert, a 409
naming the existing id); a note or task whose create went unanswered (a time-out, a killed worker)
is looked for among the record's associated notes (the v4 associations read, then a batch read by
id) before it is written again. Search serves one purpose only: finding a contact a person made by
hand, by phone (``match_by: [phone]``).

Every call goes through :class:`HubSpotSession`: the official client built with the session's
settings, the shared Redis rate limiter (HubSpot's ten-second budget is per account), the
timeouts, call counting and metrics, and HubSpot's error table.

The package's modules, by concern: :mod:`~adapters.hubspot.options` (options and credentials),
:mod:`~adapters.hubspot.keys` (Redis key families), :mod:`~adapters.hubspot.session` (the session,
error table and conflict error), :mod:`~adapters.hubspot.common` (the base: calls, pending creates,
associations), :mod:`~adapters.hubspot.contacts` (contacts and companies),
:mod:`~adapters.hubspot.records` (records, tags, notes, tasks), :mod:`~adapters.hubspot.schema`
(diagnosis and set-up) and :mod:`~adapters.hubspot.adapter` (the class, the sync and the erasure).

The conversation after the bot (agents answering from HubSpot): :mod:`~adapters.hubspot.app` (which inbox
the account gets, and its set-up), :mod:`~adapters.hubspot.inbox` (the custom channel in the conversations
inbox), :mod:`~adapters.hubspot.timeline` (notes and a reply property, for tiers without custom channels),
:mod:`~adapters.hubspot.channel_setup` (the channel and its account), :mod:`~adapters.hubspot.oauth` and
:mod:`~adapters.hubspot.tokens` (the app's installation, its tokens kept encrypted),
:mod:`~adapters.hubspot.rest` (the REST calls the official client does not cover),
:mod:`~adapters.hubspot.files` (patients' and agents' files), :mod:`~adapters.hubspot.routing` (a new thread
assigned to the contact's owner) and :mod:`~adapters.hubspot.signature` (HubSpot's v3 webhook signature).

Contacts that must never be corrupted: :mod:`~adapters.hubspot.identity` (which identifier wins, and what is flagged
when an e-mail belongs to another contact) and :mod:`~adapters.hubspot.companies` (companies associated with the
contact and the deal).
"""

from adapters.hubspot.adapter import HubSpotAdapter
from adapters.hubspot.common import ASSOCIATIONS
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.session import ConflictError, HubSpotSession

__all__ = ["ASSOCIATIONS", "ConflictError", "HubSpotAdapter", "HubSpotCredentials", "HubSpotOptions", "HubSpotSession"]
