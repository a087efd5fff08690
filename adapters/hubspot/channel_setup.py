"""``chat2crm crm setup`` for HubSpot's inbox: the app's custom channel registered, and a channel account
connecting it to the conversations inbox (or help desk) the clinic's agents work in.

1. The channel is registered once per app, with the developer account's API key and the app id
   (``POST /conversations/v3/custom-channels?hapikey=…&appId=…``): its name, the relay's webhook URL
   (``{public_base_url}/crm/hubspot/webhooks``, where HubSpot sends agents' messages), and its capabilities:
   plain text, one file per message of the types and size WhatsApp and Telegram carry, agents may answer
   (but not start a conversation: the patient writes first), threads kept by our integration thread id. A
   second run finds it (by name, among the app's channels) and updates its webhook URL if it moved.
2. The app's webhooks (``/webhooks/v3/{appId}/settings`` and ``/subscriptions``, with the developer API key) go to
   the same URL, subscribed to ``conversation.propertyChange`` of ``status``: an agent closing a thread there
   hands the patient back to the bot.
3. The channel account is made in the installed portal with the app's OAuth token
   (``POST …/{channelId}/channel-accounts``), in the inbox the ``inbox_id`` option names, or the account's only
   inbox. A second run finds it among the channel's accounts.

4. People's edits (:func:`edit_subscriptions`): the app's webhooks are subscribed to ``contact.propertyChange``,
   ``deal.propertyChange`` or ``ticket.propertyChange`` of each mapped property the relay fills from a lead's
   field, so a person editing one of them in HubSpot counts that field as asked again (completeness). ``crm
   doctor`` names a missing one (:func:`missing_edit_subscriptions`).

Both ids are kept in Redis next to the tokens (:mod:`adapters.hubspot.tokens`); HUBSPOT_CHANNEL_ID and
HUBSPOT_CHANNEL_ACCOUNT_ID override them.
"""

from __future__ import annotations

from typing import Any

from adapters.hubspot.inbox import OPAQUE_ID, clinic_identifier
from adapters.hubspot.oauth import INSTALL_PATH
from adapters.hubspot.options import HubSpotCredentials, HubSpotOptions
from adapters.hubspot.rest import HubSpotRest
from adapters.hubspot.tokens import TokenStore
from adapters.inbox import InboxLimits
from core.errors import RetryableError, SyncError

#: the channel's name, as agents see it in HubSpot (and how a second setup recognises it)
CHANNEL_NAME = "chat2crm (WhatsApp, Telegram)"
CHANNEL_DESCRIPTION = "Patients' WhatsApp and Telegram conversations, after the clinic's assistant bot."
WEBHOOK_PATH = "/crm/hubspot/webhooks"
#: the app webhook subscription that tells the relay an agent closed a thread
THREAD_STATUS = ("conversation.propertyChange", "status")
#: the mapping's objects → the subscription type of a change of one of their properties
EDIT_EVENTS = {"contacts": "contact.propertyChange", "deals": "deal.propertyChange",
               "tickets": "ticket.propertyChange"}
#: how many webhook requests HubSpot may have open at the relay at once (HubSpot's default is 10)
WEBHOOK_CONCURRENCY = 10


def capabilities(limits: InboxLimits) -> dict[str, Any]:
    """The channel's capabilities, as HubSpot's channel schema names them."""
    return {
        "deliveryIdentifierTypes": [OPAQUE_ID],
        "richText": [],  # WhatsApp and Telegram get plain text
        "threadingModel": "INTEGRATION_THREAD_ID",
        "allowInlineImages": False,
        "allowOutgoingMessages": True,
        "allowConversationStart": False,  # the patient writes first (WhatsApp's 24-hour window)
        "allowMultipleRecipients": False,
        "outgoingAttachmentTypes": ["FILE"],
        "maxFileAttachmentCount": 1,  # WhatsApp sends one file per message
        "maxFileAttachmentSizeBytes": limits.max_file_bytes,
        "maxTotalFileAttachmentSizeBytes": limits.max_file_bytes,
        "allowedFileAttachmentMimeTypes": sorted(limits.mime_types),
    }


class ChannelSetup:
    """Registers the channel and connects its account, idempotently.

    Args:
        rest: the session (developer API key for the channel, the app's OAuth token for the account).
        store: the installation in Redis.
        credentials: the app's settings.
        options: the adapter's options (``inbox_id``).
        public_base_url: where HubSpot reaches the relay.
        limits: the files the channel takes.
    """

    def __init__(self, rest: HubSpotRest, store: TokenStore, *, credentials: HubSpotCredentials,
                 options: HubSpotOptions, public_base_url: str, limits: InboxLimits) -> None:
        self.rest = rest
        self.store = store
        self.credentials = credentials
        self.options = options
        self.base_url = public_base_url.rstrip("/")
        self.limits = limits

    def run(self, *, apply: bool) -> list[str]:
        """Register and connect what is missing; one line per thing found, done or (without ``apply``) to do."""
        missing = [setting for setting, value in (
            ("HUBSPOT_CLIENT_ID", self.credentials.client_id), ("HUBSPOT_CLIENT_SECRET", self.credentials.client_secret),
            ("HUBSPOT_APP_ID", self.credentials.app_id), ("HUBSPOT_DEVELOPER_API_KEY", self.credentials.developer_api_key),
        ) if not value]
        if missing:
            return [f"MISSING {', '.join(missing)}: the HubSpot app's settings (the custom channel needs them)"]
        lines: list[str] = []
        channel = self._channel(apply, lines)
        self._subscriptions(apply, lines)
        portal = self.store.portal()
        if portal is None:
            lines.append(f"MISSING the HubSpot app is not installed in the portal: open {self.base_url}{INSTALL_PATH}, "
                         "then run `chat2crm crm setup` again")
            return lines
        if channel is not None:
            self._account(channel, portal, apply, lines)
        return lines

    # -- the app's webhook subscriptions (an agent closing a thread) ------------------------------
    def _subscriptions(self, apply: bool, lines: list[str]) -> None:
        """The app's webhooks go to the relay, subscribed to a thread's status: a closed thread hands the patient
        back to the bot (agents' messages come through the channel's own webhook, not these)."""
        webhook, app = self.base_url + WEBHOOK_PATH, f"/webhooks/v3/{self.credentials.app_id}"
        try:
            target = self.rest.send("webhook_settings", "GET", f"{app}/settings", auth="developer").get("targetUrl")
        except SyncError as exc:
            if isinstance(exc, RetryableError) or exc.details.get("status") != 404:
                raise
            target = None  # the app has no webhook settings yet
        if target != webhook:
            if apply:
                self.rest.send("webhook_settings_set", "PUT", f"{app}/settings", auth="developer", json_body={
                    "targetUrl": webhook, "throttling": {"maxConcurrentRequests": WEBHOOK_CONCURRENCY}})
                lines.append(f"set the app's webhook URL to {webhook}")
            else:
                lines.append(f"would set the app's webhook URL to {webhook}")
        lines += _subscribe(self.rest, app, [THREAD_STATUS], apply=apply)

    # -- the channel ---------------------------------------------------------------------------
    def _developer(self) -> dict[str, str]:
        return {"appId": str(self.credentials.app_id)}

    def _channel(self, apply: bool, lines: list[str]) -> str | None:
        webhook = self.base_url + WEBHOOK_PATH
        wanted = self.credentials.channel_id or self.store.app_value("channel_id")
        listed = self.rest.send("channels_list", "GET", "/conversations/v3/custom-channels", auth="developer",
                                params=self._developer())
        channels = [c for c in listed.get("results") or [] if isinstance(c, dict)]
        found = next((c for c in channels if wanted and str(c.get("id")) == wanted), None)
        if found is None and not self.credentials.channel_id:
            found = next((c for c in channels if c.get("name") == CHANNEL_NAME), None)
        if found is None:
            if self.credentials.channel_id:
                lines.append(f"MISSING custom channel {self.credentials.channel_id} (HUBSPOT_CHANNEL_ID) is not one of "
                             "the app's channels")
                return None
            if not apply:
                lines.append(f"would register the custom channel {CHANNEL_NAME!r} (webhook {webhook})")
                return None
            created = self.rest.send("channel_register", "POST", "/conversations/v3/custom-channels",
                                     auth="developer", params=self._developer(), json_body={
                                         "name": CHANNEL_NAME, "webhookUrl": webhook,
                                         "channelDescription": CHANNEL_DESCRIPTION,
                                         "capabilities": capabilities(self.limits)})
            channel = str(created["id"])
            self.store.set_app_value("channel_id", channel)
            lines.append(f"registered the custom channel {channel} (webhook {webhook})")
            return channel
        channel = str(found["id"])
        if found.get("webhookUrl") != webhook:
            if apply:
                self.rest.send("channel_update", "PATCH", f"/conversations/v3/custom-channels/{channel}",
                               auth="developer", params=self._developer(), json_body={"webhookUrl": webhook})
                lines.append(f"updated the custom channel {channel}'s webhook to {webhook}")
            else:
                lines.append(f"would update the custom channel {channel}'s webhook to {webhook}")
        if apply and self.store.app_value("channel_id") != channel:
            self.store.set_app_value("channel_id", channel)
        lines.append(f"ok custom channel {channel}")
        return channel

    # -- the channel account -------------------------------------------------------------------
    def _account(self, channel: str, portal: str, apply: bool, lines: list[str]) -> None:
        if self.credentials.channel_account_id:
            lines.append(f"ok channel account {self.credentials.channel_account_id} (HUBSPOT_CHANNEL_ACCOUNT_ID)")
            return
        path = f"/conversations/v3/custom-channels/{channel}/channel-accounts"
        accounts = [a for a in self.rest.send("channel_accounts_list", "GET", path).get("results") or []
                    if isinstance(a, dict) and not a.get("archived")]
        inbox = self._inbox(lines)
        kept = self.store.install_value(portal, "channel_account_id")
        found = next((a for a in accounts if kept and str(a.get("id")) == kept), None)
        if found is None and inbox is not None:
            found = next((a for a in accounts if str(a.get("inboxId")) == inbox), None)
        if found is not None:
            self._keep(portal, found, apply)
            lines.append(f"ok channel account {found['id']} in inbox {found.get('inboxId')}")
            return
        if inbox is None:
            return
        if not apply:
            lines.append(f"would connect a channel account to inbox {inbox}")
            return
        created = self.rest.send("channel_account_create", "POST", path, json_body={
            "name": "Patients (WhatsApp, Telegram)", "inboxId": inbox, "authorized": True,
            "deliveryIdentifier": {"type": OPAQUE_ID, "value": clinic_identifier(inbox)}})
        self._keep(portal, {**created, "inboxId": created.get("inboxId") or inbox}, apply)
        lines.append(f"connected channel account {created['id']} to inbox {inbox}")

    def _keep(self, portal: str, account: dict[str, Any], apply: bool) -> None:
        if not apply:
            return
        identifier = (account.get("deliveryIdentifier") or {}).get("value") or clinic_identifier(str(account["inboxId"]))
        self.store.set_install_value(portal, "channel_account_id", str(account["id"]))
        self.store.set_install_value(portal, "account_identifier", str(identifier))
        self.store.set_install_value(portal, "inbox_id", str(account.get("inboxId") or ""))

    def _inbox(self, lines: list[str]) -> str | None:
        """The inbox to connect to: the ``inbox_id`` option, the account's only one, or its only conversations
        inbox beside help desks."""
        listed = self.rest.send("inboxes_list", "GET", "/conversations/v3/conversations/inboxes")
        inboxes = [i for i in listed.get("results") or [] if isinstance(i, dict) and not i.get("archived")]
        names = ", ".join(f"{i.get('id')} ({i.get('name')})" for i in inboxes)
        if self.options.inbox_id:
            if any(str(i.get("id")) == self.options.inbox_id for i in inboxes):
                return self.options.inbox_id
            lines.append(f"MISSING inbox {self.options.inbox_id} (options.inbox_id) is not one of the account's: "
                         f"{names or 'none'}")
            return None
        if len(inboxes) == 1:
            return str(inboxes[0]["id"])
        # an account's help desk is a workspace of its own: with one conversations inbox beside it, that inbox is
        # where agents expect patients' chats (options.inbox_id chooses the help desk instead)
        plain = [i for i in inboxes if i.get("type") == "INBOX"]
        if len(plain) == 1:
            lines.append(f"ok inbox {plain[0].get('id')} ({plain[0].get('name')}), the account's only conversations "
                         "inbox (options.inbox_id chooses another)")
            return str(plain[0]["id"])
        lines.append("MISSING the account has no conversations inbox: create one in HubSpot" if not inboxes else
                     f"CHOOSE an inbox: set options.inbox_id in the mapping to one of {names}")
        return None


# -- people's edits --------------------------------------------------------------------------------
def _listed(rest: HubSpotRest, app: str) -> list[dict[str, Any]]:
    listed = rest.send("webhook_subscriptions", "GET", f"{app}/subscriptions", auth="developer")
    return [s for s in listed.get("results") or [] if isinstance(s, dict)]


def _subscribe(rest: HubSpotRest, app: str, wanted: list[tuple[str, str]], *, apply: bool) -> list[str]:
    """Subscribe the app's webhooks to each ``(eventType, propertyName)`` (turned on again when off); a line each."""
    listed, lines = _listed(rest, app), []
    for event, prop in wanted:
        found = next((s for s in listed if (s.get("eventType"), s.get("propertyName")) == (event, prop)), None)
        name = f"{event} of {prop}"
        if found is not None and found.get("active"):
            lines.append(f"ok webhook subscription {name}")
        elif not apply:
            lines.append(f"would subscribe the app's webhooks to {name}")
        elif found is not None:
            rest.send("webhook_subscription_on", "PATCH", f"{app}/subscriptions/{found['id']}", auth="developer",
                      json_body={"active": True})
            lines.append(f"turned on webhook subscription {name}")
        else:
            rest.send("webhook_subscribe", "POST", f"{app}/subscriptions", auth="developer",
                      json_body={"eventType": event, "propertyName": prop, "active": True})
            lines.append(f"subscribed the app's webhooks to {name}")
    return lines


def edit_events(watched: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The subscriptions people's edits of ``watched`` (mapping object → properties) need."""
    return [(EDIT_EVENTS[obj], prop) for obj, props in watched.items() if obj in EDIT_EVENTS for prop in props]


def edit_subscriptions(rest: HubSpotRest, credentials: HubSpotCredentials, watched: dict[str, list[str]], *,
                       apply: bool) -> list[str]:
    """``crm setup``: the app's webhooks subscribed to changes of the ``watched`` properties (mapping object →
    the properties the relay fills from a lead's field), idempotently; one line each."""
    if not (credentials.app_id and credentials.developer_api_key):
        return ["MISSING HUBSPOT_APP_ID, HUBSPOT_DEVELOPER_API_KEY: people's edits are read from the app's webhooks"]
    return _subscribe(rest, f"/webhooks/v3/{credentials.app_id}", edit_events(watched), apply=apply)


def missing_edit_subscriptions(rest: HubSpotRest, credentials: HubSpotCredentials,
                               watched: dict[str, list[str]]) -> list[str]:
    """``crm doctor``: a MISSING line per subscription people's edits need and the app lacks (or has off)."""
    if not (credentials.app_id and credentials.developer_api_key):
        return ["edits: TO DO HUBSPOT_APP_ID, HUBSPOT_DEVELOPER_API_KEY: people's edits are not read"]
    active = {(s.get("eventType"), s.get("propertyName")) for s in _listed(rest, f"/webhooks/v3/{credentials.app_id}")
              if s.get("active")}
    wanted = edit_events(watched)
    missing = [f"edits: TO DO webhook subscription {e} of {p}: run `chat2crm crm setup`" for e, p in wanted
               if (e, p) not in active]
    return missing or [f"edits: ok {len(wanted)} webhook subscriptions of the mapped properties"]
