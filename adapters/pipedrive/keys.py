"""The Redis key families of the Pipedrive adapter (its id cache, cached field keys, lead labels and
pipelines, locks and progress logs), and the digest of what was last written that the id cache keeps.

They live apart from the code that uses them so every part of the adapter (persons, records, labels)
builds its keys from the one declaration, and the key registry names this module as their owner.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.keys import family

DAY = 86400
#: how long the panel's log and its replies' statuses are kept (seconds)
PANEL_SECONDS = 90 * DAY
#: how long a reply's claim is held (seconds)
CLAIM_SECONDS = 600
#: a contact key's person: ``<id>|<digest of what was last written>``
CONTACTS = family("pipedrive", "contact:{contact_key}", ttl=90 * DAY, holds_pii=True, owner=__name__)
ORGANIZATIONS = family("pipedrive", "organization:{name}", ttl=90 * DAY, holds_pii=True, owner=__name__)
#: a lead reference's lead or deal: ``<id>|<digest of what was last written>``
RECORDS = family("pipedrive", "record:{kind}:{reference}", ttl=90 * DAY, holds_pii=False, owner=__name__)
NOTES = family("pipedrive", "note:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
ACTIVITIES = family("pipedrive", "activity:{marker}", ttl=90 * DAY, holds_pii=False, owner=__name__)
#: the account's field keys, lead labels and pipelines (JSON), read again daily
FIELDS = family("pipedrive", "fields:{entity}", ttl=DAY, holds_pii=False, owner=__name__)
LABELS = family("pipedrive", "labels", ttl=DAY, holds_pii=False, owner=__name__)
PIPELINES = family("pipedrive", "pipelines", ttl=DAY, holds_pii=False, owner=__name__)
#: one worker at a time makes a label, an option, a person, an organization (names are digests)
LOCKS = family("pipedrive", "lock:{name}", ttl=30, holds_pii=False, owner=__name__)
PROGRESS = family("pipedrive", "progress:{reference}", ttl=7 * DAY, holds_pii=False, owner=__name__)


def digest(value: Any) -> str:
    """What was last written, to skip writing it again (not a secret: a cache key)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]

# -- the app installed by OAuth, and its custom panel ---------------------------------------------
#: the app as installed: which company the relay serves (``company``); no TTL: it is the installation itself
APP = family("pipedrive", "app", ttl=None, holds_pii=False, owner=__name__,
             bounded_by="one hash: the Pipedrive app installed by OAuth")
#: one company the app was installed into: its OAuth tokens (Fernet-encrypted) and API domain; no TTL: the refresh
#: token must survive restarts and quiet months, and there is one hash per company the app was installed into
INSTALLS = family("pipedrive", "install:{company}", ttl=None, holds_pii=False, owner=__name__,
                  bounded_by="one hash per Pipedrive company the app was installed into")
#: held by the one worker refreshing a company's tokens, so two workers never spend the refresh token at once
TOKEN_LOCKS = family("pipedrive", "token-lock:{company}", ttl=30, holds_pii=False, owner=__name__)
#: a person's conversations as the panel shows them: each message published and each agent's reply (every entry
#: names its conversation, so ``chat2crm forget`` finds the hash)
PANEL_LOG = family("pipedrive", "panel:{person}", ttl=PANEL_SECONDS, holds_pii=True, owner=__name__)
#: whether a Pipedrive user may see a record, as Pipedrive's permitted users said (``1`` or ``0``), for as long
#: as a panel token lives: the panel polls, and asking each time would spend the company's token budget
PANEL_ACCESS = family("pipedrive", "panel-access:{user}:{resource}:{record}", ttl=300, holds_pii=False,
                      owner=__name__)
#: an agent's reply being taken (its idempotency key), so a double click uploads its file once
PANEL_CLAIMS = family("pipedrive", "panel-claim:{reply}", ttl=CLAIM_SECONDS, holds_pii=False, owner=__name__)
#: the person of a deal the relay published a conversation on (the deal's panel shows that person's thread)
PANEL_DEALS = family("pipedrive", "panel-deal:{deal}", ttl=PANEL_SECONDS, holds_pii=False, owner=__name__)
#: what became of an agent's reply written in the panel (its last status, and why it failed), for the panel
PANEL_STATUS = family("pipedrive", "panel-status:{reply}", ttl=PANEL_SECONDS, holds_pii=False, owner=__name__)
