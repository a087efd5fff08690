"""``chat2crm release <phone | channel id>``: an agent hands a conversation back to the bot.

After a handoff the bot stays silent until the handoff window passes; an agent who has finished
(or who wants the bot to collect the rest) releases the conversation earlier with this command.
"""

from __future__ import annotations

import click

from connector.runtime import PREFIX, Runtime


def release(runtime: Runtime, who: str) -> int:
    """Return every handed-over conversation of ``who`` to the bot; the number released."""
    from connector.commands.forget import identities_for
    from connector.models import Conversation
    from connector.pipeline import conversation_ttl

    ids = set(identities_for(who))
    released = 0
    for raw in runtime.redis.scan_iter(match=f"{PREFIX}conv:*", count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if key.rsplit(":", 1)[-1] not in ids:
            continue
        data = runtime.redis.get(key)
        if not data:
            continue
        conversation = Conversation.model_validate_json(data)
        if conversation.status != "handoff":
            continue
        # "closed": the bot greets the patient's next message and starts a new request, keeping what it knew
        conversation.status = "closed"
        conversation.pending.pop("handoff_at", None)
        runtime.redis.set(key, conversation.model_dump_json(), ex=conversation_ttl(runtime))
        released += 1
    return released


@click.command("release")
@click.argument("who")
def command(who: str) -> None:
    """Hand a conversation back to the bot before the handoff window ends (phone or channel id)."""
    from connector.logs import configure_logging
    from connector.settings import load_settings

    configure_logging("text", "WARNING")
    count = release(Runtime(load_settings()), who)
    click.echo(f"released {count} conversation{'s' if count != 1 else ''}")
