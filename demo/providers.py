"""The demo's WhatsApp provider: Meta's Cloud API directly (``meta``), or 360dialog in front of it (``360dialog``).

A deployment reaches its clinic's WhatsApp number through one provider, so the demo plays one of them, chosen with
``chat2crm demo --whatsapp-provider`` (or ``CHAT2CRM_DEMO_WHATSAPP_PROVIDER``). With 360dialog:

- the relay serves the ``dialog360`` channel plug-in in place of ``whatsapp`` (:func:`provider_environment`: the
  same ``CHAT2CRM_CHANNELS`` with that one name swapped, a fresh API key and webhook token);
- the emulator is :class:`emulators.dialog360.Dialog360Emulator` (:func:`whatsapp_emulator`), the WhatsApp emulator
  behind 360dialog's door, so the page's phone plays the same patients through the same patient API;
- once the relay answers, its webhook is registered the way an integrator registers it
  (:func:`register_webhook`: :meth:`connector.channels.dialog360.Dialog360Plugin.register_webhook`, what
  ``chat2crm channels register dialog360`` calls), and the emulator posts to ``/webhooks/dialog360`` with the
  token header that proves each webhook.

The page shows the provider in its channel picker: :func:`whatsapp_view` (the web process's side) reads it, and
the webhook the emulator holds, through the demo's own route on the emulator (:func:`install_webhook_view`).

This module imports the emulators only inside functions: :mod:`demo.command` reads :data:`WHATSAPP_PROVIDERS`
to list its choices before it knows whether the ``demo`` extra the emulators need is installed.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from emulators.whatsapp import WhatsAppEmulator

#: the providers the demo can reach the clinic's WhatsApp number through (the first is the default)
WHATSAPP_PROVIDERS = ("meta", "360dialog")
#: how the banner's emulators line names the WhatsApp emulator, per provider
BANNER_NAMES = {"meta": "WhatsApp", "360dialog": "WhatsApp (360dialog)"}
#: the page's channel picker's label for WhatsApp, per provider
PICKER_LABELS = {"meta": "WhatsApp", "360dialog": "WhatsApp · 360dialog"}
#: the demo's route on the emulator that tells the page the provider and the webhook it holds
VIEW_PATH = "/_emulator/demo/whatsapp"


def provider_environment(provider: str, channels: str) -> dict[str, str]:
    """What the relay needs to reach WhatsApp through ``provider``, beyond the Cloud API's own settings.

    Args:
        provider: one of :data:`WHATSAPP_PROVIDERS`.
        channels: the demo's ``CHAT2CRM_CHANNELS`` (comma-separated), naming ``whatsapp``.

    Returns:
        Nothing for Meta; for 360dialog, ``CHAT2CRM_CHANNELS`` with ``dialog360`` in place of ``whatsapp`` and
        fresh ``DIALOG360_API_KEY`` and ``DIALOG360_WEBHOOK_TOKEN`` (``DIALOG360_API_BASE`` comes with the
        emulator's address).
    """
    if provider != "360dialog":
        return {}
    names = ["dialog360" if name.strip() == "whatsapp" else name.strip() for name in channels.split(",")]
    return {"CHAT2CRM_CHANNELS": ",".join(names),
            "DIALOG360_API_KEY": secrets.token_urlsafe(32),
            "DIALOG360_WEBHOOK_TOKEN": secrets.token_urlsafe(32)}


def whatsapp_emulator(provider: str, env: dict[str, str]) -> WhatsAppEmulator:
    """The WhatsApp emulator of ``provider``, accepting the credentials in ``env``, with the demo's view route
    (its app not yet served: routes cannot be added once it is)."""
    from emulators.dialog360 import Dialog360Emulator
    from emulators.whatsapp import WhatsAppEmulator

    emulator: WhatsAppEmulator
    if provider == "360dialog":  # its key is the number's API key; nothing is signed with the app secret
        emulator = Dialog360Emulator(access_token=env["DIALOG360_API_KEY"],
                                     phone_number_id=env["WHATSAPP_PHONE_NUMBER_ID"],
                                     app_secret=env["WHATSAPP_APP_SECRET"], status_webhooks=True)
    else:
        emulator = WhatsAppEmulator(access_token=env["WHATSAPP_ACCESS_TOKEN"],
                                    phone_number_id=env["WHATSAPP_PHONE_NUMBER_ID"],
                                    app_secret=env["WHATSAPP_APP_SECRET"], status_webhooks=True)
    install_webhook_view(emulator, provider)
    return emulator


def api_environment(provider: str, url: str) -> dict[str, str]:
    """The settings that point the relay's WhatsApp client at the emulator served at ``url``."""
    if provider == "360dialog":  # the Cloud API's base too: nothing of the relay should reach Meta's real host
        return {"WHATSAPP_API_BASE": url, "DIALOG360_API_BASE": url}
    return {"WHATSAPP_API_BASE": url}


def install_webhook_view(emulator: WhatsAppEmulator, provider: str) -> None:
    """Give the emulator ``GET /_emulator/demo/whatsapp``: the provider, and where its webhooks go (with 360dialog,
    the URL and the names of the custom headers that registering the webhook set; never their values)."""

    def view() -> Any:
        held: dict[str, Any] = dict(getattr(emulator, "webhook", None) or {})
        return {"provider": provider,
                "webhook": {"url": held.get("url") or emulator.relay_url,
                            "headers": sorted(held.get("headers") or {})}}

    emulator.app.add_url_rule(VIEW_PATH, "demo_whatsapp_view", view, methods=["GET"])


def register_webhook(env: dict[str, str], relay_base: str) -> str:
    """Register the relay's ``/webhooks/dialog360`` with 360dialog (the emulator ``DIALOG360_API_BASE`` names), as
    ``chat2crm channels register dialog360`` does: :meth:`Dialog360Plugin.register_webhook`, which also sets the
    ``X-Chat2crm-Token`` header 360dialog sends back with each webhook.

    Args:
        env: the demo's environment (the relay's settings, the ``DIALOG360_*`` ones among them).
        relay_base: the relay's base URL.

    Returns:
        The line the demo prints.

    Raises:
        RuntimeError: 360dialog refused, could not be reached, or a setting is missing (the reason, in words).
    """
    from connector.channels import plugin as plugins
    from connector.channels.dialog360 import TOKEN_HEADER, Dialog360Plugin
    from core.errors import ConfigurationError, SyncError
    from core.settings import Settings

    core = Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    url = f"{relay_base.rstrip('/')}/webhooks/dialog360"
    try:
        plugin = plugins.load("dialog360")  # the plug-in the relay serves, found as the command finds it
        if not isinstance(plugin, Dialog360Plugin):
            raise ValueError("the dialog360 channel is not 360dialog's plug-in")
        # the demo's process does not carry the relay's environment: the plug-in's settings are read from `env`
        own = plugin.Settings.model_validate({k.lower(): v for k, v in env.items()
                                              if k.lower() in plugin.Settings.model_fields})
        plugin.register_webhook(plugins.ChannelContext(settings=own, core=core), url)
    except ConfigurationError as exc:
        raise RuntimeError("; ".join(str(problem) for problem in exc.problems)) from exc
    except (SyncError, ValueError) as exc:
        raise RuntimeError(f"the dialog360 webhook was not registered: {exc}") from exc
    return f"360dialog: webhook registered at {url} (with the {TOKEN_HEADER} header), as " \
           "`chat2crm channels register dialog360` does"


def whatsapp_view(emulators: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of the WhatsApp provider: its name, the picker's label and, read from the emulator, the
    webhook it posts to (the web process's side).

    Args:
        emulators: the demo's ``CHAT2CRM_DEMO_EMULATORS`` (``whatsapp``: the emulator's address,
            ``whatsapp_provider``: the provider; absent: Meta).
    """
    provider = str(emulators.get("whatsapp_provider") or "meta")
    shown: dict[str, Any] = {"provider": provider, "label": PICKER_LABELS.get(provider, "WhatsApp")}
    if emulators.get("whatsapp"):
        try:
            shown["webhook"] = requests.get(f"{emulators['whatsapp']}{VIEW_PATH}", timeout=5).json()["webhook"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            shown["webhook"] = None  # the picker's label does not depend on it
    return shown


__all__ = ["BANNER_NAMES", "PICKER_LABELS", "WHATSAPP_PROVIDERS", "api_environment", "install_webhook_view",
           "provider_environment", "register_webhook", "whatsapp_emulator", "whatsapp_view"]
