"""The Salesforce adapter, on the official ``simple-salesforce`` client.

Calls for a lead: 2 API calls, whatever happens (new lead, returning patient, replay, handoff):

1. one SOQL query on the contact object (Lead, or Contact) that finds the person by the contact
   key (a custom External ID field), then by phone or e-mail (records people made), and returns
   in parent-child subqueries what idempotency needs: the note with this lead's marker, the
   tasks, the campaign memberships and, with Contact + Case, the request record with this
   reference and its own notes and tasks (with Contact + Opportunity, a second query in the same
   call finds the Opportunity, linked to the Contact by an OpportunityContactRole). It is sent as the subrequest of a
   composite request, like every request whose URL would name patient data (the contact key holds
   the phone number): URLs end up in HTTP debug logs, bodies do not;
2. one ``POST /composite`` request that writes only what is missing: the contact upserted on its
   External ID (``PATCH …/sobjects/Lead/Chat2CRM_Contact_Key__c/<key>``), the request record
   upserted on ``Chat2CRM_Reference__c`` (Contact + Case mode), the Note, the handoff Task, the
   CampaignMember, each referring to the earlier ones with ``@{ref.id}``.

SOQL reads the database itself (it is strongly consistent, unlike SOSL search, which the relay does
not use): every "did this write already happen?" decision is that query, or an upsert on an External
ID. ``allOrNone`` is false on purpose: each subrequest is idempotent on its own (upserts on External
IDs, notes and tasks checked by marker, a membership that exists answers ``DUPLICATE_VALUE``), so a
part that fails (a Campaign that does not exist, a membership already there) must not undo the
lead; what did fail is written by the next attempt, which sees in step 1 what exists.

Every call goes through :class:`SalesforceSession`: simple-salesforce's own login flows (OAuth 2.0
JWT bearer, username-password, client credentials; the access token shared by the workers,
encrypted, through Redis, and refreshed once on ``INVALID_SESSION_ID``), the org's API usage read
from ``Sforce-Limit-Info`` on every response (the adapter stops spending past a share of the daily
limit, so the clinic's own integrations are not starved), the timeouts, call counting and metrics,
and Salesforce's error table over simple-salesforce's exceptions.

The modules, from the bottom up:

- :mod:`~adapters.salesforce.options`: the mapping's options and the settings the adapter reads;
- :mod:`~adapters.salesforce.errors`: the error table;
- :mod:`~adapters.salesforce.login` and :mod:`~adapters.salesforce.session`: the login and every call;
- :mod:`~adapters.salesforce.soql` and :mod:`~adapters.salesforce.content`: query text, and what Notes
  and Tasks hold;
- :mod:`~adapters.salesforce.lookup` and :mod:`~adapters.salesforce.composite`: the two steps of a sync;
- :mod:`~adapters.salesforce.schema`: describe and set-up;
- the inbox for the conversation after the bot, through the chat2crm package (``crm/salesforce``):
  :mod:`~adapters.salesforce.messages` (the package's message object as the relay writes it),
  :mod:`~adapters.salesforce.changes` (its change events read), :mod:`~adapters.salesforce.stream` (the
  Pub/Sub API subscription, on the stubs in :mod:`adapters.salesforce.pubsub`),
  :mod:`~adapters.salesforce.deploy` (whether the package is in place) and
  :mod:`~adapters.salesforce.inbox` (:class:`~adapters.salesforce.inbox.SalesforceInbox`);
- :mod:`~adapters.salesforce.adapter`: :class:`SalesforceAdapter`, the entry point
  (``adapters.salesforce:SalesforceAdapter``).
"""

from __future__ import annotations

from adapters.salesforce.adapter import CAMPAIGNS, HOLDERS, SalesforceAdapter
from adapters.salesforce.errors import ERRORS, TRANSIENT
from adapters.salesforce.login import login_domain
from adapters.salesforce.options import AuthMode, CampaignMember, SalesforceCredentials, SalesforceOptions
from adapters.salesforce.session import API_USAGE, SESSION, SalesforceSession

__all__ = ["API_USAGE", "CAMPAIGNS", "ERRORS", "HOLDERS", "SESSION", "TRANSIENT", "AuthMode", "CampaignMember",
           "SalesforceAdapter", "SalesforceCredentials", "SalesforceOptions", "SalesforceSession", "login_domain"]
