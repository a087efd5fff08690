"""People's edits of the records the relay wrote, as each CRM sends them, set up and checked: what ``chat2crm crm
setup`` creates (or says to do) so the relay hears of them, and what ``chat2crm crm doctor`` checks.

Which fields are watched: the mapping's fields of its contact and record objects that the relay fills from a
lead's field (:func:`connector.completeness.crm_fields`: ``source`` paths, not templates or constants).

- **HubSpot**: the app's webhook subscriptions to ``<object>.propertyChange`` of each watched property
  (:func:`adapters.hubspot.channel_setup.edit_subscriptions`); the events arrive at the inbox's webhook route.
- **Pipedrive**: one webhooks v2 ``change`` webhook per watched object, calling ``/crm/pipedrive/edits``
  (:class:`adapters.pipedrive.webhooks.EditWebhooks`).
- **Salesforce**: the objects to select for Change Data Capture (an org setting the relay cannot change through
  its user's API access); ``chat2crm listen salesforce`` subscribes to their channels
  (:mod:`adapters.salesforce.edits`), and ``doctor`` checks each can be subscribed to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.completeness import crm_fields

if TYPE_CHECKING:
    from connector.mapping import Mapping
    from connector.runtime import Runtime


def watched(mapping: Mapping) -> dict[str, list[str]]:
    """The CRM objects whose edits count, each with the fields the relay fills from a lead's field."""
    objects = [mapping.contact.object] + ([mapping.record.object] if mapping.record is not None else [])
    found = {obj: list(crm_fields(mapping, obj)) for obj in dict.fromkeys(objects)}
    if mapping.conversions is not None and mapping.conversions.on_stages() and mapping.record is not None \
            and mapping.record.stage_property:  # the stage changes that send conversion events (docs/ads.md)
        found[mapping.record.object] = list(dict.fromkeys([*found[mapping.record.object],
                                                           mapping.record.stage_property]))
    return found


def _secret(runtime: Runtime) -> str | None:
    secret = runtime.settings.transcript_secret or runtime.settings.admin_token
    return secret.get_secret_value() if secret is not None else None


def _pipedrive(runtime: Runtime) -> Any:
    """The Pipedrive webhooks' set-up, or a line saying why there is none."""
    from adapters.pipedrive.webhooks import EDITS_PATH, EditWebhooks

    secret = _secret(runtime)
    if secret is None:
        return "MISSING TRANSCRIPT_SECRET (or ADMIN_TOKEN): the webhooks of people's edits authenticate with it"
    url = runtime.settings.public_base_url.rstrip("/") + EDITS_PATH
    return EditWebhooks(runtime.adapter, objects=list(watched(runtime.mapping)), url=url,  # type: ignore[arg-type]
                        secret=secret)


def _hubspot_app(runtime: Runtime) -> Any:
    """HubSpot's app when its events reach the relay (an inbox, the app's id and developer key); else None."""
    app: Any = getattr(runtime.adapter, "app", None)
    credentials = getattr(app, "credentials", None)
    if runtime.inbox is None or credentials is None or not (credentials.app_id and credentials.developer_api_key):
        return None
    return app


def setup(runtime: Runtime, *, apply: bool) -> list[str]:
    """``crm setup`` for people's edits: one line per thing found, done or to do."""
    crm = runtime.config.crm
    fields = watched(runtime.mapping)
    if crm == "hubspot":
        from adapters.hubspot.channel_setup import edit_subscriptions

        app = _hubspot_app(runtime)
        return edit_subscriptions(app.rest, app.credentials, fields, apply=apply) if app is not None else []
    if crm == "pipedrive":
        found = _pipedrive(runtime)
        return [found] if isinstance(found, str) else list(found.setup(apply=apply))
    if crm == "salesforce":
        from adapters.salesforce.edits import setup_lines

        return setup_lines(list(fields))
    return []


def check(runtime: Runtime) -> list[str]:
    """``crm doctor`` for people's edits: a line per object or subscription, MISSING when absent."""
    crm, adapter = runtime.config.crm, runtime.adapter
    fields = watched(runtime.mapping)
    if crm == "hubspot":
        from adapters.hubspot.channel_setup import missing_edit_subscriptions

        app = _hubspot_app(runtime)
        return missing_edit_subscriptions(app.rest, app.credentials, fields) if app is not None else []
    if crm == "pipedrive":
        found = _pipedrive(runtime)
        return [f"edits: {found}"] if isinstance(found, str) else list(found.check())
    if crm == "salesforce":
        from adapters.salesforce.edits import check_lines

        session: Any = adapter.session
        endpoint = adapter.credentials.pubsub_endpoint  # type: ignore[attr-defined]
        return check_lines(session, endpoint=endpoint, objects=list(fields))
    return []
