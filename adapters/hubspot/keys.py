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

# -- the public app (OAuth install, custom channel) ----------------------------------------------
#: the app as installed: which portal the relay serves (``portal``) and the custom channel registered for the app
#: (``channel_id``); no TTL: it is the installation itself, and there is one such hash
APP = family("hubspot", "app", ttl=None, holds_pii=False, owner=__name__,
             bounded_by="one hash: the app installed by OAuth and its custom channel")
#: one portal the app was installed into: its OAuth tokens (Fernet-encrypted) and its channel account; no TTL: the
#: refresh token must survive restarts and quiet months, and there is one hash per portal the app was installed into
INSTALLS = family("hubspot", "install:{portal}", ttl=None, holds_pii=False, owner=__name__,
                  bounded_by="one hash per HubSpot portal the app was installed into")
#: held by the one worker refreshing a portal's tokens, so two workers never spend the refresh token at once
TOKEN_LOCKS = family("hubspot", "token-lock:{portal}", ttl=30, holds_pii=False, owner=__name__)
#: what the relay found when it first published into a HubSpot thread (``inbox``: routed by the inbox, ``assigned``:
#: assigned to the contact's owner by the relay, ``refused``, ``no-owner``), so it routes each thread once; a
#: ``no-owner`` mark lives an hour only, so a thread whose contact gets an owner later is assigned then
ROUTED_THREADS = family("hubspot", "thread-routing:{thread}", ttl=90 * DAY, holds_pii=False, owner=__name__)
