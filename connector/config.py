"""The main YAML file (``chat2crm.yaml``, named by ``CHAT2CRM_CONFIG``).

It names the CRM, the mapping, the flows and the campaigns (paths relative to itself), and
holds the deployment's choices that are not secrets: languages, time zone, retention, limits.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.yamlfile import load_model
from core.errors import ConfigurationError, Problem


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhatsAppNumber(_Section):
    """One business number of the WhatsApp Business Account that this deployment serves."""

    phone_number_id: str = Field(pattern=r"^\d{1,32}$",
                                 description="Meta's id of the number (`metadata.phone_number_id`), not the number.")
    flow: str | None = Field(default=None, description="The flow for a patient who writes to this number with no "
                                                       "campaign (default: `default_flow`).")
    phone_number: str = Field(default="", pattern=r"^\d{0,15}$", description="The number as digits (for people).")


class WhatsAppChannel(_Section):
    """The clinic's WhatsApp numbers (one corporate number for every campaign, or several)."""

    enabled: bool = Field(default=True, description="Serve this channel.")
    #: the number as digits, for wa.me links (``905320000000``)
    phone_number: str = Field(default="", pattern=r"^\d{0,15}$",
                              description="The number as digits, for wa.me links (`905320000000`).")
    numbers: list[WhatsAppNumber] = Field(
        default_factory=list,
        description="The business numbers served, each `{phone_number_id, flow, phone_number}`; replies go out "
                    "from the number the patient wrote to. `WHATSAPP_PHONE_NUMBER_ID` is served too (with "
                    "`default_flow` unless listed). A message to any other number of the account is answered 200 "
                    "and ignored.")

    @field_validator("numbers")
    @classmethod
    def _distinct_numbers(cls, value: list[WhatsAppNumber]) -> list[WhatsAppNumber]:
        ids = [number.phone_number_id for number in value]
        if len(ids) != len(set(ids)):
            raise ValueError("each phone_number_id may be listed once")
        return value


class TelegramChannel(_Section):
    """The clinic's Telegram bot."""

    enabled: bool = True
    bot_username: str = Field(default="", description="The bot's @username without @, for t.me links.")
    #: ignore messages from groups, supergroups and channels (the bot serves private chats)
    ignore_groups: bool = Field(default=True, description="Ignore groups, supergroups and channels.")


class Channels(_Section):
    whatsapp: WhatsAppChannel = Field(default_factory=WhatsAppChannel)
    telegram: TelegramChannel = Field(default_factory=TelegramChannel)
    #: ignore messages whose sender is a bot
    ignore_bots: bool = Field(default=True, description="Ignore messages whose sender is a bot.")


class Retention(_Section):
    """How long the relay keeps anything about a patient in Redis (the CRM is the record)."""

    conversation_hours: int = Field(default=72, ge=1, le=24 * 90, description="Conversation state TTL.")
    transcript_days: int = Field(default=30, ge=1, le=365, description="Leads and their transcripts TTL.")
    click_days: int = Field(default=30, ge=1, le=365, description="Click references TTL.")
    dedup_days: int = Field(default=7, ge=7, le=30, description="How long redelivered webhooks are recognised.")
    transcript_link_days: int = Field(default=30, ge=1, le=365, description="Transcript links expire after this.")
    identity_days: int = Field(default=365, ge=1, le=3650,
                               description="How long the link between a patient's identities (WhatsApp number, "
                                           "business-scoped id) is kept after their last message; at least a "
                                           "conversation's lifetime.")

    @model_validator(mode="after")
    def _identities_outlive_conversations(self) -> Retention:
        if self.identity_days * 24 < self.conversation_hours:
            raise ValueError("identity_days must cover conversation_hours (a conversation must not outlive the "
                             "link that routes its patient to it)")
        return self


class BotSettings(_Section):
    """Conversation timing."""

    #: a patient who writes again within this window resumes where they stopped
    resume_window_minutes: int = Field(default=120, ge=1, description="Resume where the patient stopped.")
    #: a handed-over conversation returns to the bot after this long without an agent releasing it
    handoff_release_hours: int = Field(default=24, ge=1, description="Handed-over chats return to the bot.")
    #: below this confidence the language detector's answer is not trusted and the bot asks
    language_confidence: float = Field(default=0.5, ge=0.0, le=1.0, description="Below it, the bot asks.")
    crm_lookup: bool = Field(default=True, description="Look a new conversation's patient up in the CRM to skip "
                                                       "what it knows (one search call per new conversation).")


class Delivery(_Section):
    """Retries of CRM and channel jobs."""

    max_retries: int = Field(default=8, ge=0, le=50, description="Retries before a job is failed.")
    backoff_base_seconds: float = Field(default=2.0, gt=0, description="First retry delay (doubles).")
    backoff_max_seconds: float = Field(default=900.0, gt=0, description="Longest retry delay.")
    job_timeout_seconds: int = Field(default=120, ge=5, description="A job running longer is stopped.")
    lost_job_seconds: int = Field(default=300, ge=1,
                                  description="A lead not in the CRM after this long is enqueued again (lost job).")


class Limits(_Section):
    """Flood control on inbound messages and on click links."""

    per_sender_per_minute: int = Field(default=20, ge=1, description="Messages per patient per minute.")
    global_per_second: int = Field(default=300, ge=1, description="Messages per second, all patients.")
    clicks_per_minute: int = Field(default=60, ge=1, description="Click-link visits (`/c/<slug>`) per client "
                                                                 "address per minute; more get 429.")
    stored_clicks: int = Field(default=100_000, ge=100, description="Most click records kept at once; the "
                                                                    "oldest make room for new ones.")


class WindowTemplate(_Section):
    """An approved WhatsApp template that carries an agent's reply outside the 24-hour window."""

    name: str = Field(min_length=1, description="The template's name, as approved in WhatsApp Manager.")
    language: str = Field(min_length=2, description="The template's language code (`en`, `tr`, `pt_BR`).")


class InboxSettings(_Section):
    """The conversation after the bot: patient messages into the CRM's inbox, agents' replies back."""

    enabled: bool = Field(default=True, description="Publish the conversation after the bot into the CRM's "
                                                    "inbox, where the CRM adapter has one.")
    idle_hours: int = Field(default=72, ge=1, le=24 * 90,
                            description="After a completed request, a patient's messages go to the agents; "
                                        "one who writes after this many hours of silence starts the bot again.")
    window_templates: dict[str, WindowTemplate] = Field(
        default_factory=dict,
        description="Per patient language: the approved template an agent's reply is sent as outside WhatsApp's "
                    "24-hour window (its one body parameter is the reply). A language without one: the reply "
                    "is refused and the agent is told why.")
    max_media_mb: int = Field(default=16, ge=1, le=100,
                              description="Largest patient file stored in the CRM; a larger one is noted, not stored.")


#: what the bot may do in a conversation, from least to most (docs/rollout.md)
ROLLOUT_LEVELS = ("off", "collect", "create", "full")
def rollout_channels() -> list[str]:
    """The channels a rollout level can be set for: every installed channel plug-in's network (a WhatsApp
    provider's conversations are WhatsApp's) and name."""
    from connector.channels import plugin  # the plug-ins are found at run time, not listed here

    names = set(plugin.available())
    for name in list(names):
        with contextlib.suppress(ConfigurationError):
            names.add(plugin.load(name).network)
    return sorted(names)


def _level(value: str) -> str:
    if value not in ROLLOUT_LEVELS:
        raise ValueError(f"unknown rollout level {value!r} (the levels: {', '.join(ROLLOUT_LEVELS)})")
    return value


def _channel(value: str) -> str:
    known = rollout_channels()
    if value not in known:
        raise ValueError(f"unknown channel {value!r} (the channels: {', '.join(known)})")
    return value


#: a rollout level, refused with the list of levels when it is none of them
RolloutLevel = Annotated[str, AfterValidator(_level)]


class RolloutSplit(_Section):
    """A share of new conversations that gets another level: the conversation key's stable hash decides, so a
    conversation stays in its group for good."""

    share: float = Field(ge=0.0, le=1.0, description="The share of new conversations (0..1) that gets `level`.")
    level: RolloutLevel = Field(description="The level that share gets (`off`, `collect`, `create`, `full`); "
                                            "the others get `rollout.default`.")
    group: str = Field(default="b", pattern=r"^[a-z0-9_-]{1,20}$",
                       description="The name of the share's group, recorded on its leads.")
    others: str = Field(default="a", pattern=r"^[a-z0-9_-]{1,20}$",
                        description="The name of the other conversations' group, recorded on their leads.")

    @model_validator(mode="after")
    def _two_groups(self) -> RolloutSplit:
        if self.group == self.others:
            raise ValueError(f"the split's two groups need two names (both are {self.group!r})")
        return self


class RolloutSettings(_Section):
    """What the bot may do (`off`, `collect`, `create`, `full`), decided when a conversation starts: docs/rollout.md.

    `off`: every conversation goes to an agent at once; `collect`: the bot asks, the CRM gets the contact, a note
    and a task; `create`: also the record, in the first status; `full`: priority, status and owner hints too.
    Precedence: the campaign's level, then the channel's, then the split, then the default.
    """

    default: RolloutLevel = Field(default="full", description=(
        "The level of a conversation nothing else decides; `full` is the behaviour of a deployment without this "
        "section."))
    campaigns: dict[str, RolloutLevel] = Field(
        default_factory=dict, description="Campaign slug → level, for conversations that start from it.")
    channels: dict[Annotated[str, AfterValidator(_channel)], RolloutLevel] = Field(
        default_factory=dict, description="Channel (`whatsapp`, `telegram`) → level.")
    split: RolloutSplit | None = Field(default=None, description=(
        "`{share, level, group, others}`: the share of new conversations (by a stable hash of the conversation "
        "key) that gets `level`, recorded as group `group`; the others get `default`, as group `others`."))

    def groups(self) -> tuple[str, ...]:
        """The split's group names (none without a split): the values the ``group`` label of a metric takes."""
        return (self.split.group, self.split.others) if self.split is not None else ()


class AppConfig(_Section):
    """``chat2crm.yaml``. Paths are relative to the file itself."""

    version: Literal[1] = Field(description="Always 1.")
    crm: str = Field(description="The adapter: hubspot, salesforce, pipedrive, or one from another package.")
    mapping: Path = Field(description="The CRM mapping file.")
    flows: Path = Field(default=Path("bot_flows"), description="Folder of flow files (`*.yaml`).")
    default_flow: str = Field(description="Flow for patients who arrive with no campaign.")
    campaigns: Path | None = Field(default=None, description="The campaign registry file.")
    lead_forms: Path | None = Field(default=None, description="The Meta lead forms file (docs/ads.md): each form's "
                                                               "questions, by key, to lead fields.")
    languages: list[str] = Field(default_factory=lambda: ["tr", "en", "de", "ar", "ru"], min_length=1,
                                 description="Languages the bot speaks and the detector chooses from.")
    fallback_language: str = Field(default="en", description="Used when a text lacks a language.")
    clinic_language: str | None = Field(default=None, description=(
        "The language of the clinic's people: the pipeline and stage labels `crm setup` creates and the relay "
        "writes (a mapping's per-language labels). Default: `fallback_language`."))
    timezone: str = Field(default="Europe/Istanbul", description="The clinic's zone: dates are read in it.")
    clinic_name: str = Field(default="Clinic", description="Shown in bot messages and transcript pages.")
    channels: Channels = Field(default_factory=Channels)
    retention: Retention = Field(default_factory=Retention)
    bot: BotSettings = Field(default_factory=BotSettings)
    delivery: Delivery = Field(default_factory=Delivery)
    limits: Limits = Field(default_factory=Limits)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)

    #: the directory of the file, set by :func:`load_config`; relative paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @property
    def crm_language(self) -> str:
        """The language of the labels the clinic's people read in the CRM (``clinic_language``)."""
        return self.clinic_language or self.fallback_language

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Istanbul)") from None
        return value

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        bad = [code for code in value if not (code.isalpha() and len(code) == 2 and code.islower())]
        if bad:
            raise ValueError(f"languages are two-letter ISO 639-1 codes; not {bad}")
        return value

    def resolve(self, path: Path) -> Path:
        """Resolve a path written in the file against the file's directory."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def mapping_path(self) -> Path:
        return self.resolve(self.mapping)

    @property
    def flows_path(self) -> Path:
        return self.resolve(self.flows)

    @property
    def campaigns_path(self) -> Path | None:
        return self.resolve(self.campaigns) if self.campaigns else None

    @property
    def lead_forms_path(self) -> Path | None:
        return self.resolve(self.lead_forms) if self.lead_forms else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_config(path: Path) -> AppConfig:
    """Read and validate the main file.

    Raises:
        ConfigurationError: every problem, with file and line.
    """
    if not path.exists():
        raise ConfigurationError(Problem(
            "configuration file not found", file=str(path),
            hint="write one with `chat2crm init DIR` and run from DIR, or set CHAT2CRM_CONFIG to its path"))
    config, _ = load_model(path, AppConfig)
    config.base_dir = path.resolve().parent
    return config
