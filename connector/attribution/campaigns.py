"""The campaign registry (``campaigns.yaml``, ``version: 1``): which campaign, ad and language a
patient came from, on one corporate number.

Each campaign names its channel (the chat its link opens: :mod:`connector.attribution.targets`), the flow
it starts, its language, default UTM values, and the ad
ids (``source_ids``) of its click-to-WhatsApp ads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connector.attribution.targets import LinkChannel
from connector.yamlfile import load_model, write_schema
from core.errors import ConfigurationError, Problem


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Campaign(_Base):
    """One campaign."""

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$", description="Used in links: /c/<slug>.")
    name: str = Field(description="Shown to people (CRM, reports).")
    channel: LinkChannel = Field(default="whatsapp", description=(
        "The chat its link opens: whatsapp, telegram, messenger, instagram or line (a visitor may pick another "
        "the deployment serves with `?channel=`)."))
    flow: str = Field(description="The bot flow patients of this campaign start.")
    language: str = Field(pattern=r"^[a-z]{2}$", description="The campaign's language (the bot speaks it).")
    utm: dict[str, str] = Field(default_factory=dict, description="Default utm_* values (source, medium, campaign…).")
    source_ids: list[str] = Field(default_factory=list, description="Ad ids of its click-to-WhatsApp ads.")
    known: dict[str, Any] = Field(default_factory=dict,
                                  description="Answers the campaign already gives (e.g. treatment: hair_transplant).")
    prefill: str | None = Field(default=None, description="Prefilled WhatsApp text; {code} marks the reference.")


class CampaignRegistry(_Base):
    """Every campaign, looked up by slug or by ad id."""

    version: Literal[1] = 1
    campaigns: list[Campaign] = Field(default_factory=list)

    def get(self, slug: str) -> Campaign | None:
        """The campaign with this slug."""
        return next((c for c in self.campaigns if c.slug == slug), None)

    def for_source_id(self, source_id: str | None) -> Campaign | None:
        """The campaign one of whose ads has this id."""
        if not source_id:
            return None
        return next((c for c in self.campaigns if source_id in c.source_ids), None)


def load_campaigns(path: Path, *, flows: set[str], languages: list[str] | None = None) -> CampaignRegistry:
    """Read and validate the registry; every problem with file and line.

    Raises:
        ConfigurationError: bad shape, a duplicate slug or ad id, an unknown flow or language.
    """
    registry, doc = load_model(path, CampaignRegistry)
    problems: list[Problem] = []
    seen_slugs: set[str] = set()
    seen_ads: dict[str, str] = {}
    for i, campaign in enumerate(registry.campaigns):
        def problem(key: str, message: str, hint: str | None = None, index: int = i) -> None:
            problems.append(Problem(message, file=str(path), line=doc.line_of(("campaigns", index, key)),
                                    path=f"campaigns.{index}.{key}", hint=hint))
        if campaign.slug in seen_slugs:
            problem("slug", f"slug {campaign.slug!r} is used twice")
        seen_slugs.add(campaign.slug)
        if campaign.flow not in flows:
            problem("flow", f"unknown flow {campaign.flow!r}", hint="flows: " + ", ".join(sorted(flows)))
        if languages and campaign.language not in languages:
            problem("language", f"language {campaign.language!r} is not in chat2crm.yaml's languages")
        for ad in campaign.source_ids:
            if ad in seen_ads:
                problem("source_ids", f"ad id {ad} also belongs to {seen_ads[ad]!r}")
            seen_ads[ad] = campaign.slug
        bad_utm = [k for k in campaign.utm if k not in ("source", "medium", "campaign", "content", "term")]
        if bad_utm:
            problem("utm", f"unknown utm keys {bad_utm}", hint="source, medium, campaign, content, term")
        if campaign.prefill is not None and "{code}" not in campaign.prefill:
            problem("prefill", "the prefilled text must carry {code}")
    if problems:
        raise ConfigurationError(problems)
    return registry


def write_campaigns_schema(path: Path) -> None:
    """Publish the JSON Schema of campaigns.yaml."""
    write_schema(CampaignRegistry, path, "chat2crm campaigns")
