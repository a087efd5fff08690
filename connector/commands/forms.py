"""``chat2crm forms``: publish the bot flows' forms as WhatsApp Flows (docs/forms.md)."""

from __future__ import annotations

import click

from connector.checks import plain_errors, reach_redis
from connector.forms import FormsError, publish
from connector.logs import configure_logging
from connector.runtime import Runtime
from core.settings import load_settings


@click.command("forms")
def command() -> None:
    """Publish every flow's form, in every language of the flow, to the WhatsApp Business Account
    (WHATSAPP_BUSINESS_ACCOUNT_ID). What is published already is kept; a changed form is published anew."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    runtime = Runtime(settings)
    if not any(flow.form is not None for flow in runtime.flows.values()):
        click.echo("no flow has a form: nothing to publish")
        return
    with plain_errors(runtime):
        reach_redis(runtime)
        try:
            outcomes = publish(runtime)
        except FormsError as exc:
            click.echo(f"chat2crm: {exc}", err=True)
            raise SystemExit(1) from None
    for outcome in outcomes:
        click.echo(f"{outcome.flow:<24} {outcome.language:<3} {outcome.action:<18} {outcome.flow_id:<18} "
                   f"{outcome.name}")
    now = sum(1 for o in outcomes if o.action == "published")
    languages = ", ".join(sorted({o.language for o in outcomes}))
    click.echo(f"{len(outcomes)} forms ({languages}): {now} published now, {len(outcomes) - now} already published")
