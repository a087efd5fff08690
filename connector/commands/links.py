"""``chat2crm links``: every campaign's link, with QR codes (SVG and PNG) to print or post."""

from __future__ import annotations

from pathlib import Path

import click
import segno

from connector.runtime import Runtime
from core.settings import load_settings


@click.command("links")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("qr"),
              show_default=True, help="Folder for the QR codes.")
@click.option("--base-url", default=None, help="The relay's public address (default: $PUBLIC_BASE_URL).")
def command(out_dir: Path, base_url: str | None) -> None:
    """Print each campaign's click link and write its QR code as SVG and PNG."""
    runtime = Runtime(load_settings())
    base = (base_url or runtime.settings.public_base_url).rstrip("/")
    out_dir.mkdir(parents=True, exist_ok=True)
    for campaign in runtime.campaigns.campaigns:
        utm = "&".join(f"utm_{k}={v}" for k, v in campaign.utm.items())
        link = f"{base}/c/{campaign.slug}" + (f"?{utm}" if utm else "")
        qr = segno.make(link, error="m")
        qr.save(str(out_dir / f"{campaign.slug}.svg"), scale=4)
        qr.save(str(out_dir / f"{campaign.slug}.png"), scale=8)
        click.echo(f"{campaign.slug:<20} {campaign.channel:<9} {campaign.language}  {link}")
    click.echo(f"QR codes written to {out_dir}/")
