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
