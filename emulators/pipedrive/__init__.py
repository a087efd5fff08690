"""An emulator of the Pipedrive REST API (v2 persons, organizations, deals, activities, fields,
pipelines and stages (read and added), search; v1 leads, lead labels, notes, users).

State is kept in memory like the real company account: persons, organizations, leads, deals,
notes, activities, lead labels, person and deal fields (custom fields get Pipedrive's generated
40-character keys), pipelines and stages, users. Answers use Pipedrive's envelopes
(``{"success": true, "data": ..., "additional_data": ...}``) and its error shape
(``{"success": false, "error": ..., "error_info": ..., "data": null, "additional_data": null}``);
401 for a bad token (``x-api-token`` header or ``Authorization: Bearer``), 404 for unknown ids,
400 for invalid values (unknown custom field keys, option ids that are not options), 429 with
``x-ratelimit-limit``, ``x-ratelimit-remaining``, ``x-ratelimit-reset`` and ``Retry-After``.

Every request is checked against Pipedrive's own OpenAPI files (:mod:`emulators.pipedrive.openapi`):
a request they reject is recorded in :attr:`PipedriveEmulator.violations` and answered 400 the
way Pipedrive does. Limits, when asked: ``rate_limit=(requests, seconds)`` is the burst limit per
token (Pipedrive's 2-second window), ``daily_tokens=N`` the company's daily token budget, each
call costing the operation's ``x-token-cost`` from the description.

Search lags behind writes, as Pipedrive's does: with ``search_lag`` set, a person, organization, lead
or deal created, changed or deleted shows so in the ``/search`` endpoints only that many seconds
later. Reads by id and the list endpoints (``GET /api/v2/persons?updated_since=``,
``/v1/leads?person_id=``, ``/v1/notes?lead_id=``…) are current at once.

Faults (``fail_next(count, kind)`` or at random with ``fault_rate``): ``400``, ``401``, ``403``,
``404``, ``409``, ``429``, ``500``, ``502``, ``503``, ``timeout`` (the answer comes after
``timeout_seconds``), and ``daily`` (429 for an exhausted daily budget).

The app installed by OAuth (:mod:`~emulators.pipedrive.oauth`): the consent page, the token endpoint,
access tokens that expire, and each operation's OAuth scopes checked (403 ``Scope and URL mismatch``).
Files are uploaded and downloaded, and a record's permitted users follow its visibility
(:mod:`~emulators.pipedrive.files`). ``GET /_emulator/ui/<resource>/<id>?user=<userId>`` is Pipedrive's
web app hosting the app's custom panel: the detail view, the panel's iframe with its signed token, and the
host's half of the App Extensions SDK's postMessage protocol (:mod:`~emulators.pipedrive.ui`).

Webhooks v2 (:mod:`~emulators.pipedrive.webhooks`): ``GET|POST /v1/webhooks``, ``DELETE /v1/webhooks/{id}``, and
the notifications a create, change or delete of a person, deal or lead sends (``change_source`` ``api`` for the
API's writes, ``app`` for a person's edit in the web app, ``POST /_emulator/edit/<kind>/<id>``), with Basic
authentication and retries.

Control endpoints (JSON): ``GET /_emulator/view`` (the account as an agent sees it, fields by their labels:
:mod:`~emulators.pipedrive.view`),
``GET /_emulator/calls`` (the last 200 calls), ``GET /_emulator/objects/<kind>``, ``POST
/_emulator/oauth/expire`` (every access token issued so far expires).

The package's modules: :mod:`~emulators.pipedrive.openapi` (requests checked against Pipedrive's
OpenAPI files), :mod:`~emulators.pipedrive.routes` (the operations emulated),
:mod:`~emulators.pipedrive.state` (the account's state and what the operations share),
:mod:`~emulators.pipedrive.people`, :mod:`~emulators.pipedrive.sales` and
:mod:`~emulators.pipedrive.files` (the operations), :mod:`~emulators.pipedrive.oauth` (the app's install
and credentials), :mod:`~emulators.pipedrive.ui` (the panel's host), :mod:`~emulators.pipedrive.view` (the
agent's view), and
:mod:`~emulators.pipedrive.emulator` (:class:`PipedriveEmulator`, its request pipeline and Flask app).
"""

from __future__ import annotations

from emulators.pipedrive.emulator import PipedriveEmulator, create_app
from emulators.pipedrive.routes import ROUTES, route
from emulators.pipedrive.state import DEAL_FIELDS, ERROR_INFO, KINDS, LABEL_COLORS, PERSON_FIELDS

__all__ = [
    "DEAL_FIELDS",
    "ERROR_INFO",
    "KINDS",
    "LABEL_COLORS",
    "PERSON_FIELDS",
    "ROUTES",
    "PipedriveEmulator",
    "create_app",
    "route",
]
