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


def test_a_crm_write_past_the_job_time_out_is_tried_again_and_the_lead_stays_pending(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CRM slow enough that a lead's write runs past the job time-out: the lead is not given up."""
    from rq.timeouts import JobTimeoutException

    from connector import jobs
    from connector.runtime import QUEUE_CRM, set_current_runtime

    lead = Lead(reference="#1043", conversation_key="whatsapp:acc:905321112233", contact_key="whatsapp:905321112233",
                contact=LeadContact(channel="whatsapp", channel_id="905321112233"), created_at=utcnow())
    runtime.redis.set(leads.lead_key(lead.reference), lead.model_dump_json())
    leads.postpone(runtime, lead.reference, 60)

    def slow(rt: Runtime, written: Lead) -> Any:
        raise JobTimeoutException("Task exceeded maximum timeout value (10 seconds)")

    monkeypatch.setattr(leads, "write", slow)
    set_current_runtime(runtime)
    try:
        assert jobs.sync_lead(lead.reference) is None
    finally:
        set_current_runtime(None)
    assert runtime.redis.zscore(leads.PENDING.key(), lead.reference) is not None  # still pending
    queue = runtime.queue(QUEUE_CRM)
    assert queue.scheduled_job_registry.count == 1 and queue.failed_job_registry.count == 0
