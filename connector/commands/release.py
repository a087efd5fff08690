"""``chat2crm release <phone | channel id>``: an agent hands a conversation back to the bot.

After a handoff the bot stays silent until the handoff window passes (and, with the CRM's inbox on, a
completed request's conversation stays with the agents); an agent who has finished (or who wants the bot
to collect the rest) releases the conversation earlier with this command. Closing the thread in the CRM
does the same (:mod:`connector.handback`).
"""

from __future__ import annotations

import click

from connector import handback
from connector.commands.forget import identities_for
from connector.logs import configure_logging
from connector.runtime import Runtime
from core.settings import load_settings


def release(runtime: Runtime, who: str, *, wait_seconds: float = 10.0) -> int:
    """Return every conversation of ``who`` that an agent has to the bot; the number released.

    Raises:
        click.ClickException: a conversation stayed locked for ``wait_seconds``.
    """
    try:
        return handback.release(runtime, identities_for(who), wait_seconds=wait_seconds)
    except handback.ConversationBusy as exc:
        raise click.ClickException("a conversation is busy; try again in a moment") from exc


@click.command("release")
@click.argument("who")
def command(who: str) -> None:
    """Hand a conversation back to the bot before the handoff window ends (phone or channel id)."""
    configure_logging("text", "WARNING")
    count = release(Runtime(load_settings()), who)
    click.echo(f"released {count} conversation{'s' if count != 1 else ''}")
