"""Signed transcript links: readable page for a valid token; 403 revealing nothing otherwise."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from connector.leads import lead_key
from connector.runtime import Runtime
from connector.transcripts import make_token, reference_of
from core.models import Lead, LeadContact, TranscriptEntry, utcnow


def _store_lead(runtime: Runtime, reference: str = "#1042") -> Lead:
    now = utcnow()
    lead = Lead(
        reference=reference, conversation_key="whatsapp:106540352242922:905321112233",
        contact_key="whatsapp:905321112233",
        contact=LeadContact(name="Ayşe Yılmaz", phone="+905321112233", channel="whatsapp", channel_id="905321112233"),
        transcript=[
            TranscriptEntry(direction="in", at=now - timedelta(minutes=2), text="Merhaba, saç ekimi <b>fiyatı</b>?"),
            TranscriptEntry(direction="out", at=now - timedelta(minutes=1), text="Hangi tedaviyle ilgileniyorsunuz?"),
        ],
    )
    runtime.redis.set(lead_key(reference), lead.model_dump_json())
    return lead


def test_valid_token_shows_the_conversation_escaped(client, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    _store_lead(runtime)
    token = make_token(runtime, "#1042")
    response = client.get(f"/t/{token}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Conversation #1042" in page and "Hangi tedaviyle" in page
    assert "&lt;b&gt;fiyatı&lt;/b&gt;" in page  # patient text is escaped, never rendered as HTML
    assert "test-transcript-secret" not in page
    assert response.headers["Content-Type"].startswith("text/html")


def test_forged_token_gets_403_and_reveals_nothing(client, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    _store_lead(runtime)
    forged = URLSafeTimedSerializer("not-the-secret", salt="chat2crm.transcript.v1").dumps({"r": "1042"})
    for token in (forged, "garbage", make_token(runtime, "#1042")[:-3] + "abc"):  # type: ignore[index]
        response = client.get(f"/t/{token}")
        assert response.status_code == 403
        page = response.get_data(as_text=True)
        assert "1042" not in page and "Ayşe" not in page and "Merhaba" not in page


def test_expired_token_gets_403(client, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _store_lead(runtime)
    days = runtime.config.retention.transcript_link_days
    real = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real() - (days + 1) * 86400)
    token = make_token(runtime, "#1042")
    monkeypatch.setattr("itsdangerous.timed.time.time", real)
    assert reference_of(runtime, token or "") is None
    assert client.get(f"/t/{token}").status_code == 403


def test_transcript_past_retention_is_gone(client, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    token = make_token(runtime, "#1043")
    response = client.get(f"/t/{token}")
    assert response.status_code == 410
    assert "retention" in response.get_data(as_text=True)


def test_no_secret_means_no_links(runtime: Runtime) -> None:
    from core.settings import Settings

    bare = Runtime(Settings(redis_url="unix:///x", transcript_secret=None), redis_client=runtime.redis)
    assert make_token(bare, "#1042") is None
