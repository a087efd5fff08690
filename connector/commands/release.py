"""``chat2crm release <phone | channel id>``: an agent hands a conversation back to the bot.

After a handoff the bot stays silent until the handoff window passes; an agent who has finished
(or who wants the bot to collect the rest) releases the conversation earlier with this command.
"""

from __future__ import annotations

import time

import click

from connector import conversations
from connector.commands.forget import identities_for
from connector.logs import configure_logging
from connector.runtime import Runtime
from connector.transaction import Transaction
from core.settings import load_settings


def release(runtime: Runtime, who: str, *, wait_seconds: float = 10.0) -> int:
    """Return every handed-over conversation of ``who`` to the bot; the number released.

    Each is changed under its conversation's lock (waiting up to ``wait_seconds`` for a turn in progress),
    so a message being handled at the same moment is neither lost nor overwritten.

    Raises:
        click.ClickException: a conversation stayed locked for ``wait_seconds``.
    """
    ids = set(identities_for(who))
    released = 0
    for found in conversations.stored(runtime):
        if found.sender_id not in ids or found.status != "handoff":
            continue
        lock = conversations.lock(runtime, found.key)
        deadline = time.monotonic() + wait_seconds
        while not lock.acquire():
            if time.monotonic() > deadline:
                raise click.ClickException("a conversation is busy; try again in a moment")
            time.sleep(0.1)
        try:
            conversation = conversations.load(runtime, found.key)
            if conversation is None or conversation.status != "handoff":
                continue
            # "closed": the bot greets the patient's next message and starts a new request, keeping what it knew
            conversation.status = "closed"
            conversation.pending.pop("handoff_at", None)
            tx = Transaction(runtime.redis).require_value(lock.key, lock.token)
            conversations.stage_save(runtime, tx.pipe, conversation)
            released += int(tx.commit())
        finally:
            lock.release()
    return released


@click.command("release")
@click.argument("who")
def command(who: str) -> None:
    """Hand a conversation back to the bot before the handoff window ends (phone or channel id)."""
    configure_logging("text", "WARNING")
    count = release(Runtime(load_settings()), who)
    click.echo(f"released {count} conversation{'s' if count != 1 else ''}")
