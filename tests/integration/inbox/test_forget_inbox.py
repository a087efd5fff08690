"""`chat2crm forget` erases what the conversation after the bot keeps about a person (threads waiting for the
CRM, what was published, the maps from the CRM's ids, agents' replies), and nobody else's."""

from __future__ import annotations

import json

from connector import agent, threads
from connector.commands.forget import erase
from connector.runtime import Runtime
from connector.transaction import Transaction
from core.inbox import AgentReply
from core.keys import pii_families
from core.models import Conversation, InboundMessage, TranscriptEntry, utcnow

ACCOUNT = "106540352242922"


def _seed(runtime: Runtime, sender: str, crm_id: str) -> str:
    """A conversation with the agents: a thread message waiting, one published, an agent's reply queued."""
    key = f"whatsapp:{ACCOUNT}:{sender}"
    now = utcnow()
    conversation = Conversation(key=key, channel="whatsapp", account=ACCOUNT, sender_id=sender, phone=f"+{sender}",
                                profile_name="Ayşe Yılmaz", reference="#1001", status="closed",
                                transcript=[TranscriptEntry(direction="in", at=now, text="Merhaba, ben Ayşe")])
    message = InboundMessage(channel="whatsapp", account=ACCOUNT, sender_id=sender, message_id=f"wamid.{sender}",
                             timestamp=now, kind="text", text="Merhaba, ben Ayşe")
    built = threads.build(conversation, message, lead_ready=False, for_agent=True, already=0)
    tx = Transaction(runtime.redis)
    threads.stage(runtime, tx.pipe, conversation, built)
    assert tx.commit()
    value = json.dumps({"conversation": key})
    runtime.redis.set(threads.BY_CONTACT.key(crm_id), value)
    runtime.redis.set(threads.BY_THREAD.key(f"T{crm_id}"), value)
    assert agent.accept(runtime, AgentReply(crm_message_id=f"m-{crm_id}", text="Hoş geldiniz Ayşe"), key)
    return key


def test_forget_erases_the_threads_maps_and_replies_of_the_person_only(runtime: Runtime) -> None:
    mine = _seed(runtime, "905321112233", "501")
    other = _seed(runtime, "4915112345678", "502")
    families = {f.name for f in pii_families()}
    assert {"thread", "threads", "thread-lock", "thread-published", "crm-thread", "crm-contact",
            "agent-entry"} <= families
    erase(runtime, "+905321112233")
    left = [k.decode() for k in runtime.redis.scan_iter(count=1000)]
    assert not [k for k in left if "905321112233" in k]
    for key in left:  # nothing left holds the person's number, in its name or its value
        kind = runtime.redis.type(key).decode()
        values = ([runtime.redis.get(key)] if kind == "string" else runtime.redis.lrange(key, 0, -1) if kind == "list"
                  else runtime.redis.zrange(key, 0, -1) if kind == "zset" else list(runtime.redis.hgetall(key).values())
                  if kind == "hash" else [])
        assert not [v for v in values if v and b"905321112233" in v], key
    assert threads.conversation_of(runtime, contact="501") is None
    assert threads.conversation_of(runtime, contact="502") == other
    assert threads.conversation_of(runtime, thread="T502") == other
    assert [p.message.text for p in threads.pending(runtime, other)] == ["Merhaba, ben Ayşe"]
    assert runtime.redis.zscore(threads.DUE.key(), other) is not None
    assert threads.pending(runtime, mine) == []
