"""The one error tree of chat2crm.

Errors are arranged by what the caller should do with them::

    Chat2CrmError                       base of everything we raise on purpose
    ├── ConfigurationError              bad settings or YAML: print every problem, exit 1
    ├── WebhookRejectedError            a webhook we refuse: 400 / 401 / 403 / 413 with a short reason
    └── SyncError                       talking to a CRM or a channel API failed
        ├── RetryableError              429, 5xx, timeouts, connection errors: retry later
        │                               (carries ``retry_after`` in seconds when the API said so)
        ├── FatalError                  other 4xx: retrying cannot help; names the setting or field to fix
        │   └── AuthError               expired or wrong credentials (names the setting)
        └── SkippableError              the work is moot (contact deleted, patient opted out): drop it

Every error carries ``message`` (for a person: short, no secrets, no patient data)
and ``details`` (for the log: vendor error codes, status, request id; already redacted).
Retry policy lives in one place, the rq job layer (:mod:`connector.jobs`), never in adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Chat2CrmError(Exception):
    """Base class of every error chat2crm raises on purpose."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One configuration problem, printed as ``file:line: path: message (hint)``."""

    message: str
    file: str | None = None
    line: int | None = None
    path: str = ""
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        path = f"{self.path}: " if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{path}{self.message}{hint}"


class ConfigurationError(Chat2CrmError):
    """Settings or configuration files are wrong. Carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = f"{count} configuration problem{'s' if count != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class WebhookRejectedError(Chat2CrmError):
    """A webhook request we refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str, *, details: dict[str, Any] | None = None) -> None:
        if status < 400 or status >= 500:
            raise ValueError(f"status must be a 4xx code, got {status!r}")
        super().__init__(reason, details=details)
        self.status = status


class SyncError(Chat2CrmError):
    """Talking to a CRM or channel API failed."""

    #: the API (``hubspot``, ``whatsapp`` …) and operation, for metrics and the failed-job registry
    api: str = ""


class RetryableError(SyncError):
    """Transient failure (429, 5xx, timeout, connection): the job layer retries it.

    Args:
        message: what happened, for a person.
        retry_after: seconds the API asked us to wait (``Retry-After``, ``retry_after``), if any.
        details: vendor codes and status for the log.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class FatalError(SyncError):
    """Permanent failure: retrying cannot help. ``setting`` or ``field`` names what to fix."""

    def __init__(
        self,
        message: str,
        *,
        setting: str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.setting = setting
        self.field = field


class AuthError(FatalError):
    """Credentials are missing, wrong or expired; ``setting`` names the variable to fix."""


class SkippableError(SyncError):
    """The work is moot (for example the patient opted out); the job ends without error."""


@dataclass
class ErrorSummary:
    """A readable reason kept with a failed job."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> ErrorSummary:
        """Summarise any exception without leaking its arguments beyond ``message``."""
        if isinstance(exc, Chat2CrmError):
            return cls(type(exc).__name__, exc.message, dict(exc.details))
        return cls(type(exc).__name__, str(exc)[:500])
