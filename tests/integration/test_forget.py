"""`chat2crm forget`: every key about the person goes; nobody else's does; one audit line."""

from __future__ import annotations

from click.testing import CliRunner

from connector import inbox, leads
from connector.cli import main
from connector.commands.forget import erase, identities_for
from connector.conversations import CONVERSATION
from connector.leads import lead_key
from connector.runtime import Runtime
from core.models import Conversation, Lead, LeadContact

ACCOUNT = "106540352242922"


def _seed(runtime: Runtime, sender: str, reference: str, phone: str | None = None,
          user_id: str | None = None) -> str:
    key = f"whatsapp:{ACCOUNT}:{sender}"
    conv = Conversation(key=key, channel="whatsapp", account=ACCOUNT, sender_id=sender,
                        phone=phone, user_id=user_id, answers={"name": "Ayşe"})
    runtime.redis.set(CONVERSATION.key(key), conv.model_dump_json())
    runtime.redis.rpush(inbox.INBOX.key(key), "{}")
    lead = Lead(reference=reference, conversation_key=key, contact_key=f"whatsapp:{sender}",
                contact=LeadContact(channel="whatsapp", channel_id=sender, phone=phone))
    runtime.redis.set(lead_key(reference), lead.model_dump_json())
    runtime.redis.set(leads.SYNCED.key(reference.lstrip("#")), "{}")
    runtime.redis.zadd(leads.PENDING.key(), {reference: 1})
    return key


def test_identities_for_phone_and_channel_ids() -> None:
    assert "905321112233" in identities_for("+90 532 111 22 33")
    assert identities_for("telegram:12345") == ["12345"]


def test_erase_removes_everything_about_the_person_and_nothing_else(runtime: Runtime) -> None:
    mine = _seed(runtime, "905321112233", "#1001", phone="+905321112233")
    # The same person known by a business-scoped id on another conversation, linked by phone.
    linked = _seed(runtime, "TR.1234567890", "#1002", phone="+905321112233", user_id="TR.1234567890")
    other = _seed(runtime, "4915112345678", "#1003", phone="+4915112345678")
    audit = erase(runtime, "+905321112233")
    assert audit.conversations == 2 and audit.inboxes == 2 and audit.leads == 2
    for key in (mine, linked):
        assert not runtime.redis.exists(CONVERSATION.key(key), inbox.INBOX.key(key))
    assert not runtime.redis.exists(lead_key("#1001"), lead_key("#1002"), leads.SYNCED.key("1001"))
    assert runtime.redis.exists(CONVERSATION.key(other), lead_key("#1003"), leads.SYNCED.key("1003"))
    assert runtime.redis.zrange(leads.PENDING.key(), 0, -1) == [b"#1003"]


def test_cli_prints_an_audit_line_without_personal_data(runtime: Runtime, redis_url: str) -> None:
    _seed(runtime, "905321112233", "#1001", phone="+905321112233")
    result = CliRunner().invoke(main, ["forget", "+905321112233"], env={"REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert "forget: identities=" in result.output and "conversations=1" in result.output and "leads=1" in result.output
    assert "5321112233" not in result.output and "Ayşe" not in result.output
