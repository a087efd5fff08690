"""An emulator of a Salesforce org's REST API and OAuth 2.0 token endpoint, served over HTTPS.

It keeps sObjects (Lead, Contact, Account, Case, Opportunity, Task, Note, Campaign,
CampaignMember, User, ContentVersion, ContentDocument, ContentDocumentLink, PermissionSet,
PermissionSetAssignment, and, once the chat2crm package is installed, ``Chat2CRM_Message__c``) in
memory with their fields as ``describe`` reports them, and answers the REST calls the relay makes,
with Salesforce's response and error shapes (``[{"message", "errorCode", "fields"}]``):

- ``POST /services/oauth2/token``: client credentials (the client's id and secret in the form or,
  as simple-salesforce sends them, in HTTP Basic authentication), JWT bearer (the assertion's RS256
  signature is verified against the public key the emulator is given) and username-password
  grants; errors as ``{"error", "error_description"}``;
- ``GET /services/data/`` (versions), ``/limits``, ``/sobjects/<X>/describe``;
- create (``POST /sobjects/<X>``), rows (``GET|PATCH|DELETE /sobjects/<X>/<id>``), rows by
  external ID (``PATCH`` upsert: 201 ``created: true``, 200 ``created: false`` from v46.0, 300
  on several matches), ``GET /query?q=`` (a SOQL subset with parent-child subqueries),
  ``POST /composite`` (subrequests with ``@{ref.field}`` references, ``allOrNone``),
  ``DELETE /composite/sobjects?ids=``, and ``POST /tooling/sobjects/CustomField``; a lookup set by the
  parent's External ID (``"Case__r": {"Ref__c": "1042"}``), parent fields in SOQL
  (``ContentDocument.Title``), and a file's bytes (``GET /sobjects/ContentVersion/<id>/VersionData``).
- ``POST /services/Soap/m/<version>``: the Metadata API's ``readMetadata`` and ``updateMetadata`` of the
  ``StandardValueSet`` of Lead Status, Case Status and Opportunity Stage (SOAP faults and ``SaveResult`` errors
  as Salesforce answers them).

Change Data Capture events of the selected objects (the package's message object) are served by a real
Pub/Sub API over gRPC (:mod:`~emulators.salesforce.pubsub_server`, started beside the HTTPS server).

Every request is checked against :mod:`emulators.salesforce.contract` (written from Salesforce's
documentation and its Postman request skeletons); what Salesforce would refuse is answered as it
would and recorded in ``violations``. Every response carries ``Sforce-Limit-Info:
api-usage=N/M``; past the daily limit (``daily_limit``) or a rolling ``rate_limit`` the org
answers 403 ``REQUEST_LIMIT_EXCEEDED``. The ``Sforce-Auto-Assign`` header of every call is
recorded in ``calls``; a Lead or Case created (or updated) with assignment on gets the owner of the
active assignment rule. The standard duplicate rules run on Lead and Contact saves: with the
default "Allow, alert" action an API save of a match is refused (``DUPLICATES_DETECTED``) unless it
sends ``Sforce-Duplicate-Rule-Header: allowSave=true``.

Fault kinds for :meth:`SalesforceEmulator.fail_next`: ``400``, ``401`` (the credentials are
revoked: this call and the next token grant fail), ``404``, ``409``, ``429`` (Salesforce's
concurrent-request limit: 403 ``REQUEST_LIMIT_EXCEEDED``), ``500``, ``502``, ``503``,
``timeout`` (the call is held ``timeout_seconds``, past the client's timeout, and then carried out, as
Salesforce finishes a request whose client gave up), and ``expired`` (the session expires: 401
``INVALID_SESSION_ID``, a new token works),
``limit`` (the daily API request limit: 403 ``REQUEST_LIMIT_EXCEEDED``), ``duplicates`` (a
duplicate rule blocks the next create or upsert: ``DUPLICATES_DETECTED``, inside a composite
too).

Control endpoints (JSON): ``GET /_emulator/view`` (the org as an agent sees it),
``GET /_emulator/calls``, ``GET /_emulator/objects/<X>``; for the package's agents
``GET /_emulator/chat2crm/messages/<record>``, ``POST /_emulator/chat2crm/reply`` (``record``, ``text``,
``files``: an agent's reply as the package's component writes it) and ``POST /_emulator/chat2crm/close``;
``GET /_emulator/changes?channel=…`` and ``POST /_emulator/changes/purge`` (the event bus).

The package's modules, from the bottom up (each layer's class builds on the ones below it):

- :mod:`~emulators.salesforce.common`: the org's ids, record ids, credentials, the error answer;
- :mod:`~emulators.salesforce.contract` (with :mod:`~emulators.salesforce.schema` and
  :mod:`~emulators.salesforce.soql`): what Salesforce accepts;
- :mod:`~emulators.salesforce.state`: records and what a save does (duplicate, assignment and
  uniqueness rules, cascading deletes);
- :mod:`~emulators.salesforce.files`, :mod:`~emulators.salesforce.changes` and
  :mod:`~emulators.salesforce.package`: Salesforce Files (versions, documents, links, their bytes), Change
  Data Capture (change events of the selected objects, Avro-encoded, with replay ids), and the chat2crm
  package (its message object, permission sets, and agents replying and closing conversations);
- :mod:`~emulators.salesforce.queries`: SOQL run against the records;
- :mod:`~emulators.salesforce.resources`: describe, rows, upserts, collections, Tooling API;
- :mod:`~emulators.salesforce.rest`: routing of REST requests and composite requests;
- :mod:`~emulators.salesforce.auth`: the token endpoint and the session check;
- :mod:`~emulators.salesforce.metadata_api`: the Metadata API (SOAP): ``readMetadata`` and ``updateMetadata`` of
  the standard value sets behind Lead Status, Case Status and Opportunity Stage;
- :mod:`~emulators.salesforce.emulator`: :class:`SalesforceEmulator`, its request pipeline and Flask app;
- :mod:`~emulators.salesforce.tls`: the local certificate authority it is served with;
- :mod:`~emulators.salesforce.pubsub_server`: the Pub/Sub API (gRPC, TLS) serving the change events.
"""

from __future__ import annotations

from emulators.salesforce.common import (
    API_USER_ID,
    ASSIGNMENT_RULE_ID,
    COORDINATOR_ID,
    ORG_ID,
    SalesforceCredentials,
    sf_id,
)
from emulators.salesforce.emulator import SalesforceEmulator, create_app
from emulators.salesforce.soql import Query
from emulators.salesforce.tls import LocalTLS, make_test_tls

__all__ = [
    "API_USER_ID",
    "ASSIGNMENT_RULE_ID",
    "COORDINATOR_ID",
    "ORG_ID",
    "LocalTLS",
    "Query",
    "SalesforceCredentials",
    "SalesforceEmulator",
    "create_app",
    "make_test_tls",
    "sf_id",
]
