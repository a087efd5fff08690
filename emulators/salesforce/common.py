"""What every part of the Salesforce emulator shares: the org's fixed ids, record ids and timestamps,
the credentials the token endpoint accepts, and the error answer (``[{"message", "errorCode", "fields"}]``)
a request is refused with.

It sits below the emulator's layers (state, queries, resources, REST routing, authentication) so
that each of them can raise :class:`Failed` and stamp records the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify

ORG_ID = "00D5g000004XyzAEAS"
API_USER_ID = "005000000000001AAA"
COORDINATOR_ID = "005000000000002AAA"
ASSIGNMENT_RULE_ID = "01Q000000000001AAA"
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def timestamp() -> str:
    """Now, as Salesforce writes a datetime (``2026-01-01T09:30:00.000+0000``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id: 15 case-sensitive characters and the 3-character checksum."""
    base = f"{prefix}{number:012d}"[:15]
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(base[chunk * 5:chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _ID_SUFFIX[bits]
    return base + suffix


@dataclass
class SalesforceCredentials:
    """What the emulated org accepts at its token endpoint.

    Args:
        client_id: the connected app's consumer key.
        client_secret: its consumer secret (client credentials and password grants).
        username: the integration user (JWT bearer and password grants).
        password: the user's password; the password grant sends it with ``security_token`` appended.
        security_token: the user's security token.
        jwt_public_key: PEM of the certificate's public key uploaded to the connected app (JWT grant).
    """

    client_id: str = "3MVG9demo-client-id"
    client_secret: str = "demo-client-secret"
    username: str | None = "integration@clinic.example"
    password: str | None = None
    security_token: str | None = None
    jwt_public_key: str | bytes | None = None



class Failed(Exception):
    """A request Salesforce answers with an error list."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def fail(status: int, message: str, code: str, fields: list[str] | None = None, **extra: Any) -> Failed:
    """The refusal of a request with one error (``extra`` adds keys such as ``duplicateResult``)."""
    return Failed(status, [{"message": message, "errorCode": code, "fields": list(fields or []), **extra}])


def json_response(status: int, body: Any) -> Response:
    """A JSON answer with ``status``."""
    response = jsonify(body)
    response.status_code = status
    return response


def same_value(stored: Any, wanted: Any, case_sensitive: bool) -> bool:
    """Whether a stored field value equals a wanted one, as Salesforce compares them (text case-insensitively
    unless the field is case-sensitive)."""
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if isinstance(stored, str) and isinstance(wanted, str) and not case_sensitive:
        return stored.lower() == wanted.lower()
    return str(stored) == str(wanted)
