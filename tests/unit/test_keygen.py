"""``chat2crm keygen`` prints a key the token store can use, a new one each time."""

from __future__ import annotations

from click.testing import CliRunner
from cryptography.fernet import Fernet

from connector.cli import main


def test_keygen_prints_a_fresh_fernet_key() -> None:
    first = CliRunner().invoke(main, ["keygen"])
    second = CliRunner().invoke(main, ["keygen"])
    assert first.exit_code == 0 and second.exit_code == 0
    key, other = first.output.strip(), second.output.strip()
    assert key != other
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"refresh-token")) == b"refresh-token"
