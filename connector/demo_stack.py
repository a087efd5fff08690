"""The emulators ``chat2crm demo`` runs, in its own process, on 127.0.0.1.

Each is the same product code the tests use; here they hold the demo's state. The CRM emulator is
prepared the way ``chat2crm crm setup`` prepares a real account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from emulators.server import ServedApp

#: CRMs the demo can show (an emulator ships for each)
DEMO_CRMS = ("hubspot",)


@dataclass
class DemoStack:
    """Running emulators and the environment that points the relay at them."""

    served: list[ServedApp] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    crm_url: str = ""
    whatsapp: Any = None
    telegram: Any = None

    def connect(self, relay_base: str) -> None:
        """Point the emulated patients at the relay's webhooks."""
        self.whatsapp.relay_url = f"{relay_base}/webhooks/whatsapp"
        self.telegram.relay_url = f"{relay_base}/webhooks/telegram"

    def stop(self) -> None:
        for served in reversed(self.served):
            served.stop()
        self.served.clear()


def start_emulators(crm: str, env: dict[str, str]) -> DemoStack:
    """Start the WhatsApp, Telegram and CRM emulators with the credentials in ``env``.

    Raises:
        ValueError: no emulator ships for ``crm``.
    """
    from emulators.telegram import TelegramEmulator
    from emulators.whatsapp import WhatsAppEmulator

    if crm not in DEMO_CRMS:
        raise ValueError(f"the demo has no {crm} emulator yet; available: {', '.join(DEMO_CRMS)}")
    stack = DemoStack()
    stack.whatsapp = WhatsAppEmulator(access_token=env["WHATSAPP_ACCESS_TOKEN"],
                                      phone_number_id=env["WHATSAPP_PHONE_NUMBER_ID"],
                                      app_secret=env["WHATSAPP_APP_SECRET"])
    stack.telegram = TelegramEmulator(token=env["TELEGRAM_BOT_TOKEN"], secret_token=env["TELEGRAM_SECRET_TOKEN"])
    whatsapp = ServedApp(stack.whatsapp.app).start()
    telegram = ServedApp(stack.telegram.app).start()
    stack.served += [whatsapp, telegram]
    from emulators.hubspot import HubSpotEmulator

    hubspot = HubSpotEmulator(env["HUBSPOT_ACCESS_TOKEN"])
    crm_served = ServedApp(hubspot.app).start()
    stack.served.append(crm_served)
    stack.crm_url = crm_served.url
    stack.environment = {"WHATSAPP_API_BASE": whatsapp.url, "TELEGRAM_API_BASE": telegram.url,
                         "HUBSPOT_API_BASE": crm_served.url}
    stack.environment["CHAT2CRM_DEMO_EMULATORS"] = json.dumps(
        {"whatsapp": whatsapp.url, "telegram": telegram.url, "crm": crm_served.url, "crm_name": crm})
    _prepare_crm(crm, {**env, **stack.environment})
    hubspot.calls.clear()
    return stack


def _prepare_crm(crm: str, env: dict[str, str]) -> None:
    """Create the custom fields the shipped mapping needs, as `chat2crm crm setup` does."""
    from adapters import load_adapter
    from connector.mapping import load_mapping, required_schema
    from connector.settings import PROJECT_ROOT, Settings

    settings = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    mapping = load_mapping(PROJECT_ROOT / "mappings" / f"{crm}.yaml", crm=crm)
    adapter = load_adapter(crm)(settings, options=mapping.crm_options())
    adapter.setup(required_schema(mapping), apply=True)
