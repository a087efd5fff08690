"""An emulator of the HubSpot CRM API (v3 objects, batch reads and upserts, search, properties,
pipelines, owners; v4 association reads).

It keeps objects, property definitions (types, options, unique values), associations, pipelines
and owners in memory and answers with HubSpot's response and error shapes: 409 ``CONFLICT`` with
``Existing ID`` on a duplicate unique value, 400 ``VALIDATION_ERROR`` for properties that do not
exist or options that are not allowed, 401 for a bad token, 404 for unknown objects, 429 with the
``X-HubSpot-RateLimit-*`` headers when a rate limit is set. Every request body is checked by
building the request model of ``hubspot-api-client`` (generated from HubSpot's own API
description) from it: unknown keys, missing required fields, wrong types and non-string property
values are rejected as HubSpot would. Latency and faults can be injected.

Search is eventually consistent, as HubSpot's is: with ``search_lag`` set, a write (create, update,
archive) shows in ``POST /crm/v3/objects/<type>/search`` only that many seconds later (the object as
it was then, or not at all); reads by id, batch reads and association reads are current at once.

Control endpoints (JSON, for tests and the demo page): ``GET /_emulator/objects/<type>``,
``GET /_emulator/calls``.

The package's modules, from the bottom up: :mod:`~emulators.hubspot.models` (request bodies checked
against the client's models), :mod:`~emulators.hubspot.state` (the account's state and what every
route shares), :mod:`~emulators.hubspot.routes` (the API's routes) and
:mod:`~emulators.hubspot.emulator` (:class:`HubSpotEmulator` and its Flask app).
"""

from __future__ import annotations

from emulators.hubspot.emulator import HubSpotEmulator, create_app
from emulators.hubspot.models import REQUIRED_BY_HUBSPOT, RequestShapeError, check_model
from emulators.hubspot.state import ASSOCIATION_TYPES, OBJECT_TYPES, Property

__all__ = [
    "ASSOCIATION_TYPES",
    "OBJECT_TYPES",
    "REQUIRED_BY_HUBSPOT",
    "HubSpotEmulator",
    "Property",
    "RequestShapeError",
    "check_model",
    "create_app",
]
