"""The Pipedrive adapter, on ``requests`` against Pipedrive's REST API (v2 where it exists, v1 for
leads, notes and lead labels, which only v1 has).

What it writes for one lead: optionally an organization (linked to the person and the record), the
person (by the contact matching rule: the contact key kept in a custom field, the patient's other
channel identities, then phone or e-mail for persons made by people, else created; an e-mail another
person holds is kept aside and flagged, never written over theirs), a Lead
(default; its status is a lead label, since leads have no stage) or a Deal in a pipeline stage,
the tags as lead labels (or, for a deal, options of a multi-option custom field), a note on the
lead or deal, and an activity for the owner on handoff.

Calls, once the field keys and label ids are cached (they are, after ``crm setup`` or the first
lead): a new patient 6 (key search, phone search, e-mail search, person, lead, note; 5 without an
e-mail); a returning patient 2
(lead, note: the person's id comes from the id cache and is not written again when nothing
changed); a replayed job 0 (the lead, the note and the activity are known; nothing changed). A
handoff adds 1 (the activity). A retry after a failure resumes where the last attempt stopped.

Pipedrive has no unique constraint and no upsert, and its search lags behind writes (a person
appears in ``/persons/search`` some seconds after it is made). So search never decides whether the
relay's own write happened: the id cache knows what the relay made; a create whose answer was lost
is marked pending in it before it is sent, and the next attempt looks on a list endpoint, which is
current (persons and organizations updated since the mark, the person's leads or deals, the
record's notes and activities), before writing again; one worker at a time finds or makes a given
person. Search serves what only it can: persons and organizations people made by hand, and persons
the relay made so long ago that their ids left the cache.

Custom fields are named in the mapping by their visible name; Pipedrive addresses them by
generated 40-character keys. The adapter reads the keys from the field endpoints and keeps them
in Redis (shared by every worker, refreshed once when a name is not found); a name that still
does not exist is a :class:`~core.errors.FatalError` naming the field.

Every call goes through :class:`PipedriveSession`: the Redis-shared limiters for Pipedrive's
2-second burst windows (per token, so shared by all workers; searches have their own), a pause when
``x-ratelimit-remaining`` runs out, the timeouts, call counting and metrics, and Pipedrive's error
table.

The package's modules, by concern: :mod:`~adapters.pipedrive.options` (options and credentials),
:mod:`~adapters.pipedrive.keys` (Redis key families), :mod:`~adapters.pipedrive.session` (the session
and error table), :mod:`~adapters.pipedrive.common` (the base: calls, field keys, locks, pending
creates), :mod:`~adapters.pipedrive.labels` (lead labels, pipelines, tag options),
:mod:`~adapters.pipedrive.identity` (the matching rule's pure parts), :mod:`~adapters.pipedrive.persons`
(persons), :mod:`~adapters.pipedrive.organizations`, :mod:`~adapters.pipedrive.optouts`,
:mod:`~adapters.pipedrive.records`
(leads, deals, notes, activities), :mod:`~adapters.pipedrive.schema` (diagnosis and set-up) and
:mod:`~adapters.pipedrive.adapter` (the class, the sync and the erasure).

The conversation after the bot: :mod:`~adapters.pipedrive.app` (which inbox a configuration gets, the
app installed by OAuth whose token then replaces the API token), :mod:`~adapters.pipedrive.oauth` (the
install and the refresh, tokens kept by :mod:`adapters.oauth_tokens`), :mod:`~adapters.pipedrive.inbox`
(patients' messages as notes, delivery notes, files), :mod:`~adapters.pipedrive.panel` (the custom panel's
signed token, who may see a record, file links) and :mod:`~adapters.pipedrive.thread_log` (the
conversation as the panel shows it).
"""

from adapters.pipedrive.adapter import PipedriveAdapter
from adapters.pipedrive.options import PipedriveCredentials, PipedriveOptions
from adapters.pipedrive.session import PipedriveSession

__all__ = ["PipedriveAdapter", "PipedriveCredentials", "PipedriveOptions", "PipedriveSession"]
