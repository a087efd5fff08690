"""Render the tables of ``docs/configuration.md`` from :class:`Settings` and :class:`AppConfig`.

``python -m connector.docsgen.configuration [FILE]`` (from the checkout; FILE defaults to
``docs/configuration.md``) rewrites the generated part of the file (between the
``<!-- generated -->`` markers); a test fails when the committed file is not current.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from connector.config import AppConfig
from core.settings import Settings

#: the file, relative to the checkout
DOC = Path("docs") / "configuration.md"
START, END = "<!-- generated: do not edit by hand -->", "<!-- end generated -->"

_ENV_HELP = {
    "whatsapp_app_secret": "The Meta app's secret: checks `X-Hub-Signature-256` on every webhook.",
    "whatsapp_verify_token": "What you type as the verify token when subscribing the webhook.",
    "whatsapp_access_token": "A system-user token with `whatsapp_business_messaging`.",
    "whatsapp_phone_number_id": "The phone number id that sends (Meta's id, not the number).",
    "whatsapp_api_base": "Graph API host (tests and the demo point it at the emulator).",
    "whatsapp_api_version": "Graph API version used in request paths.",
    "telegram_bot_token": "The bot's token from @BotFather.",
    "telegram_secret_token": "Secret given to `setWebhook`; checked on every update.",
    "telegram_api_base": "Bot API host.",
    "hubspot_access_token": "A private app's access token (CRM scopes: contacts, deals, notes, tasks, schemas).",
    "hubspot_api_base": "HubSpot API host.",
    "salesforce_instance_url": "The org's My Domain URL.",
    "salesforce_login_url": "Where tokens are issued (`https://test.salesforce.com` for sandboxes).",
    "salesforce_api_version": "REST API version.",
    "salesforce_client_id": "Connected app's consumer key (client credentials and JWT flows).",
    "salesforce_client_secret": "Connected app's consumer secret (client credentials flow).",
    "salesforce_username": "Integration user (JWT and password flows).",
    "salesforce_password": "Integration user's password (password flow).",
    "salesforce_security_token": "Integration user's security token (password flow).",
    "salesforce_private_key_file": "PEM key whose certificate is on the connected app (JWT flow).",
    "pipedrive_api_token": "A user's API token (sent as `x-api-token`).",
    "pipedrive_oauth_token": "An OAuth access token, instead of the API token.",
    "pipedrive_api_base": "Pipedrive API host.",
}


def _default(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def environment_table() -> str:
    """Every environment variable, its default and meaning."""
    rows = ["| variable | default | secret | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        secret = "yes" if "SecretStr" in str(field.annotation) or field.annotation is SecretStr else ""
        meaning = field.description or _ENV_HELP.get(name, "")
        rows.append(f"| `{name.upper()}` | {_default(field.default)} | {secret} | {meaning} |")
    return "\n".join(rows)


def _yaml_rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            doc = (annotation.__doc__ or "").strip().splitlines()[0] if annotation.__doc__ else ""
            rows.append(f"| `{prefix}{name}` | (section) | {doc} |")
            rows.extend(_yaml_rows(annotation, f"{prefix}{name}."))
            continue
        default = "required" if field.is_required() else _default(
            field.default_factory() if field.default_factory else field.default)  # type: ignore[call-arg]
        rows.append(f"| `{prefix}{name}` | {default} | {field.description or ''} |")
    return rows


def yaml_table() -> str:
    """Every key of ``chat2crm.yaml``."""
    return "\n".join(["| key | default | meaning |", "| --- | --- | --- |", *_yaml_rows(AppConfig)])


def render(current: str) -> str:
    """``current`` with its generated part replaced."""
    body = (f"{START}\n\n### Environment variables\n\n{environment_table()}\n\n"
            f"### `chat2crm.yaml` keys\n\n{yaml_table()}\n\n{END}")
    head, _, rest = current.partition(START)
    _, _, tail = rest.partition(END)
    return head + body + tail


if __name__ == "__main__":
    doc = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC
    doc.write_text(render(doc.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(f"wrote {doc}\n")
