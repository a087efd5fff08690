"""A thread waiting for its lead's CRM contact never mistakes a lead being marked written for one that will
never be written."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from connector import leads
from connector.runtime import Runtime
from core.models import Lead, LeadContact, utcnow


def test_a_lead_marked_written_while_it_is_looked_up_is_pending_or_written(runtime: Runtime,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    lead = Lead(reference="#1042", conversation_key="whatsapp:acc:905321112233", contact_key="whatsapp:905321112233",
                contact=LeadContact(channel="whatsapp", channel_id="905321112233"), created_at=utcnow())
    leads.postpone(runtime, lead.reference, 60)  # pending: its write is on its way
    original = redis.Redis.execute_command

    def between_reads(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        if args[:1] == ("GET",) and "synced" in str(args[1]):  # the write is marked done right after the first read
            monkeypatch.setattr(redis.Redis, "execute_command", original)
            leads.mark_synced(runtime, lead, {"contact": {"object": "contacts", "id": "501", "created": True}})
        return answer

    monkeypatch.setattr(redis.Redis, "execute_command", between_reads)
    assert leads.crm_contact(runtime, lead.reference) in ((True, None), (False, "501"))
    monkeypatch.setattr(redis.Redis, "execute_command", original)
    leads.mark_synced(runtime, lead, {"contact": {"object": "contacts", "id": "501", "created": True}})
    assert leads.crm_contact(runtime, lead.reference) == (False, "501")
