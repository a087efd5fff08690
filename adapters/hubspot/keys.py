"""The Redis key families of the HubSpot adapter: its id cache, the known options of multi-select
properties, and its progress logs.

They live apart from the code that uses them so every part of the adapter builds its keys from the
one declaration, and the key registry names this module as their owner.
"""

from __future__ import annotations

from core.keys import family

DAY = 86400
CONTACTS = family("hubspot", "contact:{contact_key}", ttl=90 * DAY, holds_pii=True, owner=__name__)
COMPANIES = family("hubspot", "company:{name}", ttl=90 * DAY, holds_pii=True, owner=__name__)
RECORDS = family("hubspot", "record:{object}:{reference}", ttl=90 * DAY, holds_pii=False, owner=__name__)
NOTES = family("hubspot", "notes:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
TASKS = family("hubspot", "tasks:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
#: a note or task created again after a lost answer, whose late copies are still to be looked for
NOTE_COPIES = family("hubspot", "notes-copies:{marker}", ttl=DAY, holds_pii=False, owner=__name__)
TASK_COPIES = family("hubspot", "tasks-copies:{marker}", ttl=DAY, holds_pii=False, owner=__name__)
#: the values a multi-select property allows (a set), so tags do not read the property every time
PROPERTY_OPTIONS = family("hubspot", "options:{object}:{property}", ttl=DAY, holds_pii=False, owner=__name__)
PROGRESS = family("hubspot", "progress:{reference}", ttl=7 * DAY, holds_pii=False, owner=__name__)
