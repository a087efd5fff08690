"""The adapters' shared contract: every CRM adapter must pass the same behaviour.

A test module subclasses :class:`AdapterContract` and provides the fixture ``env`` (an
:class:`AdapterEnv`: the adapter pointed at its emulator over HTTP, with real Redis). The contract
tests the one write of the SDK, :meth:`~adapters.base.CRMAdapter.sync`: idempotent upserts, replays,
returning patients, a write the CRM carried out after the client gave up on it (with the emulator's
search lagging behind writes, as the real CRMs' do), and the mapping of CRM errors (400, 401, 404,
409, 429, 500, timeout) into :mod:`core.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.base import CRMAdapter, SyncPlan
from connector.mapping import Mapping, plan
from core.errors import AuthError, FatalError, RetryableError
from core.models import Attribution, Consent, Lead, LeadContact, LeadRequest, TranscriptEntry


@dataclass
class AdapterEnv:
    """What a contract test needs from one CRM."""

    adapter: CRMAdapter
    mapping: Mapping
    #: make the next call(s) fail: "400", "401", "404", "409", "429", "500", "timeout" (``after=n``: once n
    #: calls have passed). A time-out holds the call past the client's timeout, then the CRM carries it out.
    fail_next: Callable[..., None]
    #: how many live records the CRM holds: "contact", "record", "note", "task"
    count: Callable[[str], int]
    #: the record's stage/status value, and its tags, by lead reference number
    record_state: Callable[[str], dict[str, Any]]


def make_lead(reference: str = "#1042", sender: str = "905321112233", **changes: Any) -> Lead:
    """A complete lead as the bot would hand it over."""
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    lead = Lead(
        reference=reference, conversation_key=f"whatsapp:106540352242922:{sender}", contact_key=f"whatsapp:{sender}",
        contact=LeadContact(name="Ayşe Yılmaz", first_name="Ayşe", last_name="Yılmaz", phone=f"+{sender}",
                            email=f"p{sender}@example.com", language="tr", country="TR", channel="whatsapp",
                            channel_id=sender),
        request=LeadRequest(topic="Hair transplant", preferred_time="2027-03-10", preferred_end="2027-03-17"),
        answers={"treatment": "hair_transplant", "treatment_label": "Saç ekimi"}, language="tr",
        language_source="detected", consent=Consent(given=True, text_version="2026-01", at=now),
        last_touch=Attribution(campaign="hair-tr", utm_source="instagram", utm_medium="paid_social"),
        first_touch=Attribution(campaign="hair-tr", utm_source="instagram"), tags=["hair_transplant", "lang:tr"],
        summary="Hair transplant enquiry", transcript=[TranscriptEntry(direction="in", at=now, text="Merhaba")],
        transcript_url="https://relay.example/t/abc", created_at=now,
    )
    return lead.model_copy(update=changes)


class AdapterContract:
    """Subclass and provide the ``env`` fixture."""

    def sync(self, env: AdapterEnv, lead: Lead) -> Any:
        plan_: SyncPlan = plan(lead, env.mapping)
        return env.adapter.sync(plan_)

    def test_new_lead_writes_one_contact_one_record_one_note(self, env: AdapterEnv) -> None:
        result = self.sync(env, make_lead())
        assert result.contact.created and result.record is not None and result.record.created
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 1, 1)
        state = env.record_state("1042")
        assert state["stage"] == env.mapping.record.statuses["new"]  # type: ignore[union-attr]
        assert {"hair_transplant", "lang:tr"} <= set(state["tags"])

    def test_replaying_the_same_lead_duplicates_nothing(self, env: AdapterEnv) -> None:
        first = self.sync(env, make_lead())
        again = self.sync(env, make_lead())
        assert again.record is not None and first.record is not None and again.record.id == first.record.id
        assert not again.record.created and not again.contact.created
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 1, 1)

    def test_returning_patient_gets_a_new_record_on_the_same_contact(self, env: AdapterEnv) -> None:
        first = self.sync(env, make_lead("#1042"))
        second = self.sync(env, make_lead("#1043"))
        assert second.contact.id == first.contact.id and not second.contact.created
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 2, 2)

    def test_a_patient_without_email_is_not_duplicated(self, env: AdapterEnv) -> None:
        lead = make_lead()
        lead.contact.email = None
        self.sync(env, lead)
        self.sync(env, make_lead("#1043").model_copy(update={"contact": lead.contact}))
        assert env.count("contact") == 1

    def test_handoff_creates_one_task(self, env: AdapterEnv) -> None:
        lead = make_lead(handoff_reason="patient_request")
        self.sync(env, lead)
        self.sync(env, lead)
        assert env.count("task") == 1

    def test_retry_after_a_failure_midway_completes_without_duplicates(self, env: AdapterEnv) -> None:
        self.sync(env, make_lead())
        lead = make_lead("#1043")
        env.fail_next(1, "500")
        with pytest.raises(RetryableError):
            self.sync(env, lead)
        self.sync(env, lead)
        assert (env.count("contact"), env.count("record"), env.count("note")) == (1, 2, 2)

    def test_a_write_the_crm_made_after_the_client_gave_up_is_not_made_again(self, env: AdapterEnv) -> None:
        """The last call of a sync (the note, or the composite that carries it) times out on our side; the CRM
        writes it anyway. The retry, once the write has landed, finds it (never by a search: it may lag)."""
        self.sync(env, make_lead("#1042"))
        calls = self.sync(env, make_lead("#1044")).calls  # a returning patient's sync, call by call
        notes, contacts = env.count("note"), env.count("contact")
        env.fail_next(1, "timeout", after=calls - 1)
        with pytest.raises(RetryableError) as info:
            self.sync(env, make_lead("#1043"))
        assert info.value.retry_after  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while env.count("note") == notes and time.monotonic() < deadline:
            time.sleep(0.05)  # the job layer waits retry_after; the CRM lands the write meanwhile
        assert env.count("note") == notes + 1
        again = self.sync(env, make_lead("#1043"))
        assert again.note is not None and not again.note.created
        assert (env.count("contact"), env.count("note")) == (contacts, notes + 1)

    @pytest.mark.parametrize(("kind", "error"), [
        ("400", FatalError), ("401", AuthError), ("404", FatalError), ("409", FatalError),
        ("429", RetryableError), ("500", RetryableError), ("timeout", RetryableError)])
    def test_errors_map_into_the_error_tree(self, env: AdapterEnv, kind: str, error: type[Exception]) -> None:
        env.fail_next(1, kind)
        with pytest.raises(error) as info:
            self.sync(env, make_lead())
        if kind in ("429", "timeout"):
            # a time-out too: the CRM may still carry the request out, so the retry must wait for it to land
            assert info.value.retry_after is not None and info.value.retry_after > 0  # type: ignore[attr-defined]
        if kind == "401":
            assert info.value.setting  # type: ignore[attr-defined]

    def test_erasure(self, env: AdapterEnv) -> None:
        self.sync(env, make_lead())
        report = env.adapter.erase_contact(key=(env.mapping.contact.key_property, "whatsapp:905321112233"),
                                           mode="delete")
        assert report.found and env.count("contact") == 0
        assert not env.adapter.erase_contact(key=(env.mapping.contact.key_property, "whatsapp:1"), mode="delete").found
