"""``chat2crm simulate --flow NAME [--lang xx] [--channel NETWORK]``: chat with a flow in the terminal (a dry run).

Lines typed (or piped) are the patient's messages; a number answers a question with options.
Without ``--lang`` the language is detected on the first message, as the relay does (restricted to
the configured languages, with the configured confidence); when detection is unsure the bot asks. At
the end it prints the Lead as JSON and the CRM operations the configured mapping would send.
``--channel`` is any installed channel's network (or a plug-in's name, standing for its network), checked
against :func:`connector.config.rollout_channels`. Nothing is written anywhere: no Redis, no channel, no CRM.
"""

from __future__ import annotations

import itertools
import json
import sys
from datetime import timedelta

import click

from connector.attribution.language import detect_language
from connector.bot.engine import EngineContext, LeadReady, handle
from connector.channels import plugin as plugins
from connector.config import rollout_channels
from connector.mapping import plan
from connector.runtime import Runtime
from core.errors import ConfigurationError
from core.models import Conversation, InboundMessage, utcnow
from core.settings import load_settings


def _channel(value: str) -> str:
    """The network ``--channel`` names: one of :func:`connector.config.rollout_channels` (every installed
    channel's network and name); a plug-in's name stands for the network its messages carry (``dialog360``
    is ``whatsapp``).

    Raises:
        click.BadParameter: the channel is not installed (the message lists the ones that are).
    """
    known = rollout_channels()
    if value not in known:
        raise click.BadParameter(f"unknown channel {value!r} (the channels: {', '.join(known)})")
    try:
        return plugins.load(value).network if value in plugins.available() else value
    except ConfigurationError:
        return value


@click.command("simulate")
@click.option("--flow", "flow_name", required=True, help="The flow to chat with.")
@click.option("--lang", default=None, help="The patient's language (default: detected on the first message, "
                                          "as the relay does; the bot asks when unsure).")
@click.option("--channel", default="whatsapp", show_default=True, callback=lambda _c, _p, v: _channel(v),
              help="The network the patient writes on: any installed channel's (a provider's name is its network's).")
def command(flow_name: str, lang: str | None, channel: str) -> None:
    """Chat with a flow in the terminal; print the lead and the CRM operations it would produce."""
    runtime = Runtime(load_settings())
    flows = runtime.flows
    if flow_name not in flows:
        raise click.ClickException(f"no flow {flow_name!r}; flows: {', '.join(sorted(flows))}")
    flow = flows[flow_name]
    config = runtime.config
    references = itertools.count(1001)
    conversation = Conversation(key=f"{channel}:simulator:905320000001", channel=channel,
                                account="simulator", sender_id="905320000001", language=lang,
                                language_source="asked" if lang else None)
    interactive = sys.stdin.isatty()
    options: list[str] = []
    lead = None
    for number in itertools.count(1):
        if interactive:
            click.echo("you> ", nl=False)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if conversation.language is None and number == 1:
            detected, confidence = detect_language(text, list(config.languages))
            if detected and confidence >= config.bot.language_confidence:
                conversation.language, conversation.language_source = detected, "detected"
        choice = options[int(text) - 1] if text.isdigit() and 0 < int(text) <= len(options) else None
        message = InboundMessage(channel=channel, account="simulator", sender_id="905320000001",
                                 message_id=f"sim-{number}", timestamp=utcnow(), kind="choice" if choice else "text",
                                 text=text, choice_id=choice, choice_title=text if choice else None)
        ctx = EngineContext(now=utcnow(), timezone=config.zone, languages=list(config.languages),
                            fallback_language=config.fallback_language,
                            resume_window=timedelta(minutes=config.bot.resume_window_minutes),
                            handoff_release=timedelta(hours=config.bot.handoff_release_hours),
                            new_reference=lambda: f"#{next(references)}", transcript_url=lambda _c: None,
                            clinic_name=config.clinic_name)
        turn = handle(conversation, message, flow=flow, ctx=ctx)
        conversation = turn.conversation
        options = []
        for reply in turn.replies:
            click.echo(f"bot> {reply.text}")
            for i, option in enumerate(reply.options, 1):
                click.echo(f"      {i}. {option.title}")
                options.append(option.id)
        for event in turn.events:
            if isinstance(event, LeadReady):
                lead = event.lead
        if lead is not None:
            break
    if lead is None:
        click.echo("(the conversation ended before the request was complete)")
        return
    click.echo("\n== Lead ==")
    click.echo(json.dumps(lead.model_dump(mode="json", exclude={"transcript"}), ensure_ascii=False, indent=2))
    click.echo(f"\n== {config.crm} operations (dry run) ==")
    click.echo(json.dumps(plan(lead, runtime.mapping).model_dump(mode="json"), ensure_ascii=False, indent=2))
