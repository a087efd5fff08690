"""``chat2crm init DIR [--crm NAME]``: scaffold a clinic's own configuration.

Writes ``DIR/chat2crm.yaml`` (commented), the CRM's mappings (its default and the alternatives),
the shipped flows, the campaign registry, the JSON Schemas the YAML files name for editors, and
``DIR/.env.example`` listing every variable the chosen CRM needs. Existing files
are never overwritten unless ``--force`` is given. Then, from DIR (chat2crm reads
``./chat2crm.yaml`` and ``./.env`` in the current folder)::

    chat2crm check
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from ruamel.yaml import YAML

from connector.resources import DEFAULT_CONFIG, shipped
from core.settings import Settings

CRMS = ("hubspot", "salesforce", "pipedrive")

_ENV_GROUPS: dict[str, tuple[str, ...]] = {
    "relay": ("redis_url", "public_base_url", "transcript_secret", "admin_token", "log_format", "port"),
    "whatsapp": ("whatsapp_app_secret", "whatsapp_verify_token", "whatsapp_access_token",
                 "whatsapp_phone_number_id"),
    "telegram": ("telegram_bot_token", "telegram_secret_token"),
    "hubspot": ("hubspot_access_token",),
    "salesforce": ("salesforce_instance_url", "salesforce_login_url", "salesforce_api_version",
                   "salesforce_client_id", "salesforce_client_secret", "salesforce_username",
                   "salesforce_password", "salesforce_security_token", "salesforce_private_key_file"),
    "pipedrive": ("pipedrive_api_token",),
}


def env_example(crm: str) -> str:
    """The text of ``.env.example`` for ``crm``: every variable it needs, described, unset."""
    lines = ["# chat2crm settings. Copy to .env (never commit it) and fill in the values.",
             "# Every variable is described in docs/configuration.md.", ""]
    for group in ("relay", "whatsapp", "telegram", crm):
        lines.append(f"# -- {group}")
        for name in _ENV_GROUPS[group]:
            field = Settings.model_fields[name]
            if field.description:
                lines.append(f"# {field.description}")
            default = field.default
            value = "" if default is None or "secret" in name or "token" in name or "password" in name else default
            if name == "redis_url":
                value = "redis://localhost:6379/0"
            lines.append(f"{name.upper()}={value}")
        lines.append("")
    lines.append("CHAT2CRM_CONFIG=chat2crm.yaml")
    return "\n".join(lines) + "\n"


def scaffold(directory: Path, crm: str, *, force: bool = False) -> list[Path]:
    """Write a clinic's configuration into ``directory``.

    Returns:
        The files written.

    Raises:
        click.ClickException: a file exists and ``force`` is false, or ``crm`` has no shipped mapping.
    """
    try:
        mapping_src = shipped("mappings", f"{crm}.yaml")
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    yaml = YAML(typ="rt")
    main = yaml.load(shipped(DEFAULT_CONFIG).read_text(encoding="utf-8"))
    main["crm"] = crm
    main["mapping"] = f"mappings/{crm}.yaml"
    main["flows"] = "bot_flows"
    main["campaigns"] = "campaigns.yaml"
    main["clinic_name"] = "Your Clinic"
    # the CRM's default mapping and its alternatives (``salesforce-case.yaml``, …) to switch to
    alternatives = sorted(shipped("mappings").glob(f"{crm}-*.yaml"))
    plan: list[tuple[Path, Path | str]] = [
        (directory / "mappings" / f"{crm}.yaml", mapping_src),
        *[(directory / "mappings" / src.name, src) for src in alternatives],
        (directory / "campaigns.yaml", shipped("campaigns.yaml")),
        (directory / ".env.example", env_example(crm)),
    ]
    plan += [(directory / "bot_flows" / src.name, src) for src in sorted(shipped("bot_flows").glob("*.yaml"))]
    # the YAML files name their JSON Schemas (``$schema=../schemas/…``) for editors' completion
    plan += [(directory / "schemas" / src.name, src) for src in sorted(shipped("schemas").glob("*.json"))]
    targets = [directory / "chat2crm.yaml"] + [target for target, _ in plan]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise click.ClickException(
            "these files exist (use --force to overwrite): " + ", ".join(str(t) for t in existing))
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    (directory / "bot_flows").mkdir(parents=True, exist_ok=True)
    (directory / "schemas").mkdir(parents=True, exist_ok=True)
    with (directory / "chat2crm.yaml").open("w", encoding="utf-8") as handle:
        handle.write("# Your clinic's chat2crm configuration. Validate with: chat2crm check\n")
        yaml.dump(main, handle)
    for target, source in plan:
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_text(source, encoding="utf-8")
    return targets


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crm", type=click.Choice(CRMS), default="hubspot", show_default=True, help="The clinic's CRM.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def command(directory: Path, crm: str, force: bool) -> None:
    """Scaffold a clinic's configuration in DIRECTORY (main file, mapping, flows, campaigns, .env.example)."""
    written = scaffold(directory, crm, force=force)
    for path in written:
        click.echo(f"  wrote {path}")
    click.echo(f"\nNext, from that folder (chat2crm reads ./chat2crm.yaml and ./.env there):\n"
               f"  cd {directory}\n"
               f"  cp .env.example .env      # then fill in the secrets\n"
               f"  chat2crm check")
