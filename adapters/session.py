"""The one way an adapter talks to its CRM: one session per vendor.

Every API call an adapter makes goes through :meth:`VendorSession.call`, which

- waits for the shared rate limiter (a CRM counts requests per account, not per worker:
  :mod:`adapters._ratelimit`),
- sends with the session's timeouts (data on the session, from the adapter's ``options``),
- counts the call (:attr:`VendorSession.calls`) and records the ``crm_calls`` metric,
- and turns whatever went wrong into the error tree of :mod:`core.errors` through the
  vendor's :class:`ErrorTable` (HTTP status and vendor error code → error kind) or, for the
  transport, into a :class:`~core.errors.RetryableError`.

A vendor's session subclasses :class:`VendorSession` and says how its client reports an answer
(:meth:`VendorSession.answer_of`); everything else is shared. Retrying is not done here: the job
layer owns the retry policy (:mod:`core.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import requests

from adapters._ratelimit import spare_budget_only  # noqa: F401 - the SDK's way to make a call wait-free
from core import metrics
from core.errors import AuthError, FatalError, RetryableError, SkippableError, SyncError

if TYPE_CHECKING:
    from redis import Redis

    from adapters._ratelimit import SharedRateLimiter

T = TypeVar("T")
Kind = Literal["retryable", "auth", "fatal", "skippable"]


def settle_after_timeout(read_timeout: float) -> float:
    """How long to wait before retrying a request the CRM may still carry out after we gave up on it.

    A read time-out means the CRM had the request and may write it later. Twice the read timeout,
    and at least two seconds, lets a CRM that finishes late land its write before the retry looks
    (on a strongly consistent read) for what it wrote. Timeouts are rare; a lead lands a little later.
    """
    return max(2.0 * read_timeout, 2.0)


@dataclass(frozen=True)
class Timeouts:
    """How long a call may take to connect, and to answer once connected (seconds).

    Raises:
        ValueError: a timeout is not more than 0.
    """

    connect: float
    read: float

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)!r}")

    def pair(self) -> tuple[float, float]:
        """``(connect, read)``, as ``requests`` and urllib3 take them."""
        return self.connect, self.read


@dataclass(frozen=True)
class Answer:
    """A CRM's error answer, as the vendor's client reported it."""

    status: int
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class ErrorRule:
    """One row of a vendor's error table: answers with one of ``statuses`` (inclusive ranges; empty: any)
    and one of ``codes`` (the vendor's error codes; empty: any) are errors of ``kind``; ``what`` says
    it in a few words."""

    kind: Kind
    statuses: tuple[tuple[int, int], ...] = ()
    codes: frozenset[str] = frozenset()
    what: str = "request rejected"

    def matches(self, answer: Answer) -> bool:
        """Whether ``answer`` falls under this rule."""
        in_status = not self.statuses or any(low <= answer.status <= high for low, high in self.statuses)
        return in_status and (not self.codes or answer.code in self.codes)


def rule(kind: Kind, *statuses: int | tuple[int, int], codes: Iterable[str] = (), what: str = "request rejected",
         ) -> ErrorRule:
    """An :class:`ErrorRule`; a status is one number or an inclusive ``(low, high)`` range."""
    ranges = tuple((s, s) if isinstance(s, int) else s for s in statuses)
    return ErrorRule(kind, ranges, frozenset(codes), what)


class ErrorTable:
    """A vendor's answers → the error tree: the first rule that matches decides the kind.

    Args:
        api: the CRM's name, at the start of every message.
        rules: the rows, most specific first.
        default: the kind of an answer no rule matches.
    """

    def __init__(self, api: str, rules: Sequence[ErrorRule], *, default: Kind = "fatal") -> None:
        if not api:
            raise ValueError(f"api must name the CRM, got {api!r}")
        self.api = api
        self.rules = tuple(rules)
        self.default: Kind = default

    def classify(self, answer: Answer) -> tuple[Kind, str]:
        """The kind of error ``answer`` is, and the rule's words for it."""
        for row in self.rules:
            if row.matches(answer):
                return row.kind, row.what
        return self.default, "request rejected"

    def error(self, answer: Answer, *, operation: str, retry_after: float | None = None, setting: str | None = None,
              field: str | None = None, hint: str = "", details: dict[str, Any] | None = None) -> SyncError:
        """The error for ``answer``: its message names the CRM, the rule's words, the status and code
        (``hubspot: server error 503 …``, ``pipedrive: request rejected (400: …)``; the vendor's message is cut
        short: it can echo what we sent)."""
        kind, what = self.classify(answer)
        code = f" {answer.code}" if answer.code else ""
        said = answer.message[:160]
        if kind == "retryable":
            message = f"{self.api}: {what} {answer.status}{code}" + (f" ({said})" if said else "") + hint
        else:
            message = f"{self.api}: {what} ({answer.status}{code}" + (f": {said}" if said else "") + f"){hint}"
        info = {"status": answer.status, "code": answer.code or None, "operation": operation, **(details or {})}
        if kind == "retryable":
            return RetryableError(message, retry_after=retry_after, details=info)
        if kind == "auth":
            return AuthError(message, setting=setting, details=info)
        if kind == "skippable":
            return SkippableError(message, details=info)
        return FatalError(message, field=field, details=info)


class VendorSession:
    """The only way an adapter's calls reach its CRM.

    Args:
        api: the CRM's name (metrics and messages).
        redis: the shared connection (metrics; None in one-off commands without Redis).
        timeouts: the connect and read timeouts of every call.
        errors: the vendor's error table.
        limiter: the account's request budget, shared by every worker (None: no limit).
    """

    def __init__(self, api: str, *, redis: Redis | None, timeouts: Timeouts, errors: ErrorTable,
                 limiter: SharedRateLimiter | None = None) -> None:
        if not isinstance(timeouts, Timeouts):
            raise ValueError(f"timeouts must be a Timeouts, got {timeouts!r}")
        self.api = api
        self.redis = redis
        self.timeouts = timeouts
        self.errors = errors
        self.limiter = limiter
        #: API calls sent through this session (measured by tests and benchmarks)
        self.calls = 0

    def call(self, operation: str, send: Callable[[], T], *, limiters: Sequence[SharedRateLimiter] = ()) -> T:
        """Send one request (``send`` makes it, with :attr:`timeouts`) and return what it returned.

        Raises:
            RetryableError: 429, 5xx, a time-out or a connection error (``retry_after`` when known: a
                read time-out carries :func:`settle_after_timeout`, since the CRM may still write).
            AuthError: the credentials were refused (naming the setting).
            FatalError: any other refusal (naming the field when the CRM says which).
            SkippableError: the vendor's table says the work is moot.
        """
        for limiter in (*limiters, *([self.limiter] if self.limiter else [])):
            limiter.acquire()
        self.calls += 1
        outcome = "ok"
        try:
            return send()
        except SyncError:
            outcome = "refused"
            raise
        except Exception as exc:
            translated = self.translate(exc, operation)
            if translated is None:
                outcome = "bug"
                raise
            outcome, error = translated
            raise error from None
        finally:
            if self.redis is not None:
                metrics.incr(self.redis, "crm_calls", adapter=self.api, operation=operation, outcome=outcome)

    def translate(self, exc: Exception, operation: str) -> tuple[str, SyncError] | None:
        """``exc`` (raised by the vendor's client) → ``(metric outcome, error)``; None: not the CRM's doing.

        Subclasses recognise their client's transport errors (:meth:`timed_out`, :meth:`unreachable`)
        and error answers (:meth:`answer_of`, then :meth:`refused`).
        """
        answer = self.answer_of(exc)
        if answer is None:
            return None
        return str(answer.status), self.refused(answer, operation)

    def answer_of(self, exc: Exception) -> Answer | None:
        """The CRM's answer carried by ``exc`` (None: ``exc`` is no answer). Vendor sessions override this."""
        return None

    def refused(self, answer: Answer, operation: str) -> SyncError:
        """The error for an error answer: the table's, refined by the vendor session where it must be."""
        return self.errors.error(answer, operation=operation)

    def timed_out(self, operation: str, *, reading: bool) -> tuple[str, SyncError]:
        """A call that timed out: ``reading`` (the CRM had the request) waits for a late write to land."""
        settle = settle_after_timeout(self.timeouts.read) if reading else None
        return "timeout", RetryableError(f"{self.api}: {operation} timed out", retry_after=settle,
                                         details={"operation": operation, "reading": reading})

    def unreachable(self, operation: str, exc: Exception) -> tuple[str, SyncError]:
        """The CRM could not be reached (connection refused, reset, TLS…)."""
        return "network", RetryableError(f"{self.api}: {type(exc).__name__}", details={"operation": operation})


class RequestsSession(VendorSession):
    """A vendor session whose client sends through ``requests`` (Pipedrive directly, Salesforce through
    simple-salesforce): its time-outs and connection failures mapped once, for both."""

    def translate(self, exc: Exception, operation: str) -> tuple[str, SyncError] | None:
        if isinstance(exc, requests.Timeout):
            # A write that timed out while the CRM was reading it may still be carried out: the job waits as
            # long again before its retry, so the retry's read sees what it wrote.
            return self.timed_out(operation, reading=isinstance(exc, requests.ReadTimeout))
        if isinstance(exc, requests.RequestException):
            return self.unreachable(operation, exc)
        return super().translate(exc, operation)

