"""An emulator of the HubSpot CRM API (v3 objects, batch reads, updates and upserts, search, properties,
pipelines and their stages, owners; v4 association reads and default associations).

It keeps objects, property definitions (types, options, unique values), associations, pipelines
and owners in memory and answers with HubSpot's response and error shapes: 409 ``CONFLICT`` with
``Existing ID`` on a duplicate unique value (a contact's e-mail, compared without case, on create, update,
batch update and batch upsert: ``Contact already exists. Existing ID: …``), 400 ``VALIDATION_ERROR`` for
properties that do not exist, options that are not allowed or calculated properties (``READ_ONLY_VALUE``:
``hs_searchable_calculated_phone_number`` and the mobile one, which it calculates from ``phone`` and
``mobilephone`` for search), 401 for a bad token, 404 for unknown objects, 429 with the
``X-HubSpot-RateLimit-*`` headers when a rate limit is set. Every request body is checked by
building the request model of ``hubspot-api-client`` (generated from HubSpot's own API
description) from it: unknown keys, missing required fields, wrong types and non-string property
values are rejected as HubSpot would. Pipelines (:mod:`~emulators.hubspot.pipelines`) are created with
generated ids, a deal stage needs ``metadata.probability``, a ticket stage's ``ticketState`` is ``OPEN`` or
``CLOSED``, stage labels are unique within a pipeline, and a record's stage must be one of its pipeline's.
Latency and faults can be injected.

Search is eventually consistent, as HubSpot's is: with ``search_lag`` set, a write (create, update,
archive) shows in ``POST /crm/v3/objects/<type>/search`` only that many seconds later (the object as
it was then, or not at all); reads by id, batch reads and association reads are current at once.

The conversations inbox (the app installed by OAuth; agents answer patients from HubSpot's inbox):

- **OAuth** (:mod:`~emulators.hubspot.oauth`): ``GET /oauth/authorize`` (the emulator plays the admin and
  redirects at once with a code), ``POST /oauth/v1/token`` (also ``/oauth/v3/token``,
  ``/oauth/2026-03/token``; codes and refreshes, HubSpot's error bodies), ``GET
  /oauth/v1/access-tokens/{token}``, ``GET``/``DELETE /oauth/v1/refresh-tokens/{token}``. Access tokens
  expire (``EXPIRED_AUTHENTICATION``); the private app token keeps working for CRM routes.
- **Custom channels** (:mod:`~emulators.hubspot.channels`, v3 and ``2026-03`` paths): channels (developer
  API key), channel accounts, publishing messages (threads by ``integrationThreadId``, idempotency,
  contact association, file attachments), message status updates.
- **Conversations** (:mod:`~emulators.hubspot.threads`): inboxes, threads and their messages; a thread
  opens routed to the contact's owner; ``PATCH`` closes or reopens it.
- **Files** (:mod:`~emulators.hubspot.files`): upload, read, signed URLs and the bytes behind them.
- **Webhooks** (:mod:`~emulators.hubspot.webhooks`): the app's subscriptions (``/webhooks/v3/{appId}/…``)
  and a channel's ``webhookUrl`` receive HubSpot's events, signed (:mod:`~emulators.hubspot.signature`),
  from a background thread, retried like HubSpot retries; a redelivery fault sends an event twice.
- **Agents** (:mod:`~emulators.hubspot.agents`): replying (``OUTGOING_CHANNEL_MESSAGE_CREATED``), closing a
  thread (``conversation.propertyChange``), editing a contact (``contact.propertyChange``).

Control endpoints (JSON, for tests and the demo page): ``GET /_emulator/objects/<type>``,
``GET /_emulator/calls``, ``GET /_emulator/view`` (fields with their labels, stages by label); ``GET /_emulator/inbox/threads``,
``GET /_emulator/inbox/channels``, ``POST /_emulator/inbox/threads/<threadId>/reply`` (``{"text",
"fileIds"?, "actorId"?}``), ``POST /_emulator/inbox/threads/<threadId>/close``, ``POST
/_emulator/contacts/<contactId>`` (``{"properties"}``), ``POST /_emulator/files`` (multipart ``file``, or
``{"name", "mimeType", "contentBase64"}``), ``POST /_emulator/webhooks/settings`` (``{"targetUrl",
"subscriptions": [{"eventType", "propertyName"?}]}``), ``GET /_emulator/webhooks/deliveries``, ``POST
/_emulator/webhooks/redeliver`` (``{"count"}``), ``POST /_emulator/webhooks/wait`` (``{"timeout"}``),
``POST /_emulator/oauth/expire``.

The package's modules, from the bottom up: :mod:`~emulators.hubspot.models` (request bodies checked
against the client's models), :mod:`~emulators.hubspot.shapes` (the inbox APIs' bodies, written from
HubSpot's reference), :mod:`~emulators.hubspot.signature` (how HubSpot signs what it sends),
:mod:`~emulators.hubspot.state` (the account's state and what every route shares),
:mod:`~emulators.hubspot.pipelines` (the pipelines API), :mod:`~emulators.hubspot.routes` (the CRM API's
routes), then the inbox's layers, each on the one before: ``oauth``, ``files``, ``webhooks``, ``threads``,
``channels``, ``agents``; and :mod:`~emulators.hubspot.emulator` (:class:`HubSpotEmulator` and its Flask app).
"""

from __future__ import annotations

from emulators.hubspot.agents import AgentActionError
from emulators.hubspot.emulator import HubSpotEmulator, create_app
from emulators.hubspot.models import REQUIRED_BY_HUBSPOT, RequestShapeError, check_model
from emulators.hubspot.oauth import APP_SCOPES, OPTIONAL_SCOPES
from emulators.hubspot.state import ASSOCIATION_TYPES, OBJECT_TYPES, Property

__all__ = [
    "APP_SCOPES",
    "ASSOCIATION_TYPES",
    "OBJECT_TYPES",
    "OPTIONAL_SCOPES",
    "REQUIRED_BY_HUBSPOT",
    "AgentActionError",
    "HubSpotEmulator",
    "Property",
    "RequestShapeError",
    "check_model",
    "create_app",
]
