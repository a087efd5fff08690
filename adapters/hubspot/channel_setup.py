"""``chat2crm crm setup`` for HubSpot's inbox: the app's custom channel registered, and a channel account
connecting it to the conversations inbox (or help desk) the clinic's agents work in.

1. The channel is registered once per app, with the developer account's API key and the app id
   (``POST /conversations/v3/custom-channels?hapikey=…&appId=…``): its name, the relay's webhook URL
   (``{public_base_url}/crm/hubspot/webhooks``, where HubSpot sends agents' messages), and its capabilities:
   plain text, one file per message of the types and size WhatsApp and Telegram carry, agents may answer
   (but not start a conversation: the patient writes first), threads kept by our integration thread id. A
   second run finds it (by name, among the app's channels) and updates its webhook URL if it moved.
2. The channel account is made in the installed portal with the app's OAuth token
   (``POST …/{channelId}/channel-accounts``), in the inbox the ``inbox_id`` option names, or the account's only
   inbox. A second run finds it among the channel's accounts.

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

#: the channel's name, as agents see it in HubSpot (and how a second setup recognises it)
CHANNEL_NAME = "chat2crm (WhatsApp, Telegram)"
CHANNEL_DESCRIPTION = "Patients' WhatsApp and Telegram conversations, after the clinic's assistant bot."
WEBHOOK_PATH = "/crm/hubspot/webhooks"


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
        portal = self.store.portal()
        if portal is None:
            lines.append(f"MISSING the HubSpot app is not installed in the portal: open {self.base_url}{INSTALL_PATH}, "
                         "then run `chat2crm crm setup` again")
            return lines
        if channel is not None:
            self._account(channel, portal, apply, lines)
        return lines

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
        """The inbox to connect to: the ``inbox_id`` option, or the account's only one."""
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
        lines.append("MISSING the account has no conversations inbox: create one in HubSpot" if not inboxes else
                     f"CHOOSE an inbox: set options.inbox_id in the mapping to one of {names}")
        return None
